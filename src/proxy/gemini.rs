//! The Gemini API's own endpoints besides generation, on `/v1beta/` and `/v1/` alike:
//! `models` (list and get, the caller's aliases) and `models/{model}:countTokens` (the
//! gateway's own count, like Anthropic's `count_tokens`). `embedContent` and
//! `batchEmbedContents` go through the chat flow as embeddings (see `chat::inbound`). Every
//! error here is in Gemini's shape.

use std::sync::Arc;
use std::time::SystemTime;

use super::Session;
use serde_json::{json, Value};

use super::ctx::RequestCtx;
use super::{chat, respond};
use crate::admission::{self, Shape};
use crate::error::GatewayError;
use crate::formats::Format;
use crate::limits::tokens::{count_request_tokens, TokenizerFamily};
use crate::runtime::Runtime;

/// What a Gemini model entry says the gateway serves for it.
const METHODS: [&str; 5] =
    ["generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents"];

/// One alias as a Gemini `Model` resource.
pub fn model_value(alias: &str) -> Value {
    json!({
        "name": format!("models/{alias}"),
        "baseModelId": alias,
        "version": "gateway",
        "displayName": alias,
        "description": "An alias of llm-gateway",
        "supportedGenerationMethods": METHODS,
    })
}

/// `GET /v1beta/models` (or `GET /v1/models` from a Google client): every alias the caller
/// may use, in one page (no `nextPageToken`: an alias list is small).
pub async fn list(s: &mut Session, ctx: &mut RequestCtx, rt: &Arc<Runtime>) -> pingora::Result<()> {
    let req = s.req_header();
    let p = match admission::authenticate(rt, &req.headers, req.uri.query(), SystemTime::now()) {
        Ok(p) => p,
        Err(e) => return respond::error(s, ctx, Format::Gemini, e).await,
    };
    let models: Vec<Value> = rt
        .snap
        .aliases
        .iter()
        .enumerate()
        .filter(|(i, _)| p.allows(*i))
        .map(|(_, a)| model_value(&a.name))
        .collect();
    ctx.principal = Some(p.clone());
    ctx.admission = Some(admission::admit_without_model(p));
    let body = serde_json::to_vec(&json!({ "models": models })).unwrap_or_default();
    respond::json(s, ctx, 200, body, &[]).await
}

/// `GET /v1beta/models/{model}` (Gemini shape) or `GET /v1/models/{model}` (OpenAI's, unless
/// a Google client asks): one alias the caller may use, else 404/403 in the same shape.
pub async fn get(
    s: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
    name: &str,
    format: Format,
) -> pingora::Result<()> {
    let req = s.req_header();
    let p = match admission::authenticate(rt, &req.headers, req.uri.query(), SystemTime::now()) {
        Ok(p) => p,
        Err(e) => return respond::error(s, ctx, format, e).await,
    };
    ctx.principal = Some(p.clone());
    let name = name.strip_prefix("models/").unwrap_or(name);
    if let Err(e) = admission::resolve_alias(rt, &p, name) {
        return respond::error(s, ctx, format, e).await;
    }
    ctx.admission = Some(admission::admit_without_model(p));
    let v = match format {
        Format::Gemini => model_value(name),
        _ => json!({"id": name, "object": "model", "created": 0, "owned_by": "llm-gateway"}),
    };
    respond::json(s, ctx, 200, serde_json::to_vec(&v).unwrap_or_default(), &[]).await
}

/// `POST models/{model}:countTokens`: admitted like a generation (key, alias, allow-list,
/// body), answered with the gateway's count (the tokenizer of the alias's first target, a
/// calibrated estimate for non-OpenAI families) and accounted as input tokens.
pub async fn count_tokens(
    s: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
    model: &str,
) -> pingora::Result<()> {
    match count(s, ctx, rt, model).await? {
        Ok(n) => {
            ctx.usage.input_tokens = n;
            let body = format!("{{\"totalTokens\":{n}}}").into_bytes();
            respond::json(s, ctx, 200, body, &[]).await
        }
        Err(e) => respond::error(s, ctx, Format::Gemini, e).await,
    }
}

async fn count(
    s: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
    model: &str,
) -> pingora::Result<Result<u64, GatewayError>> {
    let (principal, body) = match chat::caller_and_body(s, ctx, rt).await? {
        Ok(pb) => pb,
        Err(e) => return Ok(Err(e)),
    };
    let counted = match counted_request(&body) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let counted = counted.as_deref().unwrap_or(&body);
    let shape = Shape::Chat(Format::Gemini);
    let admitted =
        match admission::admit(rt, principal, model, shape, Some(admission::Body::unchecked(counted)), true)
            .await
        {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
    ctx.alias = admitted.alias;
    ctx.admission = Some(admitted);
    let family = crate::limits::tokens::family_of_alias(&rt.snap, ctx.alias, TokenizerFamily::Gemini);
    Ok(Ok(count_request_tokens(Format::Gemini, counted, family).max(1)))
}

/// The generation request a `countTokens` body counts: its `generateContentRequest` when it
/// sends one (`Some`, re-encoded), else the body itself (`None`: `{"contents": [...]}`).
pub fn counted_request(body: &[u8]) -> Result<Option<Vec<u8>>, GatewayError> {
    let invalid = |e: serde_json::Error| GatewayError::InvalidRequest(format!("invalid JSON body: {e}"));
    #[derive(serde::Deserialize)]
    struct Wrapped<'a> {
        #[serde(rename = "generateContentRequest", borrow)]
        inner: Option<&'a serde_json::value::RawValue>,
    }
    let w: Wrapped = serde_json::from_slice(body).map_err(invalid)?;
    Ok(w.inner.map(|r| r.get().as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_entry_names_the_alias_and_its_methods() {
        let v = model_value("fast");
        assert_eq!(v["name"], "models/fast");
        assert_eq!(v["displayName"], "fast");
        let methods: Vec<&str> =
            v["supportedGenerationMethods"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
        assert_eq!(methods, METHODS);
    }

    #[test]
    fn count_tokens_reads_contents_or_the_wrapped_request() {
        assert_eq!(counted_request(br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#).unwrap(), None);
        let wrapped =
            br#"{"generateContentRequest":{"model":"models/x","contents":[{"parts":[{"text":"hi"}]}]}}"#;
        let inner = counted_request(wrapped).unwrap().unwrap();
        let v: Value = serde_json::from_slice(&inner).unwrap();
        assert_eq!(v["contents"][0]["parts"][0]["text"], "hi");
        assert!(matches!(counted_request(b"{bad"), Err(GatewayError::InvalidRequest(_))));
    }
}
