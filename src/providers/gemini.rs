//! Gemini (AI Studio): `/v1beta/models/{model}:generateContent`, or
//! `:streamGenerateContent?alt=sse` for streams (always SSE upstream), `x-goog-api-key`.

use super::{Operation, Route};

pub fn request(prefix: &str, op: Operation, model: &str, key: Option<&str>) -> Route {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let path = match op {
        Operation::Chat { stream: false } => {
            format!("{prefix}/v1beta/models/{model}:generateContent")
        }
        Operation::Chat { stream: true } => {
            format!("{prefix}/v1beta/models/{model}:streamGenerateContent?alt=sse")
        }
        // Embeddings (the only media operation Gemini serves), translated by formats::embeddings.
        Operation::Media(_) => format!("{prefix}/v1beta/models/{model}:batchEmbedContents"),
    };
    let headers = key.map(|k| vec![("x-goog-api-key", k.to_string())]).unwrap_or_default();
    (path, headers)
}
