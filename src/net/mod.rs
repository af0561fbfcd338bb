//! Network helpers the proxy needs that Pingora leaves to us: asynchronous DNS.

mod dns;

pub use self::dns::Resolver;
