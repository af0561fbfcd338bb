//! Stream-grammar checkers: parse the bytes of a complete translated stream in one format and
//! fail with a clear message on an illegal event order. Used by tests (golden and property),
//! never on the request path.
//!
//! Other formats plug in through `check`: a format file adds
//! `pub fn check_stream_grammar(bytes: &[u8]) -> Result<(), String>` and a line below.

use std::collections::HashMap;

use serde_json::Value;

use super::sse::{SseEvent, SseParser};
use super::Format;

/// Check `bytes` as one complete stream in `format`.
pub fn check(format: Format, bytes: &[u8]) -> Result<(), String> {
    match format {
        Format::Anthropic => check_anthropic(bytes),
        Format::OpenAiChat => check_openai_chat(bytes),
        Format::Gemini => super::gemini::check_stream_grammar(bytes),
        Format::OpenAiResponses => super::openai_responses::check_stream_grammar(bytes),
        // Bedrock is never a client format (its upstream framing is checked by eventstream.rs).
        Format::Bedrock => Ok(()),
    }
}

/// Parse SSE bytes into events (a malformed stream is an error, not a panic).
pub fn sse_events(bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    p.feed(bytes, &mut out).map_err(|e| e.to_string())?;
    p.finish(&mut out);
    Ok(out)
}

fn json(ev: &SseEvent, at: usize) -> Result<Value, String> {
    serde_json::from_str(&ev.data).map_err(|e| format!("event #{at} ({}): data is not JSON: {e}", ev.event))
}

/// Anthropic Messages: `message_start` first; `content_block_start` (indices 0, 1, ...) before
/// that block's deltas; never two blocks open; delta types match block types; a
/// `content_block_stop` for every start; one `message_delta` with no block open, then
/// `message_stop` last. An `error` event may end the stream anywhere. Tool input fragments
/// must add up to a JSON object.
pub fn check_anthropic(bytes: &[u8]) -> Result<(), String> {
    let events = sse_events(bytes)?;
    let mut started = false;
    let mut open: Option<(u64, String)> = None;
    let mut next_index = 0u64;
    let mut tool_json = String::new();
    let mut delta_seen = false;
    let mut ended = false;
    for (at, ev) in events.iter().enumerate() {
        if ended {
            return Err(format!("event #{at} ({}) after the stream ended", ev.event));
        }
        let v = json(ev, at)?;
        let ty = v.get("type").and_then(Value::as_str).unwrap_or_default();
        if ty != ev.event {
            return Err(format!("event #{at}: `event: {}` but data type {ty:?}", ev.event));
        }
        if !started && ty != "message_start" && ty != "error" {
            return Err(format!("event #{at} ({ty}) before message_start"));
        }
        let index = v.get("index").and_then(Value::as_u64);
        match ty {
            "message_start" => {
                if started {
                    return Err(format!("event #{at}: second message_start"));
                }
                if v.pointer("/message/usage/input_tokens").is_none() {
                    return Err(format!("event #{at}: message_start without usage.input_tokens"));
                }
                started = true;
            }
            "ping" => {}
            "content_block_start" => {
                if let Some((i, _)) = &open {
                    return Err(format!("event #{at}: block {index:?} started while block {i} is open"));
                }
                if delta_seen {
                    return Err(format!("event #{at}: block started after message_delta"));
                }
                if index != Some(next_index) {
                    return Err(format!("event #{at}: block index {index:?}, expected {next_index}"));
                }
                let kind = v.pointer("/content_block/type").and_then(Value::as_str).unwrap_or_default();
                open = Some((next_index, kind.to_owned()));
                tool_json.clear();
                next_index += 1;
            }
            "content_block_delta" => {
                let Some((i, kind)) = &open else {
                    return Err(format!("event #{at}: delta for block {index:?} with no block open"));
                };
                if index != Some(*i) {
                    return Err(format!("event #{at}: delta for block {index:?} while block {i} is open"));
                }
                let dt = v.pointer("/delta/type").and_then(Value::as_str).unwrap_or_default();
                let ok = matches!(
                    (kind.as_str(), dt),
                    ("text", "text_delta")
                        | ("tool_use", "input_json_delta")
                        | ("thinking", "thinking_delta" | "signature_delta")
                );
                if !ok {
                    return Err(format!("event #{at}: {dt} inside a {kind} block"));
                }
                if dt == "input_json_delta" {
                    tool_json.push_str(
                        v.pointer("/delta/partial_json").and_then(Value::as_str).unwrap_or_default(),
                    );
                }
            }
            "content_block_stop" => {
                let Some((i, kind)) = open.take() else {
                    return Err(format!("event #{at}: content_block_stop with no block open"));
                };
                if index != Some(i) {
                    return Err(format!("event #{at}: stop for block {index:?} while block {i} is open"));
                }
                if kind == "tool_use" && !tool_json.is_empty() {
                    match serde_json::from_str::<Value>(&tool_json) {
                        Ok(Value::Object(_)) => {}
                        _ => {
                            return Err(format!(
                                "event #{at}: tool block {i} input {tool_json:?} is not a JSON object"
                            ))
                        }
                    }
                }
            }
            "message_delta" => {
                if let Some((i, _)) = &open {
                    return Err(format!("event #{at}: message_delta while block {i} is open"));
                }
                if delta_seen {
                    return Err(format!("event #{at}: second message_delta"));
                }
                if v.pointer("/delta/stop_reason").and_then(Value::as_str).is_none() {
                    return Err(format!("event #{at}: message_delta without a stop_reason"));
                }
                if v.pointer("/usage/output_tokens").is_none() {
                    return Err(format!("event #{at}: message_delta without usage.output_tokens"));
                }
                delta_seen = true;
            }
            "message_stop" => {
                if !delta_seen {
                    return Err(format!("event #{at}: message_stop before message_delta"));
                }
                ended = true;
            }
            "error" => {
                if v.pointer("/error/type").and_then(Value::as_str).is_none() {
                    return Err(format!("event #{at}: error without error.type"));
                }
                ended = true;
            }
            other => return Err(format!("event #{at}: unknown event type {other:?}")),
        }
    }
    if !ended {
        return Err("stream does not end with message_stop or error".into());
    }
    Ok(())
}

/// OpenAI Chat: every chunk has the same `id` and `object: chat.completion.chunk`; the first
/// choice chunk has `role: assistant`; a tool call's id and name only on the first chunk of its
/// index (and always there); at most one `finish_reason`, with only a usage chunk after it;
/// `data: [DONE]` last. An `{"error":...}` chunk may end the stream (`[DONE]` optional after it).
pub fn check_openai_chat(bytes: &[u8]) -> Result<(), String> {
    let events = sse_events(bytes)?;
    let mut id: Option<String> = None;
    let mut done = false;
    let mut errored = false;
    let mut finished = false;
    let mut first_choice = true;
    let mut tools: HashMap<u64, String> = HashMap::new();
    for (at, ev) in events.iter().enumerate() {
        if done {
            return Err(format!("chunk #{at} after [DONE]"));
        }
        if ev.data == "[DONE]" {
            done = true;
            continue;
        }
        if errored {
            return Err(format!("chunk #{at} after an error chunk"));
        }
        let v = json(ev, at)?;
        if v.get("error").is_some() {
            errored = true;
            continue;
        }
        if v.get("object").and_then(Value::as_str) != Some("chat.completion.chunk") {
            return Err(format!("chunk #{at}: object is not chat.completion.chunk"));
        }
        let this_id = v.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        match &id {
            None => id = Some(this_id),
            Some(first) if *first != this_id => {
                return Err(format!("chunk #{at}: id {this_id:?} differs from {first:?}"))
            }
            _ => {}
        }
        let choices =
            v.get("choices").and_then(Value::as_array).ok_or(format!("chunk #{at}: no choices array"))?;
        if choices.is_empty() {
            if v.get("usage").is_none_or(Value::is_null) {
                return Err(format!("chunk #{at}: empty choices without usage"));
            }
            continue;
        }
        if finished {
            return Err(format!("chunk #{at}: choice chunk after the finish_reason chunk"));
        }
        let c = &choices[0];
        let delta = c.get("delta").ok_or(format!("chunk #{at}: choice without delta"))?;
        if first_choice && delta.get("role").and_then(Value::as_str) != Some("assistant") {
            return Err(format!("chunk #{at}: first chunk lacks role: assistant"));
        }
        first_choice = false;
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let i = call
                .get("index")
                .and_then(Value::as_u64)
                .ok_or(format!("chunk #{at}: tool call without index"))?;
            let has_id = call.get("id").is_some();
            let has_name = call.pointer("/function/name").is_some();
            let args = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
            match tools.get_mut(&i) {
                None => {
                    if !has_id || !has_name {
                        return Err(format!("chunk #{at}: first chunk of tool call {i} lacks id or name"));
                    }
                    tools.insert(i, args.to_owned());
                }
                Some(acc) => {
                    if has_id || has_name {
                        return Err(format!("chunk #{at}: tool call {i} repeats its id or name"));
                    }
                    acc.push_str(args);
                }
            }
        }
        if !c.get("finish_reason").is_none_or(Value::is_null) {
            finished = true;
        }
    }
    if !done && !errored {
        return Err("stream does not end with data: [DONE]".into());
    }
    if !finished && !errored {
        return Err("stream has no finish_reason".into());
    }
    for (i, args) in &tools {
        if !args.is_empty() && serde_json::from_str::<Value>(args).is_err() {
            return Err(format!("tool call {i} arguments {args:?} are not JSON"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_ANTHROPIC: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":1}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn a_well_formed_anthropic_stream_passes() {
        check(Format::Anthropic, GOOD_ANTHROPIC.as_bytes()).unwrap();
    }

    #[test]
    fn a_delta_without_its_block_start_fails() {
        let bad = GOOD_ANTHROPIC.replace("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n", "");
        assert!(check(Format::Anthropic, bad.as_bytes()).unwrap_err().contains("no block open"));
    }

    #[test]
    fn a_text_delta_in_a_tool_block_fails() {
        let bad = GOOD_ANTHROPIC.replace(
            "{\"type\":\"text\",\"text\":\"\"}",
            "{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}",
        );
        assert!(check(Format::Anthropic, bad.as_bytes()).unwrap_err().contains("inside a tool_use block"));
    }

    #[test]
    fn a_missing_message_stop_fails() {
        let bad = GOOD_ANTHROPIC.replace("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", "");
        assert!(check(Format::Anthropic, bad.as_bytes()).is_err());
    }

    const GOOD_OPENAI: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"x\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n\
data: [DONE]\n\n";

    #[test]
    fn a_well_formed_openai_stream_passes() {
        check(Format::OpenAiChat, GOOD_OPENAI.as_bytes()).unwrap();
    }

    #[test]
    fn a_repeated_tool_call_id_fails() {
        let bad = GOOD_OPENAI.replace(
            "{\"index\":0,\"function\":{\"arguments\":\"{}\"}}",
            "{\"index\":0,\"id\":\"x\",\"function\":{\"arguments\":\"{}\"}}",
        );
        assert!(check(Format::OpenAiChat, bad.as_bytes()).unwrap_err().contains("repeats"));
    }

    #[test]
    fn a_changing_id_fails() {
        let bad = GOOD_OPENAI.replacen("\"id\":\"c\"", "\"id\":\"d\"", 1);
        assert!(check(Format::OpenAiChat, bad.as_bytes()).unwrap_err().contains("differs"));
    }

    #[test]
    fn a_missing_done_fails() {
        let bad = GOOD_OPENAI.replace("data: [DONE]\n\n", "");
        assert!(check(Format::OpenAiChat, bad.as_bytes()).unwrap_err().contains("[DONE]"));
    }
}
