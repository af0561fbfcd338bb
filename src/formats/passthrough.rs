//! Same-format routes: read what routing needs from a body, rewrite `model` (and force usage
//! reporting in OpenAI streams) by splicing bytes, and observe usage in a passed-through
//! response, all without re-serialising the body.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::scan::{Field, Kind};
pub use super::stream_usage::{OpenAiStreamUsage, STRIP_HOLD_MAX};
use super::{TranslateError, Usage};

/// What the gateway reads from an inbound JSON body before routing, plus where the members a
/// same-format rewrite touches are, so the body is parsed once per request, not per attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peek {
    pub model: Option<String>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// Responses `previous_response_id` (a string; `null` reads as absent).
    pub previous_response_id: Option<String>,
    /// Responses `store` (absent = the API's default, `true`).
    pub store: Option<bool>,
    layout: Layout,
}

/// Byte ranges of the top-level values `rewrite_peeked` edits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Layout {
    model: Option<(usize, usize)>,
    stream_options: Option<(usize, usize)>,
    /// Just after the opening `{`.
    first_member: usize,
    /// Top-level members of the body.
    members: usize,
}

/// The top-level members of a JSON object, keys and values kept as slices of the body (a key
/// with escapes is decoded).
#[derive(Debug, PartialEq)]
struct TopLevel<'a>(Vec<(std::borrow::Cow<'a, str>, &'a str)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, raw)) = map.next_entry::<super::validate::Key<'de>, &'de RawValue>()? {
                    v.push((k.0, raw.get()));
                }
                Ok(TopLevel(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> TopLevel<'a> {
    fn parse(body: &'a [u8]) -> Result<Self, TranslateError> {
        match Self::scan(body) {
            Some(top) => Ok(top),
            None => serde_json::from_slice(body).map_err(|e| TranslateError::Json(e.to_string())),
        }
    }

    /// The fast path (`scan`): the same members, or `None` where the scanner gives up and
    /// `serde_json` decides (an escaped key, anything it does not take).
    fn scan(body: &'a [u8]) -> Option<Self> {
        Self::scan_typed(body, &[]).map(|(top, [])| top)
    }

    /// `scan`, reading the members named in `fields` as their kinds in the same pass (one
    /// given twice gives up, as the derive it stands for refuses it).
    fn scan_typed<const N: usize>(
        body: &'a [u8],
        fields: &[(&str, Kind); N],
    ) -> Option<(Self, [Field<'a>; N])> {
        let mut p = super::scan::Scan::new(std::str::from_utf8(body).ok()?);
        let mut v = Vec::with_capacity(8);
        let typed = p.typed_members(fields, Some(&mut v))?;
        p.end()?;
        Some((TopLevel(v), typed))
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Panics unless the body's fast path, and the readers of raw values, read `body` as
/// `serde_json` does or give up; likewise the usage reader (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fast_path_agrees(body: &[u8]) {
    let want = serde_json::from_slice::<TopLevel>(body);
    if let Some(top) = TopLevel::scan(body) {
        match &want {
            Ok(want) => assert_eq!(&top, want),
            Err(e) => panic!("the peek's fast path accepted what serde_json rejects ({e})"),
        }
    }
    if let Ok(top) = want {
        for (_, raw) in &top.0 {
            assert_eq!(
                string_or_null(raw),
                serde_json::from_str::<Option<String>>(raw).map_err(|_| ()),
                "{raw}"
            );
            assert_eq!(bool_or_null(raw), serde_json::from_str::<Option<bool>>(raw).map_err(|_| ()), "{raw}");
        }
    }
    let serde = serde_json::from_slice::<Option<OpenAiUsage>>(body).ok().and_then(|u| u.map(Usage::from));
    assert_eq!(openai_usage_value(body), serde);
}

/// Byte range of a raw value inside `body` (it borrows from it).
fn span(body: &[u8], raw: &str) -> (usize, usize) {
    let start = raw.as_ptr() as usize - body.as_ptr() as usize;
    (start, start + raw.len())
}

/// A raw value that is a string or `null` (`Err`: another JSON value).
fn string_or_null(raw: &str) -> Result<Option<String>, ()> {
    let mut p = super::scan::Scan::new(raw);
    match p.string_or_null() {
        Some(v) if p.end().is_some() => Ok(v.map(std::borrow::Cow::into_owned)),
        _ => serde_json::from_str(raw).map_err(|_| ()),
    }
}

/// A raw value that is a boolean or `null` (`Err`: another JSON value).
fn bool_or_null(raw: &str) -> Result<Option<bool>, ()> {
    match raw {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        "null" => Ok(None),
        _ => serde_json::from_str(raw).map_err(|_| ()),
    }
}

/// Read `model`, `stream` and `stream_options.include_usage` from a JSON body.
pub fn peek(body: &[u8]) -> Result<Peek, TranslateError> {
    peek_top(body, TopLevel::parse(body)?)
}

/// `peek`, and in the same pass the members named in `fields` read as their kinds
/// ([`Scan::field`](super::scan::Scan::field)): `None` in their place where the fast path gave
/// up (the peek is then read by `serde_json`, as `peek` would).
pub(crate) fn peek_fields<'a, const N: usize>(
    body: &'a [u8],
    fields: &[(&str, Kind); N],
) -> Result<(Peek, Option<[Field<'a>; N]>), TranslateError> {
    let (top, typed) = match TopLevel::scan_typed(body, fields) {
        Some((top, typed)) => (top, Some(typed)),
        None => (TopLevel::parse(body)?, None),
    };
    Ok((peek_top(body, top)?, typed))
}

fn peek_top(body: &[u8], top: TopLevel<'_>) -> Result<Peek, TranslateError> {
    // A member the gateway routes on or rewrites must be unambiguous: upstream parsers differ
    // on which of two copies wins.
    for key in ["model", "stream", "stream_options", "previous_response_id"] {
        if top.0.iter().filter(|(k, _)| k == key).nth(1).is_some() {
            return Err(TranslateError::invalid(key, "appears more than once"));
        }
    }
    let model = match top.get("model") {
        None => None,
        Some(raw) => {
            string_or_null(raw).map_err(|()| TranslateError::invalid("model", "must be a string"))?
        }
    };
    let stream = match top.get("stream") {
        None => false,
        Some(raw) => bool_or_null(raw)
            .map_err(|()| TranslateError::invalid("stream", "must be a boolean"))?
            .unwrap_or(false),
    };
    #[derive(Deserialize)]
    struct StreamOptions {
        #[serde(default)]
        include_usage: Option<bool>,
    }
    let include_usage = top
        .get("stream_options")
        .and_then(|raw| serde_json::from_str::<Option<StreamOptions>>(raw).ok().flatten())
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let previous_response_id = match top.get("previous_response_id") {
        None => None,
        Some(raw) => string_or_null(raw)
            .map_err(|()| TranslateError::invalid("previous_response_id", "must be a string"))?,
    };
    let store = top.get("store").and_then(|raw| bool_or_null(raw).ok().flatten());
    let layout = Layout {
        model: top.get("model").map(|raw| span(body, raw)),
        stream_options: top.get("stream_options").map(|raw| span(body, raw)),
        first_member: body.iter().position(|&b| b == b'{').map(|i| i + 1).unwrap_or(0),
        members: top.0.len(),
    };
    Ok(Peek { model, stream, include_usage, previous_response_id, store, layout })
}

/// Rewrite a same-format request body for its upstream: `model` set to `model` (or removed when
/// `None`, for providers that take the model from the URL) and, when `force_stream_usage`,
/// `stream_options.include_usage: true` so the gateway can account streamed usage. Everything
/// else is copied byte for byte. (Parses the body; the proxy uses `rewrite_peeked`.)
pub fn rewrite_request(
    body: &[u8],
    model: Option<&str>,
    force_stream_usage: bool,
) -> Result<Vec<u8>, TranslateError> {
    Ok(rewrite_peeked(body, &peek(body)?, model, force_stream_usage))
}

/// `rewrite_request` for a body already read by `peek` (no second parse).
pub fn rewrite_peeked(body: &[u8], peek: &Peek, model: Option<&str>, force_stream_usage: bool) -> Vec<u8> {
    let l = &peek.layout;
    // (start, end, replacement); `start == end` inserts.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::with_capacity(2);
    // Members to add at the start of the object (joined with commas below).
    let mut added: Vec<Vec<u8>> = Vec::new();
    match (l.model, model) {
        (Some((s, e)), Some(m)) => {
            edits.push((s, e, serde_json::to_vec(m).unwrap_or_default()));
        }
        (None, Some(m)) => {
            let mut member = b"\"model\":".to_vec();
            member.extend(serde_json::to_vec(m).unwrap_or_default());
            added.push(member);
        }
        (Some((s, e)), None) => {
            // Remove `"model": <value>` plus one adjacent comma.
            let key_start = body[..s]
                .iter()
                .rposition(|&b| b == b'"')
                .and_then(|q| body[..q].iter().rposition(|&b| b == b'"'));
            if let Some(ks) = key_start {
                let after = body[e..].iter().position(|&b| !b.is_ascii_whitespace()).map(|i| e + i);
                match after {
                    Some(a) if body[a] == b',' => edits.push((ks, a + 1, Vec::new())),
                    _ => {
                        let before = body[..ks].iter().rposition(|&b| !b.is_ascii_whitespace());
                        match before {
                            Some(b) if body[b] == b',' => edits.push((b, e, Vec::new())),
                            _ => edits.push((ks, e, Vec::new())),
                        }
                    }
                }
            }
        }
        (None, None) => {}
    }
    if force_stream_usage {
        match l.stream_options {
            None => added.push(b"\"stream_options\":{\"include_usage\":true}".to_vec()),
            Some((s, e)) => {
                let mut opts: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&body[s..e]).unwrap_or_default();
                if opts.get("include_usage") != Some(&serde_json::Value::Bool(true)) {
                    opts.insert("include_usage".into(), serde_json::Value::Bool(true));
                    edits.push((s, e, serde_json::to_vec(&opts).unwrap_or_default()));
                }
            }
        }
    }
    if !added.is_empty() {
        let mut ins = added.join(&b","[..]);
        // Members of the body that stay (`model` may just have been removed).
        let removed = usize::from(l.model.is_some() && model.is_none());
        if l.members > removed {
            ins.push(b',');
        }
        edits.push((l.first_member, l.first_member, ins));
    }
    // An insertion at the offset where a removal starts goes first (found by fuzzing: a body
    // `{"model":…}` losing its model while usage is forced dropped the insertion).
    edits.sort_by_key(|(s, e, _)| (*s, *e));
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut at = 0;
    for (s, e, rep) in edits {
        if s < at {
            continue; // overlapping edit (cannot happen for distinct members); keep the first
        }
        out.extend_from_slice(&body[at..s]);
        out.extend_from_slice(&rep);
        at = e;
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// Usage of an OpenAI Chat (or Responses) non-stream response body, if it reports one.
/// OpenAI usage from the bytes of a `usage` value alone (`null` is none).
pub fn openai_usage_value(usage: &[u8]) -> Option<Usage> {
    let fast = std::str::from_utf8(usage).ok().and_then(|text| {
        let mut p = super::scan::Scan::new(text);
        let u = p.nullable(scan_openai_usage)?;
        p.end().map(|_| u)
    });
    match fast {
        Some(u) => u,
        None => serde_json::from_slice::<Option<OpenAiUsage>>(usage).ok()?.map(Usage::from),
    }
}

/// An [`OpenAiUsage`] object read by the fast path (`scan`), or `None` where the scanner gives
/// up and `serde_json` decides: a count that is not a plain integer (`null` included: the
/// derive refuses it), a member given twice under either spelling, details not an object.
pub(super) fn scan_openai_usage(p: &mut super::scan::Scan) -> Option<Usage> {
    let mut u = Usage::default();
    let mut seen = super::scan::Seen::default();
    p.members(|key, p| {
        match key {
            "prompt_tokens" | "input_tokens" => u.input_tokens = seen.once(0).and_then(|_| p.u64())?,
            "completion_tokens" | "output_tokens" => u.output_tokens = seen.once(1).and_then(|_| p.u64())?,
            "prompt_tokens_details" | "input_tokens_details" => {
                seen.once(2)?;
                u.cache_read_tokens = scan_details(p)?.0;
            }
            "completion_tokens_details" | "output_tokens_details" => {
                seen.once(3)?;
                u.reasoning_tokens = scan_details(p)?.1;
            }
            _ => p.skip()?,
        }
        Some(())
    })?;
    Some(u)
}

/// A [`Details`] object or `null`: its `(cached_tokens, reasoning_tokens)`, 0 when absent.
fn scan_details(p: &mut super::scan::Scan) -> Option<(u64, u64)> {
    Some(p.nullable(scan_details_object)?.unwrap_or((0, 0)))
}

fn scan_details_object(p: &mut super::scan::Scan) -> Option<(u64, u64)> {
    let (mut cached, mut reasoning) = (None, None);
    p.members(|key, p| {
        let slot = match key {
            "cached_tokens" => &mut cached,
            "reasoning_tokens" => &mut reasoning,
            _ => {
                p.skip()?;
                return Some(());
            }
        };
        if slot.replace(p.u64()?).is_some() {
            return None;
        }
        Some(())
    })?;
    Some((cached.unwrap_or(0), reasoning.unwrap_or(0)))
}

pub fn openai_usage(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Body {
        usage: Option<OpenAiUsage>,
    }
    serde_json::from_slice::<Body>(body).ok()?.usage.map(Usage::from)
}

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    cached_tokens: u64,
    #[serde(default)]
    reasoning_tokens: u64,
}

/// OpenAI usage in both the Chat (`prompt_tokens`) and Responses (`input_tokens`) spellings.
#[derive(Deserialize)]
pub(super) struct OpenAiUsage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<Details>,
    #[serde(default, alias = "output_tokens_details")]
    completion_tokens_details: Option<Details>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Usage {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cache_read_tokens: u.prompt_tokens_details.map(|d| d.cached_tokens).unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: u.completion_tokens_details.map(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::scan::testgen::Gen;

    /// A request-like body: the members `peek` reads (each maybe missing, repeated or of
    /// another type) among others.
    fn request(g: &mut Gen) -> String {
        let message = vec![("role", "\"user\"".to_owned()), ("content", g.string())];
        let messages = format!("[{}]", g.object(message));
        let options = vec![("include_usage", g.pick(&["true", "false", "null", "1"]).to_owned())];
        let members = vec![
            ("model", g.str_or_null()),
            ("messages", messages),
            ("max_tokens", g.count()),
            ("temperature", g.number()),
            ("stream", g.pick(&["true", "false", "null"]).to_owned()),
            ("stream_options", g.object(options)),
            ("store", g.pick(&["true", "false", "null"]).to_owned()),
            ("previous_response_id", g.str_or_null()),
        ];
        g.object(members)
    }

    #[test]
    fn the_fast_path_reads_every_body_as_serde_json_does_or_gives_up() {
        let mut g = Gen(0x1234_5678_9ABC_DEF1);
        let (mut valid, mut fast) = (0, 0);
        for i in 0..30_000 {
            let mut s = request(&mut g);
            if i % 2 == 1 {
                s = g.mutate(&s);
            }
            let want = serde_json::from_slice::<TopLevel>(s.as_bytes());
            valid += usize::from(want.is_ok() && i % 2 == 0);
            if let Some(top) = TopLevel::scan(s.as_bytes()) {
                fast += usize::from(i % 2 == 0);
                match &want {
                    Ok(want) => assert_eq!(&top, want, "{s}"),
                    Err(e) => panic!("the fast path accepted what serde_json rejects ({e}): {s}"),
                }
            }
            // The members read from raw values, too.
            if let Ok(top) = want {
                for (_, raw) in &top.0 {
                    let serde_str = serde_json::from_str::<Option<String>>(raw).map_err(|_| ());
                    assert_eq!(string_or_null(raw), serde_str, "{raw}");
                    let serde_bool = serde_json::from_str::<Option<bool>>(raw).map_err(|_| ());
                    assert_eq!(bool_or_null(raw), serde_bool, "{raw}");
                }
            }
        }
        assert!(fast * 2 > valid, "only {fast} of {valid} valid bodies took the fast path");
    }

    #[test]
    fn peek_reads_model_stream_and_include_usage() {
        let p =
            peek(br#"{"messages":[],"model":"fast","stream":true,"stream_options":{"include_usage":true}}"#)
                .unwrap();
        assert_eq!((p.model.as_deref(), p.stream, p.include_usage), (Some("fast"), true, true));
        let p = peek(b"{}").unwrap();
        assert_eq!((p.model, p.stream, p.include_usage), (None, false, false));
        assert!(peek(b"[1]").is_err());
        let p = peek(br#"{"model":"a","previous_response_id":"resp_1","store":false}"#).unwrap();
        assert_eq!((p.previous_response_id.as_deref(), p.store), (Some("resp_1"), Some(false)));
        let p = peek(br#"{"previous_response_id":null}"#).unwrap();
        assert_eq!((p.previous_response_id, p.store), (None, None));
        assert!(peek(br#"{"previous_response_id":7}"#).is_err());
        assert!(peek(br#"{"model":3}"#).is_err());
    }

    #[test]
    fn model_is_rewritten_without_touching_other_bytes() {
        let body =
            br#"{ "model" : "fast",  "messages":[{"role":"user","content":"hi \"x\""}],"temperature":0.50}"#;
        let out = rewrite_request(body, Some("gpt-4o-mini"), false).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{ "model" : "gpt-4o-mini",  "messages":[{"role":"user","content":"hi \"x\""}],"temperature":0.50}"#
        );
    }

    #[test]
    fn stream_usage_is_forced_on_when_missing_or_false() {
        let out = rewrite_request(br#"{"model":"a","stream":true}"#, Some("b"), true).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"stream_options":{"include_usage":true},"model":"b","stream":true}"#
        );
        let out =
            rewrite_request(br#"{"model":"a","stream_options":{"include_usage":false}}"#, Some("b"), true)
                .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"b","stream_options":{"include_usage":true}}"#
        );
        let body = br#"{"model":"a","stream_options":{"include_usage":true}}"#;
        assert_eq!(rewrite_request(body, Some("a"), true).unwrap(), body.to_vec());
    }

    #[test]
    fn members_added_to_an_empty_object_are_separated() {
        // Found by fuzzing: both inserts into `{}` were written without a comma between them.
        for body in [&b"{}"[..], b"{\n}  ", b" { } "] {
            let out = rewrite_request(body, Some("x"), true).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v, serde_json::json!({"model": "x", "stream_options": {"include_usage": true}}));
        }
        // Found by fuzzing: the insertion and the removal of `model` start at the same offset.
        let out = rewrite_request(b" {\"model\": \"gpt \"\n\n}", None, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"stream_options": {"include_usage": true}}));
        // Found by fuzzing: `model` removed as the only member left a trailing comma.
        let out = rewrite_request(b"{\n  \"model\": \"m\"\n }", None, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"stream_options": {"include_usage": true}}));
        let out = rewrite_request(br#"{"a":1}"#, Some("x"), true).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"x","stream_options":{"include_usage":true},"a":1}"#
        );
    }

    #[test]
    fn a_member_the_gateway_rewrites_may_appear_only_once() {
        assert!(matches!(
            peek(br#"{"model":"cheap","messages":[],"model":"dear"}"#),
            Err(TranslateError::Invalid { field, .. }) if field == "model"
        ));
        assert!(peek(br#"{"stream":true,"stream":false}"#).is_err());
        assert!(peek(br#"{"model":"a","messages":[{"model":"b"}]}"#).is_ok());
    }

    #[test]
    fn model_can_be_removed_for_url_routed_providers() {
        let out = rewrite_request(br#"{"model":"a", "x":1}"#, None, false).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), r#"{ "x":1}"#);
        let out = rewrite_request(br#"{"x":1, "model":"a"}"#, None, false).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), r#"{"x":1}"#);
    }
}
