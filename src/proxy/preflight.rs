//! `POST /v1/gateway/preflight` (SPEC section 8): can this caller afford these planned
//! operations, and what would they cost? Priced like admission prices a request (the alias's
//! first target: its own `pricing`, else the alias's, else the shipped table) and checked
//! against the live budget state of every scope of the caller (key and project), remaining =
//! limit − spent − what requests in flight have reserved. Nothing is reserved or charged, no
//! provider is called.
//!
//! An operation is `{"model": alias}` plus any of `input_tokens`, `output_tokens`,
//! `cached_input_tokens` (the part of the input expected from the provider's cache),
//! `images`, `audio_seconds`, `video_seconds`; a field left out counts 0. Besides budgets, an
//! operation whose tokens alone exceed a scope's `tpm` is reported as not allowed (admission
//! would answer 400 for it whatever the time).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Session;
use serde::{Deserialize, Serialize};

use super::chat;
use super::ctx::RequestCtx;
use super::respond;
use crate::accounting::{cost_micros, resolve_price, MediaUnits};
use crate::admission::{self, Principal};
use crate::error::GatewayError;
use crate::formats::{Format, Usage};
use crate::limits::{micros_to_usd, BudgetView, ScopeId, ScopeKind, ScopeRules};
use crate::runtime::Runtime;

/// The planned operations, as the client sends them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    operations: Vec<Operation>,
}

/// One planned operation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Operation {
    model: String,
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cached_input_tokens: u64,
    #[serde(default)]
    images: u64,
    #[serde(default)]
    audio_seconds: f64,
    #[serde(default)]
    video_seconds: f64,
}

/// The answer (money in micro-dollars, shown in USD too).
#[derive(Debug, PartialEq, Serialize)]
pub struct Preflight {
    pub allowed: bool,
    pub estimated_cost_usd: f64,
    pub estimated_cost_micros: u64,
    pub per_operation: Vec<OperationCost>,
    pub budget_remaining_usd: Remaining<f64>,
    pub budget_remaining_micros: Remaining<u64>,
    /// Why not allowed; `None` when allowed.
    pub reason: Option<String>,
}

/// The estimate of one operation.
#[derive(Debug, PartialEq, Serialize)]
pub struct OperationCost {
    pub model: String,
    pub estimated_cost_usd: f64,
    pub estimated_cost_micros: u64,
    /// `false` when the alias has no usable price (it would be charged 0).
    pub priced: bool,
}

/// What is left of the key's and the project's budget this period (`None`: no budget).
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Remaining<T> {
    pub key: Option<T>,
    pub project: Option<T>,
}

/// Serve a preflight: authenticate, read the body, answer. Accounted like any request of the
/// caller (a usage line with cost 0).
pub async fn serve(s: &mut Session, ctx: &mut RequestCtx, rt: &Arc<Runtime>) -> pingora::Result<()> {
    let req = s.req_header();
    let principal = match admission::authenticate(rt, &req.headers, req.uri.query(), SystemTime::now()) {
        Ok(p) => p,
        Err(e) => return respond::error(s, ctx, Format::OpenAiChat, e).await,
    };
    ctx.principal = Some(principal.clone());
    let body = match chat::read_body(s, ctx, rt).await? {
        Ok(b) => b,
        Err(e) => return respond::error(s, ctx, Format::OpenAiChat, e).await,
    };
    if rt.snap.log_bodies.is_some() {
        ctx.request_body = Some(body.clone());
    }
    let (mono, wall) = (admission::mono_ns(Instant::now()), SystemTime::now());
    let key_rules = admission::key_rules(&principal.key);
    let scopes = admission::scopes(rt, &principal, &key_rules);
    ctx.rate_headers = rt.limits.rate_headers(&scopes, mono).pairs();
    // With `redis:` the spend is in Redis (every instance's): read there, in one call.
    let shared = match &rt.shared {
        Some(sh) if !scopes.is_empty() => match sh.limits.state(&scopes, wall).await {
            Ok(views) => Some(views),
            Err(e) => {
                tracing::debug!("{e}; preflight reads this instance's counters");
                None
            }
        },
        _ => None,
    };
    let budgets = |id: &ScopeId, rules: &ScopeRules| -> Option<BudgetView> {
        rules.budget?;
        match &shared {
            Some(views) => views.iter().find(|v| &v.scope == id).and_then(|v| v.budget.clone()),
            None => rt.limits.state(id, rules, mono, wall).budget,
        }
    };
    match answer(rt, &principal, &body, budgets) {
        Ok(a) => {
            let body = serde_json::to_vec(&a).unwrap_or_default();
            respond::json(s, ctx, 200, body, &[]).await
        }
        Err(e) => respond::error(s, ctx, Format::OpenAiChat, e).await,
    }
}

/// The answer to a preflight `body` from `principal`, from the live state at `mono_now_ns` /
/// `wall_now`. Errors: unknown alias (404), alias not allowed (403), a malformed body (400).
pub fn answer(
    rt: &Runtime,
    principal: &Principal,
    body: &[u8],
    budgets: impl Fn(&ScopeId, &ScopeRules) -> Option<BudgetView>,
) -> Result<Preflight, GatewayError> {
    let plan = parse(body)?;
    let key_rules = admission::key_rules(&principal.key);
    let scopes = admission::scopes(rt, principal, &key_rules);
    let mut per_operation = Vec::with_capacity(plan.operations.len());
    let mut total: u64 = 0;
    let mut reason = None;
    for (i, op) in plan.operations.iter().enumerate() {
        let alias = admission::resolve_alias(rt, principal, &op.model)?;
        let a = &rt.snap.aliases[alias];
        let price =
            a.targets.first().and_then(|t| resolve_price(t.pricing.as_ref(), a.pricing.as_ref(), &t.model));
        let usage = Usage {
            input_tokens: op.input_tokens.saturating_add(op.cached_input_tokens),
            output_tokens: op.output_tokens,
            cache_read_tokens: op.cached_input_tokens,
            ..Usage::default()
        };
        let media = MediaUnits {
            images: op.images,
            audio_seconds: op.audio_seconds,
            video_seconds: op.video_seconds,
        };
        let micros = price.as_ref().map_or(0, |p| cost_micros(p, &usage, media));
        total = total.saturating_add(micros);
        let tokens = usage.input_tokens.saturating_add(usage.output_tokens);
        if reason.is_none() {
            reason = scopes.iter().find_map(|(id, r)| {
                r.tpm.filter(|&l| tokens > l).map(|l| {
                    format!(
                        "operation {i} ({}) needs {tokens} tokens, more than the {l} tokens per minute \
                         allowed for {id}",
                        op.model
                    )
                })
            });
        }
        per_operation.push(OperationCost {
            model: op.model.clone(),
            estimated_cost_usd: micros_to_usd(micros),
            estimated_cost_micros: micros,
            priced: price.is_some(),
        });
    }
    let mut remaining = Remaining::<u64>::default();
    for (id, rules) in &scopes {
        let Some(b) = budgets(id, rules) else { continue };
        match id.kind {
            ScopeKind::Key => remaining.key = Some(b.remaining_micros),
            ScopeKind::Project => remaining.project = Some(b.remaining_micros),
        }
        if reason.is_none() && total > b.remaining_micros {
            reason = Some(format!(
                "these operations cost an estimated ${:.6}, more than the ${:.6} left of the {:?} budget \
                 of ${:.2} of {id}",
                micros_to_usd(total),
                micros_to_usd(b.remaining_micros),
                b.period,
                micros_to_usd(b.limit_micros),
            ));
        }
    }
    Ok(Preflight {
        allowed: reason.is_none(),
        estimated_cost_usd: micros_to_usd(total),
        estimated_cost_micros: total,
        per_operation,
        budget_remaining_usd: Remaining {
            key: remaining.key.map(micros_to_usd),
            project: remaining.project.map(micros_to_usd),
        },
        budget_remaining_micros: remaining,
        reason,
    })
}

fn parse(body: &[u8]) -> Result<Plan, GatewayError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let plan: Plan = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            GatewayError::InvalidRequest(format!("preflight body: {inner}"))
        } else {
            GatewayError::InvalidField { field: path, problem: inner.to_string() }
        }
    })?;
    de.end().map_err(|e| GatewayError::InvalidRequest(format!("preflight body: {e}")))?;
    for (i, op) in plan.operations.iter().enumerate() {
        for (name, v) in [("audio_seconds", op.audio_seconds), ("video_seconds", op.video_seconds)] {
            if !v.is_finite() || v < 0.0 {
                return Err(GatewayError::InvalidField {
                    field: format!("operations[{i}].{name}"),
                    problem: "must be a number of seconds, 0 or more".into(),
                });
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Demand, ScopeId};
    use crate::runtime::Registries;

    const KEY: &str = "sk-preflight-test";

    /// Alias `fast` at $1 / $2 per Mtok (cache reads $0.50, images $0.04), `free` without any
    /// price, `other` not allowed to the key. Key budget $0.01 daily, project budget $1 monthly.
    fn runtime(key_extra: &str) -> Runtime {
        let text = format!(
            r#"listen: "127.0.0.1:0"
state_dir: /tmp/llm-gateway-preflight-unit
providers:
  - {{ name: up, kind: openai, base_url: "http://127.0.0.1:9", api_key: sk-provider }}
models:
  - alias: fast
    targets: [ {{ provider: up, model: gpt-unpriced-a }} ]
    pricing: {{ input_per_mtok: 1.0, output_per_mtok: 2.0, cached_input_per_mtok: 0.5, per_image: 0.04 }}
  - alias: free
    targets: [ {{ provider: up, model: gpt-unpriced-b }} ]
  - alias: other
    targets: [ {{ provider: up, model: gpt-unpriced-c }} ]
projects:
  - {{ name: p, budget: {{ usd: 1, period: monthly }} }}
keys:
  - {{ id: k1, hash: "{}", project: p, models: [fast, free], budget: {{ usd: 0.01, period: daily }} {key_extra} }}
"#,
            crate::auth::stored_form(KEY)
        );
        let snap = crate::config::load_str(&text).unwrap_or_else(|e| panic!("{e}"));
        Registries::default().build(snap, None, 1, None)
    }

    fn principal(rt: &Runtime) -> Principal {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", format!("Bearer {KEY}").parse().unwrap());
        admission::authenticate(rt, &h, None, SystemTime::now()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ask(rt: &Runtime, body: &str) -> Result<Preflight, GatewayError> {
        let wall = SystemTime::now();
        answer(rt, &principal(rt), body.as_bytes(), |id, rules| {
            rt.limits.state(id, rules, 1_000, wall).budget
        })
    }

    #[test]
    fn prices_each_operation_and_compares_with_what_is_left() {
        let rt = runtime("");
        let a = ask(
            &rt,
            r#"{"operations":[
                {"model":"fast","input_tokens":1000,"output_tokens":500},
                {"model":"fast","input_tokens":1000,"cached_input_tokens":2000},
                {"model":"fast","images":2},
                {"model":"free","input_tokens":1000000}]}"#,
        )
        .unwrap();
        // 1000×1 + 500×2 = 2000 µ$; 1000×1 + 2000×0.5 = 2000 µ$; 2 × 0.04 $ = 80000 µ$; unpriced 0.
        let micros: Vec<u64> = a.per_operation.iter().map(|o| o.estimated_cost_micros).collect();
        assert_eq!(micros, vec![2_000, 2_000, 80_000, 0]);
        assert_eq!(a.per_operation.iter().map(|o| o.priced).collect::<Vec<_>>(), [true, true, true, false]);
        assert_eq!(a.estimated_cost_micros, 84_000);
        assert_eq!(a.budget_remaining_micros, Remaining { key: Some(10_000), project: Some(1_000_000) });
        assert!(!a.allowed);
        let reason = a.reason.unwrap();
        assert!(reason.contains("key k1") && reason.contains("$0.010000 left"), "{reason}");

        let a =
            ask(&rt, r#"{"operations":[{"model":"fast","input_tokens":1000,"output_tokens":500}]}"#).unwrap();
        assert!(a.allowed, "{a:?}");
        assert_eq!((a.estimated_cost_micros, a.reason), (2_000, None));
        assert!((a.estimated_cost_usd - 0.002).abs() < 1e-12);
    }

    #[test]
    fn live_spend_and_reservations_count_and_nothing_is_charged() {
        let rt = runtime("");
        let scope = ScopeId::key("k1");
        rt.limits.seed_spend(scope.clone(), crate::config::BudgetPeriod::Daily, 7_000, SystemTime::now());
        let rules = admission::key_rules(&principal(&rt).key);
        // A request in flight holds 1000 µ$ of the key's budget.
        let held = rt
            .limits
            .admit(
                &[(scope.clone(), &rules)],
                Demand { tokens: 0, cost_micros: 1_000, input_tokens: 0 },
                1_000,
                SystemTime::now(),
            )
            .unwrap();
        let body = r#"{"operations":[{"model":"fast","input_tokens":1000,"output_tokens":500}]}"#;
        let a = ask(&rt, body).unwrap();
        assert_eq!(a.budget_remaining_micros.key, Some(2_000));
        assert!(a.allowed, "2000 µ$ fit exactly: {a:?}");
        let before = rt.limits.state(&scope, &rules, 1_000, SystemTime::now()).budget.unwrap();
        for _ in 0..5 {
            ask(&rt, body).unwrap();
        }
        let after = rt.limits.state(&scope, &rules, 1_000, SystemTime::now()).budget.unwrap();
        assert_eq!(
            (after.spent_micros, after.reserved_micros),
            (before.spent_micros, before.reserved_micros)
        );
        assert_eq!((after.spent_micros, after.reserved_micros), (7_000, 1_000));
        drop(held.settle(0, 1_500, 1_000, SystemTime::now()));
        let a = ask(&rt, body).unwrap();
        assert_eq!(a.budget_remaining_micros.key, Some(1_500));
        assert!(!a.allowed);
    }

    #[test]
    fn an_operation_above_a_tpm_limit_is_not_allowed() {
        let rt = runtime(", tpm: 1000");
        let a =
            ask(&rt, r#"{"operations":[{"model":"fast","input_tokens":900,"output_tokens":200}]}"#).unwrap();
        assert!(!a.allowed);
        let reason = a.reason.unwrap();
        assert!(reason.contains("1100 tokens") && reason.contains("1000 tokens per minute"), "{reason}");
    }

    #[test]
    fn unknown_forbidden_and_malformed_are_refused_with_their_errors() {
        let rt = runtime("");
        let status = |body: &str| crate::error::rescue(&ask(&rt, body).unwrap_err()).status;
        assert_eq!(status(r#"{"operations":[{"model":"nope","input_tokens":1}]}"#), 404);
        assert_eq!(status(r#"{"operations":[{"model":"other","input_tokens":1}]}"#), 403);
        assert_eq!(status(r#"{"operations":[{"model":"fast","input_tokens":-1}]}"#), 400);
        assert_eq!(status(r#"{"operations":[{"model":"fast","input_tokens":"ten"}]}"#), 400);
        assert_eq!(status(r#"{"operations":[{"model":"fast","tokens":1}]}"#), 400);
        assert_eq!(status(r#"{"operations":[{"input_tokens":1}]}"#), 400);
        assert_eq!(status(r#"{"ops":[]}"#), 400);
        assert_eq!(status(r#"{"operations":[{"model":"fast","audio_seconds":-2}]}"#), 400);
        assert_eq!(status(r#"{"operations":[]} x"#), 400);
        assert_eq!(status("not json"), 400);
        let e = ask(&rt, r#"{"operations":[{"model":"fast","input_tokens":"ten"}]}"#).unwrap_err();
        assert!(e.to_string().contains("operations[0].input_tokens"), "{e}");
        // An empty plan costs nothing.
        let a = ask(&rt, r#"{"operations":[]}"#).unwrap();
        assert!(a.allowed && a.estimated_cost_micros == 0 && a.per_operation.is_empty());
    }
}
