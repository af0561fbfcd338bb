//! Mock upstreams that answer in each provider's real wire format, non-stream and stream:
//! a text answer "Hello from <kind>", or, when the request defines the `get_weather` tool,
//! a call to it with `{"city":"Paris"}`. The OpenAI and Gemini mocks also embed: vector
//! `[i, len(text)]` for input `i`. Used by the conformance and provider tests.
#![allow(dead_code)]

use super::{MockUpstream, Received, Reply, Wait};
use serde_json::{json, Value};

pub const TOOL: &str = "get_weather";

fn wants_tool(r: &Received) -> bool {
    r.body.windows(TOOL.len()).any(|w| w == TOOL.as_bytes())
}

fn sse_events(events: Vec<(Option<&str>, Value)>, done: bool) -> Reply {
    let mut parts: Vec<(Wait, String)> = events
        .into_iter()
        .map(|(name, v)| {
            let head = name.map(|n| format!("event: {n}\n")).unwrap_or_default();
            (Wait::None, format!("{head}data: {v}\n\n"))
        })
        .collect();
    if done {
        parts.push((Wait::None, "data: [DONE]\n\n".into()));
    }
    Reply::Stream {
        status: 200,
        content_type: "text/event-stream".into(),
        parts: parts.into_iter().map(|(w, s)| (w, s.into_bytes())).collect(),
    }
}

// === OpenAI Chat Completions ===

/// One embedding per text: `[i, len(text)]`.
fn embedding(i: usize, text: &str) -> Value {
    json!([i as f32, text.len() as f32])
}

pub async fn openai() -> MockUpstream {
    MockUpstream::start(|r, _| {
        let req = r.json();
        let model = req["model"].as_str().unwrap_or("m").to_string();
        if r.path.ends_with("/embeddings") {
            let texts: Vec<Value> = match &req["input"] {
                Value::Array(a) => a.clone(),
                v => vec![v.clone()],
            };
            let data: Vec<Value> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embedding(i, t.as_str().unwrap_or(""))}))
                .collect();
            let body = json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 5, "total_tokens": 5}});
            return Reply::json(200, &body.to_string());
        }
        let tool = wants_tool(r);
        if r.path.ends_with("/responses") {
            return responses_answer(&model, tool, req["stream"] == json!(true));
        }
        let usage = json!({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14});
        if req["stream"] != json!(true) {
            let message = if tool {
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": TOOL, "arguments": "{\"city\":\"Paris\"}"}}]})
            } else {
                json!({"role": "assistant", "content": "Hello from openai"})
            };
            let body = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": if tool {"tool_calls"} else {"stop"}}], "usage": usage});
            return Reply::json(200, &body.to_string());
        }
        let chunk = |delta: Value, finish: Value| {
            (None, json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
        };
        let mut ev = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
        if tool {
            ev.push(chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": TOOL, "arguments": ""}}]}), Value::Null));
            ev.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null));
            ev.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}), Value::Null));
            ev.push(chunk(json!({}), json!("tool_calls")));
        } else {
            ev.push(chunk(json!({"content": "Hello "}), Value::Null));
            ev.push(chunk(json!({"content": "from openai"}), Value::Null));
            ev.push(chunk(json!({}), json!("stop")));
        }
        if req["stream_options"]["include_usage"] == json!(true) {
            ev.push((None, json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage})));
        }
        sse_events(ev, true)
    })
    .await
}

/// The Responses API's answer (OpenAI speaks it natively; the gateway passes it through).
fn responses_answer(model: &str, tool: bool, stream: bool) -> Reply {
    let item = if tool {
        json!({"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": TOOL, "arguments": "{\"city\":\"Paris\"}", "status": "completed"})
    } else {
        json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello from openai", "annotations": []}]})
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_1", "object": "response", "created_at": 1, "status": status, "model": model,
            "output": output, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "usage": usage})
    };
    let usage = json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14});
    if !stream {
        return Reply::json(200, &response("completed", json!([item]), usage).to_string());
    }
    let mut events: Vec<Value> = vec![
        json!({"type": "response.created", "response": response("in_progress", json!([]), Value::Null)}),
    ];
    if tool {
        let mut added = item.clone();
        added["arguments"] = json!("");
        added["status"] = json!("in_progress");
        events.push(json!({"type": "response.output_item.added", "output_index": 0, "item": added}));
        for delta in ["{\"city\":", "\"Paris\"}"] {
            events.push(json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 0, "delta": delta}));
        }
        events.push(json!({"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 0, "arguments": "{\"city\":\"Paris\"}"}));
    } else {
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        events.push(json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}}));
        events.push(json!({"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": part}));
        for delta in ["Hello ", "from openai"] {
            events.push(json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": delta}));
        }
        events.push(json!({"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": "Hello from openai"}));
        events.push(json!({"type": "response.content_part.done", "item_id": "msg_1", "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "Hello from openai", "annotations": []}}));
    }
    events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": item.clone()}));
    events
        .push(json!({"type": "response.completed", "response": response("completed", json!([item]), usage)}));
    let named: Vec<(String, Value)> = events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e["sequence_number"] = json!(i);
            (e["type"].as_str().unwrap_or("").to_string(), e)
        })
        .collect();
    sse_events(named.iter().map(|(n, e)| (Some(n.as_str()), e.clone())).collect(), false)
}

// === Anthropic Messages ===

pub async fn anthropic() -> MockUpstream {
    MockUpstream::start(|r, _| {
        let req = r.json();
        let model = req["model"].as_str().unwrap_or("m").to_string();
        let tool = wants_tool(r);
        if req["stream"] != json!(true) {
            let content = if tool {
                json!([{"type": "tool_use", "id": "toolu_1", "name": TOOL, "input": {"city": "Paris"}}])
            } else {
                json!([{"type": "text", "text": "Hello from anthropic"}])
            };
            let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": if tool {"tool_use"} else {"end_turn"}, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 4}});
            return Reply::json(200, &body.to_string());
        }
        let mut ev = vec![(Some("message_start"), json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}))];
        ev.push((Some("ping"), json!({"type": "ping"})));
        if tool {
            ev.push((Some("content_block_start"), json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": TOOL, "input": {}}})));
            ev.push((Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})));
            ev.push((Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}})));
        } else {
            ev.push((Some("content_block_start"), json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            ev.push((Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello "}})));
            ev.push((Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "from anthropic"}})));
        }
        ev.push((Some("content_block_stop"), json!({"type": "content_block_stop", "index": 0})));
        ev.push((Some("message_delta"), json!({"type": "message_delta", "delta": {"stop_reason": if tool {"tool_use"} else {"end_turn"}, "stop_sequence": null}, "usage": {"output_tokens": 4}})));
        ev.push((Some("message_stop"), json!({"type": "message_stop"})));
        sse_events(ev, false)
    })
    .await
}

// === Gemini ===

pub async fn gemini() -> MockUpstream {
    MockUpstream::start(|r, _| {
        if r.path.contains(":batchEmbedContents") {
            let req = r.json();
            let embeddings: Vec<Value> = req["requests"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, q)| json!({"values": embedding(i, q["content"]["parts"][0]["text"].as_str().unwrap_or(""))}))
                .collect();
            return Reply::json(200, &json!({"embeddings": embeddings}).to_string());
        }
        let tool = wants_tool(r);
        let stream = r.path.contains(":streamGenerateContent");
        let usage = json!({"promptTokenCount": 10, "candidatesTokenCount": 4, "totalTokenCount": 14});
        let part = |text: &str| json!({"text": text});
        let call = json!({"functionCall": {"name": TOOL, "args": {"city": "Paris"}}});
        if !stream {
            let parts = if tool { json!([call]) } else { json!([part("Hello from gemini")]) };
            let body = json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": usage, "modelVersion": "gemini-mock"});
            return Reply::json(200, &body.to_string());
        }
        let chunk = |parts: Value, finish: Option<&str>| {
            let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
            if let Some(f) = finish {
                c["finishReason"] = json!(f);
            }
            (None, json!({"candidates": [c], "usageMetadata": usage, "modelVersion": "gemini-mock"}))
        };
        let ev = if tool {
            vec![chunk(json!([call]), Some("STOP"))]
        } else {
            vec![chunk(json!([part("Hello ")]), None), chunk(json!([part("from gemini")]), Some("STOP"))]
        };
        sse_events(ev, false)
    })
    .await
}

// === Bedrock Converse ===

pub async fn bedrock() -> MockUpstream {
    use llm_gateway::formats::eventstream::encode_event;
    MockUpstream::start(|r, _| {
        let tool = wants_tool(r);
        let stream = r.path.ends_with("/converse-stream");
        let usage = json!({"inputTokens": 10, "outputTokens": 4, "totalTokens": 14});
        if !stream {
            let content = if tool {
                json!([{"toolUse": {"toolUseId": "tooluse_1", "name": TOOL, "input": {"city": "Paris"}}}])
            } else {
                json!([{"text": "Hello from bedrock"}])
            };
            let body = json!({"output": {"message": {"role": "assistant", "content": content}},
                "stopReason": if tool {"tool_use"} else {"end_turn"}, "usage": usage, "metrics": {"latencyMs": 1}});
            return Reply::json(200, &body.to_string());
        }
        let mut frames = vec![encode_event("messageStart", json!({"role": "assistant"}).to_string().as_bytes())];
        if tool {
            frames.push(encode_event("contentBlockStart", json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": TOOL}}}).to_string().as_bytes()));
            frames.push(encode_event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"city\":"}}}).to_string().as_bytes()));
            frames.push(encode_event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "\"Paris\"}"}}}).to_string().as_bytes()));
        } else {
            frames.push(encode_event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hello "}}).to_string().as_bytes()));
            frames.push(encode_event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "from bedrock"}}).to_string().as_bytes()));
        }
        frames.push(encode_event("contentBlockStop", json!({"contentBlockIndex": 0}).to_string().as_bytes()));
        frames.push(encode_event("messageStop", json!({"stopReason": if tool {"tool_use"} else {"end_turn"}}).to_string().as_bytes()));
        frames.push(encode_event("metadata", json!({"usage": usage, "metrics": {"latencyMs": 1}}).to_string().as_bytes()));
        Reply::Stream {
            status: 200,
            content_type: "application/vnd.amazon.eventstream".into(),
            parts: frames.into_iter().map(|f| (Wait::None, f)).collect(),
        }
    })
    .await
}

/// A gateway config with one provider of each kind in front of these mocks and the aliases
/// `to-openai`, `to-anthropic`, `to-gemini`, `to-bedrock`.
pub fn config(
    openai: &MockUpstream,
    anthropic: &MockUpstream,
    gemini: &MockUpstream,
    bedrock: &MockUpstream,
) -> String {
    format!(
        r#"limits: {{ upstream_timeout_ms: 5000 }}
providers:
  - {{ name: p-openai, kind: openai, base_url: "{}", api_key: sk-openai }}
  - {{ name: p-anthropic, kind: anthropic, base_url: "{}", api_key: sk-ant }}
  - {{ name: p-gemini, kind: gemini, base_url: "{}", api_key: gm-key }}
  - {{ name: p-bedrock, kind: bedrock, base_url: "{}", region: us-east-1, aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY }}
models:
  - {{ alias: to-openai, targets: [ {{ provider: p-openai, model: gpt-4o-mini }} ] }}
  - {{ alias: to-anthropic, targets: [ {{ provider: p-anthropic, model: claude-3-5-haiku-latest }} ] }}
  - {{ alias: to-gemini, targets: [ {{ provider: p-gemini, model: gemini-2.0-flash }} ] }}
  - {{ alias: to-bedrock, targets: [ {{ provider: p-bedrock, model: "anthropic.claude-3-5-haiku-20241022-v1:0" }} ] }}
keys:
  - {{ id: k, hash: "{{KEY_HASH}}" }}
"#,
        openai.url(),
        anthropic.url(),
        gemini.url(),
        bedrock.url()
    )
}
