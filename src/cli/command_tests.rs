//! Tests of the subcommands: argv parsed by clap, run against a tiny std::net listener that plays
//! our own admin API (canned SPEC section 5 answers) and records the requests the CLI sent.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use clap::Parser;

use super::*;
use crate::cli::{error_message, hex_sha256, GENESIS_HASH};

const TOKEN: &str = "adm-tok-123";

#[derive(Parser)]
struct TestCli {
    #[command(subcommand)]
    cmd: Command,
}

fn parse(args: &[&str]) -> Command {
    match TestCli::try_parse_from(std::iter::once("llm-gateway").chain(args.iter().copied())) {
        Ok(c) => c.cmd,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

/// One canned answer of the mock admin API.
struct Canned {
    status: u16,
    content_type: &'static str,
    body: String,
    chunked: bool,
}

fn answer(status: u16, body: &str) -> Canned {
    Canned { status, content_type: "application/json", body: body.to_string(), chunked: false }
}

/// A request as the mock received it.
#[derive(Debug)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Serve `answers` in order, one connection each; the handle yields what was asked.
fn mock(answers: Vec<Canned>) -> (String, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for a in answers {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "client closed before the headers ended");
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
            let mut lines = head.split("\r\n");
            let line = lines.next().unwrap().to_string();
            let headers: Vec<(String, String)> = lines
                .map(|l| {
                    let (n, v) = l.split_once(':').unwrap();
                    (n.to_string(), v.trim().to_string())
                })
                .collect();
            let len = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
            let mut body = buf[head_end + 4..].to_vec();
            while body.len() < len {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "client closed before the body ended");
                body.extend_from_slice(&chunk[..n]);
            }
            seen.push(Seen { line, headers, body });
            let mut resp = format!("HTTP/1.1 {} X\r\nContent-Type: {}\r\n", a.status, a.content_type);
            if a.chunked {
                resp.push_str("Transfer-Encoding: chunked\r\n\r\n");
                let (x, y) = a.body.split_at(a.body.len() / 2);
                for part in [x, y] {
                    resp.push_str(&format!("{:x};ext=1\r\n{part}\r\n", part.len()));
                }
                resp.push_str("0\r\n\r\n");
            } else {
                resp.push_str(&format!("Content-Length: {}\r\n\r\n{}", a.body.len(), a.body));
            }
            s.write_all(resp.as_bytes()).unwrap();
        }
        seen
    });
    (url, handle)
}

fn env(url: &str) -> Env {
    Env { admin_url: Some(url.to_string()), admin_token: Some(TOKEN.to_string()) }
}

fn run_ok(args: &[&str], env: &Env) -> String {
    let mut out = Vec::new();
    match run(parse(args), env, &mut out) {
        Ok(Outcome::Success) => String::from_utf8(out).unwrap(),
        other => panic!("{args:?}: {other:?}"),
    }
}

fn run_err(args: &[&str], env: &Env) -> CliError {
    let mut out = Vec::new();
    run(parse(args), env, &mut out).unwrap_err()
}

#[test]
fn key_list_sends_the_admin_token_and_draws_a_table() {
    let (url, h) = mock(vec![answer(
        200,
        r#"[{"id":"search-prod","hash":"sha256:ab","project":"search","models":["fast","claude-haiku"],"rpm":600},
            {"id":"old","hash":"sha256:cd","revoked":true}]"#,
    )]);
    let out = run_ok(&["key", "list"], &env(&url));
    assert_eq!(
        out,
        "ID           PROJECT  MODELS             RPM  REVOKED\n\
         search-prod  search   fast,claude-haiku  600\n\
         old                                           true\n"
    );
    let seen = h.join().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line, "GET /admin/keys HTTP/1.1");
    assert_eq!(seen[0].header("authorization"), Some("Bearer adm-tok-123"));
    assert_eq!(seen[0].header("host"), Some(url.trim_start_matches("http://")));
    assert_eq!(seen[0].header("connection"), Some("close"));
    assert_eq!(seen[0].header("content-length"), None);
}

#[test]
fn key_create_posts_the_entry_and_shows_the_plaintext_once() {
    let (url, h) = mock(vec![answer(201, r#"{"id":"k1","key":"sk-gw-0123456789","project":"search"}"#)]);
    let args = [
        "key",
        "create",
        "--id",
        "k1",
        "--project",
        "search",
        "--models",
        "fast,slow",
        "--rpm",
        "60",
        "--budget-usd",
        "5.5",
        "--budget-period",
        "daily",
        "--expires-at",
        "2027-01-01T00:00:00Z",
    ];
    let out = run_ok(&args, &env(&url));
    assert_eq!(out, "id:   k1\nkey:  sk-gw-0123456789\n\nThe key is shown only this once; store it now.\n");
    let seen = h.join().unwrap();
    assert_eq!(seen[0].line, "POST /admin/keys HTTP/1.1");
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(
        seen[0].json(),
        serde_json::json!({
            "id": "k1", "project": "search", "models": ["fast", "slow"], "rpm": 60,
            "budget": {"usd": 5.5, "period": "daily"}, "expires_at": "2027-01-01T00:00:00Z"
        })
    );
}

#[test]
fn key_revoke_puts_the_entry_back_with_revoked_true() {
    let entry = r#"{"id":"ci bot","hash":"sha256:ab","project":"search","rpm":5}"#;
    let (url, h) = mock(vec![answer(200, entry), answer(200, r#"{"id":"ci bot","revoked":true}"#)]);
    let out = run_ok(&["key", "revoke", "ci bot"], &env(&url));
    assert_eq!(out, "revoked key ci bot\n");
    let seen = h.join().unwrap();
    assert_eq!(seen[0].line, "GET /admin/keys/ci%20bot HTTP/1.1");
    assert_eq!(seen[1].line, "PUT /admin/keys/ci%20bot HTTP/1.1");
    assert_eq!(
        seen[1].json(),
        serde_json::json!({"id": "ci bot", "hash": "sha256:ab", "project": "search", "rpm": 5, "revoked": true})
    );
    assert_eq!(seen[1].header("content-length"), Some(seen[1].body.len().to_string().as_str()));
}

#[test]
fn revoking_a_revoked_key_changes_nothing() {
    let (url, h) = mock(vec![answer(200, r#"{"id":"old","hash":"sha256:ab","revoked":true}"#)]);
    assert_eq!(run_ok(&["key", "revoke", "old"], &env(&url)), "key old was already revoked\n");
    assert_eq!(h.join().unwrap().len(), 1, "no PUT");
}

#[test]
fn usage_builds_the_query_and_ends_with_a_total_row() {
    let body = r#"{"totals":{"requests":1203,"input_tokens":500000,"output_tokens":12000,"cost_usd":1.2345678},
        "groups":[{"model":"fast","day":"2026-11-29","requests":1200,"input_tokens":499000,"output_tokens":11000,"cost_usd":1.2},
                  {"model":"claude-haiku","day":"2026-11-30","requests":3,"input_tokens":1000,"output_tokens":1000,"cost_usd":0.0345678}]}"#;
    let (url, h) = mock(vec![answer(200, body)]);
    let out = run_ok(
        &["usage", "--project", "search", "--from", "2026-11-01", "--group-by", "model,day"],
        &env(&url),
    );
    assert_eq!(
        out,
        "MODEL         DAY         REQUESTS  INPUT_TOKENS  OUTPUT_TOKENS  COST_USD\n\
         fast          2026-11-29      1200        499000          11000  1.200000\n\
         claude-haiku  2026-11-30         3          1000           1000  0.034568\n\
         TOTAL                         1203        500000          12000  1.234568\n"
    );
    let seen = h.join().unwrap();
    assert_eq!(seen[0].line, "GET /admin/usage?project=search&from=2026-11-01&group_by=model%2Cday HTTP/1.1");
}

#[test]
fn usage_without_groups_is_one_total_row() {
    let (url, h) = mock(vec![answer(
        200,
        r#"{"totals":{"requests":0,"input_tokens":0,"output_tokens":0,"cost_usd":0},"groups":[]}"#,
    )]);
    let out = run_ok(&["usage", "--key", "k/1"], &env(&url));
    assert_eq!(
        out,
        "REQUESTS  INPUT_TOKENS  OUTPUT_TOKENS  COST_USD\n       0             0              0  0.000000\n"
    );
    assert_eq!(h.join().unwrap()[0].line, "GET /admin/usage?key=k%2F1 HTTP/1.1");
}

#[test]
fn health_reads_a_chunked_answer() {
    let body = r#"{"targets":[{"provider":"openai","model":"gpt-4o-mini","healthy":true,"circuit":"closed","p50_ms":210,"p99_ms":950},
        {"provider":"anthropic","model":"claude-3-5-haiku-latest","healthy":false,"circuit":"open","last_error":"timeout","p50_ms":null}]}"#;
    let (url, h) = mock(vec![Canned {
        status: 200,
        content_type: "application/json",
        body: body.into(),
        chunked: true,
    }]);
    let out = run_ok(&["health"], &env(&url));
    assert_eq!(
        out,
        "PROVIDER   MODEL                    HEALTHY  CIRCUIT  LAST_ERROR  P50_MS  P99_MS\n\
         openai     gpt-4o-mini              true     closed                  210     950\n\
         anthropic  claude-3-5-haiku-latest  false    open     timeout          -\n"
    );
    assert_eq!(h.join().unwrap()[0].line, "GET /admin/health HTTP/1.1");
}

#[test]
fn config_versions_diff_and_rollback() {
    let versions = r#"{"versions":[{"version":1,"time":"2026-11-30T10:00:00Z","source":"file","actor":"file","sha256":"aa","yaml":"listen: x\n"},
        {"version":2,"time":"2026-11-30T11:00:00Z","source":"api","actor":"alice","sha256":"bb","yaml":"listen: y\n"}]}"#;
    let (url, h) = mock(vec![
        answer(200, versions),
        Canned {
            status: 200,
            content_type: "text/plain",
            body: "-listen: x\n+listen: y\n".into(),
            chunked: false,
        },
        answer(200, r#"{"diff":"-a\n+b\n"}"#),
        answer(200, r#"{"version":3,"rolled_back_to":1}"#),
    ]);
    let e = env(&url);
    assert_eq!(
        run_ok(&["config", "versions"], &e),
        concat!(
            "VERSION  TIME                  SOURCE  ACTOR  SHA256\n",
            "      1  2026-11-30T10:00:00Z  file    file   aa\n",
            "      2  2026-11-30T11:00:00Z  api     alice  bb\n",
        )
    );
    assert_eq!(run_ok(&["config", "diff", "1", "2"], &e), "-listen: x\n+listen: y\n");
    assert_eq!(run_ok(&["config", "diff", "2", "1"], &e), "-a\n+b\n");
    assert_eq!(
        run_ok(&["config", "rollback", "1"], &e),
        "rolled back to version 1; the running config is now version 3\n"
    );
    let seen = h.join().unwrap();
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "GET /admin/config/versions HTTP/1.1",
            "GET /admin/config/diff?from=1&to=2 HTTP/1.1",
            "GET /admin/config/diff?from=2&to=1 HTTP/1.1",
            "POST /admin/config/rollback HTTP/1.1",
        ]
    );
    assert_eq!(seen[3].json(), serde_json::json!({"version": 1}));
}

#[test]
fn json_prints_the_raw_answer() {
    let body = r#"{"targets":[{"provider":"mock","healthy":true}]}"#;
    let (url, h) = mock(vec![answer(200, body)]);
    assert_eq!(run_ok(&["health", "--json"], &env(&url)), format!("{body}\n"));
    h.join().unwrap();
}

#[test]
fn the_admin_flag_wins_over_the_environment() {
    let (url, h) = mock(vec![answer(200, "[]")]);
    let e = Env { admin_url: Some("http://127.0.0.1:9".into()), admin_token: Some(TOKEN.into()) };
    assert_eq!(run_ok(&["key", "list", "--admin", &format!("{url}/gw/")], &e), "(no keys)\n");
    assert_eq!(h.join().unwrap()[0].line, "GET /gw/admin/keys HTTP/1.1");
}

#[test]
fn a_refused_token_and_api_errors_are_clear() {
    let (url, h) = mock(vec![
        answer(401, r#"{"error":{"message":"missing or wrong admin token"}}"#),
        answer(403, r#"{"error":{"message":"role viewer may only read"}}"#),
        answer(400, r#"{"error":{"message":"keys[3].project: unknown project \"nope\""}}"#),
        Canned {
            status: 502,
            content_type: "text/html",
            body: "<html>bad gateway</html>".into(),
            chunked: false,
        },
    ]);
    let e = env(&url);
    let msg = run_err(&["key", "list"], &e).to_string();
    assert_eq!(msg, format!("admin token refused by {url} (set LLM_GATEWAY_ADMIN_TOKEN to an admin token)"));
    assert!(!msg.contains(TOKEN));
    let msg = run_err(&["key", "revoke", "k"], &e).to_string();
    assert_eq!(msg, "this admin token may not do that (403): role viewer may only read");
    let msg = run_err(&["key", "create", "--project", "nope"], &e).to_string();
    assert_eq!(msg, "admin API answered 400: keys[3].project: unknown project \"nope\"");
    let msg = run_err(&["health"], &e).to_string();
    assert_eq!(msg, "admin API answered 502: <html>bad gateway</html>");
    assert_eq!(h.join().unwrap().len(), 4);
}

#[test]
fn a_refused_connection_names_the_url() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let msg = run_err(&["health"], &env(&url)).to_string();
    assert!(msg.starts_with(&format!("cannot connect to the admin API at {url}: ")), "{msg}");
    assert!(msg.contains("LLM_GATEWAY_ADMIN_URL"), "{msg}");
}

#[test]
fn without_a_token_nothing_is_sent() {
    let e = Env { admin_url: Some("http://127.0.0.1:9".into()), admin_token: None };
    assert!(matches!(run_err(&["usage"], &e), CliError::NoToken));
    assert!(format!("{e:?}").contains("admin_token: None"));
    let e = env("http://127.0.0.1:9");
    assert!(!format!("{e:?}").contains(TOKEN), "Debug hides the token");
}

#[test]
fn an_offline_key_comes_with_its_stored_form_and_needs_no_api() {
    let e = Env::default();
    let out = run_ok(&["key", "create", "--offline"], &e);
    let mut lines = out.lines();
    let key = lines.next().unwrap().strip_prefix("key:  ").unwrap();
    let hash = lines.next().unwrap().strip_prefix("hash: ").unwrap();
    assert!(key.starts_with("sk-gw-") && key.len() == 49, "{key}");
    assert_eq!(hash, crate::auth::stored_form(key));

    let out = run_ok(&["key", "create", "--offline", "--id", "ci", "--project", "search", "--rpm", "60"], &e);
    let key = out.lines().next().unwrap().strip_prefix("key:  ").unwrap();
    let yaml: String = out
        .lines()
        .skip_while(|l| !l.starts_with("# add under"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(yaml.starts_with("- id: ci\n  hash: sha256:"), "{yaml}");
    let entries: Vec<crate::config::KeyEntry> = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, "ci");
    assert_eq!(entries[0].project.as_deref(), Some("search"));
    assert_eq!(entries[0].rpm, Some(60));
    assert_eq!(entries[0].hash, crate::auth::stored_form(key));

    let out = run_ok(&["key", "create", "--offline", "--json"], &e);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hash"].as_str().unwrap(), crate::auth::stored_form(v["key"].as_str().unwrap()));
}

#[test]
fn master_key_prints_32_base64_bytes() {
    let out = run_ok(&["master-key"], &Env::default());
    assert!(crate::config::MasterKey::from_base64(out.trim()).is_ok(), "{out}");
    assert_eq!(out.trim().len(), 44);
}

#[test]
fn audit_verify_reports_ok_or_the_broken_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let first = format!(r#"{{"action":"create","prev_hash":"{}"}}"#, GENESIS_HASH);
    let second = format!(r#"{{"action":"delete","prev_hash":"{}"}}"#, hex_sha256(first.as_bytes()));
    std::fs::write(&path, format!("{first}\n{second}\n")).unwrap();
    let file = path.to_str().unwrap();
    assert_eq!(run_ok(&["audit", "verify", "--file", file], &Env::default()), "ok: 2 lines\n");

    std::fs::write(&path, format!("{}\n{second}\n", first.replace("create", "CREATE"))).unwrap();
    let mut out = Vec::new();
    let outcome = run(parse(&["audit", "verify", "--file", file]), &Env::default(), &mut out).unwrap();
    assert_eq!(outcome, Outcome::Failure);
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("broken at line 2: prev_hash does not match line 1"), "{out}");

    let missing = dir.path().join("nope.jsonl");
    let msg = run_err(&["audit", "verify", "--file", missing.to_str().unwrap()], &Env::default()).to_string();
    assert!(msg.contains("nope.jsonl: cannot read"), "{msg}");
}

#[test]
fn admin_urls_are_checked() {
    let bad = |u: &str| AdminClient::new(u, "t".into()).unwrap_err().to_string();
    assert!(bad("https://gw.example.com:8081").contains("https is not supported"));
    assert!(bad("127.0.0.1:8081").contains("must start with http://"));
    assert!(bad("http://127.0.0.1:99999").contains("port"));
    assert!(bad("http://user:pw@127.0.0.1:8081").contains("user:password"));
    assert!(bad("http://[::1").contains("unclosed"));
    assert!(AdminClient::new("http://[::1]:8081", "t".into()).is_ok());
    assert!(AdminClient::new("http://localhost", "t".into()).is_ok());
}

#[test]
fn error_messages_are_found_in_every_body_shape() {
    assert_eq!(error_message(br#"{"error":{"message":"a","type":"x"}}"#), "a");
    assert_eq!(error_message(br#"{"error":"b"}"#), "b");
    assert_eq!(error_message(br#"{"message":"c"}"#), "c");
    assert_eq!(error_message(b"  plain text\n"), "plain text");
    assert_eq!(error_message(b""), "(no message)");
    assert_eq!(error_message("x".repeat(1000).as_bytes()).len(), 300);
}

#[test]
fn percent_encoding_keeps_unreserved_characters() {
    assert_eq!(encode("search-prod_1.x~"), "search-prod_1.x~");
    assert_eq!(encode("a b/c?d&e=é"), "a%20b%2Fc%3Fd%26e%3D%C3%A9");
}
