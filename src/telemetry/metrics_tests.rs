//! Tests for `metrics.rs`: the exposition parses as Prometheus text and every number in it
//! is the one recorded; label values stay bounded.

use std::time::Duration;

use prometheus_parse::{LineInfo, Sample, Scrape, Value};

use super::*;

fn known() -> KnownNames {
    KnownNames {
        aliases: vec!["fast".into(), "claude-haiku".into()],
        providers: vec!["openai".into(), "anthropic".into()],
        projects: vec!["search".into()],
        keys: vec!["search-prod".into()],
        targets: vec!["openai/gpt-4o-mini".into()],
    }
}

/// Parses `text` strictly: every non-empty line must be a HELP, TYPE or sample line, and
/// every sample must belong to a declared `llm_gateway_` family.
fn parse(text: &str) -> Vec<Sample> {
    let mut declared = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } => {}
            LineInfo::Type { metric_name, metric_alias, .. } => {
                declared.push(metric_alias.unwrap_or(metric_name));
            }
            LineInfo::Sample { metric_name, .. } => {
                assert!(metric_name.starts_with("llm_gateway_"), "unprefixed sample: {line}");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| metric_name.strip_suffix(s).filter(|f| declared.iter().any(|d| d == f)))
                    .unwrap_or(metric_name);
                assert!(declared.iter().any(|d| d == family), "sample without a TYPE line: {line}");
            }
            other => panic!("not Prometheus text: {line:?} ({other:?})"),
        }
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap().samples
}

fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<Value> {
    samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| s.value.clone())
}

fn scalar(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    match value(samples, metric, labels) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => v,
        other => panic!("{metric}{labels:?}: {other:?}"),
    }
}

fn sample(alias: &'static str, provider: &'static str, status: u16, total_ms: u64) -> RequestSample<'static> {
    RequestSample {
        alias,
        provider,
        project: "search",
        status,
        total: Duration::from_millis(total_ms),
        upstream: Duration::from_millis(total_ms.saturating_sub(2)),
        ttfb: Some(Duration::from_millis(total_ms / 2)),
        tokens: TokenCounts { input: 100, output: 20, cached: 10, reasoning: 5 },
        cost_micros: 1_234,
    }
}

#[test]
fn counters_in_the_exposition_match_what_was_recorded() {
    let m = Metrics::new(&known());
    for _ in 0..3 {
        m.record_request(&sample("fast", "openai", 200, 300));
    }
    m.record_request(&sample("fast", "openai", 502, 40));
    m.record_request(&sample("claude-haiku", "anthropic", 200, 1_500));
    m.ratelimited(RateLimitKind::Tpm);
    m.ratelimited(RateLimitKind::Tpm);
    m.ratelimited(RateLimitKind::Budget);
    m.config_reloaded(true);
    m.config_reloaded(false);
    m.config_reloaded(true);
    m.limits_backend_error();
    m.set_budget_used(BudgetScope::Key, "search-prod", 0.25);
    m.set_budget_used(BudgetScope::Project, "search", 0.5);
    m.set_upstream_healthy("openai", true);
    m.set_upstream_healthy("anthropic", false);
    m.set_circuit_open("openai/gpt-4o-mini", true);
    let g1 = m.start_request();
    let g2 = m.start_request();
    let g3 = m.start_request();
    drop(g2);

    let s = parse(&m.encode());
    let req = "llm_gateway_requests_total";
    assert_eq!(scalar(&s, req, &[("alias", "fast"), ("provider", "openai"), ("status", "200")]), 3.0);
    assert_eq!(scalar(&s, req, &[("alias", "fast"), ("provider", "openai"), ("status", "502")]), 1.0);
    assert_eq!(
        scalar(&s, req, &[("alias", "claude-haiku"), ("provider", "anthropic"), ("status", "200")]),
        1.0
    );
    assert_eq!(s.iter().filter(|x| x.metric == req).count(), 3, "no series for pairs never seen");

    let tok = "llm_gateway_tokens_total";
    assert_eq!(scalar(&s, tok, &[("direction", "input")]), 500.0);
    assert_eq!(scalar(&s, tok, &[("direction", "output")]), 100.0);
    assert_eq!(scalar(&s, tok, &[("direction", "cached")]), 50.0);
    assert_eq!(scalar(&s, tok, &[("direction", "reasoning")]), 25.0);
    // 5 × 1234 micro-dollars, exact.
    assert_eq!(scalar(&s, "llm_gateway_cost_usd_total", &[("project", "search")]), 0.00617);

    let rl = "llm_gateway_ratelimited_total";
    assert_eq!(scalar(&s, rl, &[("kind", "tpm")]), 2.0);
    assert_eq!(scalar(&s, rl, &[("kind", "budget")]), 1.0);
    assert_eq!(scalar(&s, rl, &[("kind", "rpm")]), 0.0);
    assert_eq!(scalar(&s, rl, &[("kind", "parallel")]), 0.0);
    assert_eq!(scalar(&s, "llm_gateway_config_reloads_total", &[("result", "ok")]), 2.0);
    assert_eq!(scalar(&s, "llm_gateway_config_reloads_total", &[("result", "error")]), 1.0);
    assert_eq!(scalar(&s, "llm_gateway_limits_backend_errors_total", &[]), 1.0);
    let bur = "llm_gateway_budget_used_ratio";
    assert_eq!(scalar(&s, bur, &[("scope", "key"), ("name", "search-prod")]), 0.25);
    assert_eq!(scalar(&s, bur, &[("scope", "project"), ("name", "search")]), 0.5);
    assert_eq!(scalar(&s, "llm_gateway_upstream_healthy", &[("provider", "openai")]), 1.0);
    assert_eq!(scalar(&s, "llm_gateway_upstream_healthy", &[("provider", "anthropic")]), 0.0);
    assert_eq!(scalar(&s, "llm_gateway_circuit_open", &[("target", "openai/gpt-4o-mini")]), 1.0);
    assert_eq!(scalar(&s, "llm_gateway_active_requests", &[]), 2.0);
    drop((g1, g3));
    assert_eq!(scalar(&parse(&m.encode()), "llm_gateway_active_requests", &[]), 0.0);
}

#[test]
fn histograms_count_every_observation_in_the_right_bucket() {
    let m = Metrics::new(&known());
    m.record_request(&sample("fast", "openai", 200, 300)); // 0.3 s: first bucket 0.5
    m.record_request(&sample("fast", "openai", 200, 500)); // exactly on the 0.5 bound
    m.record_request(&sample("fast", "openai", 200, 400_000)); // beyond 300 s: +Inf only
    let s = parse(&m.encode());
    let labels = [("alias", "fast"), ("provider", "openai")];
    let Some(Value::Histogram(buckets)) = value(&s, "llm_gateway_request_duration_seconds", &labels) else {
        panic!("no duration histogram");
    };
    let at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
    assert_eq!(at(0.25), Some(0.0));
    assert_eq!(at(0.5), Some(2.0));
    assert_eq!(at(300.0), Some(2.0));
    assert_eq!(at(f64::INFINITY), Some(3.0));
    assert_eq!(scalar(&s, "llm_gateway_request_duration_seconds_count", &labels), 3.0);
    assert_eq!(scalar(&s, "llm_gateway_request_duration_seconds_sum", &labels), 400.8);
    // Overhead is total minus upstream: 2 ms each.
    assert_eq!(scalar(&s, "llm_gateway_gateway_overhead_seconds_count", &[]), 3.0);
    assert_eq!(scalar(&s, "llm_gateway_gateway_overhead_seconds_sum", &[]), 0.006);
    let Some(Value::Histogram(ob)) = value(&s, "llm_gateway_gateway_overhead_seconds", &[]) else {
        panic!("no overhead histogram");
    };
    assert_eq!(ob.iter().find(|b| b.less_than == 0.0025).map(|b| b.count), Some(3.0));
    assert_eq!(ob.iter().find(|b| b.less_than == 0.001).map(|b| b.count), Some(0.0));
    assert_eq!(scalar(&s, "llm_gateway_upstream_ttfb_seconds_count", &[("provider", "openai")]), 3.0);
}

#[test]
fn unknown_names_become_other_and_empty_names_none() {
    let m = Metrics::new(&known());
    m.record_request(&sample("gpt-4o-from-a-client", "openai", 404, 1));
    m.record_request(&sample("another-client-model", "openai", 404, 1));
    m.record_request(&sample("", "", 401, 1));
    m.set_budget_used(BudgetScope::Key, "jwt:alice", 0.9);
    m.set_circuit_open("ghost/target", true);
    let text = m.encode();
    assert!(!text.contains("gpt-4o-from-a-client") && !text.contains("jwt:alice") && !text.contains("ghost"));
    let s = parse(&text);
    let req = "llm_gateway_requests_total";
    assert_eq!(scalar(&s, req, &[("alias", "other"), ("provider", "openai"), ("status", "404")]), 2.0);
    assert_eq!(scalar(&s, req, &[("alias", "none"), ("provider", "none"), ("status", "401")]), 1.0);
    assert_eq!(scalar(&s, "llm_gateway_budget_used_ratio", &[("scope", "key"), ("name", "other")]), 0.9);
}

#[test]
fn status_codes_are_bounded_to_a_fixed_label_set() {
    assert_eq!(STATUS_LABELS[status_slot(200)], "200");
    assert_eq!(STATUS_LABELS[status_slot(429)], "429");
    assert_eq!(STATUS_LABELS[status_slot(418)], "4xx");
    assert_eq!(STATUS_LABELS[status_slot(302)], "3xx");
    assert_eq!(STATUS_LABELS[status_slot(599)], "5xx");
    assert_eq!(STATUS_LABELS[status_slot(0)], "other");
    assert_eq!(STATUS_LABELS[status_slot(1000)], "other");
    assert_eq!(STATUS_CODES.len() + 6, STATUS_LABELS.len());
}

#[test]
fn set_known_keeps_counts_and_drops_gauges_of_removed_names() {
    let m = Metrics::new(&known());
    m.record_request(&sample("fast", "openai", 200, 10));
    m.set_upstream_healthy("anthropic", true);
    m.set_upstream_healthy("openai", true);
    m.set_upstream_healthy("unlisted", true);
    let mut next = known();
    next.aliases.push("new-alias".into());
    next.providers.retain(|p| p != "anthropic");
    m.set_known(&next);
    m.record_request(&sample("fast", "openai", 200, 10));
    m.record_request(&sample("new-alias", "openai", 200, 10));
    let s = parse(&m.encode());
    let req = "llm_gateway_requests_total";
    assert_eq!(scalar(&s, req, &[("alias", "fast"), ("provider", "openai"), ("status", "200")]), 2.0);
    assert_eq!(scalar(&s, req, &[("alias", "new-alias"), ("provider", "openai"), ("status", "200")]), 1.0);
    assert!(value(&s, "llm_gateway_upstream_healthy", &[("provider", "anthropic")]).is_none());
    assert_eq!(scalar(&s, "llm_gateway_upstream_healthy", &[("provider", "openai")]), 1.0);
    assert_eq!(scalar(&s, "llm_gateway_upstream_healthy", &[("provider", "other")]), 1.0, "`other` stays");
}

#[test]
fn record_request_from_many_threads_loses_nothing() {
    let m = std::sync::Arc::new(Metrics::new(&known()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..10_000u64 {
                    let mut s = sample("fast", "openai", 200, 1 + i % 100);
                    s.cost_micros = 3;
                    m.record_request(&s);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = parse(&m.encode());
    let labels = [("alias", "fast"), ("provider", "openai")];
    assert_eq!(
        scalar(&s, "llm_gateway_requests_total", &[("status", "200"), labels[0], labels[1]]),
        40_000.0
    );
    assert_eq!(scalar(&s, "llm_gateway_request_duration_seconds_count", &labels), 40_000.0);
    assert_eq!(scalar(&s, "llm_gateway_cost_usd_total", &[("project", "search")]), 0.12);
}

#[test]
fn known_names_come_from_the_config() {
    let yaml = r#"
providers:
  - { name: openai, kind: openai, base_url: "https://api.openai.com", api_key: "x" }
models:
  - alias: fast
    targets: [ { provider: openai, model: gpt-4o-mini } ]
projects:
  - name: search
keys:
  - { id: k1, hash: "sha256:00", project: search }
"#;
    let cfg: Config = serde_yaml::from_str(yaml).unwrap();
    let k = KnownNames::from_config(&cfg);
    assert_eq!(k.aliases, ["fast"]);
    assert_eq!(k.providers, ["openai"]);
    assert_eq!(k.projects, ["search"]);
    assert_eq!(k.keys, ["k1"]);
    assert_eq!(k.targets, ["openai/gpt-4o-mini"]);
}
