//! The data plane's request handling (`Gateway`), run by its Pingora app (`app.rs`). Pingora's
//! proxy sends the request header upstream before the body is read and caps retry replay at
//! 64 KiB, so this gateway serves every request itself in `request_filter`: it reads the whole
//! body, drives the upstream attempts with Pingora's connector (see `chat.rs`) and writes the
//! answer; `logging` then accounts it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Session;
use pingora::connectors::TransportConnector as Connector;
use pingora::prelude::*;

use super::cors::{self, Cors};
use super::ctx::RequestCtx;
use super::endpoint::{error_format_for, Endpoint, GeminiCall};
use super::respond;
use super::{chat, gemini, media, preflight};
use crate::accounting::{UsageLog, UsageRecord};
use crate::admission::{self, Shape};
use crate::error::GatewayError;
use crate::formats::Format;
use crate::limits::Hold;
use crate::net::Resolver;
use crate::providers::MediaOp;
use crate::runtime::RuntimeStore;
use crate::telemetry::{AccessLine, Events, Metrics, Otel, RequestSample, RequestTrace, TokenCounts};

/// Process-wide counters (exported by the admin listener's `/metrics`).
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub active: AtomicI64,
    pub errors: AtomicU64,
}

pub struct Gateway {
    pub store: Arc<RuntimeStore>,
    pub connector: Connector,
    pub resolver: Resolver,
    pub usage: UsageLog,
    pub counters: Arc<Counters>,
    pub metrics: Arc<Metrics>,
    /// Where budget crossings go (log, metric, audit, webhook), off the request path.
    pub events: Events,
    /// Stored responses: which target created each, and the gateway's own conversations
    /// (loaded from the `state_dir` the gateway starts with).
    pub responses: Arc<crate::responses::Responses>,
    /// Who owns each file, batch, job and video created through the gateway.
    pub objects: Arc<crate::jobs::ObjectStore>,
    /// OpenTelemetry export (`otel:`, read at start); `None` when off.
    pub otel: Option<Arc<Otel>>,
    /// The worker runtimes requests are served on (each noted by its first request), for
    /// background work that must run on their threads (`server::release`).
    pub workers: Arc<crate::server::release::Workers>,
}

impl Gateway {
    pub fn new(
        store: Arc<RuntimeStore>,
        usage: UsageLog,
        counters: Arc<Counters>,
        metrics: Arc<Metrics>,
        events: Events,
    ) -> Gateway {
        let opts = pingora::connectors::ConnectorOptions::new(1024);
        let responses = super::responses::open_stores(&store.load().snap);
        let objects =
            Arc::new(crate::jobs::ObjectStore::open(std::path::Path::new(&store.load().snap.state_dir)));
        Gateway {
            responses,
            objects,
            store,
            connector: Connector::new(Some(opts)),
            resolver: Resolver::default(),
            usage,
            counters,
            metrics,
            events,
            otel: None,
            workers: Arc::default(),
        }
    }
}

impl Gateway {
    pub(super) fn new_ctx(&self) -> RequestCtx {
        RequestCtx { trace_attempts: self.otel.is_some(), ..RequestCtx::default() }
    }

    /// Runs once the request header is read: serves the whole request (every endpoint); the
    /// app then calls `logging`. `Err` means the client connection broke while we wrote to it.
    ///
    /// The endpoints that go upstream run boxed: this future then holds only the one in use,
    /// not room for the largest of them all, for as long as a stream lasts (README "Memory").
    pub(super) async fn request_filter(&self, s: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        self.workers.note();
        ctx.started = Some(Instant::now());
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.counters.active.fetch_add(1, Ordering::Relaxed);
        ctx.request_id = request_id(s);
        // The one runtime load of this request.
        let rt = self.store.load();
        ctx.rt = Some(rt.clone());
        let req = s.req_header();
        let (path, query) = (req.uri.path(), req.uri.query());
        let endpoint = Endpoint::classify_request(&req.method, path, query, &req.headers);
        let fallback_format = error_format_for(path, query, &req.headers);
        ctx.client_format = Some(fallback_format);
        match cors::decide(rt.snap.config.cors.as_ref(), &req.method, &req.headers) {
            Cors::None => {}
            Cors::Allowed { origin } => ctx.cors_origin = Some(origin),
            Cors::Preflight { origin, allow_headers, max_age_s } => {
                // Answered here, never forwarded; not a request of any key.
                ctx.endpoint = "cors_preflight";
                ctx.cors_origin = Some(origin);
                let extra = [
                    ("access-control-allow-methods", cors::METHODS.to_string()),
                    ("access-control-allow-headers", allow_headers),
                    ("access-control-max-age", max_age_s.to_string()),
                ];
                respond::json(s, ctx, 204, Vec::new(), &extra).await?;
                return Ok(());
            }
            Cors::Refused(why) => {
                ctx.endpoint = "cors_preflight";
                respond::error(s, ctx, fallback_format, GatewayError::CorsRefused(why)).await?;
                return Ok(());
            }
        }
        match endpoint {
            Endpoint::Healthz => {
                ctx.endpoint = "healthz";
                respond::json(s, ctx, 200, br#"{"status":"ok"}"#.to_vec(), &[]).await?;
            }
            Endpoint::Readyz => {
                ctx.endpoint = "readyz";
                let (status, body) = if rt.any_available(Instant::now()) {
                    (200, &br#"{"status":"ready"}"#[..])
                } else {
                    (503, &br#"{"status":"no targets"}"#[..])
                };
                respond::json(s, ctx, status, body.to_vec(), &[]).await?;
            }
            Endpoint::Models => {
                ctx.endpoint = "models";
                let req = s.req_header();
                match admission::authenticate(&rt, &req.headers, req.uri.query(), SystemTime::now()) {
                    Ok(p) => {
                        let data: Vec<_> = rt
                            .snap
                            .aliases
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| p.allows(*i))
                            .map(|(_, a)| serde_json::json!({"id": a.name, "object": "model", "created": 0, "owned_by": "llm-gateway"}))
                            .collect();
                        ctx.principal = Some(p.clone());
                        ctx.admission = Some(admission::admit_without_model(p));
                        let body = serde_json::to_vec(&serde_json::json!({"object": "list", "data": data}))
                            .unwrap_or_default();
                        respond::json(s, ctx, 200, body, &[]).await?;
                    }
                    Err(e) => respond::error(s, ctx, fallback_format, e).await?,
                }
            }
            Endpoint::Model { name } => {
                ctx.endpoint = "models";
                gemini::get(s, ctx, &rt, &name, Format::OpenAiChat).await?;
            }
            Endpoint::GeminiModels => {
                ctx.endpoint = "models";
                gemini::list(s, ctx, &rt).await?;
            }
            Endpoint::GeminiModel { name } => {
                ctx.endpoint = "models";
                gemini::get(s, ctx, &rt, &name, Format::Gemini).await?;
            }
            Endpoint::GeminiCountTokens { model } => {
                ctx.endpoint = "count_tokens";
                ctx.client_format = Some(Format::Gemini);
                Box::pin(gemini::count_tokens(s, ctx, &rt, &model)).await?;
            }
            Endpoint::GeminiEmbed { model, batch } => {
                ctx.endpoint = MediaOp::Embeddings.name();
                ctx.client_format = Some(Format::Gemini);
                let call = GeminiCall { model, stream: false, sse: false, embed: Some(batch) };
                Box::pin(chat::serve(self, s, ctx, Format::Gemini, Some(call), Some(MediaOp::Embeddings)))
                    .await?;
            }
            Endpoint::CountTokens => {
                ctx.endpoint = "count_tokens";
                if let Err(e) = Box::pin(count_tokens(s, ctx, &rt)).await? {
                    respond::error(s, ctx, Format::Anthropic, e).await?;
                }
            }
            Endpoint::Preflight => {
                ctx.endpoint = "preflight";
                Box::pin(preflight::serve(s, ctx, &rt)).await?;
            }
            Endpoint::Chat { format, gemini } => {
                ctx.endpoint = format.name();
                ctx.client_format = Some(format);
                Box::pin(chat::serve(self, s, ctx, format, gemini, None)).await?;
            }
            Endpoint::StoredResponse { id, op } => {
                ctx.endpoint = op.name();
                ctx.client_format = Some(Format::OpenAiResponses);
                Box::pin(super::responses::serve_stored(self, s, ctx, id, op)).await?;
            }
            Endpoint::ResponsesInputTokens => {
                ctx.endpoint = "responses_input_tokens";
                ctx.client_format = Some(Format::OpenAiResponses);
                Box::pin(super::responses::serve_input_tokens(self, s, ctx)).await?;
            }
            Endpoint::Media(op) if op.multipart() => {
                ctx.endpoint = op.name();
                Box::pin(media::upload_form(self, s, ctx, op)).await?;
            }
            Endpoint::Media(op) => {
                ctx.endpoint = op.name();
                Box::pin(chat::serve(self, s, ctx, Format::OpenAiChat, None, Some(op))).await?;
            }
            Endpoint::Job(call) => {
                ctx.endpoint = call.endpoint();
                Box::pin(super::jobs::serve(self, s, ctx, call)).await?;
            }
            Endpoint::MethodNotAllowed { allow } => {
                ctx.endpoint = "method_not_allowed";
                let e = GatewayError::MethodNotAllowed {
                    method: req.method.to_string(),
                    path: req.uri.path().to_string(),
                    allow,
                };
                respond::error(s, ctx, fallback_format, e).await?;
            }
            Endpoint::NotFound => {
                ctx.endpoint = "not_found";
                let e = GatewayError::NoRoute {
                    method: req.method.to_string(),
                    path: req.uri.path().to_string(),
                };
                respond::error(s, ctx, fallback_format, e).await?;
            }
        }
        Ok(())
    }

    /// Runs last, for every request, including ones whose client went away: the `account`
    /// step, exactly once per request that got as far as an authenticated principal.
    pub(super) fn logging(&self, s: &Session, e: Option<&pingora::Error>, ctx: &mut RequestCtx) {
        if ctx.status >= 500 || e.is_some() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(kind) = ctx.refused {
            self.metrics.ratelimited(kind);
        }
        let record = self.account(ctx, e);
        if let Some(rt) = ctx.rt.as_ref().filter(|rt| rt.snap.log_requests) {
            // Probes are not requests anyone needs a line for.
            if !matches!(ctx.endpoint, "healthz" | "readyz") {
                access_line(s, ctx, record.as_ref(), e, rt.snap.log_bodies.unwrap_or(0));
            }
        }
        // Last: a stop waits for this count to reach 0, then writes the usage lines.
        self.counters.active.fetch_sub(1, Ordering::Release);
    }
}

impl Gateway {
    /// The usage line (and, as they land, spend and limit reconciliation) of one request;
    /// returns it (for the access line).
    fn account(&self, ctx: &mut RequestCtx, e: Option<&pingora::Error>) -> Option<UsageRecord> {
        let rt = ctx.rt.clone()?;
        // Health checks, 404s, 401s: not usage.
        let principal = ctx.principal.take()?;
        let snap = &rt.snap;
        let alias = ctx.alias.map(|a| &snap.aliases[a]);
        // A target answered but reported no usage (the client went away mid-stream before the
        // usage event): charge at least the input counted at admission.
        if let (Some(_), Some(res)) =
            (ctx.served, ctx.admission.as_ref().and_then(|a| a.reservation.as_ref()))
        {
            if ctx.usage.input_tokens == 0 {
                ctx.usage.input_tokens = res.counted_input_tokens();
            }
        }
        // One monotonic and one wall-clock read for everything below (a clock read is ~25 ns,
        // and this used five).
        let (now, wall) = (Instant::now(), SystemTime::now());
        let micros = match ctx.job_micros {
            Some(m) => m,
            None => price_of(snap, ctx.served)
                .map(|p| {
                    let media = crate::accounting::MediaUnits { images: ctx.images, ..Default::default() };
                    crate::accounting::cost_micros(&p, &ctx.usage, media)
                })
                .unwrap_or(0),
        };
        let cost = crate::accounting::usd(micros);
        if let Some(hold) = ctx.admission.take().and_then(|a| a.reservation) {
            // A job's tokens were spent by the provider's batch queue, not this minute's TPM.
            let tokens =
                if ctx.job_micros.is_some() { 0 } else { ctx.usage.input_tokens + ctx.usage.output_tokens };
            match hold {
                Hold::Local(res) => {
                    let settled = res.settle(tokens, micros, admission::mono_ns(now), wall);
                    if !settled.alerts.is_empty() {
                        self.events.budget(settled.alerts);
                    }
                }
                // One Redis round trip, off the request's path (the answer is already sent).
                Hold::Shared(res) => {
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let settled = res.settle(tokens, micros).await;
                        if !settled.alerts.is_empty() {
                            events.budget(settled.alerts);
                        }
                    });
                }
            }
        }
        let total = ctx.started.map(|t| now.saturating_duration_since(t)).unwrap_or_default();
        self.metrics.record_request(&RequestSample {
            alias: alias.map(|a| a.name.as_str()).unwrap_or(""),
            provider: ctx.provider.as_deref().unwrap_or(""),
            project: principal.project().unwrap_or(""),
            status: if ctx.status == 0 { 499 } else { ctx.status },
            total,
            upstream: ctx.upstream_time,
            ttfb: ctx.ttfb,
            tokens: TokenCounts {
                input: ctx.usage.input_tokens,
                output: ctx.usage.output_tokens,
                cached: ctx.usage.cache_read_tokens,
                reasoning: ctx.usage.reasoning_tokens,
            },
            cost_micros: micros,
        });
        if let Some(otel) = &self.otel {
            otel.record(request_trace(snap, ctx, alias.map(|a| a.name.clone()), total, e));
        }
        let r = UsageRecord {
            time: crate::limits::rfc3339_fraction(wall),
            request_id: std::mem::take(&mut ctx.request_id),
            key: Some(principal.id().to_string()),
            project: principal.project().map(str::to_string),
            alias: alias.map(|a| a.name.clone()),
            provider: ctx.provider.take(),
            model: ctx.model.take(),
            endpoint: ctx.endpoint,
            stream: ctx.stream,
            status: if ctx.status == 0 { 499 } else { ctx.status },
            input_tokens: ctx.usage.input_tokens,
            output_tokens: ctx.usage.output_tokens,
            cached_tokens: ctx.usage.cache_read_tokens,
            reasoning_tokens: ctx.usage.reasoning_tokens,
            cost_usd: cost,
            cost_micros: micros,
            cache_write_tokens: ctx.usage.cache_write_tokens,
            ttfb_ms: ctx.ttfb.map(|t| t.as_secs_f64() * 1e3),
            latency_ms: total.as_secs_f64() * 1e3,
            attempts: ctx.attempts,
            attempt_log: std::mem::take(&mut ctx.attempt_log),
            error: ctx.error.take().or_else(|| e.map(|e| e.to_string())),
        };
        self.usage.record(&r);
        Some(r)
    }
}

/// The access line of one finished request (`log.requests`): from its usage record when it
/// has one, else from what the request got to (a 401, a 404, a CORS preflight).
fn access_line(
    s: &Session,
    ctx: &RequestCtx,
    r: Option<&UsageRecord>,
    e: Option<&pingora::Error>,
    body_max_bytes: usize,
) {
    let req = s.req_header();
    let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let client = s.client_addr().map(|a| a.to_string());
    let latency = ctx.started.map(|t| t.elapsed()).unwrap_or_default();
    let status = if ctx.status == 0 { 499 } else { ctx.status };
    let failure = ctx.error.clone().or_else(|| e.map(|e| e.to_string()));
    let mut line = AccessLine {
        request_id: &ctx.request_id,
        endpoint: ctx.endpoint,
        method: req.method.as_str(),
        path,
        status,
        stream: ctx.stream,
        latency,
        ttfb: ctx.ttfb,
        attempts: ctx.attempts,
        error: failure.as_deref(),
        client: client.as_deref(),
        request_body: ctx.request_body.as_deref(),
        response_body: ctx.response_body.as_deref(),
        body_max_bytes,
        ..AccessLine::default()
    };
    if let Some(r) = r {
        line.request_id = &r.request_id;
        line.key_id = r.key.as_deref();
        line.project = r.project.as_deref();
        line.alias = r.alias.as_deref();
        line.provider = r.provider.as_deref();
        line.model = r.model.as_deref();
        line.status = r.status;
        line.input_tokens = r.input_tokens;
        line.output_tokens = r.output_tokens;
        line.cached_tokens = r.cached_tokens;
        line.reasoning_tokens = r.reasoning_tokens;
        line.cost_micros = r.cost_micros;
        line.attempts = r.attempts;
        line.error = r.error.as_deref();
    }
    line.emit();
}

/// The OpenTelemetry view of a finished request (its attempts are moved out of `ctx`).
fn request_trace(
    snap: &crate::config::Snapshot,
    ctx: &mut RequestCtx,
    alias: Option<String>,
    total: std::time::Duration,
    e: Option<&pingora::Error>,
) -> RequestTrace {
    let kind =
        ctx.provider.as_ref().and_then(|n| snap.providers.iter().find(|p| &p.name == n)).map(|p| p.kind);
    // The start from two clock reads made together: `total` was measured earlier in the
    // logging step, and subtracting it from a later `now` would move the whole span later by
    // the time in between (then the attempts, clamped into it, could overlap).
    let since_start = ctx.started.map_or(total, |t| t.elapsed());
    RequestTrace {
        start: SystemTime::now().checked_sub(since_start).unwrap_or(SystemTime::UNIX_EPOCH),
        duration: total,
        request_id: ctx.request_id.clone(),
        endpoint: ctx.endpoint,
        alias,
        provider: ctx.provider.clone(),
        provider_kind: kind,
        model: ctx.model.clone(),
        status: if ctx.status == 0 { 499 } else { ctx.status },
        input_tokens: ctx.usage.input_tokens,
        output_tokens: ctx.usage.output_tokens,
        error: ctx.error.clone().or_else(|| e.map(|e| e.to_string())),
        attempts: std::mem::take(&mut ctx.attempt_trace),
    }
}

/// The prices a request is charged at: those of the target that answered (its own, else its
/// alias's — a fallback's own — else the shipped table by the target's model).
fn price_of(
    snap: &crate::config::Snapshot,
    served: Option<(usize, usize)>,
) -> Option<crate::accounting::Price> {
    let (a, t) = served?;
    let alias = &snap.aliases[a];
    let target = &alias.targets[t];
    crate::accounting::resolve_price(target.pricing.as_ref(), alias.pricing.as_ref(), &target.model)
}

/// `POST /v1/messages/count_tokens`: admitted like a message (key, alias, allow-list, body),
/// answered with an estimate and accounted.
async fn count_tokens(
    s: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Arc<crate::runtime::Runtime>,
) -> Result<std::result::Result<(), GatewayError>> {
    let (principal, body) = match chat::caller_and_body(s, ctx, rt).await? {
        Ok(pb) => pb,
        Err(e) => return Ok(Err(e)),
    };
    let model = match crate::formats::passthrough::peek(&body) {
        Ok(p) => p.model.unwrap_or_default(),
        Err(e) => return Ok(Err(GatewayError::InvalidRequest(e.to_string()))),
    };
    let admitted = match admission::admit(
        rt,
        principal,
        &model,
        Shape::CountTokens,
        Some(admission::Body::unchecked(&body)),
        false,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    ctx.alias = admitted.alias;
    ctx.admission = Some(admitted);
    // Counted with the tokenizer of the alias's first target (a calibrated estimate for
    // non-OpenAI families, see limits::tokens).
    let family = crate::limits::tokens::family_of_alias(
        &rt.snap,
        ctx.alias,
        crate::limits::tokens::TokenizerFamily::O200k,
    );
    let n = crate::limits::tokens::count_request_tokens(Format::Anthropic, &body, family).max(1);
    ctx.usage.input_tokens = n;
    respond::json(s, ctx, 200, format!("{{\"input_tokens\":{n}}}").into_bytes(), &[]).await?;
    Ok(Ok(()))
}

/// Keep a sane client `x-request-id`, else make one.
fn request_id(s: &Session) -> String {
    if let Some(v) = s.req_header().headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        if !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()) {
            return v.to_string();
        }
    }
    hex_id(fastrand::u128(..))
}

/// `n` as 32 lowercase hex digits: what `format!("{n:032x}")` writes, without the formatting
/// machinery (a thousand instructions a request).
fn hex_id(n: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[(n >> ((31 - i) * 4)) as usize & 0xf];
    }
    // ASCII digits: always UTF-8.
    std::str::from_utf8(&digits).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_what_format_wrote() {
        for n in [0, 1, 0xabc, u128::MAX, u128::MAX / 3, fastrand::u128(..), fastrand::u128(..)] {
            assert_eq!(super::hex_id(n), format!("{n:032x}"));
        }
    }
}
