//! OpenAI embeddings (`POST /v1/embeddings`) <-> Gemini `batchEmbedContents` and Bedrock
//! InvokeModel bodies for Titan text embeddings and Cohere Embed.
//! Pure: no I/O, no config, no auth. URLs, SigV4 and the fan-out of Bedrock calls are the
//! proxy's; this module only writes the bodies to send and combines the bodies that come back.
//!
//! Vectors travel as `f32`, which is what every upstream returns and what OpenAI's base64
//! encoding packs (little-endian, 4 bytes per component). Usage is input tokens only: the
//! upstream's count when it gives one (Titan `inputTextTokenCount`, Cohere
//! `meta.billed_units.input_tokens`), else an estimate of one token per 4 bytes of text
//! (Gemini's `batchEmbedContents` reports none).
//!
//! Upstream bodies are trusted for shape only: a body that does not parse, or that returns a
//! different number of vectors than inputs sent, is a `TranslateError`, never a panic.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{TranslateError, Usage};

/// Dimensions Titan Text Embeddings v2 accepts.
pub const TITAN_V2_DIMENSIONS: [u32; 3] = [256, 512, 1024];
/// Dimensions Cohere Embed v4 accepts (`output_dimension`).
pub const COHERE_V4_DIMENSIONS: [u32; 4] = [256, 512, 1024, 1536];
/// Most requests Gemini's `batchEmbedContents` accepts in one call (its 400 otherwise:
/// "at most 100 requests can be in one batch"; observed, not in Google's reference).
pub const GEMINI_MAX_BATCH: usize = 100;
/// Most texts Bedrock's Cohere Embed accepts in one InvokeModel call.
pub const COHERE_MAX_TEXTS: usize = 96;
/// The `input_type` sent to Cohere: OpenAI has no such notion, and documents are the
/// common case (indexing); queries embedded the same way still compare sensibly.
const COHERE_INPUT_TYPE: &str = "search_document";

/// An OpenAI embeddings request, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmbeddingRequest {
    /// The model the client asked for (an alias the router resolves).
    pub model: String,
    /// The texts to embed, in order; never empty, no empty strings.
    pub inputs: Vec<String>,
    /// Requested output dimensions, if any.
    pub dimensions: Option<u32>,
    /// `encoding_format: "base64"`: answer with packed little-endian `f32` bytes.
    pub base64: bool,
    /// OpenAI's end-user id (not forwarded: no target has a field for it).
    pub user: Option<String>,
}

/// Vectors and usage from an upstream, in input order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmbeddingResponse {
    pub vectors: Vec<Vec<f32>>,
    /// `input_tokens` only; estimated (bytes / 4, rounded up, per input) when the upstream gives none.
    pub usage: Usage,
}

/// Which InvokeModel body shape a Bedrock embedding model speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BedrockEmbedFamily {
    /// `amazon.titan-embed-text-v2:0`, `amazon.titan-embed-text-v1`, `amazon.titan-embed-g1-text-02`:
    /// one `inputText` per call.
    Titan,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, `cohere.embed-v4:0`:
    /// up to 96 `texts` per call.
    Cohere,
}

// === OpenAI ===

/// Decode an OpenAI `POST /v1/embeddings` body. `input` may be a string or an array of
/// strings; token arrays (`[1, 2]`, `[[1, 2]]`) are `Unsupported`: no target takes token ids.
pub fn decode_openai_request(body: &[u8]) -> Result<EmbeddingRequest, TranslateError> {
    let obj = &mut super::json_object(body)?;
    let model = match obj.get_mut("model").map(Value::take) {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(TranslateError::invalid("model", "required"));
        }
        Some(_) => return Err(TranslateError::invalid("model", "expected a string")),
    };
    let inputs = decode_inputs(obj.get_mut("input").map(Value::take).unwrap_or(Value::Null))?;
    let base64 = match obj.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(other) => {
            return Err(TranslateError::invalid(
                "encoding_format",
                format!("expected \"float\" or \"base64\", got {other}"),
            ));
        }
    };
    let dimensions = match obj.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(d) => match d.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                return Err(TranslateError::invalid(
                    "dimensions",
                    format!("expected a positive integer, got {d}"),
                ))
            }
        },
    };
    let user = match obj.get_mut("user").map(Value::take) {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u),
        Some(_) => return Err(TranslateError::invalid("user", "expected a string")),
    };
    Ok(EmbeddingRequest { model, inputs, dimensions, base64, user })
}

/// `input` as a list of non-empty texts.
fn decode_inputs(input: Value) -> Result<Vec<String>, TranslateError> {
    let token_arrays =
        || TranslateError::Unsupported("`input` as token arrays (send the text instead)".into());
    let items = match input {
        Value::Null => return Err(TranslateError::invalid("input", "required")),
        Value::String(s) if s.is_empty() => {
            return Err(TranslateError::invalid("input", "must not be an empty string"));
        }
        Value::String(s) => vec![Value::String(s)],
        Value::Array(items) => items,
        _ => return Err(TranslateError::invalid("input", "expected a string or an array of strings")),
    };
    if items.is_empty() {
        return Err(TranslateError::invalid("input", "must not be an empty array"));
    }
    let mut texts = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(s) if s.is_empty() => {
                return Err(TranslateError::invalid(format!("input[{i}]"), "must not be an empty string"));
            }
            Value::String(s) => texts.push(s),
            Value::Number(_) | Value::Array(_) => return Err(token_arrays()),
            _ => return Err(TranslateError::invalid(format!("input[{i}]"), "expected a string")),
        }
    }
    Ok(texts)
}

/// One `data[]` item's `embedding`: numbers, or base64 of the little-endian `f32` bytes.
#[derive(Serialize)]
#[serde(untagged)]
enum OpenAiVector<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct OpenAiItem<'a> {
    object: &'static str,
    index: usize,
    embedding: OpenAiVector<'a>,
}

#[derive(Serialize)]
struct OpenAiUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct OpenAiList<'a> {
    object: &'static str,
    data: Vec<OpenAiItem<'a>>,
    model: &'a str,
    usage: OpenAiUsage,
}

/// Write the OpenAI response body: `{"object":"list","data":[...],"model","usage"}`.
/// With `base64`, each embedding is the standard (padded) base64 of its components as
/// little-endian `f32` bytes, which is what OpenAI sends and its SDKs unpack.
pub fn encode_openai_response(resp: &EmbeddingResponse, model: &str, base64: bool) -> Vec<u8> {
    let data = resp
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| OpenAiItem {
            object: "embedding",
            index,
            embedding: if base64 {
                OpenAiVector::Base64(vector_to_base64(v))
            } else {
                OpenAiVector::Floats(v)
            },
        })
        .collect();
    let tokens = resp.usage.input_tokens;
    let list = OpenAiList {
        object: "list",
        data,
        model,
        usage: OpenAiUsage { prompt_tokens: tokens, total_tokens: tokens },
    };
    // Cannot fail: no maps, no fallible Serialize impls (non-finite floats become `null`).
    serde_json::to_vec(&list).unwrap_or_default()
}

/// A vector as OpenAI's base64: little-endian `f32` bytes, standard alphabet, padded.
fn vector_to_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    B64.encode(bytes)
}

/// The inverse of [`vector_to_base64`] (an OpenAI-family answer to `encoding_format: base64`).
fn vector_from_base64(b64: &str) -> Result<Vec<f32>, TranslateError> {
    let bytes =
        B64.decode(b64).map_err(|e| TranslateError::invalid("embedding", format!("invalid base64: {e}")))?;
    if bytes.len() % 4 != 0 {
        return Err(TranslateError::invalid("embedding", "base64 length is not a multiple of 4 bytes"));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The usage estimate when an upstream reports none: 4 bytes per token, rounded up, per input.
fn estimate_tokens<S: AsRef<str>>(texts: &[S]) -> u64 {
    texts.iter().map(|t| (t.as_ref().len() as u64).div_ceil(4)).sum()
}

/// The error for an upstream that answered with the wrong number of vectors.
fn count_mismatch(upstream: &str, got: usize, want: usize) -> TranslateError {
    TranslateError::invalid("embeddings", format!("{upstream} returned {got} embeddings for {want} inputs"))
}

// === Gemini ===

/// Write the `models/{target_model}:batchEmbedContents` body: one request per input, with
/// `dimensions` as `outputDimensionality`. `target_model` may already start with `models/`.
/// No `taskType` is sent (OpenAI has none; Gemini then uses its default).
/// More than `GEMINI_MAX_BATCH` inputs is `Invalid` rather than an upstream 400.
pub fn encode_gemini_request(req: &EmbeddingRequest, target_model: &str) -> Result<Vec<u8>, TranslateError> {
    check_inputs(req)?;
    if req.inputs.len() > GEMINI_MAX_BATCH {
        return Err(TranslateError::invalid(
            "input",
            format!("Gemini embeds at most {GEMINI_MAX_BATCH} inputs per request, got {}", req.inputs.len()),
        ));
    }
    let name = target_model.strip_prefix("models/").unwrap_or(target_model);
    if name.is_empty() {
        return Err(TranslateError::invalid("model", "empty Gemini target model"));
    }
    let model = format!("models/{name}");
    let requests: Vec<Value> = req
        .inputs
        .iter()
        .map(|text| {
            let mut r = json!({"model": model, "content": {"parts": [{"text": text}]}});
            if let Some(d) = req.dimensions {
                r["outputDimensionality"] = json!(d);
            }
            r
        })
        .collect();
    Ok(serde_json::to_vec(&json!({ "requests": requests }))?)
}

#[derive(Deserialize)]
struct GeminiBatch {
    embeddings: Vec<GeminiEmbedding>,
    /// Not sent by the Gemini API today; read leniently in case it appears (as on Vertex).
    #[serde(rename = "usageMetadata")]
    usage_metadata: Option<Value>,
}

#[derive(Deserialize)]
struct GeminiEmbedding {
    values: Vec<f32>,
}

/// Read a `batchEmbedContents` answer (`{"embeddings":[{"values":[...]}]}`). Usage is
/// `usageMetadata.promptTokenCount` if present, else estimated.
pub fn decode_gemini_response(
    body: &[u8],
    req: &EmbeddingRequest,
) -> Result<EmbeddingResponse, TranslateError> {
    let batch: GeminiBatch = serde_json::from_slice(body)?;
    if batch.embeddings.len() != req.inputs.len() {
        return Err(count_mismatch("Gemini", batch.embeddings.len(), req.inputs.len()));
    }
    let tokens =
        batch.usage_metadata.as_ref().and_then(|u| u.get("promptTokenCount")).and_then(Value::as_u64);
    Ok(EmbeddingResponse {
        vectors: batch.embeddings.into_iter().map(|e| e.values).collect(),
        usage: Usage {
            input_tokens: tokens.unwrap_or_else(|| estimate_tokens(&req.inputs)),
            ..Usage::default()
        },
    })
}

// === Bedrock ===

/// The family of a Bedrock model id: a plain id (`amazon.titan-embed-text-v2:0`), one with
/// a cross-region prefix (`us.cohere.embed-v4:0`), or an ARN ending in either
/// (`arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-english-v3`). Application
/// inference profile ARNs do not name the model and give `None`.
pub fn bedrock_family(model_id: &str) -> Option<BedrockEmbedFamily> {
    let id = base_model_id(model_id);
    if id.starts_with("amazon.titan-embed-text") || id.starts_with("amazon.titan-embed-g1-text") {
        Some(BedrockEmbedFamily::Titan)
    } else if id.starts_with("cohere.embed-") {
        Some(BedrockEmbedFamily::Cohere)
    } else {
        None
    }
}

/// `model_id` without an ARN prefix or a cross-region prefix (`us.`, `eu.`, `apac.`, `global.`...).
fn base_model_id(model_id: &str) -> &str {
    let id = model_id.rsplit('/').next().unwrap_or(model_id);
    match id.split_once('.') {
        Some((_, rest)) if !id.starts_with("amazon.") && !id.starts_with("cohere.") => rest,
        _ => id,
    }
}

/// The family, or `Unsupported` naming the model.
fn family_of(model_id: &str) -> Result<BedrockEmbedFamily, TranslateError> {
    bedrock_family(model_id)
        .ok_or_else(|| TranslateError::Unsupported(format!("embeddings with Bedrock model {model_id:?}")))
}

/// Titan v2 takes `dimensions` and `normalize`; G1 (v1) takes `inputText` only.
fn is_titan_v2(model_id: &str) -> bool {
    base_model_id(model_id).starts_with("amazon.titan-embed-text-v2")
}

/// Cohere v4 takes `output_dimension`; v3 has fixed dimensions.
fn is_cohere_v4(model_id: &str) -> bool {
    base_model_id(model_id).starts_with("cohere.embed-v4")
}

/// The InvokeModel bodies to send, in order: Titan = one per input; Cohere = one for all
/// (max 96 texts per call: split beyond).
/// Titan v2 is sent `normalize: true` (OpenAI vectors are unit length); Cohere v4 is asked
/// for `float` embeddings explicitly.
pub fn encode_bedrock_requests(
    req: &EmbeddingRequest,
    model_id: &str,
) -> Result<Vec<Vec<u8>>, TranslateError> {
    check_inputs(req)?;
    let bodies: Vec<Value> = match family_of(model_id)? {
        BedrockEmbedFamily::Titan => {
            let v2 = is_titan_v2(model_id);
            let dims = match (req.dimensions, v2) {
                (None, _) => None,
                (Some(d), true) if TITAN_V2_DIMENSIONS.contains(&d) => Some(d),
                (Some(d), true) => {
                    return Err(TranslateError::invalid(
                        "dimensions",
                        format!("Titan Text Embeddings v2 accepts 256, 512 or 1024, got {d}"),
                    ));
                }
                (Some(_), false) => {
                    return Err(TranslateError::Unsupported(format!(
                        "`dimensions` with {model_id:?} (use amazon.titan-embed-text-v2:0)"
                    )));
                }
            };
            req.inputs
                .iter()
                .map(|text| match (v2, dims) {
                    (true, Some(d)) => json!({"inputText": text, "dimensions": d, "normalize": true}),
                    (true, None) => json!({"inputText": text, "normalize": true}),
                    (false, _) => json!({ "inputText": text }),
                })
                .collect()
        }
        BedrockEmbedFamily::Cohere => {
            let v4 = is_cohere_v4(model_id);
            let dims = match (req.dimensions, v4) {
                (None, _) => None,
                (Some(d), true) if COHERE_V4_DIMENSIONS.contains(&d) => Some(d),
                (Some(d), true) => {
                    return Err(TranslateError::invalid(
                        "dimensions",
                        format!("Cohere Embed v4 accepts 256, 512, 1024 or 1536, got {d}"),
                    ));
                }
                (Some(_), false) => {
                    return Err(TranslateError::Unsupported(format!(
                        "`dimensions` with {model_id:?} (Cohere Embed v3 has fixed dimensions)"
                    )));
                }
            };
            req.inputs
                .chunks(COHERE_MAX_TEXTS)
                .map(|texts| {
                    let mut body = json!({"texts": texts, "input_type": COHERE_INPUT_TYPE});
                    if v4 {
                        body["embedding_types"] = json!(["float"]);
                    }
                    if let Some(d) = dims {
                        body["output_dimension"] = json!(d);
                    }
                    body
                })
                .collect()
        }
    };
    bodies.iter().map(|b| serde_json::to_vec(b).map_err(TranslateError::from)).collect()
}

#[derive(Deserialize)]
struct TitanResponse {
    embedding: Vec<f32>,
    #[serde(rename = "inputTextTokenCount")]
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct CohereResponse<'a> {
    #[serde(borrow)]
    embeddings: &'a RawValue,
    /// Read leniently: only `meta.billed_units.input_tokens` matters, and it is optional.
    meta: Option<Value>,
}

#[derive(Deserialize)]
struct CohereByType {
    float: Vec<Vec<f32>>,
}

/// Combine the InvokeModel answers (same order as the requests) into one response.
/// Usage is summed over the calls; a call without a token count is estimated.
pub fn decode_bedrock_responses(
    bodies: &[&[u8]],
    model_id: &str,
    req: &EmbeddingRequest,
) -> Result<EmbeddingResponse, TranslateError> {
    let family = family_of(model_id)?;
    let batches: Vec<&[String]> = match family {
        BedrockEmbedFamily::Titan => req.inputs.chunks(1).collect(),
        BedrockEmbedFamily::Cohere => req.inputs.chunks(COHERE_MAX_TEXTS).collect(),
    };
    if bodies.len() != batches.len() {
        return Err(TranslateError::invalid(
            "body",
            format!("expected {} Bedrock responses, got {}", batches.len(), bodies.len()),
        ));
    }
    let mut out =
        EmbeddingResponse { vectors: Vec::with_capacity(req.inputs.len()), usage: Usage::default() };
    for (body, texts) in bodies.iter().zip(batches) {
        let (vectors, tokens) = match family {
            BedrockEmbedFamily::Titan => {
                let r: TitanResponse = serde_json::from_slice(body)?;
                (vec![r.embedding], r.input_text_token_count)
            }
            BedrockEmbedFamily::Cohere => decode_cohere(body)?,
        };
        if vectors.len() != texts.len() {
            return Err(count_mismatch("Bedrock", vectors.len(), texts.len()));
        }
        out.usage.input_tokens += tokens.unwrap_or_else(|| estimate_tokens(texts));
        out.vectors.extend(vectors);
    }
    Ok(out)
}

/// One Cohere answer: `embeddings` is `[[...]]`, or `{"float": [[...]]}` when
/// `embedding_types` was sent.
fn decode_cohere(body: &[u8]) -> Result<(Vec<Vec<f32>>, Option<u64>), TranslateError> {
    let r: CohereResponse = serde_json::from_slice(body)?;
    let raw = r.embeddings.get().trim_start();
    let vectors = if raw.starts_with('{') {
        serde_json::from_str::<CohereByType>(raw)?.float
    } else {
        serde_json::from_str::<Vec<Vec<f32>>>(raw)?
    };
    let tokens =
        r.meta.as_ref().and_then(|m| m.pointer("/billed_units/input_tokens")).and_then(Value::as_u64);
    Ok((vectors, tokens))
}

/// The checks every encoder repeats, for requests not built by `decode_openai_request`.
fn check_inputs(req: &EmbeddingRequest) -> Result<(), TranslateError> {
    if req.inputs.is_empty() {
        return Err(TranslateError::invalid("input", "must not be an empty array"));
    }
    Ok(())
}

/// Gemini `embedContent`/`batchEmbedContents` as the client's API.
#[path = "embeddings_gemini.rs"]
pub mod gemini_client;

#[cfg(test)]
#[path = "embeddings_tests.rs"]
mod tests;
