use super::*;

const GOOD: &str = r#"
listen: "127.0.0.1:8080"
providers:
  - { name: openai, kind: openai, api_key: sk-test }
  - { name: mock, kind: mock }
models:
  - alias: fast
    targets: [ { provider: openai, model: gpt-4o-mini, weight: 3 }, { provider: mock, model: echo } ]
    fallbacks: [slow]
  - alias: slow
    targets: [ { provider: mock, model: echo } ]
projects: [ { name: search } ]
keys:
  - id: k1
    hash: sha256:0000000000000000000000000000000000000000000000000000000000000001
    project: search
    models: [fast]
    expires_at: 2027-01-01T00:00:00Z
"#;

fn errors(text: &str) -> Vec<String> {
    match load_str(text) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn a_good_config_builds_with_indexes_resolved() {
    let s = load_str(GOOD).unwrap();
    let (i, fast) = s.alias("fast").unwrap();
    assert_eq!(i, 0);
    assert_eq!(fast.fallbacks, vec![1]);
    assert_eq!(fast.targets[0].provider, 0);
    assert_eq!(s.providers[0].api_key.as_ref().unwrap().expose(), "sk-test");
    let key = s.keys.values().next().unwrap();
    assert!(key.allows(0) && !key.allows(1));
}

#[test]
fn an_unknown_provider_is_reported_with_its_path_and_a_suggestion() {
    let bad = GOOD.replace("{ provider: openai, model", "{ provider: opnai, model");
    assert_eq!(
        errors(&bad),
        vec!["models[0].targets[0].provider: unknown provider \"opnai\"; did you mean \"openai\"?"]
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let bad = GOOD
        .replace("weight: 3", "weight: 0")
        .replace("fallbacks: [slow]", "fallbacks: [slowww]")
        .replace("project: search", "project: serch")
        .replace("- alias: slow", "- alias: fast");
    let e = errors(&bad);
    assert!(e.iter().any(|e| e.starts_with("models[0].targets[0].weight: 0 is not allowed")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("models[1].alias: duplicate alias")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("models[0].fallbacks[0]: unknown alias")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("keys[0].project: unknown project \"serch\"")), "{e:?}");
}

#[test]
fn unknown_fields_and_unknown_kinds_name_their_path() {
    let e = errors(&GOOD.replace("weight: 3", "wieght: 3"));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("models[0].targets[0].wieght: unknown field `wieght`"), "{e:?}");
    let e = errors(&GOOD.replace("kind: openai", "kind: opnai"));
    assert!(e[0].starts_with("providers[0].kind: unknown variant `opnai`"), "{e:?}");
}

#[test]
fn empty_targets_and_bad_hashes_and_times_are_errors() {
    let bad = GOOD
        .replace("targets: [ { provider: mock, model: echo } ]", "targets: []")
        .replace("sha256:0000", "sha1:0000")
        .replace("2027-01-01T00:00:00Z", "next year");
    let e = errors(&bad);
    assert!(e.iter().any(|e| e == "models[1].targets: needs at least one target"), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("keys[0].hash:")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("keys[0].expires_at:")), "{e:?}");
}

#[test]
fn a_provider_secret_from_an_unset_variable_is_an_error() {
    let bad = GOOD.replace("api_key: sk-test", "api_key: env:LLM_GATEWAY_UNSET_FOR_TEST");
    let e = errors(&bad);
    assert_eq!(e, vec!["providers[0].api_key: environment variable LLM_GATEWAY_UNSET_FOR_TEST is not set"]);
}

#[test]
fn a_config_without_any_listener_is_refused() {
    let e = errors(&GOOD.replace("listen: \"127.0.0.1:8080\"", ""));
    assert!(e[0].starts_with("listen: set `listen`"), "{e:?}");
}

#[test]
fn jobs_providers_must_exist_and_serve_the_job_apis() {
    let base = "listen: 127.0.0.1:1\nproviders:\n  - { name: o, kind: openai, api_key: k }\n  - { name: a, kind: anthropic, api_key: k }\nmodels: [ { alias: m, targets: [ { provider: o, model: x } ] } ]\n";
    assert!(
        crate::config::load_str(&format!("{base}jobs: {{ provider: o, anthropic_provider: a }}\n")).is_ok()
    );
    let e = crate::config::load_str(&format!("{base}jobs: {{ provider: a }}\n")).err().unwrap().to_string();
    assert!(e.contains("jobs.provider") && e.contains("does not serve files"), "{e}");
    let e = crate::config::load_str(&format!("{base}jobs: {{ anthropic_provider: o }}\n"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("jobs.anthropic_provider") && e.contains("message_batches"), "{e}");
    let e =
        crate::config::load_str(&format!("{base}jobs: {{ provider: nope }}\n")).err().unwrap().to_string();
    assert!(e.contains("jobs.provider") && e.contains("nope"), "{e}");
}
