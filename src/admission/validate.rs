//! Body validation before anything goes upstream: the required fields of each inbound format and
//! the types of the fields the gateway or the provider would otherwise misread. Typed serde
//! shapes with `IgnoredAny` for what is not checked, so a valid body costs one fast pass.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::error::GatewayError;
use crate::formats::passthrough;
use crate::formats::scan::{Field, Kind, Scan};
use crate::formats::{Format, TranslateError};
use crate::providers::MediaOp;

/// What the body must contain, by endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Chat(Format),
    Media(MediaOp),
    CountTokens,
}

/// Check `body` for `shape`. `model_in_path` (Gemini) skips the `model` field.
pub fn validate(shape: Shape, body: &[u8], model_in_path: bool) -> Result<(), GatewayError> {
    match shape {
        Shape::Chat(Format::OpenAiChat) => match scan_fields(body, OPENAI_CHAT) {
            Some(f) => OpenAiChat::check_fields(&f, model_in_path),
            None => parse::<OpenAiChat>(body)?.check(model_in_path),
        },
        Shape::Chat(Format::OpenAiResponses) => {
            let b: Responses = parse(body)?;
            need_model(b.model.as_deref(), model_in_path)?;
            match b.input {
                Some(Input::Text(t)) if t.is_empty() && b.previous_response_id.is_none() => {
                    Err(GatewayError::InvalidField {
                        field: "input".into(),
                        problem: "must not be empty".into(),
                    })
                }
                Some(Input::Items(n)) if n.0 == 0 && b.previous_response_id.is_none() => {
                    Err(GatewayError::InvalidField {
                        field: "input".into(),
                        problem: "must not be empty".into(),
                    })
                }
                None if b.previous_response_id.is_none() && b.prompt.is_none() => {
                    Err(GatewayError::MissingField { field: "input" })
                }
                _ => Ok(()),
            }?;
            positive("max_output_tokens", b.max_output_tokens)
        }
        Shape::Chat(Format::Anthropic) | Shape::CountTokens => match scan_fields(body, ANTHROPIC) {
            Some(f) => Anthropic::check_fields(&f, model_in_path),
            None => parse::<Anthropic>(body)?.check(model_in_path),
        },
        Shape::Chat(Format::Gemini) => {
            let b: Gemini = parse(body)?;
            non_empty_array("contents", b.contents.map(|m| m.0))?;
            if let Some(g) = b.generation_config {
                positive("generationConfig.maxOutputTokens", g.max_output_tokens)?;
            }
            Ok(())
        }
        Shape::Chat(Format::Bedrock) => Ok(()),
        Shape::Media(MediaOp::Embeddings) => {
            let b: Embeddings = parse(body)?;
            need_model(b.model.as_deref(), model_in_path)?;
            match b.input {
                None => Err(GatewayError::MissingField { field: "input" }),
                Some(EmbedInput::Text(t)) if t.is_empty() => Err(GatewayError::InvalidField {
                    field: "input".into(),
                    problem: "must not be empty".into(),
                }),
                Some(EmbedInput::Many(n)) if n.0 == 0 => Err(GatewayError::InvalidField {
                    field: "input".into(),
                    problem: "must not be empty".into(),
                }),
                Some(_) => Ok(()),
            }
        }
        Shape::Media(MediaOp::ImagesGenerations) => {
            let b: Prompted = parse(body)?;
            need_model(b.model.as_deref(), model_in_path)?;
            match b.prompt {
                Some(p) if !p.is_empty() => Ok(()),
                Some(_) => Err(GatewayError::InvalidField {
                    field: "prompt".into(),
                    problem: "must not be empty".into(),
                }),
                None => Err(GatewayError::MissingField { field: "prompt" }),
            }
        }
        Shape::Media(MediaOp::AudioSpeech) => {
            let b: Speech = parse(body)?;
            need_model(b.model.as_deref(), model_in_path)?;
            if b.input.is_none() {
                return Err(GatewayError::MissingField { field: "input" });
            }
            Ok(())
        }
        Shape::Media(MediaOp::Completions) => {
            let b: Completion = parse(body)?;
            need_model(b.model.as_deref(), model_in_path)?;
            match b.prompt {
                Some(_) => Ok(()),
                None => Err(GatewayError::MissingField { field: "prompt" }),
            }
        }
        Shape::Media(MediaOp::Moderations) => {
            let b: Moderation = parse(body)?;
            need_model(b.model.as_deref(), model_in_path)?;
            match b.input {
                Some(_) => Ok(()),
                None => Err(GatewayError::MissingField { field: "input" }),
            }
        }
        // Multipart: checked by the upload path.
        Shape::Media(MediaOp::AudioTranscriptions | MediaOp::ImagesEdits | MediaOp::ImagesVariations) => {
            Ok(())
        }
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b != b'{') {
        return Err(GatewayError::InvalidRequest("the body must be a JSON object".into()));
    }
    // The common case, a valid body, in one plain pass; only a refused body is parsed again
    // with the path of the offending field tracked (which costs an allocation per key).
    let mut de = serde_json::Deserializer::from_slice(body);
    if let Ok(v) = T::deserialize(&mut de).and_then(|v| de.end().map(|()| v)) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => {
            de.end().map_err(|e| GatewayError::InvalidRequest(format!("the body is not valid JSON: {e}")))?;
            Ok(v)
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(GatewayError::InvalidRequest(format!("the body is not valid JSON: {inner}")));
            }
            if path == "." {
                return Err(GatewayError::InvalidRequest(format!("the body must be a JSON object: {inner}")));
            }
            // serde's message ends with " at line L column C": keep the readable part.
            let msg = inner.to_string();
            let problem = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            Err(GatewayError::InvalidField { field: path, problem })
        }
    }
}

fn need_model(model: Option<&str>, model_in_path: bool) -> Result<(), GatewayError> {
    if model_in_path {
        return Ok(());
    }
    match model {
        Some(m) if !m.is_empty() => Ok(()),
        Some(_) => {
            Err(GatewayError::InvalidField { field: "model".into(), problem: "must not be empty".into() })
        }
        None => Err(GatewayError::MissingField { field: "model" }),
    }
}

fn non_empty_array(field: &'static str, n: Option<usize>) -> Result<(), GatewayError> {
    match n {
        None => Err(GatewayError::MissingField { field }),
        Some(0) => Err(GatewayError::InvalidField {
            field: field.into(),
            problem: "must contain at least one entry".into(),
        }),
        Some(_) => Ok(()),
    }
}

fn positive(field: &str, v: Option<u64>) -> Result<(), GatewayError> {
    if v == Some(0) {
        return Err(GatewayError::InvalidField { field: field.into(), problem: "must be at least 1".into() });
    }
    Ok(())
}

/// A JSON array, counted without keeping its items; each item must be an object.
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items: Vec<Obj> = Vec::deserialize(d)?;
        Ok(Count(items.len()))
    }
}

/// Any JSON object (its members are not checked here).
struct Obj;

impl<'de> Deserialize<'de> for Obj {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Obj;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Obj, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Obj)
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct OpenAiChat {
    model: Option<String>,
    messages: Option<Count>,
    #[serde(rename = "stream")]
    _stream: Option<bool>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    #[serde(rename = "temperature")]
    _temperature: Option<f64>,
    #[serde(rename = "top_p")]
    _top_p: Option<f64>,
    #[serde(rename = "n")]
    _n: Option<u32>,
    #[serde(rename = "tools")]
    _tools: Option<Vec<Obj>>,
}

/// The members of an OpenAI chat body the fast path reads ([`scan_fields`]), typed as
/// [`OpenAiChat`] declares them; the first five are the ones checked.
pub(crate) const OPENAI_CHAT: [(&str, Kind); 9] = [
    ("model", Kind::Str),
    ("messages", Kind::Objects),
    ("stream", Kind::Bool),
    ("max_tokens", Kind::U64),
    ("max_completion_tokens", Kind::U64),
    ("temperature", Kind::F64),
    ("top_p", Kind::F64),
    ("n", Kind::U32),
    ("tools", Kind::Objects),
];

/// The members of an Anthropic Messages body the fast path reads, as [`Anthropic`] declares
/// them; the first three are the ones checked.
pub(crate) const ANTHROPIC: [(&str, Kind); 6] = [
    ("model", Kind::Str),
    ("messages", Kind::Objects),
    ("max_tokens", Kind::U64),
    ("stream", Kind::Bool),
    ("temperature", Kind::F64),
    ("tools", Kind::Objects),
];

/// The checks of a chat body (both formats): a model unless the path names it, at least one
/// message, and token caps of at least 1.
fn check_chat(
    model: Option<&str>,
    messages: Option<usize>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    model_in_path: bool,
) -> Result<(), GatewayError> {
    need_model(model, model_in_path)?;
    non_empty_array("messages", messages)?;
    positive("max_tokens", max_tokens)?;
    positive("max_completion_tokens", max_completion_tokens)
}

/// What the chat checks read of a body: model, messages, max_tokens, max_completion_tokens.
#[cfg(any(test, feature = "fuzzing"))]
type Seen = (Option<String>, Option<usize>, Option<u64>, Option<u64>);

impl OpenAiChat {
    fn check(&self, model_in_path: bool) -> Result<(), GatewayError> {
        let m = self.messages.as_ref().map(|m| m.0);
        check_chat(self.model.as_deref(), m, self.max_tokens, self.max_completion_tokens, model_in_path)
    }

    fn check_fields(f: &[Field; 9], model_in_path: bool) -> Result<(), GatewayError> {
        let [model, messages, _, max_tokens, max_completion_tokens, ..] = f;
        check_chat(
            model.str(),
            messages.count(),
            max_tokens.u64(),
            max_completion_tokens.u64(),
            model_in_path,
        )
    }

    #[cfg(any(test, feature = "fuzzing"))]
    fn seen(self) -> Seen {
        (self.model, self.messages.map(|m| m.0), self.max_tokens, self.max_completion_tokens)
    }

    #[cfg(any(test, feature = "fuzzing"))]
    fn seen_fields(f: &[Field; 9]) -> Seen {
        let [model, messages, _, max_tokens, max_completion_tokens, ..] = f;
        (model.str().map(str::to_owned), messages.count(), max_tokens.u64(), max_completion_tokens.u64())
    }
}

impl Anthropic {
    fn check(&self, model_in_path: bool) -> Result<(), GatewayError> {
        let m = self.messages.as_ref().map(|m| m.0);
        check_chat(self.model.as_deref(), m, self.max_tokens, None, model_in_path)
    }

    fn check_fields(f: &[Field; 6], model_in_path: bool) -> Result<(), GatewayError> {
        let [model, messages, max_tokens, ..] = f;
        check_chat(model.str(), messages.count(), max_tokens.u64(), None, model_in_path)
    }

    #[cfg(any(test, feature = "fuzzing"))]
    fn seen(self) -> Seen {
        (self.model, self.messages.map(|m| m.0), self.max_tokens, None)
    }

    #[cfg(any(test, feature = "fuzzing"))]
    fn seen_fields(f: &[Field; 6]) -> Seen {
        let [model, messages, max_tokens, ..] = f;
        (model.str().map(str::to_owned), messages.count(), max_tokens.u64(), None)
    }
}

/// The fast path of [`parse`] for a shape of the named members: their values as the derived
/// `Deserialize` reads them, or `None` where the scanner gives up and the serde pass decides
/// (and words any refusal): a member of another type, one given twice, an escaped key,
/// anything the scanner does not take.
fn scan_fields<'a, const N: usize>(body: &'a [u8], fields: [(&str, Kind); N]) -> Option<[Field<'a>; N]> {
    let mut p = Scan::new(std::str::from_utf8(body).ok()?);
    let typed = p.typed_members(&fields, None)?;
    p.end()?;
    Some(typed)
}

/// A chat body's routing facts ([`passthrough::peek`]) and whether it already passes
/// [`validate`] for `format` (model not in the path), read in one pass over the body: the
/// checks' members are typed while the members are listed. `false` means not known (the
/// fast path gave up, or the body fails a check): `validate` then runs, and words any refusal.
pub fn peek_checked(format: Format, body: &[u8]) -> Result<(passthrough::Peek, bool), TranslateError> {
    match format {
        Format::OpenAiChat => {
            let (peek, f) = passthrough::peek_fields(body, &OPENAI_CHAT)?;
            Ok((peek, f.is_some_and(|f| OpenAiChat::check_fields(&f, false).is_ok())))
        }
        Format::Anthropic => {
            let (peek, f) = passthrough::peek_fields(body, &ANTHROPIC)?;
            Ok((peek, f.is_some_and(|f| Anthropic::check_fields(&f, false).is_ok())))
        }
        _ => Ok((passthrough::peek(body)?, false)),
    }
}

/// Panics unless the fast path reads `body` as the serde pass does, for both scanned shapes, or
/// gives up; likewise the one-pass peek and check (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fast_path_agrees(body: &[u8]) {
    if let Some(f) = scan_fields(body, OPENAI_CHAT) {
        let want = parse::<OpenAiChat>(body).map(OpenAiChat::seen);
        assert_eq!(Ok(OpenAiChat::seen_fields(&f)), want.map_err(|e| e.to_string()));
    }
    if let Some(f) = scan_fields(body, ANTHROPIC) {
        let want = parse::<Anthropic>(body).map(Anthropic::seen);
        assert_eq!(Ok(Anthropic::seen_fields(&f)), want.map_err(|e| e.to_string()));
    }
    for (format, shape) in [
        (Format::OpenAiChat, Shape::Chat(Format::OpenAiChat)),
        (Format::Anthropic, Shape::Chat(Format::Anthropic)),
    ] {
        let (peek, checked) = (peek_checked(format, body), validate(shape, body, false));
        assert_eq!(
            peek.as_ref().map(|p| &p.0),
            passthrough::peek(body).as_ref(),
            "the one-pass peek differs"
        );
        if let Ok((_, true)) = peek {
            assert!(checked.is_ok(), "the one-pass check passed what validate refuses: {checked:?}");
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Items(Count),
}

#[derive(Deserialize)]
struct Responses {
    model: Option<String>,
    input: Option<Input>,
    previous_response_id: Option<String>,
    prompt: Option<IgnoredAny>,
    #[serde(rename = "stream")]
    _stream: Option<bool>,
    max_output_tokens: Option<u64>,
    #[serde(rename = "temperature")]
    _temperature: Option<f64>,
    #[serde(rename = "tools")]
    _tools: Option<Vec<Obj>>,
}

#[derive(Deserialize)]
struct Anthropic {
    model: Option<String>,
    messages: Option<Count>,
    max_tokens: Option<u64>,
    #[serde(rename = "stream")]
    _stream: Option<bool>,
    #[serde(rename = "temperature")]
    _temperature: Option<f64>,
    #[serde(rename = "tools")]
    _tools: Option<Vec<Obj>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    max_output_tokens: Option<u64>,
    #[serde(rename = "temperature")]
    _temperature: Option<f64>,
}

#[derive(Deserialize)]
struct Gemini {
    contents: Option<Count>,
    #[serde(rename = "generationConfig", alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EmbedInput {
    Text(String),
    Many(CountAny),
}

/// A JSON array of anything, counted.
struct CountAny(usize);

impl<'de> Deserialize<'de> for CountAny {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items: Vec<IgnoredAny> = Vec::deserialize(d)?;
        Ok(CountAny(items.len()))
    }
}

#[derive(Deserialize)]
struct Embeddings {
    model: Option<String>,
    input: Option<EmbedInput>,
}

#[derive(Deserialize)]
struct Prompted {
    model: Option<String>,
    prompt: Option<String>,
}

#[derive(Deserialize)]
struct Completion {
    model: Option<String>,
    /// A string, an array of strings or of token arrays.
    prompt: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Moderation {
    /// Optional at OpenAI (a default model); the gateway routes by it, so it is required.
    model: Option<String>,
    input: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Speech {
    model: Option<String>,
    input: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::scan::testgen::Gen;

    fn err(shape: Shape, body: &str) -> String {
        validate(shape, body.as_bytes(), false).unwrap_err().to_string()
    }

    #[test]
    fn required_fields_per_format() {
        let chat = Shape::Chat(Format::OpenAiChat);
        assert_eq!(
            err(chat, r#"{"model":"fast","messages":[]}"#),
            "`messages`: must contain at least one entry"
        );
        assert_eq!(err(chat, r#"{"model":"fast"}"#), "`messages` is required");
        assert_eq!(err(chat, r#"{"messages":[{"role":"user","content":"hi"}]}"#), "`model` is required");
        assert!(
            validate(chat, br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#, false).is_ok()
        );
        let a = Shape::Chat(Format::Anthropic);
        assert_eq!(
            err(a, r#"{"model":"fast","max_tokens":10,"messages":[]}"#),
            "`messages`: must contain at least one entry"
        );
        let g = Shape::Chat(Format::Gemini);
        assert_eq!(validate(g, b"{}", true).unwrap_err().to_string(), "`contents` is required");
        let r = Shape::Chat(Format::OpenAiResponses);
        assert_eq!(err(r, r#"{"model":"fast"}"#), "`input` is required");
        assert!(validate(r, br#"{"model":"fast","input":"hi"}"#, false).is_ok());
        assert!(validate(r, br#"{"model":"fast","previous_response_id":"resp_1","input":[]}"#, false).is_ok());
    }

    #[test]
    fn wrong_types_name_the_field() {
        let chat = Shape::Chat(Format::OpenAiChat);
        let e =
            err(chat, r#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"temperature":"0.5"}"#);
        assert!(e.starts_with("`temperature`: invalid type: string \"0.5\", expected f64"), "{e}");
        let e = err(chat, r#"{"model":"fast","messages":"hi"}"#);
        assert!(e.starts_with("`messages`: invalid type: string"), "{e}");
        let e = err(chat, r#"{"model":"fast","messages":[{"role":"user"}],"stream":"yes"}"#);
        assert!(e.starts_with("`stream`: invalid type"), "{e}");
        let e = err(chat, r#"{"model":7,"messages":[{}]}"#);
        assert!(e.starts_with("`model`: invalid type: integer"), "{e}");
        assert!(err(chat, "[1,2]").starts_with("the body must be a JSON object"));
        assert!(err(chat, "{\"model\":").starts_with("the body is not valid JSON"));
    }

    /// A chat body in OpenAI's or Anthropic's shape: the members the check reads (each maybe
    /// missing, repeated or of another type) among others.
    fn chat_body(g: &mut Gen) -> String {
        let message = |g: &mut Gen| {
            let m = vec![("role", "\"user\"".to_owned()), ("content", g.string())];
            g.object(m)
        };
        let messages = match g.below(6) {
            0 => "[]".to_owned(),
            1 => format!("[{},\"text\"]", message(g)),
            _ => format!("[{},{}]", message(g), message(g)),
        };
        let tools = format!("[{}]", g.object(vec![("type", "\"function\"".to_owned())]));
        let members = vec![
            ("model", g.str_or_null()),
            ("messages", messages),
            ("stream", g.pick(&["true", "false", "null", "1"]).to_owned()),
            ("max_tokens", g.count()),
            ("max_completion_tokens", g.pick(&["0", "16", "null", "4294967296", "-1"]).to_owned()),
            ("temperature", g.number()),
            ("top_p", g.pick(&["1", "0.5", "null", "\"x\""]).to_owned()),
            ("n", g.pick(&["1", "4294967296", "null", "1.0"]).to_owned()),
            ("tools", tools),
        ];
        g.object(members)
    }

    #[test]
    fn the_fast_path_reads_chat_bodies_as_the_serde_pass_does_or_gives_up() {
        let mut g = Gen(0xA076_1D64_78BD_642F);
        let (mut valid, mut fast) = ([0; 2], [0; 2]);
        let (mut passes, mut one_pass) = ([0; 2], [0; 2]);
        for i in 0..30_000 {
            let mut s = chat_body(&mut g);
            if i % 2 == 1 {
                s = g.mutate(&s);
            }
            let b = s.as_bytes();
            let openai = parse::<OpenAiChat>(b).map(OpenAiChat::seen);
            let anthropic = parse::<Anthropic>(b).map(Anthropic::seen);
            valid[0] += usize::from(openai.is_ok() && i % 2 == 0);
            valid[1] += usize::from(anthropic.is_ok() && i % 2 == 0);
            if let Some(f) = scan_fields(b, OPENAI_CHAT) {
                fast[0] += usize::from(i % 2 == 0);
                assert_eq!(Ok(OpenAiChat::seen_fields(&f)), openai.map_err(|e| e.to_string()), "{s}");
            }
            if let Some(f) = scan_fields(b, ANTHROPIC) {
                fast[1] += usize::from(i % 2 == 0);
                assert_eq!(Ok(Anthropic::seen_fields(&f)), anthropic.map_err(|e| e.to_string()), "{s}");
            }
            // The one pass of peek and check reads the body as `peek` and `validate` do.
            fast_path_agrees(b);
            for (k, f) in [Format::OpenAiChat, Format::Anthropic].into_iter().enumerate() {
                if i % 2 == 0 {
                    passes[k] += usize::from(validate(Shape::Chat(f), b, false).is_ok());
                    one_pass[k] += usize::from(matches!(peek_checked(f, b), Ok((_, true))));
                }
            }
        }
        for k in 0..2 {
            assert!(
                one_pass[k] * 2 > passes[k],
                "only {} of {} bodies that pass were known to in the one pass",
                one_pass[k],
                passes[k]
            );
            assert!(
                fast[k] * 2 > valid[k],
                "only {} of {} valid bodies took the fast path",
                fast[k],
                valid[k]
            );
        }
    }

    #[test]
    fn media_shapes() {
        let e = Shape::Media(MediaOp::Embeddings);
        assert_eq!(err(e, r#"{"model":"m"}"#), "`input` is required");
        assert_eq!(err(e, r#"{"model":"m","input":[]}"#), "`input`: must not be empty");
        assert!(validate(e, br#"{"model":"m","input":[[1,2]]}"#, false).is_ok());
        let i = Shape::Media(MediaOp::ImagesGenerations);
        assert_eq!(err(i, r#"{"model":"m"}"#), "`prompt` is required");
    }
}
