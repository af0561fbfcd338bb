//! OpenAI embeddings to providers that speak another format (Gemini `batchEmbedContents`,
//! Bedrock InvokeModel for Titan and Cohere), translated by `formats::embeddings`. The answer
//! comes back as an in-process `Upstream` in OpenAI's shape, so the proxy's retry and response
//! paths treat it like any other attempt.

use bytes::Bytes;
use http::HeaderMap;

use super::upstream::{self, AttemptError, Upstream};
use super::Gateway;
use crate::config::{Limits, Provider, ProviderKind};
use crate::formats::embeddings;
use crate::formats::{self, ErrorKind, Format};
use crate::providers::{self, MediaOp, Operation};

const OP: Operation = Operation::Media(MediaOp::Embeddings);

/// One attempt: translate, call the upstream (Titan: once per input), translate back.
pub async fn send(
    gw: &Gateway,
    provider: &Provider,
    model: &str,
    body: &[u8],
    limits: &Limits,
    client: &HeaderMap,
) -> Result<Upstream, AttemptError> {
    let req = match embeddings::decode_openai_request(body) {
        Ok(r) => r,
        Err(e) => return Ok(client_error(&e.to_string())),
    };
    let bodies = match provider.kind {
        ProviderKind::Gemini => embeddings::encode_gemini_request(&req, model).map(|b| vec![b]),
        _ => embeddings::encode_bedrock_requests(&req, model),
    };
    let bodies = match bodies {
        Ok(b) => b,
        Err(e) => return Ok(client_error(&e.to_string())),
    };
    let mut answers: Vec<Bytes> = Vec::with_capacity(bodies.len());
    for b in bodies {
        let up_req = providers::build_request(provider, OP, model, Bytes::from(b), client)
            .map_err(|e| AttemptError::Connect { provider: provider.name.clone(), detail: e.to_string() })?;
        let mut up =
            upstream::send(&gw.connector, &gw.resolver, provider, model, OP, &up_req, limits).await?;
        let status = up.status();
        let answer = up.read_to_end(upstream::MAX_UPSTREAM_BODY).await?;
        up.release();
        if !(200..300).contains(&status) {
            // The upstream's own error, in OpenAI's shape, for the usual classification.
            let from = providers::chat_format(provider.kind);
            let body = formats::translate_error(from, Format::OpenAiChat, status, &answer);
            return Ok(Upstream::ready(status, "application/json", body));
        }
        answers.push(answer);
    }
    let decoded = match provider.kind {
        ProviderKind::Gemini => embeddings::decode_gemini_response(&answers[0], &req),
        _ => {
            let refs: Vec<&[u8]> = answers.iter().map(|a| a.as_ref()).collect();
            embeddings::decode_bedrock_responses(&refs, model, &req)
        }
    };
    match decoded {
        Ok(resp) => Ok(Upstream::ready(
            200,
            "application/json",
            embeddings::encode_openai_response(&resp, model, req.base64),
        )),
        Err(e) => Err(AttemptError::Io {
            provider: provider.name.clone(),
            detail: format!("cannot translate the embeddings answer: {e}"),
        }),
    }
}

fn client_error(message: &str) -> Upstream {
    let body = formats::encode_error(Format::OpenAiChat, ErrorKind::InvalidRequest, message);
    Upstream::ready(400, "application/json", body)
}
