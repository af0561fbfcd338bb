//! The built-in `mock` provider: a deterministic echo that speaks OpenAI Chat Completions,
//! answered in-process (no network), so the shipped config works with no credentials.
//!
//! The reply is `echo: <last user text>`, except that a last user text `call <tool> [json args]`
//! is answered with a call of that tool (arguments `{}` when none are given), so tool calls can
//! be tried through every inbound format without credentials. Usage counts are deterministic: input = bytes of all
//! message text / 4 (at least 1), output = number of words in the reply. A stream sends one
//! chunk per word, then the finish chunk, then the usage chunk when asked, then `[DONE]`.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{AuthScheme, MediaOp, ModelIn, ProviderSpec, Responses};
use crate::config::ProviderKind;
use crate::formats::Format;

pub const SPEC: ProviderSpec = ProviderSpec {
    kind: ProviderKind::Mock,
    chat_format: Format::OpenAiChat,
    default_base_url: None,
    auth: AuthScheme::None,
    api_key_required: false,
    fixed_headers: &[],
    media: &[MediaOp::Embeddings],
    media_translated: false,
    model_in: ModelIn::Body,
    legacy_max_tokens: false,
    responses: Responses::Never,
    jobs: &[],
};

/// Fixed `created` so the same request always gives the same bytes.
pub const CREATED: u64 = 1_700_000_000;

/// A complete upstream answer: status, content type and body chunks.
pub struct MockResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub chunks: Vec<Bytes>,
}

/// Answer an OpenAI Chat request body. `model` is the target model to report.
pub fn chat(body: &[u8], model: &str) -> MockResponse {
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("mock: invalid JSON body: {e}")),
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return error(400, "mock: `messages` is required");
    };
    let mut all_text = 0usize;
    let mut last_user = String::new();
    for m in messages {
        let text = text_of(m.get("content"));
        all_text += text.len();
        if m.get("role").and_then(Value::as_str) == Some("user") {
            last_user = text;
        }
    }
    let input_tokens = (all_text / 4).max(1);
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if let Some((tool, args)) = tool_call_prompt(&last_user) {
        return tool_call(&req, model, input_tokens, tool, args, stream);
    }
    let reply = format!("echo: {last_user}");
    let words: Vec<&str> = reply.split_inclusive(' ').collect();
    let output_tokens = words.len();
    let usage = json!({"prompt_tokens": input_tokens, "completion_tokens": output_tokens, "total_tokens": input_tokens + output_tokens});
    let id = "chatcmpl-mock";
    if !stream {
        let body = json!({
            "id": id, "object": "chat.completion", "created": CREATED, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": usage,
        });
        return MockResponse {
            status: 200,
            content_type: "application/json",
            chunks: vec![Bytes::from(serde_json::to_vec(&body).unwrap_or_default())],
        };
    }
    let include_usage =
        req.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        sse(&json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
    };
    let mut chunks = Vec::with_capacity(words.len() + 4);
    chunks.push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
    for w in &words {
        chunks.push(chunk(json!({"content": w}), Value::Null));
    }
    chunks.push(chunk(json!({}), json!("stop")));
    if include_usage {
        chunks.push(sse(
            &json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "choices": [], "usage": usage}),
        ));
    }
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    MockResponse { status: 200, content_type: "text/event-stream", chunks }
}

/// `call <tool> [args]` → the tool name and its JSON arguments (`{}` when none or not JSON).
fn tool_call_prompt(text: &str) -> Option<(&str, String)> {
    let rest = text.trim().strip_prefix("call ")?;
    let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return None;
    }
    let args = args.trim();
    let args = match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => v.to_string(),
        _ => "{}".to_string(),
    };
    Some((name, args))
}

/// A tool-call answer (non-stream or stream) for `tool` with `args`.
fn tool_call(
    req: &Value,
    model: &str,
    input_tokens: usize,
    tool: &str,
    args: String,
    stream: bool,
) -> MockResponse {
    let id = "chatcmpl-mock";
    let call_id = "call_mock_1";
    let output_tokens = (args.len() / 4).max(1) + 1;
    let usage = json!({"prompt_tokens": input_tokens, "completion_tokens": output_tokens, "total_tokens": input_tokens + output_tokens});
    if !stream {
        let body = json!({
            "id": id, "object": "chat.completion", "created": CREATED, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": tool, "arguments": args}}
            ]}, "finish_reason": "tool_calls"}],
            "usage": usage,
        });
        return MockResponse {
            status: 200,
            content_type: "application/json",
            chunks: vec![Bytes::from(serde_json::to_vec(&body).unwrap_or_default())],
        };
    }
    let include_usage =
        req.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        sse(&json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
    };
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"index": 0, "id": call_id, "type": "function", "function": {"name": tool, "arguments": ""}}
        ]}),
        Value::Null,
    )];
    // The arguments in two pieces, as real servers split them.
    let mid = args.char_indices().nth(args.chars().count() / 2).map(|(i, _)| i).unwrap_or(0);
    for piece in [&args[..mid], &args[mid..]] {
        if !piece.is_empty() {
            chunks.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    chunks.push(chunk(json!({}), json!("tool_calls")));
    if include_usage {
        chunks.push(sse(&json!({"id": id, "object": "chat.completion.chunk", "created": CREATED,
            "model": model, "choices": [], "usage": usage})));
    }
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    MockResponse { status: 200, content_type: "text/event-stream", chunks }
}

/// Answer an OpenAI embeddings request: an 8-dimensional vector per input, derived from the
/// input's bytes (same input, same vector), and usage of bytes / 4 tokens.
pub fn embeddings(body: &[u8], model: &str) -> MockResponse {
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("mock: invalid JSON body: {e}")),
    };
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            a.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect()
        }
        _ => return error(400, "mock: `input` is required"),
    };
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += (text.len() / 4).max(1);
            let mut v = [0f64; 8];
            for (j, b) in text.bytes().enumerate() {
                v[j % 8] += f64::from(b) / 255.0;
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-9);
            json!({"object": "embedding", "index": i, "embedding": v.iter().map(|x| x / norm).collect::<Vec<_>>()})
        })
        .collect();
    let body = json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    MockResponse {
        status: 200,
        content_type: "application/json",
        chunks: vec![Bytes::from(serde_json::to_vec(&body).unwrap_or_default())],
    }
}

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    }
}

fn sse(v: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(&serde_json::to_vec(v).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn error(status: u16, message: &str) -> MockResponse {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "code": null}});
    MockResponse {
        status,
        content_type: "application/json",
        chunks: vec![Bytes::from(serde_json::to_vec(&body).unwrap_or_default())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_stream_echoes_the_last_user_message_with_usage() {
        let r = chat(br#"{"model":"x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}]}"#, "m1");
        let v: Value = serde_json::from_slice(&r.chunks[0]).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "echo: hello there");
        assert_eq!(v["model"], "m1");
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["usage"]["prompt_tokens"], 4);
    }

    #[test]
    fn stream_sends_a_chunk_per_word_then_usage_then_done() {
        let r = chat(br#"{"model":"x","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":[{"type":"text","text":"a b"}]}]}"#, "m1");
        assert_eq!(r.content_type, "text/event-stream");
        let all: String = r.chunks.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        assert!(all.contains(r#""delta":{"content":"echo: "}"#), "{all}");
        assert!(all.contains(r#""choices":[],"#), "{all}");
        assert!(all.ends_with("data: [DONE]\n\n"));
        assert_eq!(r.chunks.len(), 1 + 3 + 1 + 1 + 1);
    }

    #[test]
    fn call_prompt_answers_with_a_tool_call() {
        let r = chat(br#"{"model":"x","messages":[{"role":"user","content":"call get_weather {\"city\":\"Paris\"}"}]}"#, "m1");
        let v: Value = serde_json::from_slice(&r.chunks[0]).unwrap();
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn streamed_tool_call_splits_arguments_and_finishes_with_tool_calls() {
        let r = chat(br#"{"model":"x","stream":true,"messages":[{"role":"user","content":"call lookup {\"q\":\"rust\"}"}]}"#, "m1");
        let all: String = r.chunks.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        assert!(all.contains(r#""name":"lookup""#), "{all}");
        assert!(all.contains(r#""finish_reason":"tool_calls""#), "{all}");
        let args: String = r.chunks[1..3]
            .iter()
            .map(|c| {
                let v: Value = serde_json::from_slice(&c[6..c.len() - 2]).unwrap();
                v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(args, r#"{"q":"rust"}"#);
    }

    #[test]
    fn bad_json_is_a_400_in_openai_shape() {
        let r = chat(b"{", "m");
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.chunks[0]).contains("\"error\""));
    }
}
