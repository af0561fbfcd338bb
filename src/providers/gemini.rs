//! Gemini (AI Studio): `/v1beta/models/{model}:generateContent`, or
//! `:streamGenerateContent?alt=sse` for streams (always SSE upstream), `x-goog-api-key`.

use super::{AuthScheme, MediaOp, ModelIn, ProviderSpec, Responses};
use super::{Operation, Route};
use crate::config::ProviderKind;
use crate::formats::Format;

pub const SPEC: ProviderSpec = ProviderSpec {
    kind: ProviderKind::Gemini,
    chat_format: Format::Gemini,
    default_base_url: Some("https://generativelanguage.googleapis.com"),
    auth: AuthScheme::Header("x-goog-api-key"),
    api_key_required: true,
    fixed_headers: &[],
    // Embeddings through formats::embeddings (batchEmbedContents).
    media: &[MediaOp::Embeddings],
    media_translated: true,
    model_in: ModelIn::Path,
    legacy_max_tokens: false,
    responses: Responses::Never,
    jobs: &[],
};

pub fn request(prefix: &str, op: Operation, model: &str, key: Option<&str>) -> Route {
    // The model is one path segment: a `/`, `:`, `?` or space in it must not change the URL.
    let model = super::encode_segment(model.strip_prefix("models/").unwrap_or(model));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_is_one_encoded_path_segment() {
        let (path, _) = request("", Operation::Chat { stream: false }, "models/gemini-2.0-flash", None);
        assert_eq!(path, "/v1beta/models/gemini-2.0-flash:generateContent");
        let (path, _) = request("", Operation::Chat { stream: true }, "x/../y:z?key=1 #", None);
        assert_eq!(path, "/v1beta/models/x%2F..%2Fy%3Az%3Fkey%3D1%20%23:streamGenerateContent?alt=sse");
    }
}
