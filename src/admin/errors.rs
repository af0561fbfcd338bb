//! Admin API errors, and the one function that turns them into answers
//! (`{"error": {"type", "message", "errors"?}}`).

use http::Response;
use serde_json::json;

use crate::config::ConfigErrors;

use super::edit::EditError;

/// Why an admin request was refused. Nothing was changed by a refused request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown admin token: send `Authorization: Bearer <token>` (admin.token or an admin.tokens entry)")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    /// The change would make the config invalid (every error, with its YAML path).
    #[error("the change would make the config invalid; nothing was changed")]
    Invalid(ConfigErrors),
    #[error("{0}")]
    NotFound(String),
    #[error("no route {method} {path}; it allows {allow}")]
    MethodNotAllowed { method: String, path: String, allow: String },
    #[error("{0}")]
    Conflict(String),
    #[error("request body over {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::BadRequest(_) | ApiError::Invalid(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict(_) => 409,
            ApiError::TooLarge(_) => 413,
            ApiError::Unprocessable(_) => 422,
            ApiError::Internal(_) => 500,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid(_) => "invalid_config",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The answer for this error.
    pub fn response(&self) -> Response<Vec<u8>> {
        let mut error = json!({"type": self.kind(), "message": self.to_string()});
        if let ApiError::Invalid(errs) = self {
            error["errors"] = errs.0.iter().map(|e| json!({"path": e.path, "message": e.message})).collect();
            let list: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
            error["message"] = format!("{}: {}", self, list.join("; ")).into();
        }
        let mut resp = json_response(self.status(), &json!({ "error": error }));
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            if let Ok(v) = http::HeaderValue::from_str(allow) {
                resp.headers_mut().insert(http::header::ALLOW, v);
            }
        }
        if let ApiError::Unauthorized = self {
            resp.headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<EditError> for ApiError {
    fn from(e: EditError) -> Self {
        match e {
            EditError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            EditError::Exists { .. } => ApiError::Conflict(e.to_string()),
            EditError::Unverified(_) | EditError::NoPath(_) => ApiError::Unprocessable(e.to_string()),
            EditError::Parse(_) | EditError::NotAMapping | EditError::NotAList(_) => {
                ApiError::Unprocessable(e.to_string())
            }
        }
    }
}

/// A JSON answer.
pub fn json_response(status: u16, body: &serde_json::Value) -> Response<Vec<u8>> {
    let body = serde_json::to_vec_pretty(body).unwrap_or_default();
    bytes_response(status, "application/json", body)
}

/// Any answer with a content type and a length.
pub fn bytes_response(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(Vec::new());
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    *resp.body_mut() = body;
    resp
}
