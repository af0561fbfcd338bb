//! The job endpoints on the data plane (SPEC section 10): files, batches, fine-tuning jobs,
//! videos and Anthropic message batches, passed to the provider `jobs:` (or
//! `x-gateway-provider`) names, with the gateway's credentials.
//!
//! Every call is authenticated and admitted (the caller's RPM, in-flight and budget limits).
//! An id in the path must be one the caller's project created through the gateway (else 404,
//! as if it did not exist) and goes to the provider that holds it. Creations are recorded
//! (`state_dir/objects.jsonl`, synced) before the answer names the new id. Lists are the
//! provider's pages kept to the caller's objects. Uploads stream through (a batch file's
//! aliases rewritten line by line), downloads stream back. A finished job's reported usage is
//! charged once, on the first read that sees it finished.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Session;
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

use super::chat;
use super::ctx::RequestCtx;
use super::head::{self, Head};
use super::respond;
use super::upstream::{self, Upstream};
use super::Gateway;
use crate::admission::{self, Principal};
use crate::config::Provider;
use crate::error::GatewayError;
use crate::formats::multipart::boundary_of;
use crate::formats::{Format, Usage};
use crate::jobs::answer::{self, JobUsage};
use crate::jobs::form::{FormError, FormRewriter};
use crate::jobs::objects::Object;
use crate::jobs::{Act, Api, JobCall};
use crate::providers::{self, Operation, UpstreamRequest};
use crate::runtime::Runtime;

/// The Redis space of job objects' owner records.
const OBJECTS: &str = "obj";

/// Pages of a provider's list read for one list call, at most (each up to 100 objects).
const MAX_LIST_PAGES: usize = 20;

pub async fn serve(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    call: JobCall,
) -> pingora::Result<()> {
    let format = format_of(call.api);
    ctx.client_format = Some(format);
    match admit(gw, s, ctx, &call).await {
        Ok(job) => match run(gw, s, ctx, &call, job).await? {
            Ok(()) => Ok(()),
            Err(e) => respond::error(s, ctx, format, e).await,
        },
        Err(e) => respond::error(s, ctx, format, e).await,
    }
}

/// The error shape of the caller's API.
fn format_of(api: Api) -> Format {
    match api {
        Api::MessageBatches => Format::Anthropic,
        _ => Format::OpenAiChat,
    }
}

/// An admitted job call: who, for whom, and where it goes.
struct Job {
    rt: Arc<Runtime>,
    principal: Principal,
    owner: String,
    provider: usize,
}

async fn admit(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    call: &JobCall,
) -> Result<Job, GatewayError> {
    let Some(rt) = ctx.rt.clone() else { return Err(GatewayError::Internal("no runtime".into())) };
    let req = s.req_header();
    let principal = admission::authenticate(&rt, &req.headers, req.uri.query(), SystemTime::now())?;
    ctx.principal = Some(principal.clone());
    let owner = crate::responses::owner(&principal);
    let object = match &call.id {
        Some(id) => Some(owned(gw, &rt, id, &owner).await.ok_or_else(|| not_found(call.api, id))?),
        None => None,
    };
    // An object lives in the provider account that made it.
    let provider = match &object {
        Some(o) => rt.snap.providers.iter().position(|p| p.name == o.provider).ok_or_else(|| {
            GatewayError::Upstream(format!(
                "{} is held by provider {:?}, which is no longer configured",
                call.api.object(),
                o.provider
            ))
        })?,
        None => choose_provider(&rt, call.api, req.headers.get("x-gateway-provider"))?,
    };
    let p = &rt.snap.providers[provider];
    ctx.provider = Some(p.name.clone());
    let a = admission::admit_job(&rt, principal.clone()).await?;
    ctx.rate_headers = a.reservation.as_ref().map(|r| r.headers().pairs()).unwrap_or_default();
    ctx.admission = Some(a);
    Ok(Job { rt, principal, owner, provider })
}

/// 404 for an id the caller does not own, as the provider words it.
fn not_found(api: Api, id: &str) -> GatewayError {
    GatewayError::NotFound(match api {
        Api::MessageBatches => format!("{}: {id} not found", api.object()),
        _ => format!("No such {} object: {id}", api.object()),
    })
}

/// The provider for a new object: `x-gateway-provider`, else `jobs.provider` /
/// `jobs.anthropic_provider`, else the only provider that serves the API.
fn choose_provider(
    rt: &Runtime,
    api: Api,
    header: Option<&http::HeaderValue>,
) -> Result<usize, GatewayError> {
    let snap = &rt.snap;
    let serves = |p: &Provider| providers::spec(p.kind).jobs.contains(&api);
    let named = |name: &str, why: &str| -> Result<usize, GatewayError> {
        let i = snap.providers.iter().position(|p| p.name == name).ok_or_else(|| {
            GatewayError::InvalidRequest(format!("{why} names provider {name:?}, which is not configured"))
        })?;
        let p = &snap.providers[i];
        if !serves(p) {
            return Err(GatewayError::Unsupported(format!(
                "provider {:?} ({}) does not serve {}",
                p.name,
                p.kind.name(),
                api.name()
            )));
        }
        Ok(i)
    };
    if let Some(h) = header {
        let name = h.to_str().unwrap_or_default();
        return named(name, "x-gateway-provider");
    }
    let jobs = snap.config.jobs.as_ref();
    let configured = match api {
        Api::MessageBatches => jobs.and_then(|j| j.anthropic_provider.as_deref()),
        _ => jobs.and_then(|j| j.provider.as_deref()),
    };
    if let Some(name) = configured {
        let field = if api == Api::MessageBatches { "jobs.anthropic_provider" } else { "jobs.provider" };
        return named(name, field);
    }
    let candidates: Vec<usize> = (0..snap.providers.len()).filter(|&i| serves(&snap.providers[i])).collect();
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => Err(GatewayError::Unsupported(format!("no configured provider serves {}", api.name()))),
        _ => Err(GatewayError::InvalidRequest(format!(
            "several providers serve {}: set `jobs.{}` or send x-gateway-provider",
            api.name(),
            if api == Api::MessageBatches { "anthropic_provider" } else { "provider" }
        ))),
    }
}

async fn run(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    call: &JobCall,
    job: Job,
) -> pingora::Result<Result<(), GatewayError>> {
    let multipart = s
        .req_header()
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    match call.act {
        Act::Create if call.api == Api::Files || (call.api == Api::Videos && multipart) => {
            upload(gw, s, ctx, call, &job).await
        }
        Act::Create => create_json(gw, s, ctx, call, &job).await,
        Act::List => list(gw, s, ctx, call, &job).await,
        Act::Content => download(gw, s, ctx, call, &job).await,
        _ => read(gw, s, ctx, call, &job).await,
    }
}

/// The request for `call` to the job's provider.
fn request(
    s: &Session,
    call: &JobCall,
    job: &Job,
    query: Option<&str>,
) -> Result<UpstreamRequest, GatewayError> {
    let p = &job.rt.snap.providers[job.provider];
    providers::jobs_request(p, call, query, &s.req_header().headers)
        .map_err(|e| GatewayError::Unsupported(e.to_string()))
}

/// Send a request with a whole body and wait for the answer's header. The provider refusing
/// the gateway's own credentials is the gateway's 502, its words not passed on.
async fn send(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    job: &Job,
    req: &UpstreamRequest,
) -> pingora::Result<Result<Upstream, GatewayError>> {
    let p = &job.rt.snap.providers[job.provider];
    ctx.attempts += 1;
    let started = Instant::now();
    let send = upstream::send(
        &gw.connector,
        &gw.resolver,
        p,
        "",
        Operation::Chat { stream: false },
        req,
        &job.rt.snap.limits,
    );
    let Some(sent) = chat::unless_client_gone(s, std::pin::pin!(send)).await else {
        chat::client_gone(ctx)?;
        return Ok(Err(GatewayError::Upstream("client went away".into())));
    };
    ctx.upstream_time += started.elapsed();
    ctx.ttfb = Some(started.elapsed());
    Ok(match sent {
        Ok(up) => credentials_ok(p, up).await,
        Err(e) => Err(GatewayError::Upstream(e.to_string())),
    })
}

async fn credentials_ok(p: &Provider, mut up: Upstream) -> Result<Upstream, GatewayError> {
    let status = up.status();
    if status == 401 || status == 403 {
        let _ = up.read_to_end(64 * 1024).await;
        up.release();
        return Err(GatewayError::Upstream(format!(
            "provider {} refused the gateway's credentials (HTTP {status})",
            p.name
        )));
    }
    Ok(up)
}

/// A JSON answer from upstream: its status and parsed body (a non-JSON body is `Null`).
async fn read_json(mut up: Upstream) -> Result<(u16, Bytes, Value), GatewayError> {
    let status = up.status();
    let body = up
        .read_to_end(upstream::MAX_UPSTREAM_BODY)
        .await
        .map_err(|e| GatewayError::Upstream(e.to_string()))?;
    up.release();
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((status, body, v))
}

/// A provider's JSON answer: `Some` for a 2xx, `None` when it was an error and has been passed
/// on to the client as it is (its error is in the caller's API shape).
async fn answered(
    s: &mut Session,
    ctx: &mut RequestCtx,
    job: &Job,
    up: Upstream,
) -> pingora::Result<Result<Option<(u16, Bytes, Value)>, GatewayError>> {
    let (status, body, v) = match read_json(up).await {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    if (200..300).contains(&status) {
        return Ok(Ok(Some((status, body, v))));
    }
    pass_error(s, ctx, job, status, body).await?;
    Ok(Ok(None))
}

/// [`send`], then [`answered`].
async fn exchange(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    job: &Job,
    req: &UpstreamRequest,
) -> pingora::Result<Result<Option<(u16, Bytes, Value)>, GatewayError>> {
    match send(gw, s, ctx, job, req).await? {
        Ok(up) => answered(s, ctx, job, up).await,
        Err(e) => Ok(Err(e)),
    }
}

/// Pass a provider's non-2xx answer on as it is (its error is in the caller's API shape).
async fn pass_error(
    s: &mut Session,
    ctx: &mut RequestCtx,
    job: &Job,
    status: u16,
    body: Bytes,
) -> pingora::Result<()> {
    ctx.error = Some(format!("upstream {status}"));
    let p = &job.rt.snap.providers[job.provider];
    respond::json(s, ctx, status, body.to_vec(), &[("x-gateway-provider", p.name.clone())]).await
}

async fn answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    job: &Job,
    status: u16,
    v: &Value,
) -> pingora::Result<()> {
    let p = &job.rt.snap.providers[job.provider];
    let body = serde_json::to_vec(v).unwrap_or_default();
    respond::json(s, ctx, status, body, &[("x-gateway-provider", p.name.clone())]).await
}

/// Record `id` as the caller's (synced before the answer names it).
async fn own(
    gw: &Gateway,
    job: &Job,
    id: &str,
    kind: crate::jobs::ObjectKind,
    alias: Option<String>,
) -> Result<(), GatewayError> {
    let object = Object {
        kind,
        owner: job.owner.clone(),
        provider: job.rt.snap.providers[job.provider].name.clone(),
        alias,
        created: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        charged: false,
    };
    record(gw, &job.rt, id, object).await
}

// --- the ownership record: this instance's file, and Redis when `redis:` is set (every
// instance then serves an id any instance created, and a job is charged once across them).

/// The records of `ids` (`None` where neither this instance nor Redis knows one).
async fn lookup(gw: &Gateway, rt: &Runtime, ids: &[&str]) -> Vec<Option<Object>> {
    let mut found: Vec<Option<Object>> = ids.iter().map(|id| gw.objects.find(id)).collect();
    let missing: Vec<&str> = ids.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(id, _)| *id).collect();
    let Some(shared) = rt.shared.as_ref().filter(|_| !missing.is_empty()) else { return found };
    match shared.limits.records_get(OBJECTS, &missing).await {
        Ok(values) => {
            let mut got = missing.iter().zip(values);
            for (slot, id) in found.iter_mut().zip(ids) {
                if slot.is_some() {
                    continue;
                }
                let Some((_, v)) = got.next() else { break };
                if let Some(o) = v.and_then(|v| serde_json::from_str::<Object>(&v).ok()) {
                    gw.objects.cache(id, o.clone());
                    *slot = Some(o);
                }
            }
        }
        Err(e) => tracing::warn!("{e}; job objects other instances created are unknown until it answers"),
    }
    found
}

/// The record of `id` if `owner` owns it.
async fn owned(gw: &Gateway, rt: &Runtime, id: &str, owner: &str) -> Option<Object> {
    lookup(gw, rt, &[id]).await.pop().flatten().filter(|o| o.owner == owner)
}

/// Record a new object: synced to this instance's file (the answer waits for it), then put in
/// Redis (a failure there is logged: this instance still serves the id).
async fn record(gw: &Gateway, rt: &Runtime, id: &str, object: Object) -> Result<(), GatewayError> {
    let (store, key, local) = (gw.objects.clone(), id.to_string(), object.clone());
    match tokio::task::spawn_blocking(move || store.own(&key, local)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(GatewayError::Internal(format!(
                "the object was created but its owner could not be recorded: {e}"
            )))
        }
        Err(e) => return Err(GatewayError::Internal(e.to_string())),
    }
    if let Some(shared) = &rt.shared {
        let text = serde_json::to_string(&object).unwrap_or_default();
        if let Err(e) = shared.limits.record_put(OBJECTS, id, &text, None).await {
            tracing::warn!("{e}; {id} is served by this instance only until it is recorded in Redis");
        }
    }
    Ok(())
}

/// `true` exactly once per job: Redis decides across instances when it is set (this
/// instance's file alone when it is not, or does not answer).
async fn charge_once(gw: &Gateway, rt: &Runtime, id: &str) -> bool {
    if let Some(shared) = &rt.shared {
        match shared.limits.record_once(OBJECTS, id).await {
            Ok(false) => return false,
            Ok(true) => {}
            Err(e) => tracing::warn!("{e}; {id} charged by this instance's record alone"),
        }
    }
    let (store, key) = (gw.objects.clone(), id.to_string());
    match tokio::task::spawn_blocking(move || store.charge_once(&key)).await {
        Ok(Ok(once)) => once || rt.shared.is_some(),
        Ok(Err(e)) => {
            tracing::warn!("{e}; the usage of {id} is charged, but the record of it could not be written");
            true
        }
        Err(_) => false,
    }
}

async fn forget(gw: &Gateway, rt: &Runtime, id: &str) {
    let (store, key) = (gw.objects.clone(), id.to_string());
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.remove(&key)).await {
        tracing::warn!("{e}");
    }
    if let Some(shared) = &rt.shared {
        if let Err(e) = shared.limits.record_remove(OBJECTS, id).await {
            tracing::warn!("{e}");
        }
    }
}

/// The target model an alias maps to for this job's provider: the alias's target on that
/// provider, else its first target. Refused when the caller may not use the alias.
fn target_model(
    rt: &Runtime,
    principal: &Principal,
    provider: usize,
    model: &str,
) -> Result<String, GatewayError> {
    let alias = admission::resolve_alias(rt, principal, model)?;
    let a = &rt.snap.aliases[alias];
    let t = a.targets.iter().find(|t| t.provider == provider).or(a.targets.first());
    t.map(|t| t.model.clone()).ok_or_else(|| GatewayError::Internal(format!("alias {model:?} has no target")))
}

/// `POST` with a JSON body: batches, fine-tuning jobs, videos, message batches.
async fn create_json(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    call: &JobCall,
    job: &Job,
) -> pingora::Result<Result<(), GatewayError>> {
    let body = match chat::read_body(s, ctx, &job.rt).await? {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let mut v: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Ok(Err(GatewayError::InvalidRequest("the body must be a JSON object".into()))),
        Err(e) => return Ok(Err(GatewayError::InvalidRequest(format!("invalid JSON body: {e}")))),
    };
    let prepared = prepare_create(gw, call.api, job, &mut v).await;
    let alias = match prepared {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    ctx.model = v.get("model").and_then(Value::as_str).map(str::to_string);
    let mut req = match request(s, call, job, s.req_header().uri.query()) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    req.body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
    let up = match send(gw, s, ctx, job, &req).await? {
        Ok(up) => up,
        Err(e) => return Ok(Err(e)),
    };
    created(gw, s, ctx, call, job, up, alias).await
}

/// Check and rewrite a create request's body: the files it names must be the caller's, the
/// models it names aliases the caller may use (rewritten to the target model). Answers the
/// alias whose prices apply.
async fn prepare_create(
    gw: &Gateway,
    api: Api,
    job: &Job,
    v: &mut Map<String, Value>,
) -> Result<Option<String>, GatewayError> {
    let rt = &job.rt;
    let mut alias = None;
    for (field, id) in answer::referenced_files(api, &Value::Object(v.clone())) {
        // Another project's file is unknown here: a 404 naming it, as OpenAI answers.
        let Some(file) = owned(gw, rt, &id, &job.owner).await else { return Err(not_found(Api::Files, &id)) };
        if file.provider != rt.snap.providers[job.provider].name {
            return Err(GatewayError::InvalidField {
                field: field.into(),
                problem: format!(
                    "file {id} is held by provider {:?}, not {:?}",
                    file.provider, rt.snap.providers[job.provider].name
                ),
            });
        }
        if api == Api::Batches {
            alias = file.alias.clone();
        }
    }
    match api {
        Api::FineTuning | Api::Videos => {
            let Some(model) = v.get("model").and_then(Value::as_str).map(str::to_string) else {
                return Err(GatewayError::MissingField { field: "model" });
            };
            let target = target_model(rt, &job.principal, job.provider, &model)?;
            v.insert("model".into(), Value::String(target));
            alias = Some(model);
        }
        Api::MessageBatches => {
            let Some(requests) = v.get_mut("requests").and_then(Value::as_array_mut) else {
                return Err(GatewayError::MissingField { field: "requests" });
            };
            for (i, r) in requests.iter_mut().enumerate() {
                let Some(m) = r.pointer_mut("/params/model") else {
                    return Err(GatewayError::InvalidField {
                        field: format!("requests[{i}].params.model"),
                        problem: "is required".into(),
                    });
                };
                let model = m.as_str().unwrap_or_default().to_string();
                let target = target_model(rt, &job.principal, job.provider, &model).map_err(|e| {
                    GatewayError::InvalidField {
                        field: format!("requests[{i}].params.model"),
                        problem: e.to_string(),
                    }
                })?;
                *m = Value::String(target);
                alias.get_or_insert(model);
            }
        }
        _ => {}
    }
    Ok(alias)
}

/// A creation answered: the new id recorded for the caller before the answer leaves.
async fn created(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    call: &JobCall,
    job: &Job,
    up: Upstream,
    alias: Option<String>,
) -> pingora::Result<Result<(), GatewayError>> {
    let (status, _, mut v) = match answered(s, ctx, job, up).await? {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(Ok(())),
        Err(e) => return Ok(Err(e)),
    };
    let Some(id) = v.get("id").and_then(Value::as_str).map(str::to_string) else {
        return Ok(Err(GatewayError::Upstream(format!(
            "provider {} answered a {} creation without an id",
            job.rt.snap.providers[job.provider].name,
            call.api.object()
        ))));
    };
    if let Err(e) = own(gw, job, &id, call.api.kind(), alias.clone()).await {
        return Ok(Err(e));
    }
    ctx.alias = alias.as_deref().and_then(|a| job.rt.snap.alias(a)).map(|(i, _)| i);
    ctx.attempt_log.push(format!("created {id}"));
    if call.api == Api::MessageBatches {
        answer::rewrite_results_url(&mut v, &base_url(s));
    }
    answer(s, ctx, job, status, &v).await?;
    Ok(Ok(()))
}

/// The scheme and authority the client called (for URLs that point back at the gateway).
fn base_url(s: &Session) -> String {
    let req = s.req_header();
    let host = req
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let tls = s.digest().is_some_and(|d| d.ssl_digest.is_some());
    format!("{}://{host}", if tls { "https" } else { "http" })
}

/// `POST /v1/files` (and a multipart `POST /v1/videos`): the form streams through, a batch
/// file rewritten line by line, never held whole.
async fn upload(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    call: &JobCall,
    job: &Job,
) -> pingora::Result<Result<(), GatewayError>> {
    let rt = job.rt.clone();
    let max = rt.snap.limits.max_file_bytes;
    let content_type =
        s.req_header().headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let Some(boundary) = boundary_of(&content_type) else {
        return Ok(Err(GatewayError::InvalidRequest(
            "expected a multipart/form-data body with a boundary".into(),
        )));
    };
    let too_large = || GatewayError::BodyTooLarge { limit: "limits.max_file_bytes", max };
    if chat::declared_length(s).is_some_and(|n| n as u64 > max) {
        chat::drain(s).await;
        return Ok(Err(too_large()));
    }
    let mut req = match request(s, call, job, s.req_header().uri.query()) {
        Ok(r) => r,
        Err(e) => {
            chat::drain(s).await;
            return Ok(Err(e));
        }
    };
    req.body = Bytes::new();
    chat::answer_expect_continue(s).await?;
    let (principal, provider) = (job.principal.clone(), job.provider);
    let map = |m: &str| target_model(&rt, &principal, provider, m).map_err(|e| e.to_string());
    let videos = call.api == Api::Videos;
    let mut form = FormRewriter::new(&boundary, map, videos, rt.snap.limits.max_body_bytes);
    let p = &rt.snap.providers[job.provider];
    ctx.attempts += 1;
    let started = Instant::now();
    let mut pending = match upstream::open(&gw.connector, &gw.resolver, p, &rt.snap.limits).await {
        Ok(p) => p,
        Err(e) => {
            chat::drain(s).await;
            return Ok(Err(GatewayError::Upstream(e.to_string())));
        }
    };
    if let Err(e) = pending.write_header(&req, &content_type, None) {
        chat::drain(s).await;
        return Ok(Err(GatewayError::Upstream(e.to_string())));
    }
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut total: u64 = 0;
    let refused = loop {
        let chunk = match s.read_request_body().await {
            Ok(Some(c)) => c,
            Ok(None) => break form.finish(&mut out).err().map(Stop::Form),
            Err(e) => break Some(Stop::Client(chat::bad_body(s, &e))),
        };
        total += chunk.len() as u64;
        if total > max {
            break Some(Stop::Client(too_large()));
        }
        if let Err(e) = form.feed(&chunk, &mut out) {
            break Some(Stop::Form(e));
        }
        if out.len() >= 16 * 1024 {
            // The written bytes are copied out (held or sent), so the buffer is reused.
            let sent = pending.write(&out).await;
            out.clear();
            if let Err(e) = sent {
                break Some(Stop::Upstream(GatewayError::Upstream(e.to_string())));
            }
        }
    };
    let missing_model = videos && refused.is_none() && form.model().is_none();
    if let Some(stop) =
        refused.or(missing_model.then_some(Stop::Client(GatewayError::MissingField { field: "model" })))
    {
        // The upstream request is abandoned unfinished: the provider never acts on it.
        drop(pending);
        let e = match stop {
            Stop::Form(e) => {
                chat::drain(s).await;
                form_error(e)
            }
            Stop::Client(e) => {
                chat::drain(s).await;
                e
            }
            Stop::Upstream(e) => e,
        };
        return Ok(Err(e));
    }
    if !out.is_empty() {
        if let Err(e) = pending.write(&out).await {
            return Ok(Err(GatewayError::Upstream(e.to_string())));
        }
    }
    let up = match pending.finish().await {
        Ok(up) => up,
        Err(e) => return Ok(Err(GatewayError::Upstream(e.to_string()))),
    };
    ctx.upstream_time += started.elapsed();
    let up = match credentials_ok(p, up).await {
        Ok(up) => up,
        Err(e) => return Ok(Err(e)),
    };
    let alias = if videos { form.model().map(str::to_string) } else { form.aliases.first().cloned() };
    if !form.models.is_empty() {
        ctx.model = form.models.first().cloned();
    }
    ctx.attempt_log.push(format!("uploaded {total} bytes"));
    created(gw, s, ctx, call, job, up, alias).await
}

enum Stop {
    Form(FormError),
    Client(GatewayError),
    Upstream(GatewayError),
}

fn form_error(e: FormError) -> GatewayError {
    match e {
        FormError::Model(m) => GatewayError::InvalidField { field: "model".into(), problem: m },
        FormError::Line { .. } | FormError::LineTooLong { .. } => {
            GatewayError::InvalidField { field: "file".into(), problem: e.to_string() }
        }
        _ => GatewayError::InvalidRequest(e.to_string()),
    }
}

/// `GET` a list: the provider's pages, kept to the caller's objects, until `limit` are found
/// or the provider has no more.
async fn list(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    call: &JobCall,
    job: &Job,
) -> pingora::Result<Result<(), GatewayError>> {
    let query = s.req_header().uri.query().unwrap_or("").to_string();
    let cursor_key = if call.api == Api::MessageBatches { "after_id" } else { "after" };
    let mut limit = 20usize;
    let mut cursor: Option<String> = None;
    let mut rest: Vec<String> = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "limit" => limit = v.parse().unwrap_or(20).clamp(1, 1000),
            k if k == cursor_key => cursor = Some(v.to_string()),
            _ => rest.push(kv.to_string()),
        }
    }
    let mut kept: Vec<Value> = Vec::new();
    let mut has_more = false;
    for _ in 0..MAX_LIST_PAGES {
        let mut q = rest.clone();
        q.push("limit=100".into());
        if let Some(c) = &cursor {
            q.push(format!("{cursor_key}={c}"));
        }
        let req = match request(s, call, job, Some(&q.join("&"))) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let (_, _, v) = match exchange(gw, s, ctx, job, &req).await? {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(Ok(())),
            Err(e) => return Ok(Err(e)),
        };
        let ids: Vec<&str> = v
            .get("data")
            .and_then(Value::as_array)
            .map(|d| d.iter().filter_map(|o| o.get("id").and_then(Value::as_str)).collect())
            .unwrap_or_default();
        let mine: std::collections::HashSet<String> = ids
            .iter()
            .zip(lookup(gw, &job.rt, &ids).await)
            .filter(|(_, o)| o.as_ref().is_some_and(|o| o.owner == job.owner))
            .map(|(id, _)| id.to_string())
            .collect();
        let page = answer::filter_page(&v, |id| mine.contains(id));
        let mut items = page.kept.into_iter();
        kept.extend(items.by_ref().take(limit - kept.len()));
        if kept.len() == limit {
            has_more = items.next().is_some() || page.has_more;
            break;
        }
        has_more = page.has_more && page.last_id.is_some();
        if !has_more {
            break;
        }
        // Past the last page read, if the page cap ends the loop: the caller pages on.
        cursor = page.last_id;
    }
    for o in &kept {
        observe(gw, ctx, call.api, job, o).await;
    }
    let mut out = answer::list_answer(call.api, kept, has_more);
    if call.api == Api::MessageBatches {
        let base = base_url(s);
        if let Some(data) = out.get_mut("data").and_then(Value::as_array_mut) {
            data.iter_mut().for_each(|b| answer::rewrite_results_url(b, &base));
        }
    }
    answer(s, ctx, job, 200, &out).await?;
    Ok(Ok(()))
}

/// Retrieve, cancel, delete, events, checkpoints: the provider's JSON answer, after the
/// gateway notes what it says (files the job made, a finished job's usage, a deletion).
async fn read(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    call: &JobCall,
    job: &Job,
) -> pingora::Result<Result<(), GatewayError>> {
    let mut req = match request(s, call, job, s.req_header().uri.query()) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    if call.act == Act::Cancel {
        // Cancel takes no body; a client may send `{}`.
        let _ = chat::read_body(s, ctx, &job.rt).await?;
        req.body = Bytes::new();
    }
    let (status, body, mut v) = match exchange(gw, s, ctx, job, &req).await? {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(Ok(())),
        Err(e) => return Ok(Err(e)),
    };
    let id = call.id.clone().unwrap_or_default();
    match call.act {
        Act::Delete => {
            forget(gw, &job.rt, &id).await;
        }
        Act::Get | Act::Cancel => observe(gw, ctx, call.api, job, &v).await,
        _ => {}
    }
    if call.api == Api::MessageBatches {
        answer::rewrite_results_url(&mut v, &base_url(s));
        answer(s, ctx, job, status, &v).await?;
    } else {
        let p = &job.rt.snap.providers[job.provider];
        respond::json(s, ctx, status, body.to_vec(), &[("x-gateway-provider", p.name.clone())]).await?;
    }
    Ok(Ok(()))
}

/// What a job object the caller reads says: the files it made become the caller's, and a
/// finished job's usage is charged, once.
async fn observe(gw: &Gateway, ctx: &mut RequestCtx, api: Api, job: &Job, v: &Value) {
    let Some(id) = v.get("id").and_then(Value::as_str) else { return };
    for file in answer::made_files(api, v) {
        if gw.objects.find(&file).is_none() {
            let _ = own(gw, job, &file, crate::jobs::ObjectKind::File, None).await;
        }
    }
    let Some(usage) = answer::finished_usage(api, v) else { return };
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    charge(gw, ctx, api, job, id, usage, model).await;
}

/// Charge a finished job's usage to this request, once per job (the record says whether it
/// was charged before, across restarts).
async fn charge(
    gw: &Gateway,
    ctx: &mut RequestCtx,
    api: Api,
    job: &Job,
    id: &str,
    usage: JobUsage,
    model: String,
) {
    let Some(object) = owned(gw, &job.rt, id, &job.owner).await else { return };
    if object.charged || !charge_once(gw, &job.rt, id).await {
        return;
    }
    let micros = job_cost(&job.rt, api, object.alias.as_deref(), &model, &usage);
    ctx.usage.input_tokens += usage.input_tokens + usage.trained_tokens;
    ctx.usage.output_tokens += usage.output_tokens;
    ctx.usage.cache_read_tokens += usage.cached_tokens;
    ctx.usage.reasoning_tokens += usage.reasoning_tokens;
    *ctx.job_micros.get_or_insert(0) += micros;
    if ctx.alias.is_none() {
        ctx.alias = object.alias.as_deref().and_then(|a| job.rt.snap.alias(a)).map(|(i, _)| i);
        ctx.model = Some(model);
    }
    ctx.attempt_log.push(format!(
        "charged {id}: {} input, {} output tokens, {} video s, {micros} micro-USD",
        usage.input_tokens + usage.trained_tokens,
        usage.output_tokens,
        usage.video_seconds
    ));
}

/// A finished job's cost in micro-dollars: the alias's (or its target's, or the shipped
/// table's) prices, batch prices for batches, per video second for videos. Fine-tuning has no
/// training price in the config: its tokens are recorded, at no cost.
fn job_cost(rt: &Runtime, api: Api, alias: Option<&str>, model: &str, usage: &JobUsage) -> u64 {
    let snap = &rt.snap;
    let a = alias.and_then(|a| snap.alias(a)).map(|(_, a)| a);
    let target = a.and_then(|a| a.targets.iter().find(|t| t.model == model).or(a.targets.first()));
    let price = crate::accounting::resolve_price(
        target.and_then(|t| t.pricing.as_ref()),
        a.and_then(|a| a.pricing.as_ref()),
        if model.is_empty() { target.map(|t| t.model.as_str()).unwrap_or("") } else { model },
    );
    let Some(price) = price else { return 0 };
    let tokens = Usage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cache_read_tokens: usage.cached_tokens,
        reasoning_tokens: usage.reasoning_tokens,
        ..Usage::default()
    };
    let media = crate::accounting::MediaUnits { video_seconds: usage.video_seconds, ..Default::default() };
    match api {
        Api::Batches | Api::MessageBatches => {
            crate::accounting::cost_micros(&price.for_batch(), &tokens, media)
        }
        Api::Videos => crate::accounting::cost_micros(&price, &Usage::default(), media),
        _ => 0,
    }
}

/// A file's or video's content, a message batch's results: streamed down as they come.
async fn download(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    call: &JobCall,
    job: &Job,
) -> pingora::Result<Result<(), GatewayError>> {
    let req = match request(s, call, job, s.req_header().uri.query()) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let up = match send(gw, s, ctx, job, &req).await? {
        Ok(up) => up,
        Err(e) => return Ok(Err(e)),
    };
    let status = up.status();
    if !(200..300).contains(&status) {
        return Ok(answered(s, ctx, job, up).await?.map(|_| ()));
    }
    ctx.status = status;
    let p = &job.rt.snap.providers[job.provider];
    let mut h = Head::answer(status, ctx, 4)?;
    h.set_str(head::X_GATEWAY_PROVIDER, &p.name)?;
    h.set_str(http::header::CONTENT_TYPE, up.header("content-type").unwrap_or("application/octet-stream"))?;
    if let Some(cd) = up.header("content-disposition") {
        h.set_str(http::header::CONTENT_DISPOSITION, cd)?;
    }
    if call.api != Api::MessageBatches {
        super::responses::pass_body(s, ctx, up, h).await?;
        return Ok(Ok(()));
    }
    // Anthropic reports a message batch's usage only in its results: summed as they pass.
    results_through(gw, s, ctx, job, call, up, h).await
}

async fn results_through(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    job: &Job,
    call: &JobCall,
    mut up: Upstream,
    mut h: Head,
) -> pingora::Result<Result<(), GatewayError>> {
    chat::length_or_chunked(s, &mut h, &up)?;
    h.write(s).await?;
    let mut usage = answer::ResultsUsage::default();
    loop {
        match up.next_chunk().await {
            Ok(Some(chunk)) => {
                usage.feed(&chunk);
                s.write_response_body(chunk, false).await?;
            }
            Ok(None) => break,
            Err(e) => {
                ctx.error = Some(e.to_string());
                return Err(pingora::Error::explain(pingora::ErrorType::ReadError, e.to_string()));
            }
        }
    }
    up.release();
    s.write_response_body(Bytes::new(), true).await?;
    let model = usage.model.clone().unwrap_or_default();
    if let (Some(id), Some(u)) = (&call.id, usage.finish()) {
        if u.input_tokens + u.output_tokens > 0 {
            charge(gw, ctx, Api::MessageBatches, job, id, u, model).await;
        }
    }
    Ok(Ok(()))
}
