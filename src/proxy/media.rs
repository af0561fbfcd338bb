//! `POST /v1/audio/transcriptions`, `/v1/images/edits`, `/v1/images/variations`: a multipart
//! upload streamed to the upstream, never held whole.
//! The body is read only as far as the `model` part (SDKs send form fields before the file), the
//! target is chosen, `model` is rewritten in that prefix, and the rest of the upload is forwarded
//! chunk by chunk. Only a failure to connect can move to another target: once upload bytes have
//! been sent they cannot be replayed.

use std::time::Instant;

use super::Session;
use bytes::{Bytes, BytesMut};

use super::chat::{self, Inbound};
use std::time::SystemTime;

use super::ctx::RequestCtx;
use super::plan::Plan;
use super::respond;
use super::upstream::{self, AttemptError};
use super::Gateway;
use crate::admission::{self, Shape};
use crate::error::GatewayError;
use crate::formats::multipart::{boundary_of, model_field as field_value, ModelParts, MultipartError};
use crate::formats::Format;
use crate::providers::{self, MediaOp, Operation};

pub async fn upload_form(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    op: MediaOp,
) -> pingora::Result<()> {
    let format = Format::OpenAiChat;
    match admit(s, ctx, op).await? {
        Ok(form) => upload(gw, s, ctx, form, op).await,
        Err(e) => respond::error(s, ctx, format, e).await,
    }
}

/// An admitted upload: what was read of it so far and the `model` it names.
struct Form {
    prefix: BytesMut,
    model: String,
    /// The whole body is in `prefix`.
    done: bool,
    /// Watches the rest of the body for a second `model` part.
    parts: ModelParts,
}

/// Admission for an upload: principal, the `model` part (read from the body's prefix), alias and
/// allow-list. Answers the prefix read so far and the model. A form with two `model` parts is
/// refused: the provider could read the other one.
async fn admit(
    s: &mut Session,
    ctx: &mut RequestCtx,
    op: MediaOp,
) -> pingora::Result<Result<Form, GatewayError>> {
    let Some(rt) = ctx.rt.clone() else { return Ok(Err(GatewayError::Internal("no runtime".into()))) };
    let req = s.req_header();
    let principal = match admission::authenticate(&rt, &req.headers, req.uri.query(), SystemTime::now()) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    ctx.principal = Some(principal.clone());
    let max = rt.snap.limits.max_body_bytes;
    let content_type =
        s.req_header().headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let Some(boundary) = boundary_of(&content_type) else {
        return Ok(Err(GatewayError::InvalidRequest(
            "expected a multipart/form-data body with a boundary".into(),
        )));
    };
    let declared = chat::declared_length(s);
    let too_large = || GatewayError::BodyTooLarge { limit: "limits.max_body_bytes", max: max as u64 };
    if declared.is_some_and(|n| n > max) {
        chat::drain(s).await;
        return Ok(Err(too_large()));
    }
    chat::answer_expect_continue(s).await?;

    // Read up to the end of the `model` part.
    let mut prefix = BytesMut::with_capacity(16 * 1024);
    let mut done = false;
    let field = loop {
        if let Some(f) = field_value(&prefix, &boundary) {
            break Some(f);
        }
        if done {
            break None;
        }
        let read = match s.read_request_body().await {
            Ok(read) => read,
            Err(e) => return Ok(Err(chat::bad_body(s, &e))),
        };
        match read {
            Some(c) => {
                if prefix.len() + c.len() > max {
                    return Ok(Err(too_large()));
                }
                prefix.extend_from_slice(&c);
            }
            None => done = true,
        }
    };
    let Some((vs, ve)) = field else {
        return Ok(Err(GatewayError::MissingField { field: "model" }));
    };
    let mut parts = ModelParts::new(&boundary);
    if let Err(e) = parts.feed(&prefix) {
        if !done {
            chat::drain(s).await;
        }
        return Ok(Err(e.into()));
    }
    let model = String::from_utf8_lossy(&prefix[vs..ve]).trim().to_string();
    match admission::admit(&rt, principal, &model, Shape::Media(op), None, false).await {
        Ok(a) => {
            ctx.alias = a.alias;
            ctx.admission = Some(a);
            Ok(Ok(Form { prefix, model, done, parts }))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// Stream the upload to the first target that serves `op`.
async fn upload(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    form: Form,
    op: MediaOp,
) -> pingora::Result<()> {
    let Form { prefix, model, done, mut parts } = form;
    let format = Format::OpenAiChat;
    let Some(rt) = ctx.rt.clone() else { return Ok(()) };
    let snap = &rt.snap;
    let max = snap.limits.max_body_bytes;
    let alias_idx = ctx.alias.unwrap_or_default();
    let content_type =
        s.req_header().headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let boundary = boundary_of(&content_type).unwrap_or_default();
    let (vs, ve) = field_value(&prefix, &boundary).unwrap_or((0, 0));
    let declared = chat::declared_length(s);
    let mut plan = Plan::new(&rt, alias_idx);
    while let Some(step) = plan.next().await {
        let alias = &snap.aliases[step.alias];
        let target = &alias.targets[step.target];
        let provider = &snap.providers[target.provider];
        if !providers::supports_media(provider.kind, op) {
            ctx.attempt_log.push(format!("provider {} does not serve {}", provider.name, op.name()));
            plan.skipped(&step, format!("skipped: {} does not serve {}", provider.kind.name(), op.name()));
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
                ctx.attempt_done(provider, &target.model, started, 0, Some(e.kind()));
                plan.failed(&step, &e);
                continue;
            }
        };
        // From here on the upload is consumed: no other target can be tried.
        let req = match providers::build_request(
            provider,
            Operation::Media(op),
            &target.model,
            Bytes::new(),
            &s.req_header().headers,
        ) {
            Ok(r) => r,
            Err(e) => return respond::error(s, ctx, format, GatewayError::Upstream(e.to_string())).await,
        };
        let mut head = BytesMut::with_capacity(prefix.len() + target.model.len());
        head.extend_from_slice(&prefix[..vs]);
        head.extend_from_slice(target.model.as_bytes());
        head.extend_from_slice(&prefix[ve..]);
        let length = declared.map(|n| n - (ve - vs) + target.model.len());
        let sent: Result<(), Sent> = async {
            pending.write_header(&req, &content_type, length).map_err(Sent::Failed)?;
            pending.write(&head).await.map_err(Sent::Failed)?;
            let mut total = prefix.len();
            if !done {
                loop {
                    let chunk = match s.read_request_body().await {
                        Ok(Some(chunk)) => chunk,
                        Ok(None) => break,
                        // The client's upload broke (bad chunked framing, cut): its 400.
                        Err(e) => return Err(Sent::BadBody(chat::bad_body(s, &e))),
                    };
                    total += chunk.len();
                    if total > max {
                        return Err(Sent::TooLarge);
                    }
                    // Checked before the chunk is forwarded: the upstream request is then
                    // abandoned unfinished, so the provider never acts on it.
                    parts.feed(&chunk).map_err(Sent::Refused)?;
                    pending.write(&chunk).await.map_err(Sent::Failed)?;
                }
            }
            Ok(())
        }
        .await;
        match sent {
            Ok(()) => {}
            Err(Sent::TooLarge) => {
                drop(pending);
                let e = GatewayError::BodyTooLarge { limit: "limits.max_body_bytes", max: max as u64 };
                return respond::error(s, ctx, format, e).await;
            }
            Err(Sent::BadBody(e)) => {
                drop(pending);
                return respond::error(s, ctx, format, e).await;
            }
            Err(Sent::Refused(e)) => {
                // Close the upstream connection mid-body before answering.
                drop(pending);
                chat::drain(s).await;
                return respond::error(s, ctx, format, e.into()).await;
            }
            Err(Sent::Failed(e)) => {
                return respond::error(s, ctx, format, GatewayError::Upstream(e.to_string())).await
            }
        }
        let mut up = match pending.finish().await {
            Ok(up) => up,
            Err(e) => {
                ctx.attempt_done(provider, &target.model, started, 0, Some(e.kind()));
                plan.failed(&step, &e);
                let (tried, timed_out) = plan.into_report();
                let e = GatewayError::AllTargetsFailed { attempts: ctx.attempts, tried, timed_out };
                return respond::error(s, ctx, format, e).await;
            }
        };
        let status = up.status();
        let inb = Inbound {
            op: Operation::Media(op),
            peek: Default::default(),
            format,
            body: Bytes::new(),
            model,
            stream: false,
            include_usage: false,
            gemini_sse: true,
            gemini_embed: None,
            turn: None,
            checked: false,
        };
        if (200..300).contains(&status) {
            match chat::check_answer(&mut up, inb.op, format, false).await {
                Ok(answer) => {
                    plan.succeeded(&step, started.elapsed());
                    ctx.served = Some((step.alias, step.target));
                    ctx.attempt_done(provider, &target.model, started, status, None);
                    let names =
                        chat::Names { provider: &provider.name, model: &target.model, alias: &alias.name };
                    return chat::respond_upstream(gw, s, ctx, &inb, up, answer, format, names, &[]).await;
                }
                // The upload cannot be sent again: a bad answer ends the request.
                Err(chat::Refused::Failed(e)) => {
                    ctx.attempt_log.push(format!("{}/{}: {e}", provider.name, target.model));
                    plan.failed(&step, &e);
                    let (tried, timed_out) = plan.into_report();
                    let e = GatewayError::AllTargetsFailed { attempts: ctx.attempts, tried, timed_out };
                    return respond::error(s, ctx, format, e).await;
                }
                Err(chat::Refused::Client(class)) => {
                    let status = crate::formats::status_for(class.kind);
                    ctx.error = Some(format!("upstream {status}"));
                    let body = crate::formats::encode_error(format, class.kind, &class.message);
                    let extra = [("x-gateway-provider", provider.name.clone())];
                    return respond::json(s, ctx, status, body, &extra).await;
                }
            }
        }
        if (300..400).contains(&status) {
            let e = GatewayError::Upstream(format!(
                "{}/{} answered HTTP {status} (a redirect), which the gateway does not follow",
                provider.name, target.model
            ));
            return respond::error(s, ctx, format, e).await;
        }
        let body = up.read_to_end(64 * 1024).await.unwrap_or_default();
        up.release();
        ctx.status = status;
        ctx.error = Some(format!("upstream {status}"));
        let extra = [("x-gateway-provider", provider.name.clone())];
        return respond::json(s, ctx, status, body.to_vec(), &extra).await;
    }
    let (tried, timed_out) = plan.into_report();
    let e = GatewayError::AllTargetsFailed { attempts: ctx.attempts, tried, timed_out };
    respond::error(s, ctx, format, e).await
}

/// Why forwarding the upload stopped.
enum Sent {
    /// The client sent more than `limits.max_body_bytes`.
    TooLarge,
    /// The form is refused (a second `model` part).
    Refused(MultipartError),
    /// The client's upload could not be read.
    BadBody(GatewayError),
    Failed(AttemptError),
}

impl From<MultipartError> for GatewayError {
    fn from(e: MultipartError) -> GatewayError {
        match e {
            MultipartError::DuplicateModel => GatewayError::InvalidField {
                field: "model".into(),
                problem: "appears in more than one part of the form".into(),
            },
            MultipartError::PartHeadersTooLong => GatewayError::InvalidRequest(e.to_string()),
        }
    }
}
