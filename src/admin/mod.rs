//! The admin listener: a second Pingora service in the same process. Bearer-token protected
//! (`admin.token`). Serves the running config (secrets redacted), reload, and `/metrics`.

mod app;
pub mod usage_index;

pub use self::app::AdminApp;
