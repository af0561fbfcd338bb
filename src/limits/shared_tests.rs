//! Tests for `shared.rs` against a real `redis-server` started on a free loopback port (and
//! stopped by PID). Skipped with a message when `redis-server` is not installed; `.ci/run`
//! installs it.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{shown_url, SharedError, SharedLimits};
use crate::config::BudgetPeriod;
use crate::limits::{AlertKind, BudgetRule, Demand, Dimension, ScopeId, ScopeRules};

/// A `redis-server` of this test's own; killed on drop.
pub(crate) struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub(crate) async fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[]).await
    }

    pub(crate) async fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("redis-server not installed: skipping (.ci/run installs it)");
            return None;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Some(RedisServer { child, port })
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn backend(server: &RedisServer, lease: Duration) -> Arc<SharedLimits> {
    SharedLimits::new(&server.url(), None, Duration::from_millis(500), lease).unwrap()
}

fn rules(rpm: Option<u64>, tpm: Option<u64>, par: Option<u32>, budget: Option<u64>) -> ScopeRules {
    ScopeRules {
        rpm,
        tpm,
        max_parallel: par,
        budget: budget.map(|limit_micros| BudgetRule {
            limit_micros,
            period: BudgetPeriod::Daily,
            alert_at: Some(0.5),
        }),
    }
}

const D: Demand = Demand { tokens: 10, cost_micros: 400, input_tokens: 5 };

#[tokio::test]
async fn an_rpm_burst_admits_exactly_rpm_then_refuses_with_the_real_wait() {
    let Some(server) = RedisServer::start().await else { return };
    let b = backend(&server, Duration::from_secs(60));
    let r = rules(Some(5), None, None, None);
    let scopes = [(ScopeId::key("k"), &r)];
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let res = b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap();
        remaining.push(res.headers().requests.unwrap().remaining);
        res.settle(10, 400).await;
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    let refusal = b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap_err();
    assert_eq!((refusal.dimension, refusal.limit, refusal.remaining), (Dimension::Rpm, 5, 0));
    let wait = refusal.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(11) && wait <= Duration::from_secs(12),
        "one slot refills in 12 s: {wait:?}"
    );
}

#[tokio::test]
async fn all_scopes_or_none_are_charged() {
    let Some(server) = RedisServer::start().await else { return };
    let b = backend(&server, Duration::from_secs(60));
    let (key, project) = (rules(Some(100), None, None, None), rules(Some(1), None, None, None));
    let both = [(ScopeId::key("k"), &key), (ScopeId::project("p"), &project)];
    b.admit(&both, D, SystemTime::now()).await.unwrap().unwrap().settle(10, 0).await;
    let refusal = b.admit(&both, D, SystemTime::now()).await.unwrap().unwrap_err();
    assert_eq!((refusal.dimension, refusal.scope.clone()), (Dimension::Rpm, ScopeId::project("p")));
    // The key's bucket was not charged by the refused request: 98 left after one more (the
    // project unlimited now, so the headers show the key's bucket).
    let open = rules(None, None, None, None);
    let both = [(ScopeId::key("k"), &key), (ScopeId::project("p"), &open)];
    let res = b.admit(&both, D, SystemTime::now()).await.unwrap().unwrap();
    assert_eq!(res.headers().requests.unwrap().remaining, 98);
}

#[tokio::test]
async fn tokens_are_reserved_then_reconciled_with_actual_usage() {
    let Some(server) = RedisServer::start().await else { return };
    let b = backend(&server, Duration::from_secs(60));
    let r = rules(None, Some(1000), None, None);
    let scopes = [(ScopeId::key("k"), &r)];
    let big = Demand { tokens: 600, cost_micros: 0, input_tokens: 100 };
    let first = b.admit(&scopes, big, SystemTime::now()).await.unwrap().unwrap();
    assert_eq!(first.headers().tokens.unwrap().remaining, 400);
    assert_eq!(
        b.admit(&scopes, big, SystemTime::now()).await.unwrap().unwrap_err().dimension,
        Dimension::Tpm
    );
    first.settle(100, 0).await; // a small answer frees 500 tokens
    let second = b.admit(&scopes, big, SystemTime::now()).await.unwrap().unwrap();
    let left = second.headers().tokens.unwrap().remaining;
    assert!((299..=300).contains(&left), "1000 - 100 - 600 = 300 (less refill rounding): {left}");
}

#[tokio::test]
async fn in_flight_slots_are_freed_by_settle_and_by_the_lease_when_an_instance_dies() {
    let Some(server) = RedisServer::start().await else { return };
    let b = backend(&server, Duration::from_millis(300));
    let r = rules(None, None, Some(2), None);
    let scopes = [(ScopeId::key("k"), &r)];
    let one = b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap();
    let two = b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap();
    assert_eq!(
        b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap_err().dimension,
        Dimension::Parallel
    );
    one.settle(0, 0).await;
    let three = b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap();
    // An instance that dies never settles: its slots free themselves when the lease ends.
    std::mem::forget(two);
    std::mem::forget(three);
    assert!(b.admit(&scopes, D, SystemTime::now()).await.unwrap().is_err(), "both slots still held");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if b.admit(&scopes, D, SystemTime::now()).await.unwrap().is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "slots of a dead instance were never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_budget_reserves_then_charges_actual_cost_and_reports_each_crossing_once() {
    let Some(server) = RedisServer::start().await else { return };
    let b = backend(&server, Duration::from_secs(60));
    let r = rules(None, None, None, Some(1000));
    let scopes = [(ScopeId::project("p"), &r)];
    let one = b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap();
    let two = b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap();
    let refusal = b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap_err();
    assert_eq!((refusal.dimension, refusal.remaining), (Dimension::Budget, 200));
    assert_eq!(refusal.retry_after, Some(Duration::from_secs(1)), "reservations in flight: retry soon");
    assert!(one.settle(10, 300).await.alerts.is_empty(), "300 < 500");
    let alerts = two.settle(10, 300).await.alerts;
    assert_eq!(alerts.iter().map(|a| a.kind).collect::<Vec<_>>(), [AlertKind::Threshold], "600 ≥ 500 once");
    assert_eq!(alerts[0].spent_micros, 600);
    let three = b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap();
    let alerts = three.settle(10, 450).await.alerts;
    assert_eq!(
        alerts.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [AlertKind::Exhausted],
        "1050 ≥ 1000, threshold not again"
    );
    let refusal = b.admit(&scopes, D, SystemTime::now()).await.unwrap().unwrap_err();
    assert!(refusal.retry_after.unwrap() > Duration::from_secs(1), "spent: wait for the next period");
    assert_eq!(b.spent(&ScopeId::project("p"), "p:p", &r, SystemTime::now()).await.unwrap(), Some(1050));
}

#[tokio::test]
async fn seeding_spend_only_fills_an_empty_period() {
    let Some(server) = RedisServer::start().await else { return };
    let b = backend(&server, Duration::from_secs(60));
    let r = rules(None, None, None, Some(10_000));
    let p = ScopeId::project("p");
    assert!(b.seed_spend(&p, "p:p", &r, 700, SystemTime::now()).await.unwrap());
    assert!(
        !b.seed_spend(&p, "p:p", &r, 50, SystemTime::now()).await.unwrap(),
        "Redis already has this period"
    );
    assert_eq!(b.spent(&p, "p:p", &r, SystemTime::now()).await.unwrap(), Some(700));
}

#[tokio::test]
async fn a_silent_redis_costs_one_timeout_then_the_breaker_answers_at_once_and_recovers() {
    // A listener that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let b = SharedLimits::new(
        &format!("redis://127.0.0.1:{port}"),
        None,
        Duration::from_millis(100),
        Duration::from_secs(60),
    )
    .unwrap();
    let r = rules(Some(10), None, None, None);
    let scopes = [(ScopeId::key("k"), &r)];
    let t = Instant::now();
    let e = b.admit(&scopes, D, SystemTime::now()).await.unwrap_err();
    assert!(matches!(e, SharedError::Timeout { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_millis(200), "bounded by timeout_ms: {:?}", t.elapsed());
    let t = Instant::now();
    let e = b.admit(&scopes, D, SystemTime::now()).await.unwrap_err();
    assert!(matches!(e, SharedError::BreakerOpen { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_millis(10), "no second timeout while the breaker is open");
    assert!(!b.health().available);
    held.abort();
}

#[tokio::test]
async fn a_password_protected_redis_needs_the_password() {
    let Some(server) = RedisServer::start_with(&["--requirepass", "s3cret-pw"]).await else { return };
    let r = rules(Some(10), None, None, None);
    let scopes = [(ScopeId::key("k"), &r)];
    let with = SharedLimits::new(
        &server.url(),
        Some("s3cret-pw"),
        Duration::from_millis(500),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(with.admit(&scopes, D, SystemTime::now()).await.unwrap().is_ok());
    let without =
        SharedLimits::new(&server.url(), None, Duration::from_millis(500), Duration::from_secs(60)).unwrap();
    let e = without.admit(&scopes, D, SystemTime::now()).await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("auth"), "{e}");
    assert!(!e.to_string().contains("s3cret-pw"));
}

#[test]
fn urls_are_shown_without_credentials() {
    assert_eq!(shown_url("redis://user:s3cret@10.0.0.5:6379/0"), "redis://…@10.0.0.5:6379/0");
    assert_eq!(shown_url("rediss://:s3cret@cache:6380"), "rediss://…@cache:6380");
    assert_eq!(shown_url("redis://10.0.0.5:6379"), "redis://10.0.0.5:6379");
}
