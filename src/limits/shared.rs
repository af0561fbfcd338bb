//! Limits shared by every instance through Redis (SPEC section 9): the same scopes, rules and
//! demand as the in-memory [`LimitsRegistry`](super::LimitsRegistry), kept in Redis.
//!
//! - One server-side script call per admission and one per settlement (`shared.lua`): every
//!   scope checked, then all charged, atomically, on Redis server time (`TIME`), no client clock
//!   in any bucket. (Budget *periods* are named by the client's UTC date, like the local backend.)
//! - Keys are `llmgw:v1:{<tag>}:<scope>:<dim>`; the hash tag is the request's project (else its
//!   key id), so every key one call touches lives in one Redis Cluster slot.
//! - In-flight slots are members of a sorted set scored by a lease expiry: a slot of an
//!   instance that died mid-request is freed when its lease passes (`slot_lease`), never leaked.
//! - Every call is bounded by `timeout`; a failure opens a breaker for [`BREAKER_OPEN`], during
//!   which calls fail at once (one timeout per breaker period, not per request); the first call
//!   after it is the probe. The caller decides what a failure means (`on_error`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use redis::aio::ConnectionManager;
use redis::{Script, Value};

use super::period::{next_period_start, period_id};
use super::registry::{BudgetAlert, RateHeaders, Settled};
use super::{AlertKind, Demand, Dimension, Level, Refusal, ScopeId, ScopeKind, ScopeRules};

/// Key layout and script version: bump both together when the layout changes.
const PREFIX: &str = "llmgw:v1";

/// The key of a record (its id is its own hash tag: one slot per record).
fn record_key(space: &str, id: &str) -> String {
    format!("{PREFIX}:{space}:{{{id}}}")
}

/// How long the breaker stays open after a failed call.
pub const BREAKER_OPEN: Duration = Duration::from_secs(1);

/// Default lease of an in-flight slot (a request running longer keeps running; its slot is
/// just no longer counted).
pub const DEFAULT_SLOT_LEASE: Duration = Duration::from_secs(600);

/// The Redis backend. Cheap to share (`Arc`); the connection reconnects by itself.
pub struct SharedLimits {
    client: redis::Client,
    config: redis::aio::ConnectionManagerConfig,
    /// Made on the first call (it needs the async runtime, which config loading has not).
    conn: std::sync::OnceLock<ConnectionManager>,
    script: Script,
    timeout: Duration,
    slot_lease: Duration,
    /// Monotonic nanoseconds (since `origin`) until which the breaker is open; 0 = closed.
    open_until: AtomicU64,
    origin: Instant,
    /// Calls that failed or timed out, since start.
    errors: AtomicU64,
    /// Whether the last call got an answer.
    answering: std::sync::atomic::AtomicBool,
    /// Script calls made, since start (for the round-trip figures).
    calls: AtomicU64,
    /// The URL without credentials, for logs and `/admin/health`.
    shown: String,
}

/// Why a call to Redis did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("redis {shown}: no answer within {timeout:?}")]
    Timeout { shown: String, timeout: Duration },
    #[error("redis {shown}: {reason}")]
    Failed { shown: String, reason: String },
    #[error("redis {shown}: unavailable (breaker open after a failure)")]
    BreakerOpen { shown: String },
    #[error("redis: invalid url {shown}: {reason}")]
    Config { shown: String, reason: String },
}

/// A request admitted by Redis: what to give back at settlement.
#[derive(Debug)]
pub struct SharedReservation {
    backend: Arc<SharedLimits>,
    id: String,
    scopes: Vec<(ScopeId, ScopeRules)>,
    tag: String,
    demand: Demand,
    /// Budget period keys as named at admission (settled into the same period).
    wall: SystemTime,
    headers: RateHeaders,
    settled: bool,
}

/// The backend's state for `/admin/health`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SharedHealth {
    pub url: String,
    /// The last call got an answer and the breaker is closed.
    pub available: bool,
    pub errors: u64,
    pub calls: u64,
}

// === impl SharedLimits ===

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits").field("url", &self.shown).finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// A backend for `url` (`redis://` or `rediss://`), with `password` when given. Does not
    /// connect: the first call does (so a gateway starts while Redis is down).
    pub fn new(
        url: &str,
        password: Option<&str>,
        timeout: Duration,
        slot_lease: Duration,
    ) -> Result<Arc<SharedLimits>, SharedError> {
        let shown = shown_url(url);
        let bad = |e: redis::RedisError| SharedError::Config { shown: shown.clone(), reason: e.to_string() };
        let mut info = redis::IntoConnectionInfo::into_connection_info(url).map_err(bad)?;
        if let Some(p) = password {
            let settings = info.redis_settings().clone().set_password(p);
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(bad)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        Ok(Arc::new(SharedLimits {
            client,
            config,
            conn: std::sync::OnceLock::new(),
            script: Script::new(include_str!("shared.lua")),
            timeout,
            slot_lease,
            open_until: AtomicU64::new(0),
            origin: Instant::now(),
            errors: AtomicU64::new(0),
            answering: std::sync::atomic::AtomicBool::new(true),
            calls: AtomicU64::new(0),
            shown,
        }))
    }

    /// Admit `demand` against `scopes`, all or nothing. `Ok(Err(refusal))` is Redis saying no;
    /// `Err` is Redis not answering (timeout, connection, breaker open).
    pub async fn admit(
        self: &Arc<Self>,
        scopes: &[(ScopeId, &ScopeRules)],
        demand: Demand,
        wall: SystemTime,
    ) -> Result<Result<SharedReservation, Refusal>, SharedError> {
        let tag = tag_of(scopes);
        let id = request_id();
        let mut inv = self.script.prepare_invoke();
        inv.arg("admit")
            .arg(scopes.len())
            .arg(&id)
            .arg(demand.tokens)
            .arg(demand.cost_micros)
            .arg(u64::try_from(self.slot_lease.as_micros()).unwrap_or(u64::MAX));
        for (scope, rules) in scopes {
            for k in keys(&tag, scope, rules, wall) {
                inv.key(k);
            }
            let ttl = budget_ttl_ms(rules, wall);
            inv.arg(opt(rules.rpm))
                .arg(opt(rules.tpm))
                .arg(opt(rules.max_parallel.map(u64::from)))
                .arg(opt(rules.budget.map(|b| b.limit_micros)))
                .arg(ttl);
        }
        let answer: Vec<Value> =
            self.call(|mut conn| async move { inv.invoke_async(&mut conn).await }).await?;
        let ints = |i: usize| answer.get(i).and_then(as_i64).unwrap_or(-1);
        if ints(0) == 1 {
            let mut headers = RateHeaders::default();
            for (i, (_, rules)) in scopes.iter().enumerate() {
                let b = 1 + i * 4;
                if let (Some(limit), true) = (rules.rpm, ints(b) >= 0) {
                    headers.tighten_requests(level(limit, ints(b), ints(b + 1)));
                }
                if let (Some(limit), true) = (rules.tpm, ints(b + 2) >= 0) {
                    headers.tighten_tokens(level(limit, ints(b + 2), ints(b + 3)));
                }
            }
            let scopes = scopes.iter().map(|(s, r)| (s.clone(), (*r).clone())).collect();
            return Ok(Ok(SharedReservation {
                backend: self.clone(),
                id,
                scopes,
                tag,
                demand,
                wall,
                headers,
                settled: false,
            }));
        }
        let i = usize::try_from(ints(1)).unwrap_or(0).min(scopes.len().saturating_sub(1));
        let dimension = match answer.get(2) {
            Some(Value::BulkString(b)) if b == b"rpm" => Dimension::Rpm,
            Some(Value::BulkString(b)) if b == b"tpm" => Dimension::Tpm,
            Some(Value::BulkString(b)) if b == b"parallel" => Dimension::Parallel,
            _ => Dimension::Budget,
        };
        let requested = match dimension {
            Dimension::Rpm | Dimension::Parallel => 1,
            Dimension::Tpm => demand.tokens,
            Dimension::Budget => demand.cost_micros,
        };
        let retry = ints(5);
        Ok(Err(Refusal {
            dimension,
            scope: scopes.get(i).map(|s| s.0.clone()).unwrap_or_else(|| ScopeId::key("?")),
            limit: u64::try_from(ints(3)).unwrap_or(0),
            requested,
            remaining: u64::try_from(ints(4)).unwrap_or(0),
            retry_after: (retry >= 0)
                .then(|| Duration::from_millis(u64::try_from(retry).unwrap_or(0).max(1))),
            too_large: false,
        }))
    }

    /// Seed a scope's spend for the current period when Redis has none (start-up, from the
    /// usage log). Returns whether Redis took it.
    pub async fn seed_spend(
        &self,
        scope: &ScopeId,
        tag: &str,
        rules: &ScopeRules,
        micros: u64,
        wall: SystemTime,
    ) -> Result<bool, SharedError> {
        let [_, _, _, bud] = keys(tag, scope, rules, wall);
        let ttl = budget_ttl_ms(rules, wall);
        let mut inv = self.script.prepare_invoke();
        inv.key(bud).arg("seed").arg(micros).arg(ttl);
        let set: i64 = self.call(|mut conn| async move { inv.invoke_async(&mut conn).await }).await?;
        Ok(set == 1)
    }

    /// Spend of `scope` this period as Redis has it (for views and the spend-after-restart
    /// check); `None` when the scope has no budget.
    pub async fn spent(
        &self,
        scope: &ScopeId,
        tag: &str,
        rules: &ScopeRules,
        wall: SystemTime,
    ) -> Result<Option<u64>, SharedError> {
        if rules.budget.is_none() {
            return Ok(None);
        }
        let [_, _, _, bud] = keys(tag, scope, rules, wall);
        let v: Option<u64> =
            self.call(|mut conn| async move {
                redis::cmd("HGET").arg(bud).arg("spent").query_async(&mut conn).await
            })
            .await?;
        Ok(Some(v.unwrap_or(0)))
    }

    /// The live state of `scopes` as Redis has it (`GET /admin/keys/{id}/limits` when
    /// `redis:` is set: this instance's memory holds none of it). One read-only script call.
    pub async fn state(
        &self,
        scopes: &[(ScopeId, &ScopeRules)],
        wall: SystemTime,
    ) -> Result<Vec<super::ScopeView>, SharedError> {
        let tag = tag_of(scopes);
        let mut inv = self.script.prepare_invoke();
        inv.arg("peek").arg(scopes.len()).arg("");
        for (scope, rules) in scopes {
            for k in keys(&tag, scope, rules, wall) {
                inv.key(k);
            }
            inv.arg(opt(rules.rpm)).arg(opt(rules.tpm)).arg(opt(rules.max_parallel.map(u64::from)));
        }
        let rows: Vec<Vec<Value>> =
            self.call(|mut conn| async move { inv.invoke_async(&mut conn).await }).await?;
        Ok(scopes
            .iter()
            .zip(rows)
            .map(|((scope, rules), row)| {
                let int = |i: usize| row.get(i).and_then(as_i64).unwrap_or(0).max(0) as u64;
                let window = |limit: Option<u64>, at: usize| {
                    limit.map(|limit| super::WindowView { limit, remaining: int(at), reset_ms: int(at + 1) })
                };
                super::ScopeView {
                    scope: scope.clone(),
                    rpm: window(rules.rpm, 0),
                    tpm: window(rules.tpm, 2),
                    in_flight: u32::try_from(int(4)).unwrap_or(u32::MAX),
                    max_parallel: rules.max_parallel,
                    budget: rules.budget.map(|b| super::BudgetView::new(b, wall, int(5), int(6))),
                }
            })
            .collect())
    }

    /// Put a record (`value`, JSON) of `space` under `id` unless one is there, expiring after
    /// `ttl` when given: job objects' owners (`obj`) and stored responses' targets (`resp`),
    /// so every instance serves an id any instance created (SPEC sections 9-10). `true` if set.
    pub async fn record_put(
        &self,
        space: &str,
        id: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, SharedError> {
        let (key, value) = (record_key(space, id), value.to_string());
        let set: Option<String> = self
            .call(|mut conn| async move {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key).arg(value).arg("NX");
                if let Some(ttl) = ttl {
                    cmd.arg("EX").arg(ttl.as_secs().max(1));
                }
                cmd.query_async(&mut conn).await
            })
            .await?;
        Ok(set.is_some())
    }

    /// The records of `ids` in `space`, in order (`None` where Redis has none), in one round trip.
    pub async fn records_get(&self, space: &str, ids: &[&str]) -> Result<Vec<Option<String>>, SharedError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| record_key(space, id)).collect();
        self.call(|mut conn| async move { redis::cmd("MGET").arg(keys).query_async(&mut conn).await }).await
    }

    /// `true` for exactly one caller across every instance (a finished job's charge).
    pub async fn record_once(&self, space: &str, id: &str) -> Result<bool, SharedError> {
        let key = format!("{}:once", record_key(space, id));
        let set: Option<String> = self
            .call(|mut conn| async move {
                redis::cmd("SET").arg(key).arg(1).arg("NX").query_async(&mut conn).await
            })
            .await?;
        Ok(set.is_some())
    }

    /// Forget a record (its object was deleted).
    pub async fn record_remove(&self, space: &str, id: &str) -> Result<(), SharedError> {
        let keys = vec![record_key(space, id), format!("{}:once", record_key(space, id))];
        self.call(|mut conn| async move { redis::cmd("DEL").arg(keys).query_async::<i64>(&mut conn).await })
            .await
            .map(|_| ())
    }

    /// State for `/admin/health`.
    pub fn health(&self) -> SharedHealth {
        SharedHealth {
            url: self.shown.clone(),
            available: self.answering.load(Ordering::Relaxed) && !self.breaker_open(),
            errors: self.errors.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }

    /// Whether calls currently fail at once (a recent failure).
    pub fn breaker_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) > self.mono()
    }

    fn mono(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// One bounded call: fails at once while the breaker is open; a failure opens it.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, SharedError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let until = self.open_until.load(Ordering::Acquire);
        let now = self.mono();
        if until > now {
            return Err(SharedError::BreakerOpen { shown: self.shown.clone() });
        }
        if until != 0 {
            // The breaker period is over: one caller probes, the others wait for its verdict
            // by finding the breaker open again for a moment.
            let probe = now.saturating_add(u64::try_from(self.timeout.as_nanos()).unwrap_or(u64::MAX));
            if self.open_until.compare_exchange(until, probe, Ordering::AcqRel, Ordering::Acquire).is_err() {
                return Err(SharedError::BreakerOpen { shown: self.shown.clone() });
            }
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let conn = match self.conn.get() {
            Some(c) => c.clone(),
            None => {
                let made = self.client.get_connection_manager_lazy(self.config.clone());
                let made = made
                    .map_err(|e| SharedError::Failed { shown: self.shown.clone(), reason: e.to_string() })?;
                self.conn.get_or_init(|| made).clone()
            }
        };
        let result = match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SharedError::Failed { shown: self.shown.clone(), reason: e.to_string() }),
            Err(_) => Err(SharedError::Timeout { shown: self.shown.clone(), timeout: self.timeout }),
        };
        self.answering.store(result.is_ok(), Ordering::Relaxed);
        match &result {
            Ok(_) => self.open_until.store(0, Ordering::Release),
            Err(e) => {
                let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
                let open =
                    self.mono().saturating_add(u64::try_from(BREAKER_OPEN.as_nanos()).unwrap_or(u64::MAX));
                self.open_until.store(open, Ordering::Release);
                if n.is_power_of_two() {
                    tracing::warn!(errors_total = n, "shared limits: {e}");
                }
            }
        }
        result
    }
}

// === impl SharedReservation ===

impl SharedReservation {
    pub fn headers(&self) -> &RateHeaders {
        &self.headers
    }

    /// Input tokens counted at admission.
    pub fn counted_input_tokens(&self) -> u64 {
        self.demand.input_tokens
    }

    pub fn reserved_tokens(&self) -> u64 {
        if self.scopes.iter().any(|(_, r)| r.tpm.is_some()) {
            self.demand.tokens
        } else {
            0
        }
    }

    /// Settle in Redis: free the slots, replace reserved tokens and cost by the actual ones.
    /// A failure is logged: the slot then frees itself when its lease ends and the reserved
    /// cost stays charged (conservative).
    pub async fn settle(mut self, actual_tokens: u64, actual_cost_micros: u64) -> Settled {
        self.settled = true;
        self.settle_in_redis(actual_tokens, actual_cost_micros).await
    }

    async fn settle_in_redis(&self, actual_tokens: u64, actual_cost_micros: u64) -> Settled {
        let backend = self.backend.clone();
        let mut inv = backend.script.prepare_invoke();
        inv.arg("settle")
            .arg(self.scopes.len())
            .arg(&self.id)
            .arg(self.demand.tokens)
            .arg(actual_tokens)
            .arg(self.demand.cost_micros)
            .arg(actual_cost_micros);
        for (scope, rules) in &self.scopes {
            for k in keys(&self.tag, scope, rules, self.wall) {
                inv.key(k);
            }
            inv.arg(opt(rules.tpm))
                .arg(opt(rules.budget.map(|b| b.limit_micros)))
                .arg(opt(rules.budget.and_then(|b| b.alert_micros())))
                .arg(budget_ttl_ms(rules, self.wall));
        }
        let answer: Result<Vec<Vec<i64>>, _> =
            backend.call(|mut conn| async move { inv.invoke_async(&mut conn).await }).await;
        let mut alerts = Vec::new();
        match answer {
            Ok(rows) => {
                for ((scope, rules), row) in self.scopes.iter().zip(rows) {
                    let (Some(b), [spent, alert, limit]) = (rules.budget, row.as_slice()) else { continue };
                    let spent = u64::try_from(*spent).unwrap_or(0);
                    for (crossed, kind) in [(*alert, AlertKind::Threshold), (*limit, AlertKind::Exhausted)] {
                        if crossed == 1 {
                            alerts.push(BudgetAlert {
                                scope: scope.clone(),
                                kind,
                                spent_micros: spent,
                                limit_micros: b.limit_micros,
                                alert_at: b.alert_at,
                                period: b.period,
                                period_start: super::period_start(b.period, self.wall),
                            });
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(
                "shared limits: settlement lost ({e}); the slot frees itself when its lease ends"
            ),
        }
        Settled { alerts }
    }
}

impl Drop for SharedReservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Dropped without settle (a path that never reached the account step): settle at the
        // estimate, in the background, when a runtime is there to run it.
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let this = SharedReservation {
            backend: self.backend.clone(),
            id: std::mem::take(&mut self.id),
            scopes: std::mem::take(&mut self.scopes),
            tag: std::mem::take(&mut self.tag),
            demand: self.demand,
            wall: self.wall,
            headers: RateHeaders::default(),
            // Never spawns again: if the runtime is shutting down the task is dropped unrun
            // and the slot frees itself when its lease ends.
            settled: true,
        };
        self.settled = true;
        let (tokens, cost) = (this.demand.tokens, this.demand.cost_micros);
        handle.spawn(async move {
            let _ = this.settle_in_redis(tokens, cost).await;
        });
    }
}

// === helpers ===

/// The hash tag of a request: its project when it has one (every key of the project's
/// requests then share a slot), else its key.
pub fn tag_of(scopes: &[(ScopeId, &ScopeRules)]) -> String {
    scopes
        .iter()
        .find(|(s, _)| s.kind == ScopeKind::Project)
        .or_else(|| scopes.first())
        .map(|(s, _)| match s.kind {
            ScopeKind::Project => format!("p:{}", s.name),
            ScopeKind::Key => format!("k:{}", s.name),
        })
        .unwrap_or_default()
}

/// The four keys of one scope (rpm, tpm, in-flight, budget of the period of `wall`).
fn keys(tag: &str, scope: &ScopeId, rules: &ScopeRules, wall: SystemTime) -> [String; 4] {
    let who = match scope.kind {
        ScopeKind::Key => format!("k:{}", scope.name),
        ScopeKind::Project => format!("p:{}", scope.name),
    };
    let base = format!("{PREFIX}:{{{tag}}}:{who}");
    let period = rules.budget.map(|b| period_id(b.period, wall)).unwrap_or(0);
    [format!("{base}:rpm"), format!("{base}:tpm"), format!("{base}:par"), format!("{base}:bud:{period:x}")]
}

/// Milliseconds until the budget period of `wall` ends (`-1`: no budget, or `total`).
fn budget_ttl_ms(rules: &ScopeRules, wall: SystemTime) -> i64 {
    rules
        .budget
        .and_then(|b| next_period_start(b.period, wall))
        .and_then(|end| end.duration_since(wall).ok())
        .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1))
}

fn opt(v: Option<u64>) -> i64 {
    v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn level(limit: u64, remaining: i64, reset_ms: i64) -> Level {
    Level {
        limit,
        remaining: u64::try_from(remaining).unwrap_or(0),
        reset: Duration::from_millis(u64::try_from(reset_ms).unwrap_or(0)),
    }
}

/// A unique id for an in-flight slot: random, so instances never collide.
fn request_id() -> String {
    let mut b = [0u8; 12];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `url` without user and password, for logs.
pub fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
