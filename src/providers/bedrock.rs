//! AWS Bedrock: Converse / ConverseStream (`/model/{id}/converse[-stream]`, the model id
//! percent-encoded as AWS expects), signed with SigV4 over the exact bytes sent. Credentials
//! come from the config or the standard AWS environment variables; the region is in the host.

use std::time::SystemTime;

use super::sigv4::{self, AwsCredentials, SigningInput};
use super::{AuthScheme, ModelIn, ProviderSpec, Responses};
use super::{MediaOp, Operation, Route};
use crate::config::ProviderKind;
use crate::config::{Endpoint, Provider};
use crate::formats::Format;

pub const SPEC: ProviderSpec = ProviderSpec {
    kind: ProviderKind::Bedrock,
    chat_format: Format::Bedrock,
    default_base_url: Some("https://bedrock-runtime.{region}.amazonaws.com"),
    auth: AuthScheme::SigV4,
    api_key_required: false,
    fixed_headers: &[],
    // Embeddings through InvokeModel (Titan, Cohere bodies from formats::embeddings).
    media: &[MediaOp::Embeddings],
    media_translated: true,
    model_in: ModelIn::Path,
    legacy_max_tokens: false,
    responses: Responses::Never,
    jobs: &[],
};

pub fn request(
    p: &Provider,
    ep: &Endpoint,
    op: Operation,
    model: &str,
    body: &[u8],
) -> Result<Route, String> {
    let stream = matches!(op, Operation::Chat { stream: true });
    let path = match op {
        Operation::Chat { .. } => format!("{}{}", ep.path_prefix, sigv4::converse_path(model, stream)),
        // Embeddings go through InvokeModel (Titan, Cohere bodies from formats::embeddings).
        Operation::Media(MediaOp::Embeddings) => {
            let converse = sigv4::converse_path(model, false);
            format!("{}{}/invoke", ep.path_prefix, converse.trim_end_matches("/converse"))
        }
        Operation::Media(_) => return Err("bedrock serves chat and embeddings only".into()),
    };
    let creds = credentials(p)?;
    let region = p.region.as_deref().ok_or("bedrock needs `region`")?;
    let scheme = if ep.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}{path}", ep.authority);
    let input =
        SigningInput { method: "POST", url: &url, headers: &[("content-type", "application/json")], body };
    let signed = sigv4::sign(&input, &creds, region, sigv4::BEDROCK_SERVICE, SystemTime::now())
        .map_err(|e| e.to_string())?;
    let headers = signed
        .into_iter()
        .map(|(k, v)| {
            let name: &'static str = match k.as_str() {
                "authorization" => "authorization",
                "x-amz-date" => "x-amz-date",
                "x-amz-content-sha256" => "x-amz-content-sha256",
                "x-amz-security-token" => "x-amz-security-token",
                _ => "x-amz-unknown",
            };
            (name, v)
        })
        .chain(stream.then(|| ("accept", "application/vnd.amazon.eventstream".to_string())))
        .collect();
    Ok((path, headers))
}

fn credentials(p: &Provider) -> Result<AwsCredentials, String> {
    let pick = |configured: Option<&str>, env: &str| -> Option<String> {
        configured.map(str::to_string).or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
    };
    let access_key_id = pick(p.aws_access_key_id.as_ref().map(|s| s.expose()), "AWS_ACCESS_KEY_ID")
        .ok_or("no AWS credentials: set aws_access_key_id / aws_secret_access_key or AWS_ACCESS_KEY_ID")?;
    let secret_access_key =
        pick(p.aws_secret_access_key.as_ref().map(|s| s.expose()), "AWS_SECRET_ACCESS_KEY")
            .ok_or("no AWS secret key: set aws_secret_access_key or AWS_SECRET_ACCESS_KEY")?;
    let session_token = pick(p.aws_session_token.as_ref().map(|s| s.expose()), "AWS_SESSION_TOKEN");
    Ok(AwsCredentials { access_key_id, secret_access_key, session_token })
}
