//! OpenAI and OpenAI-compatible servers (vLLM, llama.cpp server, Ollama, TGI):
//! `/v1/chat/completions`, `Authorization: Bearer` (optional for compatible servers).

use super::{Operation, Route};

pub const CHAT_PATH: &str = "/v1/chat/completions";

pub fn request(prefix: &str, op: Operation, key: Option<&str>) -> Route {
    let path = match op {
        Operation::Chat { .. } => format!("{prefix}{CHAT_PATH}"),
        Operation::Media(m) => format!("{prefix}/v1{}", m.path()),
    };
    let headers = key.map(|k| vec![("authorization", format!("Bearer {k}"))]).unwrap_or_default();
    (path, headers)
}
