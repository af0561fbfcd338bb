//! `POST /v1/audio/transcriptions`: a multipart upload streamed to the upstream, never held whole.
//! The body is read only as far as the `model` part (SDKs send form fields before the file), the
//! target is chosen, `model` is rewritten in that prefix, and the rest of the upload is forwarded
//! chunk by chunk. Only a failure to connect can move to another target: once upload bytes have
//! been sent they cannot be replayed.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::chat::{self, Inbound};
use super::ctx::RequestCtx;
use super::respond::{self, GatewayError};
use super::upstream::{self, AttemptError};
use super::Gateway;
use crate::formats::{ErrorKind, Format};
use crate::providers::{self, MediaOp, Operation};

const OP: MediaOp = MediaOp::AudioTranscriptions;

pub async fn transcribe(gw: &Gateway, s: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<()> {
    let format = Format::OpenAiChat;
    let snap = gw.store.load();
    ctx.snap = Some(snap.clone());
    let Some(key) = chat::authenticate(s, ctx, &snap, format).await? else { return Ok(()) };
    let max = snap.limits.max_body_bytes;
    let content_type =
        s.req_header().headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let Some(boundary) = boundary_of(&content_type) else {
        let e = GatewayError::bad_request("expected a multipart/form-data body with a boundary");
        return respond::error(s, ctx, format, e).await;
    };
    let declared = s
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        GatewayError::new(
            413,
            ErrorKind::RequestTooLarge,
            format!("request body is larger than limits.max_body_bytes ({max} bytes)"),
        )
    };
    if declared.is_some_and(|n| n > max) {
        chat::drain(s).await;
        return respond::error(s, ctx, format, too_large()).await;
    }
    chat::answer_expect_continue(s).await?;

    // Read up to the end of the `model` part.
    let mut prefix = BytesMut::with_capacity(16 * 1024);
    let mut done = false;
    let field = loop {
        if let Some(f) = field_value(&prefix, &boundary, "model") {
            break Some(f);
        }
        if done {
            break None;
        }
        match s.read_request_body().await? {
            Some(c) => {
                if prefix.len() + c.len() > max {
                    return respond::error(s, ctx, format, too_large()).await;
                }
                prefix.extend_from_slice(&c);
            }
            None => done = true,
        }
    };
    let Some((vs, ve)) = field else {
        return respond::error(s, ctx, format, GatewayError::bad_request("`model` is required")).await;
    };
    let model = String::from_utf8_lossy(&prefix[vs..ve]).trim().to_string();
    let Some((alias_idx, _)) = snap.alias(&model) else {
        let e = GatewayError::new(
            404,
            ErrorKind::NotFound,
            format!("model {model:?} does not exist (no such alias)"),
        );
        return respond::error(s, ctx, format, e).await;
    };
    ctx.alias = Some(alias_idx);
    if !key.allows(alias_idx) {
        let e = GatewayError::new(
            403,
            ErrorKind::PermissionDenied,
            format!("key {:?} may not use model {model:?}", key.id),
        );
        return respond::error(s, ctx, format, e).await;
    }

    let mut plan = gw.routing.plan(&snap, alias_idx);
    let mut last = GatewayError::new(502, ErrorKind::UpstreamError, "no target serves audio transcriptions");
    while let Some(step) = plan.next().await {
        let alias = &snap.aliases[step.alias];
        let target = &alias.targets[step.target];
        let provider = &snap.providers[target.provider];
        if !providers::supports_media(provider.kind, OP) {
            ctx.attempt_log.push(format!("provider {} does not serve audio transcriptions", provider.name));
            continue;
        }
        ctx.attempts += 1;
        ctx.provider = Some(provider.name.clone());
        ctx.model = Some(target.model.clone());
        let started = Instant::now();
        let mut pending = match upstream::open(&gw.connector, &gw.resolver, provider, &snap.limits).await {
            Ok(p) => p,
            Err(e) => {
                ctx.attempt_log.push(format!("{}/{}: {e}", provider.name, target.model));
                plan.failed(&step, &e);
                last = GatewayError::new(502, ErrorKind::UpstreamError, e.to_string());
                continue;
            }
        };
        // From here on the upload is consumed: no other target can be tried.
        let req = match providers::build_request(
            provider,
            Operation::Media(OP),
            &target.model,
            Bytes::new(),
            &s.req_header().headers,
        ) {
            Ok(r) => r,
            Err(e) => {
                return respond::error(
                    s,
                    ctx,
                    format,
                    GatewayError::new(502, ErrorKind::UpstreamError, e.to_string()),
                )
                .await
            }
        };
        let mut head = BytesMut::with_capacity(prefix.len() + target.model.len());
        head.extend_from_slice(&prefix[..vs]);
        head.extend_from_slice(target.model.as_bytes());
        head.extend_from_slice(&prefix[ve..]);
        let length = declared.map(|n| n - (ve - vs) + target.model.len());
        let sent: Result<(), AttemptError> = async {
            pending.write_header(&req, &content_type, length).await?;
            pending.write(head.freeze()).await?;
            let mut total = prefix.len();
            if !done {
                while let Some(chunk) = s.read_request_body().await.map_err(|e| AttemptError::Io {
                    provider: "client".into(),
                    detail: format!("reading the upload: {e}"),
                })? {
                    total += chunk.len();
                    if total > max {
                        return Err(AttemptError::Io {
                            provider: "client".into(),
                            detail: "upload over max_body_bytes".into(),
                        });
                    }
                    pending.write(chunk).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = sent {
            let status = if e.to_string().contains("max_body_bytes") { 413 } else { 502 };
            let kind = if status == 413 { ErrorKind::RequestTooLarge } else { ErrorKind::UpstreamError };
            return respond::error(s, ctx, format, GatewayError::new(status, kind, e.to_string())).await;
        }
        let mut up = match pending.finish().await {
            Ok(up) => up,
            Err(e) => {
                plan.failed(&step, &e);
                let status = if matches!(e, AttemptError::Timeout { .. }) { 504 } else { 502 };
                let kind = if status == 504 { ErrorKind::UpstreamTimeout } else { ErrorKind::UpstreamError };
                return respond::error(s, ctx, format, GatewayError::new(status, kind, e.to_string())).await;
            }
        };
        let status = up.status();
        let inb = Inbound {
            op: Operation::Media(OP),
            peek: Default::default(),
            format,
            body: Bytes::new(),
            model,
            stream: false,
            include_usage: false,
            gemini_sse: true,
        };
        if (200..300).contains(&status) {
            plan.succeeded(&step, started.elapsed());
            let names = chat::Names { provider: &provider.name, model: &target.model, alias: &alias.name };
            return chat::respond_upstream(gw, s, ctx, &inb, up, format, names, &[]).await;
        }
        let body = up.read_to_end(64 * 1024).await.unwrap_or_default();
        up.release(&gw.connector).await;
        ctx.status = status;
        ctx.error = Some(format!("upstream {status}"));
        let extra =
            [("x-gateway-attempts", ctx.attempts.to_string()), ("x-gateway-provider", provider.name.clone())];
        return respond::json(s, ctx, status, body.to_vec(), &extra).await;
    }
    let e = GatewayError {
        message: format!("all targets failed after {} attempt(s); last: {}", ctx.attempts, last.message),
        ..last
    };
    respond::error(s, ctx, format, e).await
}

/// The boundary of a `multipart/form-data` content type.
fn boundary_of(content_type: &str) -> Option<String> {
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return None;
    }
    let b = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?;
    let b = b.trim_matches('"');
    (!b.is_empty()).then(|| b.to_string())
}

/// Byte range of the value of form field `name` in `buf`, once that part is complete.
fn field_value(buf: &[u8], boundary: &str, name: &str) -> Option<(usize, usize)> {
    let delim = format!("--{boundary}");
    let want = format!("name=\"{name}\"");
    let finder = memchr::memmem::Finder::new(delim.as_bytes());
    let mut at = finder.find(buf)?;
    loop {
        let part = at + delim.len();
        let headers_end = memchr::memmem::find(&buf[part..], b"\r\n\r\n")? + part;
        let next = finder.find(&buf[headers_end..]).map(|p| p + headers_end);
        let headers = &buf[part..headers_end];
        let is_it = headers.split(|&b| b == b'\n').any(|l| {
            l.to_ascii_lowercase().starts_with(b"content-disposition")
                && memchr::memmem::find(l, want.as_bytes()).is_some()
        });
        match next {
            Some(n) if is_it => {
                // value ends before "\r\n--boundary"
                return Some((headers_end + 4, n.saturating_sub(2).max(headers_end + 4)));
            }
            Some(n) => at = n,
            None => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-fast\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF....\r\n--XyZ--\r\n";

    #[test]
    fn the_boundary_is_read_from_the_content_type() {
        assert_eq!(boundary_of("multipart/form-data; boundary=XyZ").as_deref(), Some("XyZ"));
        assert_eq!(boundary_of("multipart/form-data; boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary_of("application/json"), None);
    }

    #[test]
    fn the_model_field_is_found_once_its_part_is_complete() {
        let (s, e) = field_value(BODY, "XyZ", "model").unwrap();
        assert_eq!(&BODY[s..e], b"whisper-fast");
        // Not yet complete: the next delimiter has not arrived.
        assert_eq!(field_value(&BODY[..60], "XyZ", "model"), None);
        assert_eq!(field_value(BODY, "XyZ", "language"), None);
    }
}
