//! The admin listener's Pingora app: reads the request body whole (bounded by
//! `MAX_BODY_BYTES`, 413 beyond) and hands the request to `Admin::handle`.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use super::core::{Admin, AdminRequest, MAX_BODY_BYTES};
use super::errors::ApiError;

/// `Service::new("llm-gateway admin", AdminService::new(admin))`.
pub struct AdminService {
    admin: Arc<Admin>,
}

impl AdminService {
    pub fn new(admin: Arc<Admin>) -> AdminService {
        AdminService { admin }
    }
}

#[async_trait]
impl ServeHttp for AdminService {
    async fn response(&self, s: &mut ServerSession) -> Response<Vec<u8>> {
        crate::net::head_received();
        let header = s.req_header();
        let method = header.method.clone();
        let path = header.uri.path().to_string();
        let query = header.uri.query().map(str::to_string);
        let headers = header.headers.clone();
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
            s.set_keepalive(None);
            return ApiError::TooLarge(MAX_BODY_BYTES).response();
        }
        let mut body = Vec::new();
        loop {
            match s.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        s.set_keepalive(None);
                        return ApiError::TooLarge(MAX_BODY_BYTES).response();
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return ApiError::BadRequest(format!("cannot read the request body: {e}")).response()
                }
            }
        }
        self.admin.handle(AdminRequest { method, path, query, headers, body }).await
    }
}
