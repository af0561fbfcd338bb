//! Tests of the lossless YAML editor: what each edit keeps, and that it refuses what it cannot do.

use super::*;

const SHIPPED: &str = include_str!("../../conf/gateway.yaml");

const OPERATOR: &str = r#"# Operator's config. Keep these notes!
listen: "0.0.0.0:8080"   # data listener
admin:
  listen: "127.0.0.1:8081"
  token: env:TOK

providers:
  # the real one
  - name: openai
    kind: openai
    api_key: env:OPENAI_API_KEY   # from the vault
  - { name: mock, kind: mock }    # for tests

models:
  - alias: fast
    # cheap first
    targets: [ { provider: mock, model: m1, weight: 3 } ]
    fallbacks: [slow]   # when mock is down
  - alias: slow
    targets:
      - { provider: openai, model: gpt-4o }

keys:
    - id: a
      hash: sha256:aaaa
      models: [fast]   # only fast
# end of file
"#;

fn mapping(yaml: &str) -> YMapping {
    match serde_yaml::from_str::<Value>(yaml).unwrap() {
        Value::Mapping(m) => m,
        other => panic!("not a mapping: {other:?}"),
    }
}

fn comments(text: &str) -> Vec<&str> {
    text.lines().filter_map(|l| l.find('#').map(|i| l[i..].trim_end())).collect()
}

fn assert_comments_kept(before: &str, after: &str, except: &[&str]) {
    for c in comments(before) {
        if except.contains(&c) {
            continue;
        }
        assert!(after.contains(c), "comment {c:?} lost:\n{after}");
    }
}

#[test]
fn the_parser_is_lossless_on_the_shipped_and_an_operator_config() {
    for text in [SHIPPED, OPERATOR] {
        assert_eq!(Document::from_str(text).unwrap().to_string(), text);
    }
}

#[test]
fn create_appends_in_the_lists_own_indentation_and_keeps_every_comment() {
    let entry = mapping("id: b\nhash: sha256:bbbb\nproject: search\nmodels: [fast, slow]\n");
    let after = edit_entry(OPERATOR, Section::Keys, Edit::Create(&entry)).unwrap();
    assert_comments_kept(OPERATOR, &after, &[]);
    assert!(after.contains("    - id: b\n      hash: sha256:bbbb\n      project: search\n"), "{after}");
    // Everything before the keys list is byte-identical.
    let head = &OPERATOR[..OPERATOR.find("keys:").unwrap()];
    assert!(after.starts_with(head));
    let v = parse_value(&after).unwrap();
    let keys = v.get("keys").unwrap().as_sequence().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1].get("models").unwrap().as_sequence().unwrap().len(), 2);
    // And the result is still a config the gateway loads (shipped config + a new alias).
    let alias = mapping("alias: cheap\ntargets: [{provider: mock, model: x}]\n");
    let shipped = edit_entry(SHIPPED, Section::Models, Edit::Create(&alias)).unwrap();
    assert_comments_kept(SHIPPED, &shipped, &[]);
    let snap = crate::config::load_str(&shipped).unwrap();
    assert!(snap.alias_index.contains_key("cheap"));
}

#[test]
fn replace_touches_only_the_fields_that_changed() {
    let entry = mapping("alias: fast\ntargets: [{provider: mock, model: m1, weight: 3}]\nfallbacks: [slow]\ndefault_max_tokens: 1000\n");
    let after = edit_entry(OPERATOR, Section::Models, Edit::Replace("fast", &entry)).unwrap();
    // Unchanged fields keep their own comments and flow style.
    assert_comments_kept(OPERATOR, &after, &[]);
    assert!(after.contains("targets: [ { provider: mock, model: m1, weight: 3 } ]"), "{after}");
    assert!(after.contains("default_max_tokens: 1000"));
    // A changed field is rewritten and a dropped field removed.
    let entry = mapping("alias: fast\ntargets: [{provider: openai, model: gpt-4o-mini}]\n");
    let after = edit_entry(OPERATOR, Section::Models, Edit::Replace("fast", &entry)).unwrap();
    assert!(!after.contains("fallbacks: [slow]"), "{after}");
    assert!(!after.contains("m1"));
    assert_comments_kept(OPERATOR, &after, &["# when mock is down"]);
    let v = parse_value(&after).unwrap();
    assert_eq!(v["models"][0], Value::Mapping(entry));
    assert_eq!(v["models"][1]["alias"], Value::String("slow".into()));
}

#[test]
fn replace_works_on_a_flow_mapping_entry() {
    let entry = mapping("name: mock\nkind: openai_compatible\nbase_url: http://127.0.0.1:9\n");
    let after = edit_entry(OPERATOR, Section::Providers, Edit::Replace("mock", &entry)).unwrap();
    assert_eq!(parse_value(&after).unwrap()["providers"][1], Value::Mapping(entry));
    assert_comments_kept(OPERATOR, &after, &[]);
}

#[test]
fn delete_removes_exactly_one_entry() {
    let after = edit_entry(OPERATOR, Section::Providers, Edit::Delete("openai")).unwrap();
    assert!(!after.contains("OPENAI_API_KEY"));
    assert!(after.contains("{ name: mock, kind: mock }    # for tests"));
    assert_comments_kept(OPERATOR, &after, &["# from the vault"]);
    let v = parse_value(&after).unwrap();
    assert_eq!(v["providers"].as_sequence().unwrap().len(), 1);
    // The last entry of a list: the list stays, empty.
    let after = edit_entry(OPERATOR, Section::Keys, Edit::Delete("a")).unwrap();
    let v = parse_value(&after).unwrap();
    assert_eq!(v["keys"].as_sequence().map(Vec::len), Some(0));
    assert!(after.ends_with("# end of file\n"), "{after}");
}

#[test]
fn create_starts_a_list_that_is_absent_empty_or_null() {
    let entry = mapping("name: search\nbudget: {usd: 5, period: daily}\n");
    for text in ["listen: x\n", "listen: x\nprojects: []  # none\n", "listen: x\nprojects:\nkeys: []\n"] {
        let after = edit_entry(text, Section::Projects, Edit::Create(&entry)).unwrap();
        let v = parse_value(&after).unwrap();
        assert_eq!(v["projects"], Value::Sequence(vec![Value::Mapping(entry.clone())]), "{after}");
        assert_eq!(v["listen"], Value::String("x".into()));
    }
}

#[test]
fn ambiguous_strings_stay_strings() {
    let entry = mapping(
        "name: az\nkind: azure_openai\nbase_url: https://x\napi_version: '2024-10-21'\napi_key: '123'\n",
    );
    let after = edit_entry(OPERATOR, Section::Providers, Edit::Create(&entry)).unwrap();
    let v = parse_value(&after).unwrap();
    assert_eq!(v["providers"][2]["api_key"], Value::String("123".into()));
    assert_eq!(v["providers"][2]["api_version"], Value::String("2024-10-21".into()));
    let p: crate::config::ProviderEntry = serde_yaml::from_value(v["providers"][2].clone()).unwrap();
    assert_eq!(p.api_version.as_deref(), Some("2024-10-21"));
}

#[test]
fn missing_and_duplicate_entries_are_named() {
    let entry = mapping("id: a\nhash: sha256:cccc\n");
    assert_eq!(
        edit_entry(OPERATOR, Section::Keys, Edit::Create(&entry)),
        Err(EditError::Exists { section: "keys", id: "a".into() })
    );
    assert_eq!(
        edit_entry(OPERATOR, Section::Keys, Edit::Delete("nope")),
        Err(EditError::NotFound { section: "keys", id: "nope".into() })
    );
    assert_eq!(edit_entry("keys: 5\n", Section::Keys, Edit::Delete("a")), Err(EditError::NotAList("keys")));
    assert!(matches!(edit_entry("keys: [\n", Section::Keys, Edit::Delete("a")), Err(EditError::Parse(_))));
}

#[test]
fn set_values_replaces_scalars_in_block_flow_and_literal_styles() {
    let text = "master_key: abc   # literal\nadmin:\n  listen: x\n  token: |\n    multi\n    line\nproviders:\n  - { name: a, kind: openai, api_key: sk-1 }\nauth:\n  jwt:\n    issuer: i\n    audience: a\n    keys: [k1, k2]\n";
    let changes = vec![
        (vec![Seg::Key("master_key".into())], Value::String("redacted:sha256:00".into())),
        (vec![Seg::Key("admin".into()), Seg::Key("token".into())], Value::String("enc:AB+/=".into())),
        (
            vec![Seg::Key("providers".into()), Seg::Index(0), Seg::Key("api_key".into())],
            Value::String("enc:CD".into()),
        ),
        (
            vec![Seg::Key("auth".into()), Seg::Key("jwt".into()), Seg::Key("keys".into()), Seg::Index(1)],
            Value::String("enc:EF".into()),
        ),
    ];
    let after = set_values(text, &changes).unwrap();
    assert!(after.contains("# literal"));
    let v = parse_value(&after).unwrap();
    assert_eq!(v["admin"]["token"], Value::String("enc:AB+/=".into()));
    assert_eq!(v["providers"][0]["api_key"], Value::String("enc:CD".into()));
    assert_eq!(v["auth"]["jwt"]["keys"][0], Value::String("k1".into()));
    assert_eq!(v["auth"]["jwt"]["keys"][1], Value::String("enc:EF".into()));
    assert!(!after.contains("sk-1") && !after.contains("multi"));
    let missing = vec![(vec![Seg::Key("redis".into()), Seg::Key("password".into())], Value::Null)];
    assert_eq!(set_values(text, &missing), Err(EditError::NoPath("redis.password".into())));
}

#[test]
fn paths_render_like_config_errors() {
    let p = [Seg::Key("providers".into()), Seg::Index(2), Seg::Key("api_key".into())];
    assert_eq!(path_string(&p), "providers[2].api_key");
}
