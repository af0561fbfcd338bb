//! The chat flow for every inbound format: authenticate, read the whole body (bounded), route
//! by `model`, translate, try targets and fallbacks, then stream the answer back translated.
//! Calls into `auth`, `formats`, `providers` and `routing`; holds no policy of its own.

use std::pin::pin;
use std::sync::Arc;
use std::time::SystemTime;

use super::Session;
use bytes::{Bytes, BytesMut};

use super::ctx::RequestCtx;
use super::endpoint::GeminiCall;
use super::head::{self, Head};
use super::plan::Plan;
use super::respond;
use super::responses::Refusal;
use super::upstream::{self, AttemptError, Upstream};
use super::Gateway;
use crate::admission::{self, Shape};
use crate::error::GatewayError;
use crate::formats::{self, passthrough, validate, ErrorKind, Format, RequestOptions, ResponseOptions};
use crate::providers::{self, MediaOp, Operation};
use crate::responses::StreamObserver;
use crate::routing;
use crate::runtime::Runtime;

/// What the client sent, once read and checked.
pub struct Inbound {
    pub op: Operation,
    /// What `peek` read from the body (parsed once per request).
    pub peek: passthrough::Peek,
    pub format: Format,
    pub body: Bytes,
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub gemini_sse: bool,
    /// A Gemini `embedContent` (`Some(false)`) or `batchEmbedContents` (`Some(true)`) call:
    /// `body` is its OpenAI embeddings rewrite, the answer and errors go back in Gemini's shape.
    /// Boxed, as `turn`: rare, and every request moves its `Inbound` several times.
    pub gemini_embed: Option<Box<(bool, formats::embeddings::EmbeddingRequest)>>,
    /// Responses requests: what the stored-response stores need (see `responses::prepare`).
    pub turn: Option<Box<super::responses::TurnCtx>>,
    /// `body` is known to pass admission's shape checks, read in the pass that peeked it.
    pub checked: bool,
}

impl Inbound {
    /// The format the client reads answers and errors in.
    pub fn client_format(&self) -> Format {
        if self.gemini_embed.is_some() {
            Format::Gemini
        } else {
            self.format
        }
    }
}

/// Read the whole request body, refusing more than `limits.max_body_bytes` (413), or more than
/// the process may hold at once (`limits.max_body_memory_bytes`, 503: the bytes are reserved
/// before they are buffered, and the reservation lives in `ctx` until the request ends).
/// Answers `Expect: 100-continue` first so clients don't stall waiting for it.
pub async fn read_body(
    s: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Runtime,
) -> pingora::Result<Result<Bytes, GatewayError>> {
    let (max, cap) = (rt.snap.limits.max_body_bytes, rt.snap.limits.max_body_memory_bytes);
    let too_large = || GatewayError::BodyTooLarge { limit: "limits.max_body_bytes", max: max as u64 };
    let full = |hold: &crate::limits::body_memory::BodyHold| GatewayError::BodyMemoryFull {
        held: (rt.body_memory.held().saturating_sub(hold.bytes())) as u64,
        cap: cap as u64,
    };
    let declared = declared_length(s);
    if declared.is_some_and(|n| n > max) {
        if !expects_continue(s) {
            // The client is sending the body anyway: read and drop it (bounded) so it sees
            // the 413 instead of a reset connection.
            drain(s).await;
        }
        return Ok(Err(too_large()));
    }
    let hold = ctx.body_hold.insert(rt.body_memory.hold());
    let initial = declared.unwrap_or(16 * 1024).min(max);
    if !hold.grow(initial, cap) {
        let e = full(hold);
        if !expects_continue(s) {
            drain(s).await;
        }
        return Ok(Err(e));
    }
    answer_expect_continue(s).await?;
    let mut buf = BytesMut::new();
    loop {
        let chunk = match s.read_request_body().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Ok(Err(bad_body(s, &e))),
        };
        if buf.len() + chunk.len() > max {
            drain(s).await;
            return Ok(Err(too_large()));
        }
        // A body without a declared length grows its reservation as it arrives.
        let past = (buf.len() + chunk.len()).saturating_sub(hold.bytes());
        if past > 0 && !hold.grow(past, cap) {
            let e = full(hold);
            drain(s).await;
            return Ok(Err(e));
        }
        // The whole body in its first chunk (the usual case: a declared length, read with the
        // head): that chunk is the body, with no copy and no read to learn that it ended.
        if buf.is_empty() && s.is_body_done() {
            return Ok(Ok(chunk));
        }
        if buf.is_empty() {
            buf.reserve(initial.max(chunk.len()));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Ok(buf.freeze()))
}

/// The first admission steps every JSON endpoint shares: the caller (kept in `ctx` even when a
/// later step refuses, so the refusal is accounted to it), then the whole body (bounded by
/// `limits.max_body_bytes`; kept for the access line under `log.bodies`).
pub async fn caller_and_body(
    s: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
) -> pingora::Result<Result<(admission::Principal, Bytes), GatewayError>> {
    let req = s.req_header();
    let principal = match admission::authenticate(rt, &req.headers, req.uri.query(), SystemTime::now()) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    ctx.principal = Some(principal.clone());
    let body = match read_body(s, ctx, rt).await? {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    if rt.snap.log_bodies.is_some() {
        ctx.request_body = Some(body.clone());
    }
    Ok(Ok((principal, body)))
}

/// Copy the rest of an upstream body to the client as it comes (the header is written).
pub async fn pump(s: &mut Session, ctx: &mut RequestCtx, mut up: Upstream) -> pingora::Result<()> {
    loop {
        match up.next_chunk().await {
            Ok(Some(chunk)) => s.write_response_body(chunk, false).await?,
            Ok(None) => {
                up.release();
                return s.write_response_body(Bytes::new(), true).await;
            }
            Err(e) => {
                ctx.error = Some(e.to_string());
                return Err(pingora::Error::explain(pingora::ErrorType::ReadError, e.to_string()));
            }
        }
    }
}

/// A request body that cannot be read (bad chunked framing, a cut or stalled upload) is the
/// client's 400 in its own shape, not an empty 500; the connection is not reused after it.
pub fn bad_body(s: &mut Session, e: &pingora::Error) -> GatewayError {
    s.set_keepalive(None);
    let why = match &e.context {
        Some(c) => format!("{}: {}", e.etype.as_str(), c.as_str()),
        None => e.etype.as_str().to_string(),
    };
    GatewayError::InvalidRequest(format!("the request body could not be read ({why})"))
}

/// The request's `Content-Length`, when it has a valid one.
pub fn declared_length(s: &Session) -> Option<usize> {
    s.req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// How long a refused body may keep arriving before the connection is closed.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Read and discard the rest of a refused request body, for at most `DRAIN_TIMEOUT`.
pub async fn drain(s: &mut Session) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, s.drain_request_body()).await;
}

fn expects_continue(s: &Session) -> bool {
    s.req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Answer `Expect: 100-continue` so clients don't stall (Pingora never sends the 100 itself).
pub async fn answer_expect_continue(s: &mut Session) -> pingora::Result<()> {
    if expects_continue(s) {
        s.write_continue_response().await?;
    }
    Ok(())
}

/// Serve one chat (or JSON media) request end to end: admission, then the attempts.
pub async fn serve(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    format: Format,
    gemini: Option<GeminiCall>,
    media: Option<MediaOp>,
) -> pingora::Result<()> {
    let Some(rt) = ctx.rt.clone() else { return Ok(()) };
    // Inline: admission's state and the answer's are never alive at once, so it adds no
    // memory to an open stream (the error answers, rarer, are boxed).
    match admit(gw, s, ctx, &rt, format, gemini, media).await? {
        Ok(inbound) => {
            let alias = ctx.alias.unwrap_or_default();
            proxy(gw, s, ctx, &rt, &inbound, alias).await
        }
        Err(Refusal::Gateway(e)) => Box::pin(respond::error(s, ctx, format, e)).await,
        Err(r) => Box::pin(super::responses::refuse(s, ctx, r)).await,
    }
}

/// The admission step for a chat or JSON media request: principal, body (bounded), alias,
/// allow-list and required fields, before anything is sent upstream. A Responses request's
/// `previous_response_id` is resolved first (`responses::prepare`), so the limits count the
/// history the upstream will see.
async fn admit(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
    format: Format,
    gemini: Option<GeminiCall>,
    media: Option<MediaOp>,
) -> pingora::Result<Result<Inbound, Refusal>> {
    let (principal, body) = match caller_and_body(s, ctx, rt).await? {
        Ok(pb) => pb,
        Err(e) => return Ok(Err(e.into())),
    };
    let model_in_path = gemini.is_some();
    let mut inbound = match inbound(format, body, gemini) {
        Ok(i) => i,
        Err(e) => return Ok(Err(e.into())),
    };
    if let Some(m) = media {
        inbound.op = Operation::Media(m);
        inbound.stream = false;
    }
    ctx.stream = inbound.stream;
    if format == Format::OpenAiResponses && media.is_none() {
        // An alias that does not resolve is refused by `admission::admit` below.
        if let Ok(alias) = admission::resolve_alias(rt, &principal, &inbound.model) {
            if let Some(prev) = inbound.peek.previous_response_id.clone() {
                let owner = crate::responses::owner(&principal);
                super::responses::warm(gw, rt, &prev, &owner, SystemTime::now()).await;
            }
            match super::responses::prepare(gw, rt, &principal, &mut inbound, alias, SystemTime::now()) {
                Ok(turn) => inbound.turn = Some(Box::new(turn)),
                Err(r) => {
                    ctx.alias = Some(alias);
                    return Ok(Err(r));
                }
            }
        }
    }
    let shape = media.map(Shape::Media).unwrap_or(Shape::Chat(format));
    // A Gemini embedding call is checked as the OpenAI embeddings body it became.
    let model_in_path = model_in_path && inbound.gemini_embed.is_none();
    let admitted = match admission::admit(
        rt,
        principal,
        &inbound.model,
        shape,
        // The one-pass check was of the chat shape of the body's format.
        Some(admission::Body {
            bytes: &inbound.body,
            checked: inbound.checked && shape == Shape::Chat(inbound.format),
        }),
        model_in_path,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            if let Some(Ok(a)) =
                ctx.principal.as_ref().map(|p| admission::resolve_alias(rt, p, &inbound.model))
            {
                ctx.alias = Some(a);
            }
            return Ok(Err(e.into()));
        }
    };
    ctx.alias = admitted.alias;
    ctx.rate_headers = admitted.reservation.as_ref().map(|r| r.headers().pairs()).unwrap_or_default();
    ctx.admission = Some(admitted);
    Ok(Ok(inbound))
}

fn inbound(format: Format, body: Bytes, gemini: Option<GeminiCall>) -> Result<Inbound, GatewayError> {
    if let Some(GeminiCall { model, embed: Some(batch), .. }) = &gemini {
        // Routed as OpenAI embeddings (every target kind serves those), answered as Gemini.
        let req = formats::embeddings::gemini_client::decode_request(&body, *batch, model)
            .map_err(|e| GatewayError::InvalidRequest(e.to_string()))?;
        let body = Bytes::from(formats::embeddings::gemini_client::encode_openai_request(&req));
        let mut inb = inbound(Format::OpenAiChat, body, None)?;
        inb.gemini_embed = Some(Box::new((*batch, req)));
        return Ok(inb);
    }
    // The chat formats' shape checks are read in the same pass as the routing facts.
    let (peek, checked) = match (&gemini, format) {
        (None, Format::OpenAiChat | Format::Anthropic) => admission::peek_checked(format, &body),
        _ => passthrough::peek(&body).map(|p| (p, false)),
    }
    .map_err(|e| GatewayError::InvalidRequest(e.to_string()))?;
    if let Some(g) = gemini {
        // Gemini names the model in the path and says "stream" in the URL.
        return Ok(Inbound {
            op: Operation::Chat { stream: g.stream },
            peek,
            format,
            body,
            model: g.model,
            stream: g.stream,
            include_usage: false,
            gemini_sse: g.sse,
            gemini_embed: None,
            turn: None,
            checked,
        });
    }
    let model = match &peek.model {
        Some(m) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(GatewayError::InvalidField {
                field: "model".into(),
                problem: "must not be empty".into(),
            })
        }
        None => return Err(GatewayError::MissingField { field: "model" }),
    };
    Ok(Inbound {
        op: Operation::Chat { stream: peek.stream },
        format,
        body,
        model,
        stream: peek.stream,
        include_usage: peek.include_usage,
        gemini_sse: true,
        gemini_embed: None,
        peek,
        turn: None,
        checked,
    })
}

/// Try the alias's targets, then its fallbacks; answer with the first success. A target the
/// request cannot be sent to (translation, media support, provider config) is skipped for the
/// next one like any failure that is not the client's.
///
/// Memory and CPU: a future is as large as the largest state it can be in, for as long as it
/// lives, and this one lives as long as the answer streams; it is also copied whole when
/// boxed. So no step here holds a large future inline: connecting a new upstream connection
/// is boxed inside `upstream::open` (a pooled one needs no connect state), attempts are pinned
/// by the caller of `unless_client_gone` (not stored twice), and the rare error answers are
/// boxed. The steps of the common path stay inline, where they cost no allocation: each is
/// smaller than the streaming state, which they never overlap (README "Memory").
async fn proxy(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
    inb: &Inbound,
    alias_idx: usize,
) -> pingora::Result<()> {
    let snap = &rt.snap;
    // A follow-up to a response a provider stores goes to that target only.
    let mut plan = match inb.turn.as_ref().and_then(|t| t.pinned) {
        Some((alias, target)) => Plan::pinned(rt, alias, target),
        None => Plan::new(rt, alias_idx),
    };
    let mut dropped_params: Vec<&'static str>;
    while let Some(step) = plan.next().await {
        let alias = &snap.aliases[step.alias];
        let target = &alias.targets[step.target];
        let provider = &snap.providers[target.provider];
        let translated_media =
            matches!(inb.op, Operation::Media(_)) && providers::media_translated(provider.kind);
        let upstream_format = match inb.op {
            // Per target: a Responses request passes through to a target that speaks it.
            Operation::Chat { .. }
                if inb.format == Format::OpenAiResponses && providers::speaks_responses(provider) =>
            {
                Format::OpenAiResponses
            }
            Operation::Chat { .. } => providers::chat_format(provider.kind),
            Operation::Media(m) if providers::supports_media(provider.kind, m) => inb.format,
            Operation::Media(m) => {
                let msg = format!("skipped: {} does not serve {}", provider.kind.name(), m.name());
                ctx.attempt_log.push(format!("{}/{}: {msg}", provider.name, target.model));
                plan.skipped(&step, msg);
                continue;
            }
        };
        ctx.attempts += 1;
        ctx.provider = Some(provider.name.clone());
        ctx.model = Some(target.model.clone());
        let started = plan.step_started();
        let sent = if translated_media {
            dropped_params = Vec::new();
            // A copy, so the client connection can be watched while the attempt runs.
            let headers = s.req_header().headers.clone();
            let send =
                super::embeddings::send(gw, provider, &target.model, &inb.body, &snap.limits, &headers);
            // Bound first: the future borrows `headers`, which the block's tail would outlive.
            let sent = unless_client_gone(s, pin!(send)).await;
            sent
        } else {
            let (body, dropped) = match upstream_body(
                inb,
                upstream_format,
                provider,
                &target.model,
                alias.default_max_tokens,
            ) {
                Ok(b) => b,
                Err(e) => {
                    let msg = format!("{UNTRANSLATABLE} for {}: {e}", provider.kind.name());
                    ctx.attempt_log.push(format!("{}/{}: {msg}", provider.name, target.model));
                    ctx.attempts -= 1;
                    plan.skipped(&step, msg);
                    continue;
                }
            };
            dropped_params = dropped;
            let op = inb.op;
            let built = if upstream_format == Format::OpenAiResponses {
                providers::responses_request(provider, http::Method::POST, "", None, body)
            } else {
                providers::build_request(provider, op, &target.model, body, &s.req_header().headers)
            };
            match built {
                Ok(req) => {
                    let send = upstream::send(
                        &gw.connector,
                        &gw.resolver,
                        provider,
                        &target.model,
                        op,
                        &req,
                        &snap.limits,
                    );
                    unless_client_gone(s, pin!(send)).await
                }
                Err(e) => {
                    ctx.attempt_log.push(e.to_string());
                    ctx.attempts -= 1;
                    plan.skipped(&step, format!("skipped: {e}"));
                    continue;
                }
            }
        };
        let Some(sent) = sent else { return client_gone(ctx) };
        let mut up = match sent {
            Ok(up) => up,
            Err(e) => {
                ctx.attempt_log.push(format!("{}/{}: {e}", provider.name, target.model));
                ctx.attempt_done(provider, &target.model, started, 0, Some(e.kind()));
                plan.failed(&step, &e);
                continue;
            }
        };
        let status = up.status();
        let header_time = started.elapsed();
        ctx.upstream_time += header_time;
        if (200..300).contains(&status) {
            ctx.ttfb = Some(header_time);
            // The answer is checked before the client is told 200; a bad one is this target's
            // failure like any other.
            let check = check_answer(&mut up, inb.op, upstream_format, inb.stream);
            let Some(checked) = unless_client_gone(s, pin!(check)).await else { return client_gone(ctx) };
            // Reading and checking the body is upstream time too.
            ctx.upstream_time += started.elapsed().saturating_sub(header_time);
            match checked {
                Ok(answer) => {
                    // A body in another format is translated now: one that cannot be is this
                    // target's failure too, not a 502 with the next target untried.
                    let answer = match answer {
                        Answer::Body(body, _) if upstream_format != inb.format => {
                            // The target's model, never the alias (README "Answer fields").
                            let opts = ResponseOptions {
                                model: &target.model,
                                gemini_sse: inb.gemini_sse,
                                include_usage: inb.include_usage,
                            };
                            match formats::translate_response(upstream_format, inb.format, &body, &opts) {
                                Ok((b, usage)) => Answer::Translated(Bytes::from(echoed(inb, b)), usage),
                                Err(e) => {
                                    let e = AttemptError::Io {
                                        provider: provider.name.clone(),
                                        detail: format!("cannot translate the upstream answer: {e}"),
                                    };
                                    ctx.attempt_log.push(format!("{}/{}: {e}", provider.name, target.model));
                                    ctx.attempt_done(
                                        provider,
                                        &target.model,
                                        started,
                                        status,
                                        Some(e.kind()),
                                    );
                                    plan.failed(&step, &e);
                                    continue;
                                }
                            }
                        }
                        a => a,
                    };
                    plan.succeeded(&step, header_time);
                    ctx.attempt_done(provider, &target.model, started, status, None);
                    ctx.served = Some((step.alias, step.target));
                    let names = Names { provider: &provider.name, model: &target.model, alias: &alias.name };
                    return respond_upstream(
                        gw,
                        s,
                        ctx,
                        inb,
                        up,
                        answer,
                        upstream_format,
                        names,
                        &dropped_params,
                    )
                    .await;
                }
                Err(Refused::Failed(e)) => {
                    ctx.attempt_log.push(format!("{}/{}: {e}", provider.name, target.model));
                    ctx.attempt_done(provider, &target.model, started, status, Some(e.kind()));
                    plan.failed(&step, &e);
                    continue;
                }
                Err(Refused::Client(class)) => {
                    // A 2xx whose body is an error the request itself caused: the client's.
                    up.release();
                    let status = formats::status_for(class.kind);
                    ctx.attempt_log.push(format!("{}/{}: 2xx with an error", provider.name, target.model));
                    ctx.attempt_done(provider, &target.model, started, status, Some("client_error"));
                    ctx.error = Some(format!("upstream {status}"));
                    let body = formats::encode_error(inb.client_format(), class.kind, &class.message);
                    let extra = [("x-gateway-provider", provider.name.clone())];
                    return Box::pin(respond::json(s, ctx, status, body, &extra)).await;
                }
            }
        }
        if (300..400).contains(&status) {
            // The gateway does not follow redirects, and one is not an answer to pass on (its
            // Location would lead the client to the provider): this target failed.
            let e = AttemptError::Io {
                provider: provider.name.clone(),
                detail: format!("answered HTTP {status} (a redirect), which the gateway does not follow"),
            };
            ctx.attempt_log.push(format!("{}/{}: {e}", provider.name, target.model));
            ctx.attempt_done(provider, &target.model, started, status, Some("redirect"));
            plan.failed(&step, &e);
            continue;
        }
        // An error answer: read it (bounded) so the connection can be reused, then decide.
        let Some(err_body) = unless_client_gone(s, pin!(up.read_to_end(64 * 1024))).await else {
            return client_gone(ctx);
        };
        let err_body = err_body.unwrap_or_default();
        let headers = up.headers();
        up.release();
        ctx.attempt_log.push(format!("{}/{}: HTTP {status}", provider.name, target.model));
        ctx.attempt_done(provider, &target.model, started, status, Some("http"));
        if status == 401 || status == 403 {
            // The provider refused the gateway's own credentials: a config problem of this
            // target, never the client's 401, and the provider's text (which may echo part of
            // the provider key) is not passed on.
            plan.skipped(
                &step,
                format!("HTTP {status}: the provider refused the gateway's credentials for it"),
            );
            continue;
        }
        let class = classify(upstream_format, status, headers.as_ref(), &err_body);
        let retry = plan.rejected(&step, status, &class, started.elapsed());
        if !retry {
            // The client's fault (400, 413...): pass it on, in the client's shape.
            let message = formats::translate_error(upstream_format, inb.client_format(), status, &err_body);
            ctx.status = status;
            ctx.error = Some(format!("upstream {status}"));
            let extra = [("x-gateway-provider", provider.name.clone())];
            return Box::pin(respond::json(s, ctx, status, message, &extra)).await;
        }
    }
    let (tried, timed_out) = plan.into_report();
    // No target can take this request as it is (a built-in tool none of them has, ...): the
    // client's 400, naming each target and why, not an upstream failure.
    if ctx.attempts == 0 && !tried.is_empty() && tried.iter().all(|t| t.outcome.starts_with(UNTRANSLATABLE)) {
        let why: Vec<String> = tried.iter().map(|t| format!("{}: {}", t.target, t.outcome)).collect();
        let e = GatewayError::InvalidRequest(format!("no target can take this request: {}", why.join("; ")));
        return Box::pin(respond::error(s, ctx, inb.client_format(), e)).await;
    }
    let e = GatewayError::AllTargetsFailed { attempts: ctx.attempts, tried, timed_out };
    Box::pin(respond::error(s, ctx, inb.client_format(), e)).await
}

/// How a target the request cannot be translated for is reported.
const UNTRANSLATABLE: &str = "skipped: cannot translate the request";

/// The body for one upstream: same format = splice `model` only; else translate via the IR.
fn upstream_body(
    inb: &Inbound,
    to: Format,
    provider: &crate::config::Provider,
    model: &str,
    default_max_tokens: u32,
) -> Result<(Bytes, Vec<&'static str>), GatewayError> {
    if inb.format == to {
        // The Responses API always names the model in the body (Azure's v1 form included).
        let in_body = to == Format::OpenAiResponses || providers::model_in_body(provider);
        let model = in_body.then_some(model);
        let force_usage = inb.stream && to == Format::OpenAiChat && matches!(inb.op, Operation::Chat { .. });
        if to == Format::Gemini {
            return Ok((inb.body.clone(), Vec::new()));
        }
        let body = passthrough::rewrite_peeked(&inb.body, &inb.peek, model, force_usage);
        return Ok((Bytes::from(body), Vec::new()));
    }
    let legacy_max_tokens = providers::spec(provider.kind).legacy_max_tokens;
    let opts = RequestOptions { target_model: model, default_max_tokens, legacy_max_tokens };
    let enc = if inb.format == Format::Gemini {
        // Gemini says "stream" in the URL, not the body: carry it into the IR.
        let mut ir = formats::decode_request(inb.format, &inb.body)
            .map_err(|e| GatewayError::InvalidRequest(e.to_string()))?;
        ir.stream = inb.stream;
        formats::encode_request(to, &ir, &opts)
    } else {
        formats::translate_request(inb.format, to, &inb.body, &opts)
    }
    .map_err(|e| GatewayError::InvalidRequest(e.to_string()))?;
    Ok((Bytes::from(enc.body), enc.dropped))
}

pub struct Names<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    /// The alias the client named (recorded with a stored response, never answered as `model`).
    pub alias: &'a str,
}

/// Write a successful upstream answer to the client: passthrough or translated, JSON or stream.
#[allow(clippy::too_many_arguments)]
pub async fn respond_upstream(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    inb: &Inbound,
    up: Upstream,
    answer: Answer,
    from: Format,
    names: Names<'_>,
    dropped: &[&'static str],
) -> pingora::Result<()> {
    // The target's model, never the alias (README "Answer fields").
    let opts =
        ResponseOptions { model: names.model, gemini_sse: inb.gemini_sse, include_usage: inb.include_usage };
    let same = from == inb.format;
    let mut h = Head::answer(200, ctx, 6)?;
    h.set_str(head::X_GATEWAY_PROVIDER, names.provider)?;
    h.set_str(head::X_GATEWAY_MODEL, names.model)?;
    if !dropped.is_empty() {
        h.set_named("x-gateway-dropped-params", &dropped.join(","))?;
    }
    ctx.status = 200;

    let body = match answer {
        Answer::Translated(body, usage) => {
            up.release();
            ctx.usage = usage;
            record_translated_body(gw, inb, &body);
            return json_answer(s, ctx, h, body).await;
        }
        Answer::Body(body, usage_at) => Some((body, usage_at)),
        Answer::Stream => None,
        Answer::Binary => {
            // Binary media (e.g. speech audio): stream it through as it comes.
            let content_type = up.header("content-type").unwrap_or("application/octet-stream").to_string();
            return Box::pin(binary(s, ctx, up, h, content_type)).await;
        }
    };
    if let Some((body, usage_at)) = body {
        up.release();
        let body = if let Some((batch, req)) = inb.gemini_embed.as_deref() {
            // An embeddings answer in OpenAI's shape (passed through or already translated).
            use formats::embeddings::gemini_client;
            match gemini_client::decode_openai_response(&body, req) {
                Ok(resp) => {
                    ctx.usage = resp.usage;
                    Bytes::from(gemini_client::encode_response(&resp, *batch))
                }
                Err(e) => {
                    let g = GatewayError::Upstream(format!("cannot translate the upstream answer: {e}"));
                    return Box::pin(respond::error(s, ctx, Format::Gemini, g)).await;
                }
            }
        } else if same {
            ctx.usage = usage_of(from, &body, usage_at).unwrap_or_default();
            if let Operation::Media(
                MediaOp::ImagesGenerations | MediaOp::ImagesEdits | MediaOp::ImagesVariations,
            ) = inb.op
            {
                ctx.images = images_in(&body);
            }
            if let (Format::OpenAiResponses, Some(turn)) = (from, &inb.turn) {
                let id = crate::responses::observe::body_id(&body).unwrap_or_default();
                super::responses::record_native(gw, turn, &id, names.provider, names.model, names.alias);
            }
            body
        } else {
            match formats::translate_response(from, inb.format, &body, &opts) {
                Ok((b, usage)) => {
                    ctx.usage = usage;
                    let b = echoed(inb, b);
                    record_translated_body(gw, inb, &b);
                    Bytes::from(b)
                }
                Err(e) => {
                    let g = GatewayError::Upstream(format!("cannot translate the upstream answer: {e}"));
                    return Box::pin(respond::error(s, ctx, inb.format, g)).await;
                }
            }
        };
        return json_answer(s, ctx, h, body).await;
    }
    stream(gw, s, ctx, inb, up, h, from, &opts, &names).await
}

/// How many images an OpenAI images answer holds (`data` entries).
fn images_in(body: &[u8]) -> u64 {
    #[derive(serde::Deserialize)]
    struct Images {
        #[serde(default)]
        data: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Images>(body).map_or(0, |i| i.data.len() as u64)
}

/// A translated Responses answer: the gateway's conversation store keeps the turn.
fn record_translated_body(gw: &Gateway, inb: &Inbound, body: &[u8]) {
    if let Some(turn) = inb.turn.as_ref().filter(|t| t.store && t.input.is_some()) {
        if inb.format == Format::OpenAiResponses {
            if let Ok(v) = serde_json::from_slice(body) {
                super::responses::record_translated(gw, turn, v);
            }
        }
    }
}

/// A translated answer for a Responses client repeats the request's fields as the real API
/// does (`tools`, `instructions`...; README "Answer fields").
fn echoed(inb: &Inbound, body: Vec<u8>) -> Vec<u8> {
    if inb.format != Format::OpenAiResponses {
        return body;
    }
    match formats::responses_echo(&inb.body) {
        Some(echo) => formats::echo_into_response(&body, &echo),
        None => body,
    }
}

/// Write a whole JSON answer under the prepared header.
async fn json_answer(s: &mut Session, ctx: &mut RequestCtx, mut h: Head, body: Bytes) -> pingora::Result<()> {
    if ctx.logs_bodies() {
        ctx.response_body = Some(body.clone());
    }
    h.json_body(body.len());
    h.write(s).await?;
    s.write_response_body(body, true).await
}

/// Pass a binary media answer through as it comes.
async fn binary(
    s: &mut Session,
    ctx: &mut RequestCtx,
    up: Upstream,
    mut h: Head,
    content_type: String,
) -> pingora::Result<()> {
    h.set_str(http::header::CONTENT_TYPE, &content_type)?;
    length_or_chunked(s, &mut h, &up)?;
    h.write(s).await?;
    pump(s, ctx, up).await
}

/// Pass a stream on, translated or observed for usage, ending it with an error event in the
/// client's format if the upstream fails after the first byte.
#[allow(clippy::too_many_arguments)]
async fn stream(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    inb: &Inbound,
    mut up: Upstream,
    mut h: Head,
    from: Format,
    opts: &ResponseOptions<'_>,
    names: &Names<'_>,
) -> pingora::Result<()> {
    let same = from == inb.format;
    let gemini_array = inb.format == Format::Gemini && !inb.gemini_sse;
    h.stream(gemini_array);
    chunked(s, &mut h);
    h.write(s).await?;

    let mut mode = if same && from == Format::OpenAiChat {
        StreamMode::Observe(passthrough::OpenAiStreamUsage::new(!inb.include_usage))
    } else if same && from == Format::OpenAiResponses {
        // Passed through event by event, byte for byte; only the id and usage are read.
        StreamMode::Responses(Box::new(StreamObserver::new(false)))
    } else if gemini_array {
        // Upstream Gemini streams are always SSE; this client asked for the JSON-array form.
        StreamMode::Translate(Box::new(formats::StreamTranslator::reencoding(from, inb.format, opts)))
    } else {
        // Another format, or the same non-OpenAI format (the translator then only observes usage).
        let t = formats::StreamTranslator::new(from, inb.format, opts);
        let echo = (!same && inb.format == Format::OpenAiResponses)
            .then(|| formats::responses_echo(&inb.body))
            .flatten();
        StreamMode::Translate(Box::new(match echo {
            Some(e) => t.with_echo(e),
            None => t,
        }))
    };

    // A translated Responses stream: its final response goes to the conversation store.
    let keeps_turn = inb.turn.as_ref().is_some_and(|t| t.store && t.input.is_some());
    let mut watch =
        (!same && inb.format == Format::OpenAiResponses && keeps_turn).then(|| StreamObserver::new(true));
    let mut recorded = false;
    // Each chunk's output is handed to the client as its own buffer (no copy).
    let mut out = Vec::new();
    loop {
        // A client that leaves while the upstream is silent ends the stream now (and closes
        // the upstream connection), not at the next write.
        let Some(next) = unless_client_gone(s, pin!(up.next_chunk())).await else {
            mode.take_usage(ctx);
            ctx.error = Some("client went away mid-stream".into());
            s.set_keepalive(None);
            return Ok(());
        };
        match next {
            Ok(Some(chunk)) => {
                out.clear();
                let data = match &mut mode {
                    StreamMode::Responses(o) => {
                        o.feed(&chunk);
                        if let (false, Some(id), Some(turn)) = (recorded, o.id(), &inb.turn) {
                            // Recorded at `response.created`: a follow-up may come before the end.
                            super::responses::record_native(
                                gw,
                                turn,
                                id,
                                names.provider,
                                names.model,
                                names.alias,
                            );
                            recorded = true;
                        }
                        chunk
                    }
                    StreamMode::Observe(o) => {
                        if o.feed(&chunk, &mut out) {
                            chunk
                        } else {
                            Bytes::from(std::mem::take(&mut out))
                        }
                    }
                    StreamMode::Translate(t) => {
                        if let Err(e) = t.feed(&chunk, &mut out) {
                            t.fail(ErrorKind::UpstreamError, &e.to_string(), &mut out);
                            ctx.error = Some(e.to_string());
                            let data = Bytes::from(std::mem::take(&mut out));
                            ctx.usage = t.usage();
                            s.write_response_body(data, true).await?;
                            return Ok(());
                        }
                        Bytes::from(std::mem::take(&mut out))
                    }
                };
                if let Some(w) = &mut watch {
                    w.feed(&data);
                }
                if up.body_done() {
                    // The upstream's body ended with this chunk: its bytes, the closing events
                    // and the end of the response leave in one write.
                    return end_stream(gw, s, ctx, inb, up, &mut mode, &mut watch, data).await;
                }
                if !data.is_empty() {
                    if let Err(e) = s.write_response_body(data, false).await {
                        mode.take_usage(ctx);
                        ctx.error = Some("client went away mid-stream".into());
                        return Err(e);
                    }
                }
            }
            Ok(None) => return end_stream(gw, s, ctx, inb, up, &mut mode, &mut watch, Bytes::new()).await,
            Err(e) => {
                // After the first byte there is no retry: end the stream with an error event.
                out.clear();
                let kind = if matches!(e, AttemptError::Timeout { .. }) {
                    ErrorKind::UpstreamTimeout
                } else {
                    ErrorKind::UpstreamError
                };
                match &mut mode {
                    StreamMode::Translate(t) => t.fail(kind, &e.to_string(), &mut out),
                    StreamMode::Observe(_) | StreamMode::Responses(_) => {
                        out.extend_from_slice(&stream_error_event(inb.format, kind, &e.to_string()))
                    }
                }
                mode.take_usage(ctx);
                ctx.error = Some(e.to_string());
                return s.write_response_body(Bytes::from(std::mem::take(&mut out)), true).await;
            }
        }
    }
}

/// The upstream's body ended cleanly: write `last` (the end of the stream's bytes, possibly
/// none) with the client format's closing events and the end of the response in one write,
/// account the usage, record a Responses turn, and return the connection to the pool.
#[allow(clippy::too_many_arguments)]
async fn end_stream(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    inb: &Inbound,
    up: Upstream,
    mode: &mut StreamMode,
    watch: &mut Option<StreamObserver>,
    last: Bytes,
) -> pingora::Result<()> {
    let mut out = Vec::new();
    match mode {
        StreamMode::Translate(t) => t.finish(&mut out),
        StreamMode::Observe(o) => o.finish(&mut out),
        StreamMode::Responses(o) => o.finish(),
    }
    mode.take_usage(ctx);
    if let (Some(w), Some(turn)) = (watch, &inb.turn) {
        w.feed(&out);
        w.finish();
        if let Some(r) = w.take_response() {
            super::responses::record_translated(gw, turn, r);
        }
    }
    up.release();
    let body = if out.is_empty() {
        last
    } else if last.is_empty() {
        Bytes::from(out)
    } else {
        let mut all = Vec::with_capacity(last.len() + out.len());
        all.extend_from_slice(&last);
        all.extend_from_slice(&out);
        Bytes::from(all)
    };
    s.write_response_body(body, true).await
}

/// A checked 2xx answer, as it is to be passed on.
pub enum Answer {
    /// A whole JSON body, read to its end and valid, and where its `usage` value lies in it.
    Body(Bytes, Option<std::ops::Range<usize>>),
    /// A whole body already translated into the client's format, and its usage.
    Translated(Bytes, formats::Usage),
    /// A stream of events.
    Stream,
    /// Binary media (speech audio, a transcript as text): passed through as it comes.
    Binary,
}

/// Why a 2xx answer is not passed on as it is.
pub enum Refused {
    /// Not a usable answer (truncated, not JSON, compressed, not a stream when one was asked
    /// for): the target failed, the next one is tried.
    Failed(AttemptError),
    /// A 2xx whose body is only an error the request itself caused: the client's answer.
    Client(formats::UpstreamErrorClass),
}

/// Check a 2xx answer before the client is told 200 (see `formats::validate`): a stream must
/// look like one; anything else is read to its end (a body shorter than its Content-Length
/// fails here) and must be a JSON object in `format`, except binary media answers. Encodings
/// other than identity (which is all the gateway asks for) are refused.
pub async fn check_answer(
    up: &mut Upstream,
    op: Operation,
    format: Format,
    stream: bool,
) -> Result<Answer, Refused> {
    let ce = up.header("content-encoding").map(str::to_string);
    let ct = up.header("content-type").map(str::to_string);
    let invalid = |up: &Upstream, e: validate::UpstreamInvalid| {
        Refused::Failed(AttemptError::Io { provider: up.provider().to_string(), detail: e.to_string() })
    };
    if up.is_event_stream() || (stream && !ct.as_deref().is_some_and(validate::is_json_mime)) {
        // A stream, or an unusual content-type on one (the stream decoder judges the bytes).
        return match validate::stream_head(ct.as_deref(), ce.as_deref()) {
            Ok(()) => Ok(Answer::Stream),
            Err(e) => Err(invalid(up, e)),
        };
    }
    if matches!(op, Operation::Media(_)) && !ct.as_deref().is_some_and(validate::is_json_mime) {
        return match validate::encoding(ce.as_deref()) {
            Ok(()) => Ok(Answer::Binary),
            Err(e) => Err(invalid(up, e)),
        };
    }
    let body = up.read_to_end(upstream::MAX_UPSTREAM_BODY).await.map_err(Refused::Failed)?;
    match validate::non_stream_body(format, ct.as_deref(), ce.as_deref(), &body) {
        Ok(_) if stream => Err(invalid(up, validate::UpstreamInvalid::NotAStream(ct.unwrap_or_default()))),
        Ok(usage_at) => Ok(Answer::Body(body, usage_at)),
        Err(validate::UpstreamInvalid::ErrorBody(class)) if class.retry == formats::Retry::No => {
            Err(Refused::Client(class))
        }
        Err(e) => Err(invalid(up, e)),
    }
}

/// Run `work` unless the client goes away first (`None`). `work` is then dropped, which
/// closes its upstream connection: the provider stops working for nobody. Only for a request
/// whose body has been read.
///
/// `work` is pinned by the caller (`unless_client_gone(s, pin!(fut))`): a future taken by value
/// would be stored twice in this one's state (argument and `select!`), and an upstream attempt's
/// future is kilobytes that every request would copy and hold.
pub async fn unless_client_gone<F: std::future::Future + Unpin>(
    s: &mut Session,
    work: F,
) -> Option<F::Output> {
    let gone = async {
        match s.read_body_or_idle(true).await {
            // Bytes after the body (a pipelined request) are not a disconnect.
            Err(e) if e.etype() == &pingora::ErrorType::ConnectError => std::future::pending().await,
            Err(_) => {}
            Ok(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        out = work => Some(out),
        () = gone => None,
    }
}

/// The client went away before its answer: logged as 499, nothing written.
pub fn client_gone(ctx: &mut RequestCtx) -> pingora::Result<()> {
    ctx.status = 499;
    ctx.error = Some("client went away before the answer".into());
    Ok(())
}

enum StreamMode {
    Observe(passthrough::OpenAiStreamUsage),
    Responses(Box<StreamObserver>),
    Translate(Box<formats::StreamTranslator>),
}

impl StreamMode {
    /// Usage (and any error the upstream reported inside the stream) for the usage line.
    fn take_usage(&self, ctx: &mut RequestCtx) {
        ctx.usage = match self {
            StreamMode::Observe(o) => o.usage().unwrap_or_default(),
            StreamMode::Responses(o) => {
                if let (None, Some(e)) = (&ctx.error, o.error()) {
                    ctx.error = Some(e.to_string());
                }
                o.usage()
            }
            StreamMode::Translate(t) => {
                if let (None, Some(e)) = (&ctx.error, t.error()) {
                    ctx.error = Some(e.to_string());
                }
                t.usage()
            }
        };
    }
}

/// Frame a body passed through from `up`: its length when it gave one, else chunked.
pub fn length_or_chunked(s: &mut Session, h: &mut Head, up: &Upstream) -> pingora::Result<()> {
    // The upstream exchange refused an answer whose length does not parse (`h1`).
    match up.header("content-length").map(|v| v.trim().parse::<usize>()) {
        Some(Ok(len)) => h.content_length(len),
        Some(Err(_)) => {
            return Err(pingora::Error::explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "invalid upstream content-length",
            )
            .into_up())
        }
        None => chunked(s, h),
    }
    Ok(())
}

/// Mark a response of unknown length as chunked on HTTP/1.1 (without it Pingora writes a
/// close-delimited body and the client connection cannot be reused; h2 frames bodies itself).
/// An HTTP/1.0 client cannot read chunked framing: it gets a close-delimited body.
fn chunked(s: &mut Session, h: &mut Head) {
    if s.is_http2() {
        return;
    }
    if s.req_header().version == http::Version::HTTP_10 {
        s.set_keepalive(None);
        return;
    }
    h.chunked();
}

/// Usage of a same-format non-stream body.
/// The usage of a passed-through answer: OpenAI's from the bytes of its `usage` value
/// (`usage_at`, found by the answer check), others from the decoded body.
fn usage_of(format: Format, body: &[u8], usage_at: Option<std::ops::Range<usize>>) -> Option<formats::Usage> {
    match format {
        Format::OpenAiChat | Format::OpenAiResponses => passthrough::openai_usage_value(body.get(usage_at?)?),
        _ => formats::decode_response(format, body).ok().map(|r| r.usage),
    }
}

/// An upstream error answer, classified by the one error table: the upstream's
/// `retry-after`/`retry-after-ms` and Bedrock's `x-amzn-errortype` read from its headers.
pub(super) fn classify(
    format: Format,
    status: u16,
    headers: Option<&http::HeaderMap>,
    body: &[u8],
) -> formats::UpstreamErrorClass {
    let retry_after = headers.and_then(|h| routing::retry_after(h, SystemTime::now()));
    let amzn = headers.and_then(|h| h.get("x-amzn-errortype")).and_then(|v| v.to_str().ok());
    formats::classify_upstream_error(format, status, retry_after, amzn, body)
}

/// An error event for a passed-through stream whose upstream failed mid-way.
fn stream_error_event(format: Format, kind: ErrorKind, message: &str) -> Vec<u8> {
    let body = formats::encode_error(format, kind, message);
    let mut out = Vec::with_capacity(body.len() + 32);
    if format == Format::Anthropic {
        out.extend_from_slice(b"event: error\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    out
}
