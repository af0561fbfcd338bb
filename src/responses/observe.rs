//! Reading what a Responses answer says without changing a byte of it: the response id (from
//! the body, or the stream's `response.created`), the usage (`usage`, or the terminal
//! `response.completed` / `response.incomplete` / `response.failed` event) and, for the
//! gateway's conversation store, the final response object. Stream events the gateway does not
//! need are framed by the SSE parser and never decoded.

use serde::Deserialize;
use serde_json::Value;

use crate::formats::sse::{SseEvent, SseParser};
use crate::formats::{passthrough, Usage};

/// The id and usage of a non-stream Responses body.
pub fn body_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct B {
        id: Option<String>,
    }
    serde_json::from_slice::<B>(body).ok()?.id.filter(|id| !id.is_empty())
}

/// Usage of a non-stream Responses body.
pub fn body_usage(body: &[u8]) -> Usage {
    passthrough::openai_usage(body).unwrap_or_default()
}

/// Watches a Responses SSE stream go by.
#[derive(Debug)]
pub struct StreamObserver {
    sse: SseParser,
    events: Vec<SseEvent>,
    /// Keep the whole terminal response object (the conversation store needs its output).
    keep: bool,
    id: Option<String>,
    usage: Option<Usage>,
    response: Option<Value>,
    error: Option<String>,
}

const TERMINAL: [&str; 3] = ["response.completed", "response.incomplete", "response.failed"];

// === impl StreamObserver ===

impl StreamObserver {
    /// `keep`: also keep the final response object (`response()`).
    pub fn new(keep: bool) -> StreamObserver {
        StreamObserver {
            sse: SseParser::new(),
            events: Vec::new(),
            keep,
            id: None,
            usage: None,
            response: None,
            error: None,
        }
    }

    /// Look at the next chunk of the stream (the caller forwards it unchanged).
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.sse.feed(chunk, &mut self.events).is_err() {
            // An oversized event: the gateway stops looking; the bytes still go through.
            self.events.clear();
            return;
        }
        self.drain();
    }

    /// The stream ended.
    pub fn finish(&mut self) {
        self.sse.finish(&mut self.events);
        self.drain();
    }

    fn drain(&mut self) {
        for ev in std::mem::take(&mut self.events) {
            self.event(&ev);
        }
    }

    fn event(&mut self, ev: &SseEvent) {
        let ty = if ev.event.is_empty() { sniff_type(&ev.data) } else { Some(ev.event.as_str()) };
        let Some(ty) = ty else { return };
        if ty == "response.created" && self.id.is_none() {
            #[derive(Deserialize)]
            struct Created {
                response: Id,
            }
            #[derive(Deserialize)]
            struct Id {
                id: Option<String>,
            }
            if let Ok(c) = serde_json::from_str::<Created>(&ev.data) {
                self.id = c.response.id.filter(|id| !id.is_empty());
            }
        } else if TERMINAL.contains(&ty) {
            if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                let r = &v["response"];
                if self.id.is_none() {
                    self.id = r["id"].as_str().map(str::to_string);
                }
                let u = serde_json::to_vec(&serde_json::json!({ "usage": r["usage"] })).unwrap_or_default();
                self.usage = passthrough::openai_usage(&u);
                if ty == "response.failed" {
                    self.error =
                        Some(r["error"]["message"].as_str().unwrap_or("response failed").to_string());
                }
                if self.keep && ty != "response.failed" {
                    self.response = Some(v["response"].clone());
                }
            }
        } else if ty == "error" {
            let v: Value = serde_json::from_str(&ev.data).unwrap_or_default();
            let m = v["message"].as_str().or(v["error"]["message"].as_str()).unwrap_or("stream error");
            self.error = Some(m.to_string());
        }
    }

    /// The response id, once `response.created` (or the terminal event) went by.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Usage from the terminal event (zero when the stream ended before it).
    pub fn usage(&self) -> Usage {
        self.usage.unwrap_or_default()
    }

    /// Whether the terminal event went by.
    pub fn completed(&self) -> bool {
        self.usage.is_some()
    }

    /// The final response object (`keep` only; not for a failed response).
    pub fn take_response(&mut self) -> Option<Value> {
        self.response.take()
    }

    /// An error the stream itself reported.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// The `type` of a data-only event, read only for the types the observer needs.
fn sniff_type(data: &str) -> Option<&'static str> {
    let has = |needle: &str| memchr::memmem::find(data.as_bytes(), needle.as_bytes()).is_some();
    if !has("\"type\"") {
        return None;
    }
    #[derive(Deserialize)]
    struct T<'a> {
        #[serde(borrow, rename = "type")]
        ty: Option<std::borrow::Cow<'a, str>>,
    }
    let candidates = ["response.created", TERMINAL[0], TERMINAL[1], TERMINAL[2], "error"];
    const QUOTED: [&str; 5] = [
        "\"response.created\"",
        "\"response.completed\"",
        "\"response.incomplete\"",
        "\"response.failed\"",
        "\"error\"",
    ];
    if !QUOTED.iter().any(|q| has(q)) {
        return None;
    }
    let t: T = serde_json::from_str(data).ok()?;
    let ty = t.ty?;
    candidates.into_iter().find(|c| *c == ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_9\",\"output\":[]}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_9\",",
        "\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"hi\"}]}],",
        "\"usage\":{\"input_tokens\":11,\"output_tokens\":7,\"input_tokens_details\":{\"cached_tokens\":3},",
        "\"output_tokens_details\":{\"reasoning_tokens\":2}}}}\n\n"
    );

    #[test]
    fn id_usage_and_response_are_read_from_a_stream_split_anywhere() {
        for split in [1, 7, 60, 200, STREAM.len()] {
            let mut o = StreamObserver::new(true);
            for c in STREAM.as_bytes().chunks(split) {
                o.feed(c);
            }
            o.finish();
            assert_eq!(o.id(), Some("resp_9"));
            let u = o.usage();
            assert_eq!(
                (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens),
                (11, 7, 3, 2)
            );
            assert_eq!(o.take_response().unwrap()["output"][0]["content"][0]["text"], "hi");
        }
    }

    #[test]
    fn data_only_events_are_typed_from_their_json() {
        let data_only =
            STREAM.replace("event: response.created\n", "").replace("event: response.completed\n", "");
        let mut o = StreamObserver::new(false);
        o.feed(data_only.as_bytes());
        o.finish();
        assert_eq!(o.id(), Some("resp_9"));
        assert_eq!(o.usage().output_tokens, 7);
        assert!(o.take_response().is_none(), "not kept");
        let mut o = StreamObserver::new(false);
        o.feed(b"data: {\"type\":\"error\",\"message\":\"boom\"}\n\n");
        assert_eq!(o.error(), Some("boom"));
        assert!(!o.completed());
    }

    #[test]
    fn a_body_gives_its_id_and_usage() {
        let b = br#"{"id":"resp_1","object":"response","usage":{"input_tokens":5,"output_tokens":2}}"#;
        assert_eq!(body_id(b).as_deref(), Some("resp_1"));
        assert_eq!(body_usage(b).input_tokens, 5);
        assert_eq!(body_id(b"{}"), None);
    }
}
