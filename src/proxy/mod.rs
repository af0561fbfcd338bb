//! The data plane: the Pingora app (`app.rs`) and the per-request flow. This room routes
//! calls into `auth`, `formats`, `providers`, `routing` and `accounting`; nothing else lives here.

mod app;
mod chat;
mod cors;
mod ctx;
mod embeddings;
mod endpoint;
mod gateway;
mod gemini;
mod h1;
mod head;
mod jobs;
mod media;
mod plan;
mod pool;
mod preflight;
mod respond;
mod responses;
mod upstream;

/// The client's side of one request (HTTP/1 or HTTP/2), as Pingora reads and writes it.
type Session = pingora::protocols::http::ServerSession;

pub use self::{
    app::DataPlane,
    ctx::RequestCtx,
    endpoint::Endpoint,
    gateway::{Counters, Gateway},
    pool::sweep as sweep_idle_upstreams,
    upstream::POOL_IDLE_TIMEOUT,
};
