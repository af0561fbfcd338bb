//! End-to-end tests of the admin API through `Admin::handle` (method, path, headers, body in;
//! status and body out), over a real config file, history and audit log in a temp dir, with a
//! `ConfigHost` built on `config::load_str` (the same validation `llm-gateway check` runs).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{HeaderMap, Method};
use parking_lot::RwLock;
use serde_json::{json, Value};

use super::*;
use crate::auth::stored_form;
use crate::config::{load_str, ConfigErrors};

const ROOT: &str = "root-token-5f2a";
const VIEWER: &str = "viewer-token-81c3";
const SEARCH_LEAD: &str = "project-token-77d0";
const PROVIDER_SECRET: &str = "sk-live-provider-secret-93b1";
const MASTER: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";

fn fixture(dir: &std::path::Path, master: bool) -> String {
    let master = if master { format!("master_key: {MASTER}   # test only\n") } else { String::new() };
    format!(
        r#"# Operator notes: keep me.
listen: "127.0.0.1:18080"
admin:
  listen: "127.0.0.1:18081"
  token: {ROOT}          # admin
  tokens:
    - {{ id: vera, hash: "{viewer}", role: viewer }}
    - {{ id: search-lead, hash: "{lead}", role: project, project: search }}
state_dir: {state}
{master}
providers:
  # echo for tests
  - name: mock
    kind: mock
  - name: openai
    kind: openai
    api_key: {PROVIDER_SECRET}   # literal on purpose

models:
  - alias: fast   # the default
    targets: [ {{ provider: mock, model: m1 }} ]

projects:
  - name: search   # team search
  - name: ads

keys:
  # search's production key
  - id: search-1
    hash: {k1}
    project: search
  - id: ads-1
    hash: {k2}
    project: ads
# end
"#,
        viewer = stored_form(VIEWER),
        lead = stored_form(SEARCH_LEAD),
        state = dir.join("state").display(),
        k1 = stored_form("sk-search-1"),
        k2 = stored_form("sk-ads-1"),
    )
}

/// A `ConfigHost` over a file in a temp dir, validating with `load_str`.
struct TestHost {
    dir: PathBuf,
    running: RwLock<RunningText>,
    applies: AtomicUsize,
}

impl ConfigHost for TestHost {
    fn running_text(&self) -> RunningText {
        self.running.read().clone()
    }
    fn validate(&self, text: &str) -> Result<(), ConfigErrors> {
        load_str(text).map(drop)
    }
    fn apply(&self, text: &str) -> Result<(), ConfigErrors> {
        load_str(text)?;
        *self.running.write() = RunningText::new(text);
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn config_path(&self) -> PathBuf {
        self.dir.join("gateway.yaml")
    }
    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
}

/// Live views that echo what they were asked.
struct TestViews;

impl LiveViews for TestViews {
    fn health(&self) -> Value {
        json!({"targets": [{"provider": "mock", "model": "m1", "healthy": true}]})
    }
    fn key_limits(&self, id: &str) -> Option<Value> {
        Some(json!({"id": id, "rpm_remaining": 41}))
    }
    fn usage(&self, q: &UsageQuery) -> Result<Value, String> {
        Ok(
            json!({"project": q.project, "key": q.key, "group_by": q.group_by, "from": q.from.map(|t| t.unix_timestamp())}),
        )
    }
    fn metrics_text(&self) -> String {
        "llm_gateway_requests_total 7\n".into()
    }
}

struct Env {
    _tmp: tempfile::TempDir,
    host: Arc<TestHost>,
    admin: Arc<Admin>,
}

impl Env {
    fn new(master: bool) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let text = fixture(&dir, master);
        load_str(&text).unwrap();
        std::fs::write(dir.join("gateway.yaml"), &text).unwrap();
        let host = Arc::new(TestHost {
            dir,
            running: RwLock::new(RunningText::new(text)),
            applies: AtomicUsize::new(0),
        });
        let admin = Admin::new(host.clone(), Arc::new(TestViews)).unwrap();
        Env { _tmp: tmp, host, admin }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, bytes) = self.raw(method, path, token, body.map(|b| b.to_string().into_bytes())).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into())),
        )
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<u8>) {
        let mut headers = HeaderMap::new();
        if let Some(t) = token {
            headers.insert(http::header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        }
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path.to_string(), None),
        };
        let resp = self
            .admin
            .handle(AdminRequest { method, path, query, headers, body: body.unwrap_or_default() })
            .await;
        (resp.status().as_u16(), resp.into_body())
    }

    fn file(&self) -> String {
        std::fs::read_to_string(self.host.config_path()).unwrap()
    }

    fn running(&self) -> String {
        self.host.running_text().text.to_string()
    }

    fn audit_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.host.state_dir().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every byte the admin API wrote under state_dir (versions, audit).
    fn state_bytes(&self) -> String {
        let mut out = std::fs::read_to_string(self.host.state_dir().join("audit.jsonl")).unwrap_or_default();
        for e in std::fs::read_dir(self.host.state_dir().join("config")).unwrap() {
            out.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
        out
    }

    /// The file and the running config are unchanged and no version or audit line was added.
    fn assert_unchanged(&self, file: &str, versions: usize) {
        assert_eq!(self.file(), file, "file bytes changed");
        assert_eq!(self.running(), file, "running config changed");
        assert_eq!(self.admin.with_history(|h| h.list().len()), versions, "a version was added");
        assert_eq!(self.audit_lines().len(), versions, "an audit line was added");
    }
}

fn versions(env: &Env) -> usize {
    env.admin.with_history(|h| h.list().len())
}

#[tokio::test]
async fn tokens_are_required_and_each_role_gets_exactly_its_rights() {
    let env = Env::new(false);
    let before = env.file();
    assert_eq!(versions(&env), 1, "the start config is version 1");

    assert_eq!(env.call(Method::GET, "/admin/config", None, None).await.0, 401);
    assert_eq!(env.call(Method::GET, "/admin/config", Some("wrong"), None).await.0, 401);
    assert_eq!(
        env.call(Method::GET, "/admin/nope", None, None).await.0,
        401,
        "no route discovery without a token"
    );
    assert_eq!(env.call(Method::GET, "/healthz", None, None).await.0, 200);

    // Viewer: every GET, no change.
    for path in [
        "/admin/config",
        "/admin/providers",
        "/admin/keys",
        "/admin/config/versions",
        "/admin/audit",
        "/admin/health",
    ] {
        assert_eq!(env.call(Method::GET, path, Some(VIEWER), None).await.0, 200, "{path}");
    }
    let (s, b) = env
        .call(
            Method::POST,
            "/admin/models",
            Some(VIEWER),
            Some(json!({"alias": "x", "targets": [{"provider": "mock", "model": "y"}]})),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("viewer"));
    assert_eq!(env.call(Method::DELETE, "/admin/keys/ads-1", Some(VIEWER), None).await.0, 403);
    assert_eq!(env.call(Method::POST, "/admin/reload", Some(VIEWER), None).await.0, 403);
    assert_eq!(
        env.call(Method::POST, "/admin/config/rollback", Some(VIEWER), Some(json!({"version": 1}))).await.0,
        403
    );
    env.assert_unchanged(&before, 1);

    // Project token: its project's keys only.
    let (s, b) = env.call(Method::GET, "/admin/keys", Some(SEARCH_LEAD), None).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = b["keys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["search-1"]);
    assert_eq!(env.call(Method::GET, "/admin/keys/search-1", Some(SEARCH_LEAD), None).await.0, 200);
    assert_eq!(env.call(Method::GET, "/admin/keys/ads-1", Some(SEARCH_LEAD), None).await.0, 403);
    assert_eq!(env.call(Method::GET, "/admin/keys/ads-1/limits", Some(SEARCH_LEAD), None).await.0, 403);
    let (s, b) = env
        .call(Method::PUT, "/admin/keys/ads-1", Some(SEARCH_LEAD), Some(json!({"project": "ads", "rpm": 1})))
        .await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = env
        .call(Method::PUT, "/admin/keys/ads-1", Some(SEARCH_LEAD), Some(json!({"project": "search"})))
        .await;
    assert_eq!(s, 403, "cannot take another project's key either");
    assert_eq!(env.call(Method::DELETE, "/admin/keys/ads-1", Some(SEARCH_LEAD), None).await.0, 403);
    let (s, _) = env
        .call(Method::POST, "/admin/keys", Some(SEARCH_LEAD), Some(json!({"id": "x", "project": "ads"})))
        .await;
    assert_eq!(s, 403);
    let (s, _) = env
        .call(Method::PUT, "/admin/keys/search-1", Some(SEARCH_LEAD), Some(json!({"project": "ads"})))
        .await;
    assert_eq!(s, 403, "cannot move its key to another project");
    for (m, path) in [
        (Method::GET, "/admin/config"),
        (Method::GET, "/admin/providers"),
        (Method::GET, "/admin/audit"),
        (Method::GET, "/metrics"),
        (Method::POST, "/admin/projects"),
        (Method::DELETE, "/admin/models/fast"),
    ] {
        assert_eq!(env.call(m.clone(), path, Some(SEARCH_LEAD), Some(json!({}))).await.0, 403, "{m} {path}");
    }
    let (s, b) = env.call(Method::GET, "/admin/usage?project=ads", Some(SEARCH_LEAD), None).await;
    assert_eq!(s, 403, "{b}");
    env.assert_unchanged(&before, 1);

    // ...and creating a key forces its project.
    let (s, b) = env
        .call(Method::POST, "/admin/keys", Some(SEARCH_LEAD), Some(json!({"id": "search-2", "rpm": 60})))
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["project"], "search");
    let (s, b) = env
        .call(Method::GET, "/admin/usage?group_by=day,model&from=2026-01-01", Some(SEARCH_LEAD), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        b,
        json!({"project": "search", "key": null, "group_by": ["day", "model"], "from": 1_767_225_600})
    );
    let (s, b) =
        env.call(Method::PUT, "/admin/keys/search-2", Some(SEARCH_LEAD), Some(json!({"rpm": 61}))).await;
    assert_eq!((s, &b["rpm"], &b["project"]), (200, &json!(61), &json!("search")), "{b}");
    assert_eq!(env.call(Method::DELETE, "/admin/keys/search-2", Some(SEARCH_LEAD), None).await.0, 200);
    let actors: Vec<String> =
        env.audit_lines().iter().map(|l| l["actor"].as_str().unwrap().to_string()).collect();
    assert_eq!(actors, ["file", "search-lead", "search-lead", "search-lead"]);
}

#[tokio::test]
async fn crud_on_every_list_keeps_comments_and_the_file_still_loads() {
    let env = Env::new(false);
    let admin = Some(ROOT);
    // Raw JSON bodies: the field order a client writes is the order in the file.
    let steps: Vec<(Method, &str, &str, u16)> = vec![
        (
            Method::POST,
            "/admin/providers",
            r#"{"name": "local", "kind": "openai_compatible", "base_url": "http://127.0.0.1:8000"}"#,
            201,
        ),
        (
            Method::PUT,
            "/admin/providers/local",
            r#"{"kind": "openai_compatible", "base_url": "http://127.0.0.1:9000"}"#,
            200,
        ),
        (
            Method::POST,
            "/admin/models",
            r#"{"alias": "slow", "targets": [{"provider": "local", "model": "llama"}], "fallbacks": ["fast"]}"#,
            201,
        ),
        (
            Method::PUT,
            "/admin/models/fast",
            r#"{"alias": "fast", "targets": [{"provider": "mock", "model": "m2", "weight": 2}]}"#,
            200,
        ),
        (
            Method::POST,
            "/admin/projects",
            r#"{"name": "infra", "budget": {"usd": 50, "period": "monthly"}}"#,
            201,
        ),
        (Method::PUT, "/admin/projects/infra", r#"{"name": "infra", "rpm": 100}"#, 200),
        (Method::POST, "/admin/keys", r#"{"id": "infra-1", "project": "infra", "models": ["slow"]}"#, 201),
        (
            Method::PUT,
            "/admin/keys/infra-1",
            r#"{"project": "infra", "models": ["fast", "slow"], "tpm": 1000}"#,
            200,
        ),
    ];
    for (i, (m, path, body, want)) in steps.into_iter().enumerate() {
        let (s, b) = env.raw(m.clone(), path, admin, Some(body.as_bytes().to_vec())).await;
        let b: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(s, want, "{m} {path}: {b}");
        assert_eq!(b["version"], json!(i + 2), "{m} {path}");
        let text = env.file();
        assert_eq!(text, env.running(), "the file is what runs");
        load_str(&text).unwrap();
        for c in [
            "# Operator notes: keep me.",
            "# admin",
            "# echo for tests",
            "# literal on purpose",
            "# team search",
            "# search's production key",
            "# end",
        ] {
            assert!(text.contains(c), "{c:?} lost after {m} {path}:\n{text}");
        }
    }
    let text = env.file();
    assert!(
        text.contains("  - name: local\n    kind: openai_compatible\n    base_url: http://127.0.0.1:9000\n"),
        "{text}"
    );
    assert!(text.contains("  - alias: slow\n    targets:\n"), "{text}");
    assert!(text.contains("  - id: infra-1\n    hash: sha256:"), "{text}");
    assert!(text.contains("  - name: infra\n    rpm: 100\n"), "{text}");
    assert!(text.contains("# the default"), "the alias line's comment is kept: {text}");
    // GETs read back what was written.
    let (_, b) = env.call(Method::GET, "/admin/models/slow", admin, None).await;
    assert_eq!(b["fallbacks"], json!(["fast"]));
    let (_, b) = env.call(Method::GET, "/admin/keys/infra-1", admin, None).await;
    assert_eq!((&b["tpm"], &b["models"]), (&json!(1000), &json!(["fast", "slow"])));
    assert!(b["hash"].as_str().unwrap().starts_with("sha256:"), "PUT kept the hash");
    let (_, b) = env.call(Method::GET, "/admin/projects", admin, None).await;
    assert_eq!(b["projects"].as_array().unwrap().len(), 3);
    // Deletes, children first.
    for path in
        ["/admin/keys/infra-1", "/admin/projects/infra", "/admin/models/slow", "/admin/providers/local"]
    {
        let (s, b) = env.call(Method::DELETE, path, admin, None).await;
        assert_eq!(s, 200, "{path}: {b}");
        assert_eq!(env.call(Method::GET, path, admin, None).await.0, 404);
    }
    let text = env.file();
    assert!(!text.contains("infra") && !text.contains("local"));
    assert_eq!(versions(&env), 13);
    let lines = env.audit_lines();
    let actions: Vec<&str> = lines.iter().map(|l| l["action"].as_str().unwrap()).collect();
    assert_eq!(actions[1..5], ["providers.create", "providers.update", "models.create", "models.update"]);
    assert_eq!(actions[12], "providers.delete");
    assert_eq!(lines[3]["target"], "slow");
    assert!(lines[3]["diff"].as_str().unwrap().contains("+  - alias: slow"), "{}", lines[3]["diff"]);
    assert_eq!(verify_audit(&env.admin.audit_path()), Ok(13));
}

#[tokio::test]
async fn invalid_mutations_are_refused_and_change_nothing() {
    let env = Env::new(false);
    let before = env.file();
    let admin = Some(ROOT);
    let cases: Vec<(Method, &str, Vec<u8>, u16, &str)> = vec![
        (
            Method::POST,
            "/admin/models",
            json!({"alias": "x", "targets": [{"provider": "opnai", "model": "y"}]}).to_string().into_bytes(),
            400,
            "models[1].targets[0].provider",
        ),
        (
            Method::POST,
            "/admin/keys",
            json!({"id": "k", "project": "nope"}).to_string().into_bytes(),
            400,
            "keys[2].project",
        ),
        (Method::DELETE, "/admin/providers/mock", Vec::new(), 400, "models[0].targets[0].provider"),
        (Method::DELETE, "/admin/projects/ads", Vec::new(), 400, "keys[1].project"),
        (
            Method::POST,
            "/admin/providers",
            json!({"name": "p", "kind": "openai", "colour": "red"}).to_string().into_bytes(),
            400,
            "colour",
        ),
        (
            Method::POST,
            "/admin/providers",
            json!({"name": "p", "kind": "openai"}).to_string().into_bytes(),
            400,
            "api_key",
        ),
        (
            Method::POST,
            "/admin/projects",
            json!({"name": "search"}).to_string().into_bytes(),
            409,
            "already has",
        ),
        (Method::POST, "/admin/projects", b"{not json".to_vec(), 400, "not JSON"),
        (Method::POST, "/admin/projects", b"[1]".to_vec(), 400, "object"),
        (
            Method::PUT,
            "/admin/models/fast",
            json!({"alias": "quick", "targets": []}).to_string().into_bytes(),
            400,
            "rename",
        ),
        (
            Method::PUT,
            "/admin/models/nope",
            json!({"targets": [{"provider": "mock", "model": "m"}]}).to_string().into_bytes(),
            404,
            "no entry",
        ),
        (Method::DELETE, "/admin/keys/nope", Vec::new(), 404, "no entry"),
        (Method::POST, "/admin/projects", vec![b' '; MAX_BODY_BYTES + 1], 413, "body"),
        (
            Method::POST,
            "/admin/config/rollback",
            json!({"version": 99}).to_string().into_bytes(),
            404,
            "no config version 99",
        ),
        (Method::PATCH, "/admin/models/fast", Vec::new(), 405, "allows GET, PUT, DELETE"),
    ];
    for (m, path, body, want, says) in cases {
        let (s, bytes) = env.raw(m.clone(), path, admin, Some(body)).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(s, want, "{m} {path}: {text}");
        assert!(text.contains(says), "{m} {path}: {text:?} does not say {says:?}");
        env.assert_unchanged(&before, 1);
    }
    let (_, b) = env
        .call(
            Method::POST,
            "/admin/models",
            admin,
            Some(json!({"alias": "x", "targets": [{"provider": "opnai", "model": "y"}]})),
        )
        .await;
    assert_eq!(b["error"]["errors"][0]["path"], "models[1].targets[0].provider");
    assert_eq!(env.host.applies.load(Ordering::SeqCst), 0, "nothing was ever swapped in");
}

#[tokio::test]
async fn created_keys_are_random_hashed_and_their_plaintext_appears_once() {
    let env = Env::new(false);
    let (s, b) = env
        .call(Method::POST, "/admin/keys", Some(ROOT), Some(json!({"id": "new-1", "project": "search"})))
        .await;
    assert_eq!(s, 201, "{b}");
    let key = b["key"].as_str().unwrap().to_string();
    let rest = key.strip_prefix("sk-gw-").unwrap();
    assert_eq!(rest.len(), 43);
    assert!(rest.bytes().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(b["hash"], stored_form(&key));
    let snap = load_str(&env.file()).unwrap();
    let k = snap.keys.get(&crate::auth::hash_key(&key)).expect("the new key authenticates");
    assert_eq!((k.id.as_str(), k.project.as_deref()), ("new-1", Some("search")));
    // Without an id one is made; a second key differs.
    let (_, b2) = env.call(Method::POST, "/admin/keys", Some(ROOT), Some(json!({"project": "ads"}))).await;
    assert!(b2["id"].as_str().unwrap().starts_with("key-"));
    assert_ne!(b2["key"], b["key"]);
    // The plaintext is nowhere else.
    assert!(!env.file().contains(&key));
    assert!(!env.state_bytes().contains(&key));
    for path in
        ["/admin/keys", "/admin/keys/new-1", "/admin/config", "/admin/audit", "/admin/config/versions/3"]
    {
        let (_, got) = env.raw(Method::GET, path, Some(ROOT), None).await;
        assert!(!String::from_utf8_lossy(&got).contains(&key), "{path}");
    }
    // An imported hash (llm-gateway key create --offline) is stored as given, with no plaintext.
    let (s, b) = env
        .call(
            Method::POST,
            "/admin/keys",
            Some(ROOT),
            Some(json!({"id": "imported", "hash": stored_form("offline"), "project": "ads"})),
        )
        .await;
    assert_eq!((s, b.get("key")), (201, None));
}

#[tokio::test]
async fn no_answer_audit_line_or_version_holds_a_secret() {
    let env = Env::new(true);
    let admin = Some(ROOT);
    let posted = "sk-posted-provider-secret-4e1d";
    let (s, b) = env
        .call(
            Method::POST,
            "/admin/providers",
            admin,
            Some(json!({"name": "anthropic", "kind": "anthropic", "api_key": posted})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let file = env.file();
    assert!(!file.contains(posted), "stored enc: under the master key");
    let snap = load_str(&file).unwrap();
    let p = snap.providers.iter().find(|p| p.name == "anthropic").unwrap();
    assert_eq!(p.api_key.as_ref().unwrap().expose(), posted, "and it decrypts to the posted secret");
    // PUT with <redacted> keeps the sealed value.
    let (s, _) = env
        .call(
            Method::PUT,
            "/admin/providers/anthropic",
            admin,
            Some(json!({"kind": "anthropic", "api_key": "<redacted>", "base_url": "https://x.example"})),
        )
        .await;
    assert_eq!(s, 200);
    let snap = load_str(&env.file()).unwrap();
    assert_eq!(
        snap.providers.iter().find(|p| p.name == "anthropic").unwrap().api_key.as_ref().unwrap().expose(),
        posted
    );
    env.call(
        Method::POST,
        "/admin/models",
        admin,
        Some(json!({"alias": "a", "targets": [{"provider": "anthropic", "model": "c"}]})),
    )
    .await;

    let secrets = [ROOT, VIEWER, SEARCH_LEAD, PROVIDER_SECRET, posted, MASTER];
    let stored = env.state_bytes();
    let mut answers = String::new();
    for path in [
        "/admin/config",
        "/admin/providers",
        "/admin/providers/openai",
        "/admin/providers/anthropic",
        "/admin/audit",
        "/admin/config/versions",
        "/admin/config/versions/1",
        "/admin/config/versions/2",
        "/admin/config/diff?from=1&to=4",
        "/admin/openapi.json",
    ] {
        let (s, got) = env.raw(Method::GET, path, Some(VIEWER), None).await;
        assert_eq!(s, 200, "{path}");
        answers.push_str(&String::from_utf8_lossy(&got));
    }
    for secret in secrets {
        assert!(!stored.contains(secret), "{secret} in state_dir");
        assert!(!answers.contains(secret), "{secret} in an answer");
    }
    assert!(answers.contains("<redacted>"));
    // Sealed secrets read the same in every version: a change elsewhere does not show them.
    let last = env.audit_lines().pop().unwrap();
    let diff = last["diff"].as_str().unwrap();
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---")
        })
        .collect();
    assert_eq!(
        changed,
        ["+  - alias: a", "+    targets:", "+    - model: c", "+      provider: anthropic"],
        "{diff}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_mutations_all_land_exactly_once() {
    let env = Arc::new(Env::new(false));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let env = env.clone();
            tokio::spawn(async move {
                env.call(Method::POST, "/admin/projects", Some(ROOT), Some(json!({"name": format!("p{i}")})))
                    .await
            })
        })
        .collect();
    let mut versions_seen = Vec::new();
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert_eq!(s, 201, "{b}");
        versions_seen.push(b["version"].as_u64().unwrap());
    }
    versions_seen.sort_unstable();
    assert_eq!(versions_seen, (2..=21).collect::<Vec<u64>>());
    let config = crate::config::parse(&env.file()).unwrap();
    for i in 0..20 {
        assert_eq!(config.projects.iter().filter(|p| p.name == format!("p{i}")).count(), 1, "p{i}");
    }
    assert_eq!(config.projects.len(), 22);
    assert_eq!(env.file(), env.running());
    assert_eq!(verify_audit(&env.admin.audit_path()), Ok(21));
}

#[tokio::test]
async fn a_file_edited_on_disk_is_never_overwritten() {
    let env = Env::new(false);
    let edited = env.file().replace("  - name: ads\n", "  - name: ads\n  - name: growth   # added by hand\n");
    std::fs::write(env.host.config_path(), &edited).unwrap();
    let (s, b) = env.call(Method::POST, "/admin/projects", Some(ROOT), Some(json!({"name": "x"}))).await;
    assert_eq!(s, 409, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("changed on disk"));
    assert_eq!(env.file(), edited, "the operator's edit is kept");
    assert_eq!(versions(&env), 1);
    // Reload takes the edit (a version by the caller), then mutations work again.
    let (s, b) = env.call(Method::POST, "/admin/reload", Some(ROOT), None).await;
    assert_eq!((s, &b["reloaded"], &b["version"]), (200, &json!(true), &json!(2)));
    assert_eq!(env.running(), edited);
    let (s, _) = env.call(Method::POST, "/admin/projects", Some(ROOT), Some(json!({"name": "x"}))).await;
    assert_eq!(s, 201);
    assert!(env.file().contains("# added by hand"));
    let (_, b) = env.call(Method::POST, "/admin/reload", Some(ROOT), None).await;
    assert_eq!(b["reloaded"], false);
    // An invalid edit on disk: reload refuses it with the errors and keeps the running config.
    let running = env.running();
    std::fs::write(env.host.config_path(), running.replace("provider: mock", "provider: mokc")).unwrap();
    let (s, b) = env.call(Method::POST, "/admin/reload", Some(ROOT), None).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["errors"][0]["path"], "models[0].targets[0].provider");
    assert_eq!(env.running(), running);
}

#[tokio::test]
async fn the_reloader_records_file_edits_with_actor_file() {
    let env = Env::new(false);
    let edited = env.file().replace("model: m1", "model: m9");
    std::fs::write(env.host.config_path(), &edited).unwrap();
    assert_eq!(
        env.admin.reload_from_file(Source::Sighup, "file").unwrap(),
        Reloaded::Applied { version: Some(2) }
    );
    assert_eq!(env.admin.reload_from_file(Source::File, "file").unwrap(), Reloaded::Unchanged);
    let last = env.audit_lines().pop().unwrap();
    assert_eq!(
        (&last["actor"], &last["action"], &last["version"]),
        (&json!("file"), &json!("config.sighup"), &json!(2))
    );
    assert!(last["diff"].as_str().unwrap().contains("-    targets: [ { provider: mock, model: m1 } ]"));
    // record_version: the same text again is not a new version.
    assert_eq!(env.admin.record_version(&edited, Source::File, "file").unwrap(), None);
    let (_, b) = env.call(Method::GET, "/admin/config/versions", Some(VIEWER), None).await;
    let sources: Vec<&str> =
        b["versions"].as_array().unwrap().iter().map(|v| v["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["sighup", "start"]);
}

#[tokio::test]
async fn rollback_restores_an_earlier_alias_and_is_a_version_and_an_audit_line() {
    let env = Env::new(false);
    let admin = Some(ROOT);
    let slow = json!({"alias": "slow", "targets": [{"provider": "mock", "model": "s"}]});
    assert_eq!(env.call(Method::POST, "/admin/models", admin, Some(slow)).await.0, 201); // v2
    assert_eq!(env.call(Method::DELETE, "/admin/models/slow", admin, None).await.0, 200); // v3
    assert!(!env.file().contains("alias: slow"));
    // The version holds the provider secret as a fingerprint only.
    let (_, v2) = env.call(Method::GET, "/admin/config/versions/2", Some(VIEWER), None).await;
    let yaml = v2["yaml"].as_str().unwrap();
    assert!(
        yaml.contains("redacted:sha256:") && !yaml.contains(PROVIDER_SECRET) && yaml.contains("alias: slow")
    );
    let (_, d) = env.call(Method::GET, "/admin/config/diff?from=2&to=3", Some(VIEWER), None).await;
    assert!(d["diff"].as_str().unwrap().contains("-  - alias: slow"), "{d}");

    let (s, b) = env.call(Method::POST, "/admin/config/rollback", admin, Some(json!({"version": 2}))).await;
    assert_eq!((s, &b["version"], &b["changed"]), (200, &json!(4), &json!(true)), "{b}");
    let file = env.file();
    assert!(file.contains("alias: slow"));
    assert!(
        file.contains(&format!("api_key: {PROVIDER_SECRET}")),
        "the fingerprint was restored from the running config"
    );
    assert!(file.contains("# Operator notes: keep me."));
    assert!(load_str(&env.running()).unwrap().alias_index.contains_key("slow"));
    let (_, list) = env.call(Method::GET, "/admin/config/versions", Some(VIEWER), None).await;
    assert_eq!(list["versions"][0]["source"], "rollback");
    assert_eq!(list["versions"][0]["actor"], "admin");
    let last = env.audit_lines().pop().unwrap();
    assert_eq!(
        (&last["action"], &last["target"], &last["version"]),
        (&json!("config.rollback"), &json!("v2"), &json!(4))
    );
    assert_eq!(verify_audit(&env.admin.audit_path()), Ok(4));

    // Rotate the provider secret; version 2's fingerprint then matches nothing: 400 naming it.
    let (s, _) = env
        .call(
            Method::PUT,
            "/admin/providers/openai",
            admin,
            Some(json!({"kind": "openai", "api_key": "sk-rotated-7"})),
        )
        .await;
    assert_eq!(s, 200);
    let before = env.file();
    let (s, b) = env.call(Method::POST, "/admin/config/rollback", admin, Some(json!({"version": 2}))).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("providers[1].api_key"), "{b}");
    assert_eq!(env.file(), before);
    assert_eq!(versions(&env), 5);
}

#[tokio::test]
async fn rollback_to_an_env_secret_that_is_gone_is_refused() {
    let env = Env::new(false);
    let var = "LLM_GATEWAY_ADMIN_TEST_SURELY_UNSET_KEY";
    // v2 names an env var that is not set: it cannot be created in the first place...
    let (s, b) = env
        .call(
            Method::POST,
            "/admin/providers",
            Some(ROOT),
            Some(json!({"name": "g", "kind": "gemini", "api_key": format!("env:{var}")})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(b["error"]["message"].as_str().unwrap().contains(var));
    // ...and a stored version that names it is re-validated on rollback.
    let text = env.file().replace(
        "providers:\n",
        &format!("providers:\n  - {{ name: g, kind: gemini, api_key: env:{var} }}\n"),
    );
    let v = env.admin.record_version(&text, Source::File, "file").unwrap().unwrap();
    let before = env.file();
    let (s, b) =
        env.call(Method::POST, "/admin/config/rollback", Some(ROOT), Some(json!({"version": v}))).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"]["errors"][0]["message"].as_str().unwrap().contains(var));
    assert_eq!(env.file(), before);
}

#[tokio::test]
async fn audit_is_filterable_and_its_chain_breaks_on_one_changed_byte() {
    let env = Env::new(false);
    for i in 0..4 {
        let token = if i % 2 == 0 { ROOT } else { SEARCH_LEAD };
        let (s, b) = env
            .call(
                Method::POST,
                "/admin/keys",
                Some(token),
                Some(json!({"id": format!("k{i}"), "project": "search"})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let (_, b) = env.call(Method::GET, "/admin/audit?actor=search-lead", Some(VIEWER), None).await;
    let targets: Vec<&str> =
        b["entries"].as_array().unwrap().iter().map(|e| e["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["k3", "k1"], "newest first");
    let (_, b) =
        env.call(Method::GET, "/admin/audit?from=2000-01-01&to=2000-01-02", Some(VIEWER), None).await;
    assert_eq!(b["entries"].as_array().unwrap().len(), 0);
    assert_eq!(env.call(Method::GET, "/admin/audit?from=soon", Some(VIEWER), None).await.0, 400);

    let path = env.admin.audit_path();
    assert_eq!(verify_audit(&path), Ok(5));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[2] = lines[2].replacen("\"k1\"", "\"k7\"", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (line, why) = verify_audit(&path).unwrap_err();
    assert_eq!(line, 3, "{why}");
}

#[tokio::test]
async fn live_views_config_metrics_and_openapi_answer_through_the_seams() {
    let env = Env::new(false);
    let (s, b) = env.call(Method::GET, "/admin/health", Some(VIEWER), None).await;
    assert_eq!((s, &b["targets"][0]["provider"]), (200, &json!("mock")));
    let (s, b) = env.call(Method::GET, "/admin/keys/search-1/limits", Some(SEARCH_LEAD), None).await;
    assert_eq!((s, &b["rpm_remaining"]), (200, &json!(41)));
    assert_eq!(env.call(Method::GET, "/admin/keys/nope/limits", Some(ROOT), None).await.0, 404);
    let (s, b) = env.raw(Method::GET, "/metrics", Some(VIEWER), None).await;
    assert_eq!((s, b.as_slice()), (200, b"llm_gateway_requests_total 7\n".as_slice()));
    let (s, b) = env.call(Method::GET, "/admin/config", Some(ROOT), None).await;
    assert_eq!(s, 200);
    assert_eq!(b["admin"]["token"], "<redacted>");
    assert_eq!(b["providers"][1]["api_key"], "<redacted>");
    assert_eq!(env.call(Method::GET, "/admin/usage?group_by=colour", Some(ROOT), None).await.0, 400);
    let (s, b) = env.call(Method::GET, "/admin/openapi.json", Some(SEARCH_LEAD), None).await;
    assert_eq!(s, 200);
    assert_eq!(b["openapi"], "3.0.3");
    assert_eq!(b["paths"]["/admin/keys"]["post"]["x-roles"], json!(["admin", "project (own project)"]));
    let ops: usize = b["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(ops, ROUTES.len());
}

/// Mutation latency including every fsync (file, version, audit). Run with
/// `cargo test --lib admin::admin_tests::mutation_latency -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn mutation_latency() {
    let env = Env::new(false);
    let mut micros = Vec::new();
    for i in 0..200 {
        let t = std::time::Instant::now();
        let (s, _) =
            env.call(Method::PUT, "/admin/projects/ads", Some(ROOT), Some(json!({"rpm": 1000 + i}))).await;
        micros.push(t.elapsed().as_micros());
        assert_eq!(s, 200);
    }
    micros.sort_unstable();
    let p = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
    println!(
        "mutation latency over {} PUTs: p50 {} us, p99 {} us, max {} us",
        micros.len(),
        p(0.50),
        p(0.99),
        micros[micros.len() - 1]
    );
    // The CPU part alone: the lossless edit, sealing the old and new text, and three parses.
    let text = env.file();
    let entry: serde_yaml::Mapping = serde_yaml::from_str("name: ads\nrpm: 5\n").unwrap();
    let t = std::time::Instant::now();
    for _ in 0..50 {
        let new = edit_entry(&text, Section::Projects, Edit::Replace("ads", &entry)).unwrap();
        let mut sealer = super::secrets::Sealer::default();
        sealer.seal(&text, None).unwrap();
        sealer.seal(&new, None).unwrap();
        for _ in 0..3 {
            load_str(&new).unwrap();
        }
    }
    println!("CPU part per mutation: {} us", t.elapsed().as_micros() / 50);
}

#[tokio::test]
async fn the_dashboard_page_needs_no_token_and_recent_usage_is_scoped() {
    let env = Env::new(false);
    // The page: no token needed, and a wrong one is not looked at.
    for token in [None, Some("not-a-token")] {
        let resp = env
            .admin
            .handle(AdminRequest {
                method: Method::GET,
                path: "/".into(),
                query: None,
                headers: token
                    .map(|t| {
                        let mut h = HeaderMap::new();
                        h.insert(http::header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
                        h
                    })
                    .unwrap_or_default(),
                body: Vec::new(),
            })
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        assert!(resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
        assert_eq!(resp.body().as_slice(), super::dashboard::INDEX_HTML.as_bytes());
    }
    assert_eq!(env.call(Method::POST, "/", None, None).await.0, 401, "only GET / is public");
    assert_eq!(env.call(Method::GET, "/index.html", None, None).await.0, 401);

    // Recent usage: per alias per minute; a project token sees its project's lines only.
    let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(2);
    let line = |alias: &str, project: &str, status: u16| {
        format!(
            "{{\"time\":\"{}\",\"request_id\":\"r\",\"alias\":\"{alias}\",\"project\":\"{project}\",\"status\":{status},\"latency_ms\":12.5}}\n",
            super::audit::format_time(now)
        )
    };
    let text = line("fast", "search", 200) + &line("fast", "ads", 500) + &line("fast", "search", 200);
    std::fs::write(env.host.state_dir().join("usage.jsonl"), text).unwrap();
    let (s, b) = env.call(Method::GET, "/admin/usage/recent", Some(VIEWER), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["minutes"], 60);
    assert_eq!((&b["aliases"][0]["requests"], &b["aliases"][0]["errors"]), (&json!(3), &json!(1)));
    assert_eq!(b["aliases"][0]["points"][0]["p99_ms"], 12.5);
    let (s, b) = env.call(Method::GET, "/admin/usage/recent?minutes=5", Some(SEARCH_LEAD), None).await;
    assert_eq!((s, &b["aliases"][0]["requests"], &b["aliases"][0]["errors"]), (200, &json!(2), &json!(0)));
    let (s, b) = env.call(Method::GET, "/admin/usage/recent?minutes=1", Some(ROOT), None).await;
    assert_eq!((s, &b["aliases"]), (200, &json!([])), "two minutes ago is outside the last minute");
    for bad in ["0", "1441", "ten"] {
        assert_eq!(
            env.call(Method::GET, &format!("/admin/usage/recent?minutes={bad}"), Some(ROOT), None).await.0,
            400
        );
    }
    assert_eq!(env.call(Method::GET, "/admin/usage/recent", None, None).await.0, 401);
}
