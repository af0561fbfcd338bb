//! Checks of an upstream's 2xx answer before the client is told 200: the body of a
//! non-stream answer, and the head of a stream. Pure functions over what the proxy already has
//! (format, content-type, content-encoding, body); what a failure means for routing is the
//! proxy's business (an invalid answer is the upstream's fault: try the next target, or 502).
//!
//! The gateway asks every upstream for `accept-encoding: identity`, so any other
//! `content-encoding` is refused rather than passed on or decoded.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{classify_upstream_error, Format, UpstreamErrorClass};

/// Why an upstream's 2xx answer cannot be given to the client as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamInvalid {
    #[error("the upstream answered with content-encoding {0:?}; only identity was accepted")]
    Encoding(String),
    #[error("the upstream answered with an empty body")]
    Empty,
    #[error("the upstream's answer is not JSON (content-type {content_type:?}): {detail}")]
    NotJson { content_type: Option<String>, detail: String },
    #[error("the upstream's answer is JSON but not an object")]
    NotObject,
    /// A 2xx whose body is only an error object (some OpenAI-compatible servers do this);
    /// classified as if it had come with an error status.
    #[error("the upstream answered 2xx with an error: {}", .0.message)]
    ErrorBody(UpstreamErrorClass),
    /// A stream was asked for, and the upstream answered something that is not one (a whole
    /// JSON body, an HTML page): read the body as a non-stream answer to see what it says.
    #[error("the upstream answered a stream request with content-type {0:?}")]
    NotAStream(String),
}

/// Check a non-stream 2xx answer in `format`: identity encoding, a JSON object body, and not
/// an error object alone. `content_type` and `content_encoding` are the upstream's headers.
/// Costs one pass over the body without building it (values are checked, not kept). Returns
/// where the top-level `usage` member's value lies in `body`, when there is one, so usage is
/// read from those bytes instead of another pass over the body.
pub fn non_stream_body(
    format: Format,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
) -> Result<Option<std::ops::Range<usize>>, UpstreamInvalid> {
    check_encoding(content_encoding)?;
    if body.trim_ascii().is_empty() {
        return Err(UpstreamInvalid::Empty);
    }
    let top = match scan_top_level(success_keys(format), body) {
        Some(top) => top,
        None => serde_top_level(success_keys(format), body).map_err(|e| refused(e, body, content_type))?,
    };
    if top.error && !top.success_key {
        let class = classify_upstream_error(format, 502, None, None, body);
        return Err(UpstreamInvalid::ErrorBody(class));
    }
    Ok(top.usage)
}

/// Why a body the parse refused is refused: not UTF-8 (named so, with the offending offset;
/// the parse decodes every string, so a body it accepts is valid UTF-8 throughout), JSON but
/// not an object, or not JSON.
fn refused(e: serde_json::Error, body: &[u8], content_type: Option<&str>) -> UpstreamInvalid {
    let not_json =
        |detail| UpstreamInvalid::NotJson { content_type: content_type.map(str::to_owned), detail };
    match std::str::from_utf8(body) {
        Err(bad) => not_json(format!("invalid UTF-8 at byte {}", bad.valid_up_to())),
        Ok(_) if e.classify() == serde_json::error::Category::Data => UpstreamInvalid::NotObject,
        Ok(_) => not_json(e.to_string()),
    }
}

/// Check the head of a 2xx answer to a stream request in `format`: identity encoding, and a
/// content-type that is not plainly a whole body (`application/json`, `text/html`). A missing
/// or unusual content-type is accepted; the stream decoder then judges the bytes.
pub fn stream_head(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<(), UpstreamInvalid> {
    check_encoding(content_encoding)?;
    let Some(ct) = content_type else { return Ok(()) };
    // A JSON or HTML type is never the stream's own (event stream, Bedrock's event stream).
    if is_json_mime(ct) || mime(ct).eq_ignore_ascii_case("text/html") {
        return Err(UpstreamInvalid::NotAStream(ct.to_owned()));
    }
    Ok(())
}

/// The media type of a `content-type` value, without its parameters (any case).
fn mime(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

/// A `content-type` of JSON: `application/json` or a `+json` type, in any case.
pub fn is_json_mime(content_type: &str) -> bool {
    let m = mime(content_type);
    let suffix = m.len().checked_sub(5).and_then(|at| m.get(at..));
    m.eq_ignore_ascii_case("application/json") || suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json"))
}

/// Check the `content-encoding` of an answer passed through as it comes (binary media):
/// absent, empty or `identity`.
pub fn encoding(content_encoding: Option<&str>) -> Result<(), UpstreamInvalid> {
    check_encoding(content_encoding)
}

/// `content-encoding` absent, empty or `identity`.
fn check_encoding(content_encoding: Option<&str>) -> Result<(), UpstreamInvalid> {
    match content_encoding.map(str::trim) {
        None | Some("") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("identity") => Ok(()),
        Some(e) => Err(UpstreamInvalid::Encoding(e.to_owned())),
    }
}

/// Top-level members whose presence makes a body a successful answer in `format`.
fn success_keys(format: Format) -> &'static [&'static str] {
    match format {
        Format::OpenAiChat => &["choices"],
        Format::OpenAiResponses => &["output", "status"],
        Format::Anthropic => &["content", "stop_reason"],
        Format::Gemini => &["candidates", "promptFeedback", "usageMetadata"],
        Format::Bedrock => &["output", "stopReason"],
    }
}

/// What the top level of a JSON object says: whether it has a non-null `error` member, and
/// whether it has one of the keys (`success`) of a real answer. Keys are looked at where they
/// lie in the body (no copy unless escaped).
#[derive(Debug, PartialEq)]
struct TopLevel {
    error: bool,
    success_key: bool,
    /// Where the value of `usage` lies in the body.
    usage: Option<std::ops::Range<usize>>,
}

/// The check's one pass with `serde_json` (see [`scan_top_level`] for the fast path).
fn serde_top_level(success: &'static [&'static str], body: &[u8]) -> Result<TopLevel, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = TopLevelSeed(success, body.as_ptr() as usize).deserialize(&mut de)?;
    de.end()?;
    if let Some(at) = top.usage.clone() {
        serde_json::from_slice::<Checked>(&body[at])?;
    }
    Ok(top)
}

/// The fast path of the check (`scan`): the same [`TopLevel`] the serde pass finds, or `None`
/// where the scanner gives up (then the serde pass decides, and words any refusal). Every
/// value is validated as `Checked` would: the scanner gives up on what only a full decode
/// could refuse (surrogate escapes, numbers that might not fit an `f64`).
fn scan_top_level(success: &[&str], body: &[u8]) -> Option<TopLevel> {
    let text = std::str::from_utf8(body).ok()?;
    let mut p = super::scan::Scan::new(text);
    let mut top = TopLevel { error: false, success_key: false, usage: None };
    p.members(|key, p| {
        match key {
            // `Option<Checked>`: `null` is no error.
            "error" if p.peek()? == b'n' => p.null()?,
            "error" => {
                p.skip()?;
                top.error = true;
            }
            "usage" => top.usage = Some(p.skip_span()?),
            _ => p.skip()?,
        }
        top.success_key |= success.contains(&key);
        Some(())
    })?;
    p.end()?;
    Some(top)
}

/// Panics unless the fast check finds what the serde pass finds, for every format, or gives
/// up (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fast_path_agrees(body: &[u8]) {
    for format in
        [Format::OpenAiChat, Format::OpenAiResponses, Format::Anthropic, Format::Gemini, Format::Bedrock]
    {
        let success = success_keys(format);
        if let Some(top) = scan_top_level(success, body) {
            match serde_top_level(success, body) {
                Ok(want) => assert_eq!(top, want, "{}", String::from_utf8_lossy(body)),
                Err(e) => panic!("the answer check's fast path accepted what serde_json refuses ({e})"),
            }
        }
    }
}

/// Reads a [`TopLevel`], given the success keys of the format and where the body starts in
/// memory (to tell where `usage` lies in it).
struct TopLevelSeed(&'static [&'static str], usize);

impl<'de> DeserializeSeed<'de> for TopLevelSeed {
    type Value = TopLevel;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TopLevel, D::Error> {
        struct V(&'static [&'static str], usize);
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut top = TopLevel { error: false, success_key: false, usage: None };
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    if k.0 == "error" {
                        top.error |= map.next_value::<Option<Checked>>()?.is_some();
                    } else if k.0 == "usage" {
                        // Kept as its bytes; `non_stream_body` checks them like every other value.
                        let raw = map.next_value::<&'de RawValue>()?;
                        let start = raw.get().as_ptr() as usize - self.1;
                        top.usage = Some(start..start + raw.get().len());
                    } else {
                        map.next_value::<Checked>()?;
                    }
                    top.success_key |= self.0.contains(&&*k.0);
                }
                Ok(top)
            }
        }
        d.deserialize_map(V(self.0, self.1))
    }
}

/// An object key, borrowed from the body unless it had escapes.
pub(super) struct Key<'de>(pub(super) std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value, read in full and dropped. Unlike `IgnoredAny`, which skips strings
/// without decoding them, this decodes every string, so a bad escape (a lone surrogate such as
/// `"\udb00"`) is an error here, as it is for every later parse.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checked;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
                while map.next_key::<Checked>()?.is_some() {
                    map.next_value::<Checked>()?;
                }
                Ok(Checked)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
