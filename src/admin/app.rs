//! Legacy admin app over `ConfigStore` (config, reload, health, metrics only), kept so the
//! server wiring compiles until it switches to `AdminService` (see `core.rs`); then delete this.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use subtle::ConstantTimeEq;

use crate::config::{ConfigStore, Reload};

use super::secrets::redacted;
use crate::proxy::Counters;
use crate::routing::Targets;

pub struct AdminApp {
    pub store: Arc<ConfigStore>,
    pub counters: Arc<Counters>,
    pub targets: Arc<Targets>,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, s: &mut ServerSession) -> Response<Vec<u8>> {
        let method = s.req_header().method.clone();
        let path = s.req_header().uri.path().to_string();
        if path == "/healthz" {
            return json(200, br#"{"status":"ok"}"#.to_vec());
        }
        let snap = self.store.load();
        let presented = s
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        let authorized = match (&snap.admin_token, presented) {
            (Some(t), Some(p)) => bool::from(t.expose().as_bytes().ct_eq(p.trim().as_bytes())),
            _ => false,
        };
        if !authorized {
            return error(401, "missing or wrong admin token (Authorization: Bearer <admin.token>)");
        }
        let _ = s.read_request_body().await;
        match (method.as_str(), path.as_str()) {
            ("GET", "/admin/config") => {
                json(200, serde_json::to_vec_pretty(&redacted(&snap.config)).unwrap_or_default())
            }
            ("POST", "/admin/reload") => match self.store.reload() {
                Ok(r) => json(200, format!("{{\"reloaded\":{}}}", r == Reload::Applied).into_bytes()),
                Err(e) => error(400, &e.to_string()),
            },
            ("GET", "/admin/health") => {
                let mut targets = self.targets.snapshot();
                targets.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
                json(
                    200,
                    serde_json::to_vec_pretty(&serde_json::json!({ "targets": targets })).unwrap_or_default(),
                )
            }
            ("GET", "/metrics") => {
                let c = &self.counters;
                let body = format!(
                    "# TYPE llm_gateway_requests_total counter\nllm_gateway_requests_total {}\n\
                     # TYPE llm_gateway_active_requests gauge\nllm_gateway_active_requests {}\n\
                     # TYPE llm_gateway_errors_total counter\nllm_gateway_errors_total {}\n\
                     # TYPE llm_gateway_config_reloads_total counter\n\
                     llm_gateway_config_reloads_total{{result=\"ok\"}} {}\n\
                     llm_gateway_config_reloads_total{{result=\"error\"}} {}\n",
                    c.requests.load(Ordering::Relaxed),
                    c.active.load(Ordering::Relaxed),
                    c.errors.load(Ordering::Relaxed),
                    self.store.reloads_ok.load(Ordering::Relaxed),
                    self.store.reloads_failed.load(Ordering::Relaxed),
                );
                Response::builder()
                    .status(200)
                    .header("content-type", "text/plain; version=0.0.4")
                    .header("content-length", body.len())
                    .body(body.into_bytes())
                    .unwrap_or_default()
            }
            _ => error(404, &format!("no admin route for {method} {path}")),
        }
    }
}

fn json(status: u16, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

fn error(status: u16, message: &str) -> Response<Vec<u8>> {
    json(status, serde_json::to_vec(&serde_json::json!({"error": {"message": message}})).unwrap_or_default())
}
