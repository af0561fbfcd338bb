//! The data plane: the `ProxyHttp` implementation and the per-request flow. This room routes
//! calls into `auth`, `formats`, `providers`, `routing` and `accounting`; nothing else lives here.

mod chat;
mod cors;
mod ctx;
mod embeddings;
mod endpoint;
mod gateway;
mod gemini;
mod head;
mod jobs;
mod media;
mod plan;
mod preflight;
mod respond;
mod responses;
mod upstream;

pub use self::{
    ctx::RequestCtx,
    endpoint::Endpoint,
    gateway::{Counters, Gateway},
    upstream::POOL_IDLE_TIMEOUT,
};
