//! llm-gateway: an LLM gateway on Cloudflare Pingora. One endpoint for the OpenAI, Anthropic
//! and Google SDKs in front of many providers, translating formats both ways.
//!
//! Rooms: `config` (schema, validation, hot reload), `proxy` (the data plane), `formats`
//! (wire formats <-> IR, pure), `providers` (URLs and auth per provider kind), `routing`
//! (target choice and resilience), `auth` (virtual keys), `limits` (RPM/TPM, parallel,
//! budgets, token counting), `accounting` (usage, cost, spend rebuild),
//! `admin` (the admin listener), `net` (async DNS), `server` (wiring it all into Pingora).
//! (target choice and resilience), `auth` (virtual keys, JWT), `accounting` (usage, cost),
//! `admin` (the admin listener), `net` (async DNS), `server` (wiring it all into Pingora),
//! `cli` (the operator's client and tool subcommands).
//! (target choice and resilience), `auth` (virtual keys), `accounting` (usage, cost),
//! `telemetry` (metrics, access log, redaction, alerts).

#![forbid(unsafe_code)]

pub mod accounting;
pub mod admin;
pub mod admission;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod formats;
pub mod jobs;
pub mod limits;
pub mod net;
pub mod providers;
pub mod proxy;
pub mod responses;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod telemetry;
