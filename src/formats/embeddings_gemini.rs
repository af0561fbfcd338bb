//! Gemini `embedContent` and `batchEmbedContents` as the client's API. The proxy routes every
//! embedding request as OpenAI's `/v1/embeddings` (passed through to the OpenAI family,
//! translated for Gemini and Bedrock by the parent module), so a Gemini client's body is read
//! into an [`EmbeddingRequest`] and written as that OpenAI body, and the OpenAI-shaped answer
//! is written back in Gemini's shape.
//!
//! Gemini's `taskType` and `title` have no OpenAI field and are not carried; the
//! `outputDimensionality` of the requests becomes `dimensions` (one value per call, as OpenAI
//! takes one). Only text parts can be embedded through the gateway.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{estimate_tokens, EmbeddingRequest, EmbeddingResponse};
use crate::formats::{TranslateError, Usage};

// === Request ===

#[derive(Deserialize)]
struct Batch {
    requests: Option<Vec<One>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct One {
    content: Option<Content>,
    output_dimensionality: Option<Value>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Value>,
}

/// Read an `embedContent` (`batch == false`) or `batchEmbedContents` body into the gateway's
/// embedding request for `alias` (the model in the URL). Each request's text parts are joined
/// with a newline into one input.
pub fn decode_request(body: &[u8], batch: bool, alias: &str) -> Result<EmbeddingRequest, TranslateError> {
    let ones = if batch {
        let b: Batch = serde_json::from_slice(body)?;
        match b.requests {
            Some(r) if !r.is_empty() => r,
            Some(_) => return Err(TranslateError::invalid("requests", "must not be empty")),
            None => return Err(TranslateError::invalid("requests", "required")),
        }
    } else {
        vec![serde_json::from_slice::<One>(body)?]
    };
    let field = |i: usize, f: &str| if batch { format!("requests[{i}].{f}") } else { f.to_string() };
    let mut inputs = Vec::with_capacity(ones.len());
    let mut dimensions: Option<u32> = None;
    for (i, one) in ones.into_iter().enumerate() {
        let Some(content) = one.content else {
            return Err(TranslateError::invalid(field(i, "content"), "required"));
        };
        inputs.push(text_of(&content, &field(i, "content"))?);
        let d = match one.output_dimensionality {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n > 0 => Some(n),
                _ => {
                    return Err(TranslateError::invalid(
                        field(i, "outputDimensionality"),
                        format!("expected a positive integer, got {v}"),
                    ))
                }
            },
        };
        if i > 0 && d != dimensions {
            return Err(TranslateError::Unsupported(
                "different outputDimensionality values in one batch".into(),
            ));
        }
        dimensions = d;
    }
    Ok(EmbeddingRequest { model: alias.to_string(), inputs, dimensions, base64: false, user: None })
}

/// The text of one `Content`: its text parts joined with a newline; any other part is
/// `Unsupported`, an empty text `Invalid`.
fn text_of(content: &Content, field: &str) -> Result<String, TranslateError> {
    let mut text = String::new();
    for (i, part) in content.parts.iter().enumerate() {
        match part.get("text").and_then(Value::as_str) {
            Some(t) => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(t);
            }
            None => {
                return Err(TranslateError::Unsupported(format!(
                    "{field}.parts[{i}]: only text parts can be embedded"
                )))
            }
        }
    }
    if text.is_empty() {
        return Err(TranslateError::invalid(format!("{field}.parts"), "no text to embed"));
    }
    Ok(text)
}

#[derive(Serialize)]
struct OpenAiRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
}

/// The OpenAI `/v1/embeddings` body for `req` (always an array of inputs, float vectors).
pub fn encode_openai_request(req: &EmbeddingRequest) -> Vec<u8> {
    let r = OpenAiRequest {
        model: &req.model,
        input: &req.inputs,
        encoding_format: "float",
        dimensions: req.dimensions,
    };
    // Cannot fail: strings and integers only.
    serde_json::to_vec(&r).unwrap_or_default()
}

// === Response ===

#[derive(Deserialize)]
struct OpenAiList {
    data: Vec<OpenAiItem>,
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OpenAiItem {
    index: Option<usize>,
    embedding: Value,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<u64>,
}

/// Read an OpenAI embeddings answer (`data[].embedding` as numbers or base64) for `req`, in
/// input order (by `index` when given). Usage is `usage.prompt_tokens`, else estimated.
pub fn decode_openai_response(
    body: &[u8],
    req: &EmbeddingRequest,
) -> Result<EmbeddingResponse, TranslateError> {
    let list: OpenAiList = serde_json::from_slice(body)?;
    let n = req.inputs.len();
    if list.data.len() != n {
        return Err(super::count_mismatch("the upstream", list.data.len(), n));
    }
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; n];
    for (pos, item) in list.data.into_iter().enumerate() {
        let i = item.index.unwrap_or(pos);
        let slot = vectors
            .get_mut(i)
            .ok_or_else(|| TranslateError::invalid("data", format!("index {i} is out of range")))?;
        *slot = Some(vector_of(item.embedding)?);
    }
    let vectors = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| TranslateError::invalid("data", format!("no embedding for input {i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let tokens = list.usage.and_then(|u| u.prompt_tokens);
    Ok(EmbeddingResponse {
        vectors,
        usage: Usage {
            input_tokens: tokens.unwrap_or_else(|| estimate_tokens(&req.inputs)),
            ..Usage::default()
        },
    })
}

fn vector_of(v: Value) -> Result<Vec<f32>, TranslateError> {
    match v {
        Value::String(b64) => super::vector_from_base64(&b64),
        v => Ok(serde_json::from_value::<Vec<f32>>(v)?),
    }
}

#[derive(Serialize)]
struct Values<'a> {
    values: &'a [f32],
}

#[derive(Serialize)]
struct SingleAnswer<'a> {
    embedding: Values<'a>,
}

#[derive(Serialize)]
struct BatchAnswer<'a> {
    embeddings: Vec<Values<'a>>,
}

/// Write Gemini's answer: `{"embedding":{"values":[...]}}` for `embedContent`,
/// `{"embeddings":[{"values":[...]}, ...]}` for `batchEmbedContents`.
pub fn encode_response(resp: &EmbeddingResponse, batch: bool) -> Vec<u8> {
    // Cannot fail: no maps (non-finite floats become `null`).
    if batch {
        let embeddings = resp.vectors.iter().map(|v| Values { values: v }).collect();
        serde_json::to_vec(&BatchAnswer { embeddings })
    } else {
        let values = resp.vectors.first().map(Vec::as_slice).unwrap_or_default();
        serde_json::to_vec(&SingleAnswer { embedding: Values { values } })
    }
    .unwrap_or_default()
}

#[cfg(test)]
#[path = "embeddings_gemini_tests.rs"]
mod tests;
