//! The Responses API's stored responses on the data plane. Before a `POST /v1/responses` is
//! routed, `prepare` resolves `previous_response_id`: a response created by a target that
//! speaks Responses natively pins the request to that target (it lives in that provider
//! account); one the gateway stored itself (a translated route) has its history prepended to
//! `input`. After an answer, the new response is recorded (`record_native`,
//! `record_translated`). `serve_stored` answers `GET/DELETE /v1/responses/{id}`,
//! `GET .../input_items` and `POST .../cancel` by id, and `serve_input_tokens` passes
//! `POST /v1/responses/input_tokens` to a Responses-speaking target. Another owner's id is
//! unknown: 404 in OpenAI's error shape.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Session;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::chat::{self, Inbound};
use super::ctx::RequestCtx;
use super::head::{self, Head};
use super::respond;
use super::upstream::{self, Upstream};
use super::Gateway;
use crate::admission::{self, Principal};
use crate::error::GatewayError;
use crate::formats::{passthrough, Format};
use crate::providers::{self, Operation};
use crate::responses::{self, Affinity, HistoryError, Turn};
use crate::runtime::Runtime;

/// What a Responses request carries through routing for the stores.
#[derive(Clone, Debug, Default)]
pub struct TurnCtx {
    /// `project:<name>` or `key:<id>`.
    pub owner: String,
    /// `store` was not `false`: the new response is recorded.
    pub store: bool,
    /// The response this request continues.
    pub prev: Option<String>,
    /// `(alias, target)` that created `prev`, when a provider stores it.
    pub pinned: Option<(usize, usize)>,
    /// The request's own input items (before any history was prepended), for the gateway's
    /// conversation store; `None` when no target of the route needs translating.
    pub input: Option<Vec<Value>>,
}

/// Why a Responses request is refused before routing.
pub enum Refusal {
    Gateway(GatewayError),
    /// 404 in OpenAI's shape (`param`, `code` as OpenAI writes them).
    NotFound {
        message: String,
        param: Option<&'static str>,
        code: Option<&'static str>,
    },
}

impl From<GatewayError> for Refusal {
    fn from(e: GatewayError) -> Self {
        Refusal::Gateway(e)
    }
}

/// Answer a refusal in the Responses client's shape.
pub async fn refuse(s: &mut Session, ctx: &mut RequestCtx, r: Refusal) -> pingora::Result<()> {
    match r {
        Refusal::Gateway(e) => respond::error(s, ctx, Format::OpenAiResponses, e).await,
        Refusal::NotFound { message, param, code } => not_found(s, ctx, message, param, code).await,
    }
}

async fn not_found(
    s: &mut Session,
    ctx: &mut RequestCtx,
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
) -> pingora::Result<()> {
    let body =
        json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}});
    ctx.error = Some(message);
    let body = serde_json::to_vec(&body).unwrap_or_default();
    respond::json(s, ctx, 404, body, &[("x-gateway-error", "1".to_string())]).await
}

/// Resolve `previous_response_id` and note what the stores need, before routing `inb` to
/// `alias`. May rewrite `inb` (history prepended, `previous_response_id` removed).
pub fn prepare(
    gw: &Gateway,
    rt: &Runtime,
    principal: &Principal,
    inb: &mut Inbound,
    alias: usize,
    now: SystemTime,
) -> Result<TurnCtx, Refusal> {
    let owner = responses::owner(principal);
    let store = inb.peek.store != Some(false);
    let prev = inb.peek.previous_response_id.clone();
    let translated = route_translates(rt, alias);
    let input = if translated && store { Some(own_input(&inb.body)?) } else { None };
    let mut turn = TurnCtx { owner, store, prev: prev.clone(), pinned: None, input };
    let Some(prev) = prev else { return Ok(turn) };
    if let Some(a) = gw.responses.affinity.get(&prev, &turn.owner, now) {
        let Some(pinned) = find_target(rt, alias, &a) else {
            return Err(GatewayError::InvalidField {
                field: "previous_response_id".into(),
                problem: format!(
                    "response {prev:?} is stored by provider {:?}, which model {:?} does not route to",
                    a.provider, rt.snap.aliases[alias].name
                ),
            }
            .into());
        };
        turn.pinned = Some(pinned);
        return Ok(turn);
    }
    let history = gw.responses.conversations.history(&turn.owner, &prev, now).map_err(|e| match e {
        HistoryError::NotFound(_) | HistoryError::Trimmed(_) => Refusal::NotFound {
            message: e.to_string(),
            param: Some("previous_response_id"),
            code: Some("previous_response_not_found"),
        },
    })?;
    // A conversation the gateway keeps: the upstream sees it whole.
    let own = match &turn.input {
        Some(items) => items.clone(),
        None => own_input(&inb.body)?,
    };
    let mut body = object(&inb.body)?;
    body.remove("previous_response_id");
    // The gateway minted these output items' ids: a provider would look them up and fail.
    let mut items: Vec<Value> = history.into_iter().map(without_minted_id).collect();
    items.extend(own);
    body.insert("input".into(), Value::Array(items));
    let bytes = serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(e.to_string()))?;
    inb.body = Bytes::from(bytes);
    inb.peek = passthrough::peek(&inb.body).map_err(|e| GatewayError::InvalidRequest(e.to_string()))?;
    Ok(turn)
}

/// A replayed output item without the `id` the gateway gave it (messages and function calls
/// are valid input without one; the id means nothing to a provider that did not issue it).
fn without_minted_id(mut item: Value) -> Value {
    let ty = item.get("type").and_then(Value::as_str).unwrap_or_default();
    if matches!(ty, "message" | "function_call") {
        if let Some(m) = item.as_object_mut() {
            m.remove("id");
        }
    }
    item
}

/// Whether some target of `alias` (or of its fallbacks) would get the request translated.
fn route_translates(rt: &Runtime, alias: usize) -> bool {
    let snap = &rt.snap;
    let a = &snap.aliases[alias];
    std::iter::once(a)
        .chain(a.fallbacks.iter().map(|&f| &snap.aliases[f]))
        .flat_map(|a| a.targets.iter())
        .any(|t| !providers::speaks_responses(&snap.providers[t.provider]))
}

/// The target that created a stored response: in `alias` or its fallbacks, the same provider
/// and model, else the same provider (the response lives in its account).
fn find_target(rt: &Runtime, alias: usize, a: &Affinity) -> Option<(usize, usize)> {
    let snap = &rt.snap;
    let chain: Vec<usize> =
        std::iter::once(alias).chain(snap.aliases[alias].fallbacks.iter().copied()).collect();
    let find = |exact: bool| {
        chain.iter().find_map(|&ai| {
            snap.aliases[ai]
                .targets
                .iter()
                .position(|t| {
                    let p = &snap.providers[t.provider];
                    p.name == a.provider && (!exact || t.model == a.model) && providers::speaks_responses(p)
                })
                .map(|ti| (ai, ti))
        })
    };
    find(true).or_else(|| find(false))
}

fn object(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(GatewayError::InvalidRequest("the body must be a JSON object".into())),
        Err(e) => Err(GatewayError::InvalidRequest(format!("invalid JSON body: {e}"))),
    }
}

/// The request's `input` as items (a string is one user message).
fn own_input(body: &[u8]) -> Result<Vec<Value>, GatewayError> {
    let mut body = object(body)?;
    Ok(match body.remove("input") {
        Some(Value::String(s)) => vec![json!({"type": "message", "role": "user", "content": s})],
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    })
}

/// The Redis space of stored responses' records (which target made each id, for whom).
const RESPONSES: &str = "resp";

/// Make sure this instance knows the record of `id` when another instance made it (with
/// `redis:`, every instance routes a follow-up or a read by id to the creating target).
pub async fn warm(gw: &Gateway, rt: &Runtime, id: &str, owner: &str, now: SystemTime) {
    if gw.responses.affinity.get(id, owner, now).is_some() {
        return;
    }
    let Some(shared) = &rt.shared else { return };
    match shared.limits.records_get(RESPONSES, &[id]).await {
        Ok(found) => {
            if let Some(a) = found.into_iter().flatten().next().and_then(|t| serde_json::from_str(&t).ok()) {
                gw.responses.affinity.cache(id, a);
            }
        }
        Err(e) => {
            tracing::debug!("{e}; stored responses other instances created are unknown until it answers")
        }
    }
}

/// A response created by a target that stores it: remember where, for whom.
pub fn record_native(gw: &Gateway, turn: &TurnCtx, id: &str, provider: &str, model: &str, alias: &str) {
    if !turn.store || id.is_empty() {
        return;
    }
    let now = SystemTime::now();
    let a = Affinity {
        owner: turn.owner.clone(),
        provider: provider.to_string(),
        model: model.to_string(),
        alias: alias.to_string(),
        created: now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    // With `redis:`, every instance learns it (off the request's path; kept as long as here).
    if let Some(shared) = gw.store.load().shared.clone() {
        let (id, ttl) = (id.to_string(), gw.responses.affinity.retention());
        if let Ok(text) = serde_json::to_string(&a) {
            tokio::spawn(async move {
                if let Err(e) = shared.limits.record_put(RESPONSES, &id, &text, Some(ttl)).await {
                    tracing::warn!("{e}; response {id} is routed by this instance only");
                }
            });
        }
    }
    gw.responses.affinity.record(id, a, now);
}

/// A response made by translation: the gateway keeps the turn (input and output items).
pub fn record_translated(gw: &Gateway, turn: &TurnCtx, response: Value) {
    let (true, Some(input)) = (turn.store, &turn.input) else { return };
    let Some(id) = response.get("id").and_then(Value::as_str).map(str::to_string) else { return };
    let now = SystemTime::now();
    let t = Turn {
        prev: turn.prev.clone(),
        created: now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        input: input.clone(),
        response,
    };
    gw.responses.conversations.put(&turn.owner, &id, t, now);
}

/// What a request by id asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredOp {
    Get,
    Delete,
    InputItems,
    Cancel,
}

impl StoredOp {
    pub fn name(self) -> &'static str {
        match self {
            StoredOp::Get => "responses_get",
            StoredOp::Delete => "responses_delete",
            StoredOp::InputItems => "responses_input_items",
            StoredOp::Cancel => "responses_cancel",
        }
    }

    fn method(self) -> http::Method {
        match self {
            StoredOp::Get | StoredOp::InputItems => http::Method::GET,
            StoredOp::Delete => http::Method::DELETE,
            StoredOp::Cancel => http::Method::POST,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            StoredOp::Get | StoredOp::Delete => "",
            StoredOp::InputItems => "/input_items",
            StoredOp::Cancel => "/cancel",
        }
    }
}

/// `GET/DELETE /v1/responses/{id}`, `GET .../input_items`, `POST .../cancel`: to the provider
/// that stores the response, or answered from the gateway's own store.
pub async fn serve_stored(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    id: String,
    op: StoredOp,
) -> pingora::Result<()> {
    let Some(rt) = ctx.rt.clone() else { return Ok(()) };
    let req = s.req_header();
    let principal = match admission::authenticate(&rt, &req.headers, req.uri.query(), SystemTime::now()) {
        Ok(p) => p,
        Err(e) => return respond::error(s, ctx, Format::OpenAiResponses, e).await,
    };
    let query = req.uri.query().map(str::to_string);
    ctx.principal = Some(principal.clone());
    ctx.admission = Some(admission::admit_without_model(principal.clone()));
    let body = match chat::read_body(s, ctx, &rt).await? {
        Ok(b) => b,
        Err(e) => return respond::error(s, ctx, Format::OpenAiResponses, e).await,
    };
    let owner = responses::owner(&principal);
    let now = SystemTime::now();
    warm(gw, &rt, &id, &owner, now).await;
    if let Some(a) = gw.responses.affinity.get(&id, &owner, now) {
        let Some(provider) = rt.snap.providers.iter().find(|p| p.name == a.provider) else {
            let e = GatewayError::Upstream(format!(
                "response {id:?} is stored by provider {:?}, which is no longer configured",
                a.provider
            ));
            return respond::error(s, ctx, Format::OpenAiResponses, e).await;
        };
        ctx.provider = Some(provider.name.clone());
        ctx.model = Some(a.model.clone());
        ctx.alias = rt.snap.alias(&a.alias).map(|(i, _)| i);
        let sub = format!("/{}{}", crate::providers::encode_segment(&id), op.suffix());
        let req = match providers::responses_request(provider, op.method(), &sub, query.as_deref(), body) {
            Ok(r) => r,
            Err(e) => {
                return respond::error(s, ctx, Format::OpenAiResponses, GatewayError::Upstream(e.to_string()))
                    .await
            }
        };
        // A deleted response is forgotten before the client hears it is deleted, so the
        // client's next request about it is already a 404.
        let mut deleted = false;
        let forget = |status: u16| {
            if op == StoredOp::Delete && (200..300).contains(&status) {
                gw.responses.affinity.remove(&id, &owner);
                deleted = true;
            }
        };
        forward(gw, s, ctx, provider, &a.model, &req, forget).await?;
        if deleted {
            if let Some(shared) = &rt.shared {
                if let Err(e) = shared.limits.record_remove(RESPONSES, &id).await {
                    tracing::warn!("{e}");
                }
            }
        }
        return Ok(());
    }
    let Some(turn) = gw.responses.conversations.get(&owner, &id, now) else {
        let message = format!("Response with id '{id}' not found.");
        return not_found(s, ctx, message, None, None).await;
    };
    let answer = match op {
        StoredOp::Get => turn.response.clone(),
        StoredOp::Delete => {
            gw.responses.conversations.remove(&owner, &id);
            json!({"id": id, "object": "response", "deleted": true})
        }
        StoredOp::InputItems => {
            let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
            json!({"object": "list", "data": turn.input, "first_id": id_of(turn.input.first()),
                "last_id": id_of(turn.input.last()), "has_more": false})
        }
        StoredOp::Cancel => {
            let e = GatewayError::InvalidRequest(format!(
                "response {id:?} is complete: only background responses can be cancelled"
            ));
            return respond::error(s, ctx, Format::OpenAiResponses, e).await;
        }
    };
    respond::json(s, ctx, 200, serde_json::to_vec(&answer).unwrap_or_default(), &[]).await
}

/// `POST /v1/responses/input_tokens`: counted by a target of the alias named by `model` that
/// speaks Responses natively (passed through, `model` spliced), else estimated by the gateway.
pub async fn serve_input_tokens(gw: &Gateway, s: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<()> {
    let Some(rt) = ctx.rt.clone() else { return Ok(()) };
    let req = s.req_header();
    let principal = match admission::authenticate(&rt, &req.headers, req.uri.query(), SystemTime::now()) {
        Ok(p) => p,
        Err(e) => return respond::error(s, ctx, Format::OpenAiResponses, e).await,
    };
    ctx.principal = Some(principal.clone());
    ctx.admission = Some(admission::admit_without_model(principal.clone()));
    let body = match chat::read_body(s, ctx, &rt).await? {
        Ok(b) => b,
        Err(e) => return respond::error(s, ctx, Format::OpenAiResponses, e).await,
    };
    let peek = match passthrough::peek(&body) {
        Ok(p) => p,
        Err(e) => {
            let e = GatewayError::InvalidRequest(e.to_string());
            return respond::error(s, ctx, Format::OpenAiResponses, e).await;
        }
    };
    let Some(model) = peek.model.clone() else {
        return respond::error(
            s,
            ctx,
            Format::OpenAiResponses,
            GatewayError::MissingField { field: "model" },
        )
        .await;
    };
    let alias = match admission::resolve_alias(&rt, &principal, &model) {
        Ok(a) => a,
        Err(e) => return respond::error(s, ctx, Format::OpenAiResponses, e).await,
    };
    ctx.alias = Some(alias);
    let snap = &rt.snap;
    let now = Instant::now();
    let native = snap.aliases[alias].targets.iter().enumerate().find(|(i, t)| {
        providers::speaks_responses(&snap.providers[t.provider])
            && rt.routers[alias].target(*i).is_available(now)
    });
    if let Some((_, target)) = native {
        let provider = &snap.providers[target.provider];
        ctx.provider = Some(provider.name.clone());
        ctx.model = Some(target.model.clone());
        let body = Bytes::from(passthrough::rewrite_peeked(&body, &peek, Some(&target.model), false));
        let req =
            match providers::responses_request(provider, http::Method::POST, "/input_tokens", None, body) {
                Ok(r) => r,
                Err(e) => {
                    return respond::error(
                        s,
                        ctx,
                        Format::OpenAiResponses,
                        GatewayError::Upstream(e.to_string()),
                    )
                    .await
                }
            };
        forward(gw, s, ctx, provider, &target.model, &req, |_| {}).await?;
        return Ok(());
    }
    let family = snap.aliases[alias]
        .targets
        .first()
        .map(|t| {
            crate::limits::tokens::TokenizerFamily::for_target(snap.providers[t.provider].kind, &t.model)
        })
        .unwrap_or(crate::limits::tokens::TokenizerFamily::O200k);
    let n = crate::limits::tokens::count_request_tokens(Format::OpenAiResponses, &body, family).max(1);
    let answer = json!({"object": "response.input_tokens", "input_tokens": n});
    respond::json(s, ctx, 200, serde_json::to_vec(&answer).unwrap_or_default(), &[]).await
}

/// Send `req` to `provider` and pass its answer on as it is (status, type, body; a stream as
/// it comes). The provider's 401/403 (the gateway's own credentials) is a 502, its text not
/// passed on. `before_answer` gets the upstream's status before anything is written to the
/// client.
async fn forward(
    gw: &Gateway,
    s: &mut Session,
    ctx: &mut RequestCtx,
    provider: &crate::config::Provider,
    model: &str,
    req: &providers::UpstreamRequest,
    before_answer: impl FnOnce(u16),
) -> pingora::Result<()> {
    let Some(rt) = ctx.rt.clone() else { return Ok(()) };
    ctx.attempts += 1;
    let started = Instant::now();
    let op = Operation::Chat { stream: false };
    let send = upstream::send(&gw.connector, &gw.resolver, provider, model, op, req, &rt.snap.limits);
    let Some(sent) = chat::unless_client_gone(s, std::pin::pin!(send)).await else {
        chat::client_gone(ctx)?;
        return Ok(());
    };
    let mut up = match sent {
        Ok(up) => up,
        Err(e) => {
            let e = GatewayError::Upstream(e.to_string());
            respond::error(s, ctx, Format::OpenAiResponses, e).await?;
            return Ok(());
        }
    };
    ctx.ttfb = Some(started.elapsed());
    ctx.upstream_time += started.elapsed();
    let status = up.status();
    before_answer(status);
    if status == 401 || status == 403 {
        let _ = up.read_to_end(64 * 1024).await;
        up.release();
        let e = GatewayError::Upstream(format!(
            "provider {} refused the gateway's credentials (HTTP {status})",
            provider.name
        ));
        respond::error(s, ctx, Format::OpenAiResponses, e).await?;
        return Ok(());
    }
    ctx.status = status;
    let mut h = Head::answer(status, ctx, 4)?;
    h.set_str(head::X_GATEWAY_PROVIDER, &provider.name)?;
    h.set_str(http::header::CONTENT_TYPE, up.header("content-type").unwrap_or("application/json"))?;
    pass_body(s, ctx, up, h).await?;
    Ok(())
}

/// Copy an upstream body to the client as it comes.
pub(super) async fn pass_body(
    s: &mut Session,
    ctx: &mut RequestCtx,
    up: Upstream,
    mut h: Head,
) -> pingora::Result<()> {
    super::chat::length_or_chunked(s, &mut h, &up)?;
    h.write(s).await?;
    super::chat::pump(s, ctx, up).await
}

/// The shared stores, for the gateway's constructor: under the config's `state_dir`,
/// conversations sealed under its `master_key` when one is set.
pub fn open_stores(snap: &crate::config::Snapshot) -> Arc<responses::Responses> {
    let master = snap
        .config
        .master_key
        .as_ref()
        .and_then(|m| m.resolve(None).ok())
        .and_then(|v| crate::config::MasterKey::from_base64(v.expose()).ok());
    let dir = std::path::Path::new(&snap.state_dir);
    Arc::new(responses::Responses::open(dir, SystemTime::now(), master))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_input_is_one_user_message_and_ids_are_escaped() {
        let items = own_input(br#"{"input":"hi"}"#).unwrap();
        assert_eq!(items, vec![json!({"type": "message", "role": "user", "content": "hi"})]);
        let items = own_input(br#"{"input":[{"type":"message","role":"user","content":"a"},{"type":"reasoning","encrypted_content":"e"}]}"#).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(own_input(br#"{"model":"m"}"#).unwrap(), Vec::<Value>::new());
        assert_eq!(crate::providers::encode_segment("resp_ab-1"), "resp_ab-1");
        let m = without_minted_id(
            json!({"type": "message", "id": "msg_x_0", "role": "assistant", "content": []}),
        );
        assert_eq!(m, json!({"type": "message", "role": "assistant", "content": []}));
        let r = json!({"type": "reasoning", "id": "rs_1", "encrypted_content": "e"});
        assert_eq!(without_minted_id(r.clone()), r, "reasoning items keep theirs");
        assert_eq!(crate::providers::encode_segment("a/../b?x"), "a%2F..%2Fb%3Fx");
    }
}
