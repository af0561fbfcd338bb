//! The Responses API streaming event machine: `StreamEncoder` (IR events -> `response.*` SSE
//! for a client) and `StreamDecoder` (an upstream's `response.*` SSE -> IR events). The
//! grammar checker is `openai_responses_grammar.rs`. SSE framing is `sse.rs`'s; no I/O.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::super::sse::{write_json, write_json_str, write_json_u64, SseEvent, SseParser};
use super::super::{FinishReason, ResponseOptions, StreamEvent, ToolCall, TranslateError, Usage};
use super::{
    error_type_code, finish_from_response, function_call_item, kind_from_code, message_item, output_text,
    reasoning_item, response_id, response_object, usage_from_value, ItemIds,
};

// === Encoder: IR -> Responses SSE ===

/// The output item currently streaming.
#[derive(Debug)]
enum Open {
    None,
    Message {
        index: usize,
        id: String,
        text: String,
    },
    Reasoning {
        index: usize,
        id: String,
        text: String,
        signature: Option<String>,
    },
    Tool {
        index: usize,
        id: String,
        /// The IR tool-call ordinal.
        ir_index: u32,
    },
}

#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    id: String,
    created: u64,
    seq: u64,
    started: bool,
    done: bool,
    ids: Option<ItemIds>,
    /// Finished output items, in output order (the `response.completed` payload).
    output: Vec<Value>,
    open: Open,
    /// IR tool index -> (output index, call); arguments accumulate here.
    tools: HashMap<u32, (usize, ToolCall)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

impl std::fmt::Debug for ItemIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ItemIds")
    }
}

// === impl StreamEncoder ===

impl StreamEncoder {
    pub fn new(opts: &ResponseOptions) -> Self {
        StreamEncoder {
            model: opts.model.to_owned(),
            id: String::new(),
            // Streams carry no timestamp in the IR; 0 keeps the encoder pure and deterministic
            // (the OpenAI Chat encoder does the same).
            created: 0,
            seq: 0,
            started: false,
            done: false,
            ids: None,
            output: Vec::new(),
            open: Open::None,
            tools: HashMap::new(),
            usage: None,
            finish: None,
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, ty: &str, mut v: Value) {
        v["type"] = json!(ty);
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        write_json(out, ty, &v);
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.ids.get_or_insert_with(|| ItemIds::new(&self.id)).next(prefix)
    }

    fn snapshot(&self, finish: Option<FinishReason>) -> Value {
        response_object(
            &self.id,
            &self.model,
            self.created,
            finish,
            self.output.clone(),
            if finish.is_some() { self.usage.as_ref() } else { None },
        )
    }

    fn start(&mut self, id: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = response_id(id);
        let r = self.snapshot(None);
        self.emit(out, "response.created", json!({ "response": r }));
        let r = self.snapshot(None);
        self.emit(out, "response.in_progress", json!({ "response": r }));
    }

    /// Close the open item (its `*.done` events, then `response.output_item.done`).
    fn close(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => {}
            Open::Message { index, id, text } => {
                let base = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut e = base.clone();
                e["text"] = json!(text);
                e["logprobs"] = json!([]);
                self.emit(out, "response.output_text.done", e);
                let mut e = base;
                e["part"] = output_text(&text);
                self.emit(out, "response.content_part.done", e);
                let item = message_item(&id, vec![output_text(&text)], "completed");
                self.output.push(item.clone());
                self.emit(out, "response.output_item.done", json!({"output_index": index, "item": item}));
            }
            Open::Reasoning { index, id, text, signature } => {
                if !text.is_empty() {
                    let base = json!({"item_id": id, "output_index": index, "summary_index": 0});
                    let mut e = base.clone();
                    e["text"] = json!(text);
                    self.emit(out, "response.reasoning_summary_text.done", e);
                    let mut e = base;
                    e["part"] = json!({"type": "summary_text", "text": text});
                    self.emit(out, "response.reasoning_summary_part.done", e);
                }
                let item = reasoning_item(&id, &text, signature.as_deref());
                self.output.push(item.clone());
                self.emit(out, "response.output_item.done", json!({"output_index": index, "item": item}));
            }
            Open::Tool { index, id, ir_index } => {
                let call = self.tools.get(&ir_index).map(|(_, c)| c.clone()).unwrap_or_else(|| ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                    signature: None,
                });
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": call.name,
                        "arguments": call.arguments}),
                );
                let item = function_call_item(&id, &call, "completed");
                self.output.push(item.clone());
                self.emit(out, "response.output_item.done", json!({"output_index": index, "item": item}));
            }
        }
    }

    fn open_message(&mut self, out: &mut Vec<u8>) {
        if matches!(self.open, Open::Message { .. }) {
            return;
        }
        self.close(out);
        let index = self.output.len();
        let id = self.next_id("msg");
        let item = message_item(&id, Vec::new(), "in_progress");
        self.emit(out, "response.output_item.added", json!({"output_index": index, "item": item}));
        self.emit(
            out,
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                "part": output_text("")}),
        );
        self.open = Open::Message { index, id, text: String::new() };
    }

    fn open_reasoning(&mut self, out: &mut Vec<u8>) {
        if matches!(self.open, Open::Reasoning { .. }) {
            return;
        }
        self.close(out);
        let index = self.output.len();
        let id = self.next_id("rs");
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": reasoning_item(&id, "", None)}),
        );
        self.open = Open::Reasoning { index, id, text: String::new(), signature: None };
    }

    pub fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if let StreamEvent::Start { id, model } = ev {
            if self.model.is_empty() {
                self.model = model.clone();
            }
            self.start(id, out);
            return;
        }
        self.start("", out);
        match ev {
            StreamEvent::Start { .. } => {}
            StreamEvent::TextDelta { text } => {
                self.open_message(out);
                if let Open::Message { index, id, text: t } = &mut self.open {
                    t.push_str(text);
                    write_text_delta(out, self.seq, id, *index, text);
                    self.seq += 1;
                }
            }
            StreamEvent::ThinkingDelta { text } => {
                let fresh = !matches!(self.open, Open::Reasoning { .. });
                self.open_reasoning(out);
                if let Open::Reasoning { index, id, text: t, .. } = &mut self.open {
                    let base = json!({"item_id": id, "output_index": *index, "summary_index": 0});
                    let first = t.is_empty();
                    t.push_str(text);
                    if (fresh || first) && !text.is_empty() {
                        let mut e = base.clone();
                        e["part"] = json!({"type": "summary_text", "text": ""});
                        self.emit(out, "response.reasoning_summary_part.added", e);
                    }
                    if !text.is_empty() {
                        let mut e = base;
                        e["delta"] = json!(text);
                        self.emit(out, "response.reasoning_summary_text.delta", e);
                    }
                }
            }
            StreamEvent::ThinkingSignature { signature } => {
                if let Open::Reasoning { signature: s, .. } = &mut self.open {
                    *s = Some(signature.clone());
                }
            }
            StreamEvent::ToolCallStart { index: ir_index, id: call_id, name, signature } => {
                self.close(out);
                let index = self.output.len();
                let id = self.next_id("fc");
                let call = ToolCall {
                    id: call_id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    signature: signature.clone(),
                };
                let item = function_call_item(&id, &call, "in_progress");
                self.tools.insert(*ir_index, (index, call));
                self.emit(out, "response.output_item.added", json!({"output_index": index, "item": item}));
                self.open = Open::Tool { index, id, ir_index: *ir_index };
            }
            StreamEvent::ToolArgsDelta { index, fragment } => {
                if let Some((_, call)) = self.tools.get_mut(index) {
                    call.arguments.push_str(fragment);
                }
                if let Open::Tool { index: out_index, id, ir_index } = &self.open {
                    if ir_index == index {
                        let e = json!({"item_id": id, "output_index": *out_index,
                            "delta": fragment});
                        self.emit(out, "response.function_call_arguments.delta", e);
                    }
                }
                // Fragments of an already closed call only reach the final `response.completed`
                // through `self.output`... which was frozen at close; patch it there.
                if !matches!(&self.open, Open::Tool { ir_index, .. } if ir_index == index) {
                    if let Some((out_index, call)) = self.tools.get(index) {
                        if let Some(item) = self.output.get_mut(*out_index) {
                            item["arguments"] = json!(call.arguments);
                        }
                    }
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(r) => self.finish = Some(*r),
            StreamEvent::Error { kind, message } => {
                self.close(out);
                self.done = true;
                let (_, code) = error_type_code(*kind);
                let code = code.unwrap_or("server_error");
                let mut r = self.snapshot(Some(FinishReason::Error));
                r["error"] = json!({"code": code, "message": message});
                self.emit(out, "response.failed", json!({ "response": r }));
            }
        }
    }

    /// End of the IR stream: close open items and send the terminal event with the full
    /// response and usage. Idempotent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start("", out);
        self.close(out);
        self.done = true;
        let finish = self.finish.unwrap_or(if self.tools.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        });
        let r = self.snapshot(Some(finish));
        let ty = match r["status"].as_str() {
            Some("incomplete") => "response.incomplete",
            Some("failed") => "response.failed",
            _ => "response.completed",
        };
        self.emit(out, ty, json!({ "response": r }));
    }
}

// === Decoder: Responses SSE -> IR ===

#[derive(Debug, Default)]
pub struct StreamDecoder {
    sse: SseParser,
    events: Vec<SseEvent>,
    started: bool,
    done: bool,
    /// Output index (or item id) -> (IR tool index, saw argument deltas).
    tools: HashMap<String, (u32, bool)>,
    next_tool: u32,
    in_thinking: bool,
}

// === impl StreamDecoder ===

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        // Events completed before a framing error still count.
        let framing = self.sse.feed(chunk, &mut self.events);
        self.drain(out, false)?;
        framing
    }

    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        self.sse.finish(&mut self.events);
        // An event cut off by the end of input is a truncated stream, reported below.
        self.drain(out, true)?;
        if !self.done {
            self.done = true;
            if !self.started {
                return Err(TranslateError::EmptyStream);
            }
            return Err(TranslateError::Truncated("no response.completed".into()));
        }
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<StreamEvent>, at_end: bool) -> Result<(), TranslateError> {
        for ev in std::mem::take(&mut self.events) {
            if self.done || ev.data.trim() == "[DONE]" {
                continue;
            }
            let v: Value = match serde_json::from_str(&ev.data) {
                Ok(v) => v,
                Err(_) if at_end => continue,
                Err(e) => return Err(TranslateError::Stream(format!("event data is not JSON: {e}"))),
            };
            self.event(&v, out);
        }
        Ok(())
    }

    fn tool_key(v: &Value) -> String {
        match v.get("output_index").and_then(Value::as_u64) {
            Some(i) => format!("#{i}"),
            None => str_of(v, "item_id").to_owned(),
        }
    }

    fn ensure_started(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start { id: String::new(), model: String::new() });
        }
    }

    fn event(&mut self, v: &Value, out: &mut Vec<StreamEvent>) {
        let ty = str_of(v, "type");
        if ty != "response.created" && ty != "error" {
            self.ensure_started(out);
        }
        match ty {
            "response.created" if !self.started => {
                self.started = true;
                let r = v.get("response").unwrap_or(&Value::Null);
                out.push(StreamEvent::Start {
                    id: str_of(r, "id").to_owned(),
                    model: str_of(r, "model").to_owned(),
                });
            }
            "response.output_item.added" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                if str_of(item, "type") == "function_call" {
                    let index = self.next_tool;
                    self.next_tool += 1;
                    let args = str_of(item, "arguments");
                    self.tools.insert(Self::tool_key(v), (index, !args.is_empty()));
                    if let Some(id) = item.get("id").and_then(Value::as_str) {
                        self.tools.insert(id.to_owned(), (index, !args.is_empty()));
                    }
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: str_of(item, "call_id").to_owned(),
                        name: str_of(item, "name").to_owned(),
                        signature: None,
                    });
                    if !args.is_empty() {
                        out.push(StreamEvent::ToolArgsDelta { index, fragment: args.to_owned() });
                    }
                }
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                self.in_thinking = false;
                out.push(StreamEvent::TextDelta { text: str_of(v, "delta").to_owned() });
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                self.in_thinking = true;
                out.push(StreamEvent::ThinkingDelta { text: str_of(v, "delta").to_owned() });
            }
            "response.function_call_arguments.delta" => {
                if let Some(t) = self.lookup_tool(v) {
                    t.1 = true;
                    let index = t.0;
                    out.push(StreamEvent::ToolArgsDelta { index, fragment: str_of(v, "delta").to_owned() });
                }
            }
            "response.function_call_arguments.done" => {
                if let Some(t) = self.lookup_tool(v) {
                    if !t.1 {
                        t.1 = true;
                        let index = t.0;
                        out.push(StreamEvent::ToolArgsDelta {
                            index,
                            fragment: str_of(v, "arguments").to_owned(),
                        });
                    }
                }
            }
            "response.output_item.done" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                if str_of(item, "type") == "reasoning" {
                    if let Some(sig) = item.get("encrypted_content").and_then(Value::as_str) {
                        if !self.in_thinking {
                            out.push(StreamEvent::ThinkingDelta { text: String::new() });
                        }
                        out.push(StreamEvent::ThinkingSignature { signature: super::tag_signature(sig) });
                    }
                    self.in_thinking = false;
                }
                if str_of(item, "type") == "function_call" {
                    // Upstreams that skip the argument events still send the whole item here.
                    let args = str_of(item, "arguments");
                    let index = match self.lookup_tool(v) {
                        Some(t) if t.1 => return,
                        Some(t) => {
                            t.1 = true;
                            t.0
                        }
                        None => {
                            let index = self.next_tool;
                            self.next_tool += 1;
                            self.tools.insert(Self::tool_key(v), (index, true));
                            out.push(StreamEvent::ToolCallStart {
                                index,
                                id: str_of(item, "call_id").to_owned(),
                                name: str_of(item, "name").to_owned(),
                                signature: None,
                            });
                            index
                        }
                    };
                    if !args.is_empty() {
                        out.push(StreamEvent::ToolArgsDelta { index, fragment: args.to_owned() });
                    }
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.done = true;
                let r = v.get("response").unwrap_or(&Value::Null);
                if let Some(u) = r.get("usage").filter(|u| u.is_object()) {
                    out.push(StreamEvent::Usage(usage_from_value(u)));
                }
                let finish = finish_from_response(r, self.next_tool > 0);
                if finish == FinishReason::Error {
                    let e = r.get("error").unwrap_or(&Value::Null);
                    out.push(StreamEvent::Error {
                        kind: kind_from_code(str_of(e, "code"), ""),
                        message: non_empty(str_of(e, "message"), "the upstream response failed"),
                    });
                } else {
                    out.push(StreamEvent::Finish(finish));
                }
            }
            "error" => {
                self.done = true;
                let e = v.get("error").unwrap_or(v);
                out.push(StreamEvent::Error {
                    kind: kind_from_code(str_of(e, "code"), str_of(e, "type")),
                    message: non_empty(str_of(e, "message"), "upstream stream error"),
                });
            }
            _ => {}
        }
    }

    fn lookup_tool(&mut self, v: &Value) -> Option<&mut (u32, bool)> {
        let key = Self::tool_key(v);
        if self.tools.contains_key(&key) {
            return self.tools.get_mut(&key);
        }
        self.tools.get_mut(str_of(v, "item_id"))
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn non_empty(s: &str, default: &str) -> String {
    if s.is_empty() {
        default.to_owned()
    } else {
        s.to_owned()
    }
}

/// `response.output_text.delta`, the event of every text chunk, written from literal pieces
/// (`emit` would build a `Value` map for it; the tests check both give the same event).
fn write_text_delta(out: &mut Vec<u8>, seq: u64, item_id: &str, output_index: usize, delta: &str) {
    out.extend_from_slice(
        b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":",
    );
    write_json_u64(out, seq);
    out.extend_from_slice(b",\"item_id\":");
    write_json_str(out, item_id);
    out.extend_from_slice(b",\"output_index\":");
    write_json_u64(out, output_index as u64);
    out.extend_from_slice(b",\"content_index\":0,\"delta\":");
    write_json_str(out, delta);
    out.extend_from_slice(b",\"logprobs\":[]}\n\n");
}

#[cfg(test)]
mod text_delta_tests {
    use super::*;

    /// The text delta written from literal pieces is the event `emit` makes of the same fields.
    #[test]
    fn text_delta_events_are_what_emit_writes() {
        let delta = "plain, \"quoted\", a \\ and a\nnewline, é";
        let mut templated = Vec::new();
        write_text_delta(&mut templated, 41, "msg_\"1", 2, delta);
        let mut enc =
            StreamEncoder::new(&ResponseOptions { model: "m", gemini_sse: true, include_usage: false });
        enc.seq = 41;
        let mut emitted = Vec::new();
        let e = json!({"item_id": "msg_\"1", "output_index": 2, "content_index": 0, "delta": delta, "logprobs": []});
        enc.emit(&mut emitted, "response.output_text.delta", e);
        let data = |b: &[u8]| -> serde_json::Value {
            let t = std::str::from_utf8(b).unwrap();
            assert!(
                t.starts_with("event: response.output_text.delta\ndata: {") && t.ends_with("}\n\n"),
                "{t}"
            );
            serde_json::from_str(&t[t.find("data: ").unwrap() + 6..t.len() - 2]).unwrap()
        };
        assert_eq!(data(&templated), data(&emitted));
        assert!(std::str::from_utf8(&templated)
            .unwrap()
            .contains("data: {\"type\":\"response.output_text.delta\","));
    }
}
