//! `check_stream_grammar` for Responses SSE streams (used by tests and `grammar.rs`, never on
//! the request path).

use std::collections::HashMap;

use serde_json::Value;

use super::super::sse::SseParser;

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

// === Grammar ===

/// Check a Responses SSE stream for an illegal event order (see the module docs of
/// `grammar.rs`): `response.created` then `response.in_progress` first; every item added
/// before its parts and deltas; every part/item closed before the terminal event;
/// `sequence_number` strictly increasing; nothing after `response.completed` /
/// `response.incomplete` / `response.failed` / `error`.
pub fn check_stream_grammar(bytes: &[u8]) -> Result<(), String> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    parser.feed(bytes, &mut events).map_err(|e| e.to_string())?;
    parser.finish(&mut events);
    #[derive(PartialEq)]
    enum S {
        Open,
        Done,
    }
    // output_index -> (item type, state, open content parts)
    let mut items: HashMap<u64, (String, S, HashMap<u64, S>)> = HashMap::new();
    let mut last_seq: Option<u64> = None;
    let mut terminal = false;
    for (n, ev) in events.iter().enumerate() {
        let v: Value =
            serde_json::from_str(&ev.data).map_err(|e| format!("event {n}: data is not JSON: {e}"))?;
        let ty = str_of(&v, "type");
        if !ev.event.is_empty() && ev.event != ty {
            return Err(format!("event {n}: `event: {}` but type `{ty}`", ev.event));
        }
        if terminal {
            return Err(format!("event {n} `{ty}` after the terminal event"));
        }
        let seq = v
            .get("sequence_number")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("event {n} `{ty}` has no sequence_number"))?;
        if last_seq.is_some_and(|l| seq <= l) {
            return Err(format!("event {n} `{ty}`: sequence_number {seq} does not increase"));
        }
        last_seq = Some(seq);
        match (n, ty) {
            (0, "response.created") | (0, "error") => {}
            (0, _) => return Err(format!("first event is `{ty}`, not `response.created`")),
            (1, "response.in_progress") | (1, "error") => {}
            (1, _) => return Err(format!("second event is `{ty}`, not `response.in_progress`")),
            (_, "response.created" | "response.in_progress") => {
                return Err(format!("event {n}: `{ty}` repeated"))
            }
            _ => {}
        }
        let oi = v.get("output_index").and_then(Value::as_u64);
        let ci =
            v.get("content_index").or_else(|| v.get("summary_index")).and_then(Value::as_u64).unwrap_or(0);
        let need_item = |items: &HashMap<u64, (String, S, HashMap<u64, S>)>| -> Result<u64, String> {
            let i = oi.ok_or_else(|| format!("event {n} `{ty}` has no output_index"))?;
            match items.get(&i) {
                Some((_, S::Open, _)) => Ok(i),
                Some(_) => Err(format!("event {n} `{ty}`: output item {i} is already done")),
                None => Err(format!("event {n} `{ty}`: output item {i} was never added")),
            }
        };
        match ty {
            "response.output_item.added" => {
                let i = oi.ok_or_else(|| format!("event {n}: output_item.added has no output_index"))?;
                if items.contains_key(&i) {
                    return Err(format!("event {n}: output item {i} added twice"));
                }
                let it = v.get("item").map(|i| str_of(i, "type")).unwrap_or_default();
                items.insert(i, (it.to_owned(), S::Open, HashMap::new()));
            }
            "response.content_part.added" | "response.reasoning_summary_part.added" => {
                let i = need_item(&items)?;
                let parts = &mut items.get_mut(&i).ok_or("unreachable")?.2;
                if parts.insert(ci, S::Open).is_some() {
                    return Err(format!("event {n}: part {ci} of item {i} added twice"));
                }
            }
            "response.output_text.delta"
            | "response.output_text.done"
            | "response.refusal.delta"
            | "response.refusal.done"
            | "response.reasoning_summary_text.delta"
            | "response.reasoning_summary_text.done" => {
                let i = need_item(&items)?;
                match items[&i].2.get(&ci) {
                    Some(S::Open) => {}
                    Some(S::Done) => return Err(format!("event {n} `{ty}`: part {ci} of item {i} is done")),
                    None => return Err(format!("event {n} `{ty}`: part {ci} of item {i} never added")),
                }
            }
            "response.content_part.done" | "response.reasoning_summary_part.done" => {
                let i = need_item(&items)?;
                let parts = &mut items.get_mut(&i).ok_or("unreachable")?.2;
                match parts.get_mut(&ci) {
                    Some(s @ S::Open) => *s = S::Done,
                    _ => return Err(format!("event {n} `{ty}`: part {ci} of item {i} not open")),
                }
            }
            "response.function_call_arguments.delta" | "response.function_call_arguments.done" => {
                let i = need_item(&items)?;
                if items[&i].0 != "function_call" {
                    return Err(format!("event {n} `{ty}`: item {i} is not a function_call"));
                }
            }
            "response.output_item.done" => {
                let i = need_item(&items)?;
                let it = items.get_mut(&i).ok_or("unreachable")?;
                if it.2.values().any(|s| *s == S::Open) {
                    return Err(format!("event {n}: item {i} done while a part is open"));
                }
                it.1 = S::Done;
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                if ty != "response.failed" {
                    if let Some((i, _)) = items.iter().find(|(_, it)| it.1 == S::Open) {
                        return Err(format!("event {n} `{ty}` while output item {i} is open"));
                    }
                }
                terminal = true;
            }
            "error" => terminal = true,
            _ => {}
        }
    }
    if !terminal {
        return Err("the stream has no terminal `response.completed`/`incomplete`/`failed`".into());
    }
    Ok(())
}
