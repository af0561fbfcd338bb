//! The dashboard (`GET /` on the admin listener) in a real headless chromium driven over the
//! DevTools protocol: a wrong token is refused with a clear message, the right one is kept for
//! the tab; the page loads with no console errors; a provider's health, a key created through
//! the API, and a chart with a point per minute of the requests sent appear; a rollback clicked
//! on the page restores the earlier alias and a revoke clicked on the page makes the data plane
//! answer 401. Saves a screenshot to `target/dashboard.png` and prints page weight and load
//! time. Skipped, with a message, when chromium is not installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

/// How long any one condition may take.
const WITHIN: Duration = Duration::from_secs(20);

// === chromium ===

/// A headless chromium of the test's own, killed by PID on drop.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Browser {
    /// `None` (the test is skipped) when no chromium is installed.
    async fn start() -> Option<Browser> {
        // $CHROMIUM, else `chromium` (or `chromium-browser`) on the PATH, as .ci/run looks for it.
        let on_path = || {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
                .find(|p| p.is_file())
        };
        let exe = std::env::var_os("CHROMIUM").map(PathBuf::from).or_else(on_path)?;
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        // Port 0: chromium picks a free port and writes it to DevToolsActivePort (no race).
        let child = Command::new(&exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--remote-debugging-port=0",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut b = Browser { child, _profile: profile, port: 0 };
        let file = b._profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + WITHIN;
        loop {
            if let Some(port) =
                std::fs::read_to_string(&file).ok().and_then(|s| s.lines().next()?.parse().ok())
            {
                b.port = port;
                return Some(b);
            }
            if let Ok(Some(status)) = b.child.try_wait() {
                panic!("chromium exited ({status}): {}", b.log());
            }
            assert!(Instant::now() < deadline, "chromium did not open its DevTools port: {}", b.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._profile.path().join("chromium.log")).unwrap_or_default()
    }

    /// A DevTools session on the browser's first page.
    async fn page(&self) -> Cdp {
        let list = format!("http://127.0.0.1:{}/json/list", self.port);
        let deadline = Instant::now() + WITHIN;
        let url = loop {
            let pages: Value = match client().get(&list).send().await {
                Ok(r) => serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let found = pages.as_array().into_iter().flatten().find(|p| p["type"] == "page");
            if let Some(url) = found.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
                break url.to_string();
            }
            assert!(Instant::now() < deadline, "no page target in {list}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        Cdp { ws, next_id: 0, events: Vec::new() }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One DevTools protocol session: commands answered by id; events kept in order.
struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    events: Vec<Value>,
}

impl Cdp {
    /// Send a command and wait for its answer (events that arrive meanwhile are kept).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws.send(Message::text(msg)).await.unwrap();
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within {WITHIN:?}"))
                .expect("the DevTools socket closed")
                .unwrap();
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method} failed: {}", v["error"]);
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Evaluate an expression in the page (promises awaited); its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        assert!(r["exceptionDetails"].is_null(), "{expr} threw: {}", r["exceptionDetails"]);
        r["result"]["value"].clone()
    }

    /// Poll `expr` until it is truthy (not false, null, 0 or ""; an exception, as while the
    /// page is still loading, counts as not yet); its value.
    async fn wait_for(&mut self, expr: &str, what: &str) -> Value {
        let deadline = Instant::now() + WITHIN;
        loop {
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
                )
                .await;
            let v = if r["exceptionDetails"].is_null() { r["result"]["value"].clone() } else { Value::Null };
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(Instant::now() < deadline, "not within {WITHIN:?}: {what} (last value {v})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A real mouse click in the middle of the element `selector` (scrolled into view).
    async fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let at = self
            .wait_for(
                &format!(
                    "(() => {{ const e = document.querySelector({sel}); if (!e) return null;
                       e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
                       return r.width > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null; }})()"
                ),
                &format!("{selector} visible"),
            )
            .await;
        let (x, y) = (at[0].clone(), at[1].clone());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": if kind == "mousePressed" { 1 } else { 0 }, "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Focus `selector`, clear it, and type `text` as keyboard input.
    async fn type_into(&mut self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); e.value = ''; e.focus(); return true; }})()"
        ))
        .await;
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// The Enter key, pressed and released on the focused element.
    async fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            let text = if kind == "keyDown" { "\r" } else { "" };
            self.call(
                "Input.dispatchKeyEvent",
                json!({ "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": text }),
            )
            .await;
        }
    }

    /// Reload and wait for the load event and the first refresh; the navigation timing.
    async fn reload(&mut self) -> Value {
        self.eval("window.beforeReload = true").await;
        self.call("Page.reload", json!({})).await;
        self.wait_for("!window.beforeReload && document.readyState === 'complete' && performance.getEntriesByType('navigation')[0].loadEventEnd > 0", "the load event").await;
        self.wait_for("Number(document.body.dataset.refreshes || 0) >= 1", "the first refresh").await;
        self.wait_for(
            "performance.getEntriesByType('paint').some(e => e.name === 'first-contentful-paint')",
            "the first contentful paint",
        )
        .await;
        self.eval("(() => { const n = performance.getEntriesByType('navigation')[0]; const p = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint'); return { load_ms: n.loadEventEnd - n.startTime, dcl_ms: n.domContentLoadedEventEnd - n.startTime, fcp_ms: p ? p.startTime : null, transfer: n.transferSize, decoded: n.decodedBodySize }; })()").await
    }

    /// Console errors, uncaught exceptions and error log entries seen so far (events drained
    /// first by a round trip). `network` separates failed-resource entries from the rest.
    async fn errors(&mut self) -> (Vec<String>, Vec<String>) {
        self.eval("1").await;
        let (mut network, mut other) = (Vec::new(), Vec::new());
        for e in &self.events {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or_default() {
                "Runtime.consoleAPICalled" if matches!(p["type"].as_str(), Some("error" | "assert")) => {
                    other.push(format!("console.{}: {}", p["type"], p["args"]))
                }
                "Runtime.exceptionThrown" => other.push(format!("exception: {}", p["exceptionDetails"])),
                "Log.entryAdded" if p["entry"]["level"] == "error" => {
                    let line =
                        format!("{}: {} ({})", p["entry"]["source"], p["entry"]["text"], p["entry"]["url"]);
                    if p["entry"]["source"] == "network" {
                        network.push(line)
                    } else {
                        other.push(line)
                    }
                }
                _ => {}
            }
        }
        (network, other)
    }
}

// === the test ===

fn config(upstream: &str) -> Cfg {
    let mut cfg = openai_config(upstream);
    cfg.0["projects"] = json!([{ "name": "search", "budget": { "usd": 5.0, "period": "monthly" } }]);
    cfg.key_mut("k1")["project"] = json!("search");
    cfg.key_mut("k1")["budget"] = json!({ "usd": 2.0, "period": "monthly" });
    cfg
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client().request(method.parse().unwrap(), gw.admin_url(path)).bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null))
}

async fn chat(gw: &Gateway, key: &str) -> u16 {
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn target_dir() -> PathBuf {
    option_env!("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        eprintln!("SKIPPED: no chromium (install Debian's `chromium`, or set CHROMIUM=/path/to/chromium)");
        return;
    };
    // A request whose prompt says "fail" gets a 500 from the upstream.
    let up = MockUpstream::start(|r, _| {
        if String::from_utf8_lossy(&r.body).contains("fail") {
            Reply::json(500, r#"{"error":{"message":"upstream broke","type":"server_error"}}"#)
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let gw = Gateway::start(&config(&up.url())).await;
    let mut sent = 0;
    for _ in 0..5 {
        assert_eq!(chat(&gw, KEY).await, 200);
        sent += 1;
    }
    assert_eq!(gw.usage_lines(sent).await.len(), sent);

    // The page is public (it holds no data), embedded, and small.
    let r = client().get(gw.admin_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let html = r.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&html);
    for external in ["src=\"http", "href=\"http", "url(http", "@import", "src=\"//", "href=\"//"] {
        assert!(!text.contains(external), "the page loads {external}...");
    }

    let mut page = browser.page().await;
    for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
        page.call(domain, json!({})).await;
    }
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;
    page.call("Page.navigate", json!({ "url": gw.admin_url("/") })).await;

    // A wrong token: a clear message, and the sign-in form stays.
    page.wait_for("!document.getElementById('login-view').hidden", "the sign-in form").await;
    page.type_into("#token", "not-the-token").await;
    page.click("#sign-in").await;
    let msg = page.wait_for("document.getElementById('login-msg').textContent", "the refusal message").await;
    assert!(msg.as_str().unwrap().contains("refused this token (401"), "{msg}");
    assert_eq!(page.eval("document.getElementById('app').hidden").await, true);
    let (network, other) = page.errors().await;
    assert!(other.is_empty(), "errors besides the refused request: {other:?}");
    assert!(network.len() <= 1 && network.iter().all(|l| l.contains("401")), "{network:?}");

    // The right token, asked once: kept for the tab, so a reload does not ask again.
    // (from the keyboard: Enter in the token field)
    page.type_into("#token", ADMIN_TOKEN).await;
    page.press_enter().await;
    page.wait_for("!document.getElementById('app').hidden", "the dashboard after sign-in").await;
    assert_eq!(page.eval("sessionStorage.getItem('llm-gateway.admin-token')").await, ADMIN_TOKEN);
    page.events.clear();
    let nav = page.reload().await;
    assert_eq!(page.eval("document.getElementById('login-view').hidden").await, true, "token asked again");
    // Load timing over a few more reloads (the first one above included).
    let mut loads = vec![nav["load_ms"].as_f64().unwrap()];
    let mut paints = vec![nav["fcp_ms"].as_f64().unwrap_or(f64::NAN)];
    for _ in 0..4 {
        let n = page.reload().await;
        loads.push(n["load_ms"].as_f64().unwrap());
        paints.push(n["fcp_ms"].as_f64().unwrap_or(f64::NAN));
    }
    loads.sort_by(f64::total_cmp);
    paints.sort_by(f64::total_cmp);
    let weight = nav["decoded"].as_u64().unwrap();
    assert_eq!(weight, html.len() as u64, "the page is one document: {nav}");
    assert!(weight < 300 * 1024, "{weight} bytes");
    println!(
        "dashboard: page weight {weight} bytes (one request; {} transferred with headers); navigation to load event over 5 loads: min {:.1} / median {:.1} / max {:.1} ms; first contentful paint min {:.0} / median {:.0} / max {:.0} ms",
        nav["transfer"], loads[0], loads[2], loads[4], paints[0], paints[2], paints[4]
    );

    // A provider's health.
    let health = page
        .wait_for(
            "(() => { const r = document.querySelector('#targets-body tr[data-provider=\"up\"][data-model=\"gpt-4o-mini\"]'); return r ? r.textContent : null; })()",
            "target up/gpt-4o-mini in the targets table",
        )
        .await;
    assert!(
        health.as_str().unwrap().contains("healthy") && health.as_str().unwrap().contains("closed"),
        "{health}"
    );
    assert!(health.as_str().unwrap().contains("5 / 0"), "{health}");

    // A rollback from the page restores the earlier alias.
    let (_, versions) = admin(&gw, "GET", "/admin/config/versions", None).await;
    let before = versions["versions"][0]["version"].as_u64().unwrap();
    let mut fast = admin(&gw, "GET", "/admin/models/fast", None).await.1;
    fast["targets"][0]["model"] = json!("gpt-4o-2");
    assert_eq!(admin(&gw, "PUT", "/admin/models/fast", Some(fast)).await.0, 200);
    assert_eq!(chat(&gw, KEY).await, 200);
    sent += 1;
    assert_eq!(up.requests().last().unwrap().json()["model"], "gpt-4o-2");
    let button = format!("button.rollback[data-version=\"{before}\"]");
    page.wait_for(&format!("!!document.querySelector('{button}') && !!document.querySelector('#versions-body tr[data-version=\"{}\"]')", before + 1), "the new version listed").await;
    page.click(&format!("#versions-body tr[data-version=\"{}\"] button.diff", before + 1)).await;
    let diff = page.wait_for("document.getElementById('diff').textContent.includes('gpt-4o-2') && document.getElementById('diff').textContent", "the diff").await;
    assert!(diff.as_str().unwrap().contains("-") && diff.as_str().unwrap().contains("gpt-4o-mini"), "{diff}");
    page.click(&button).await;
    page.wait_for("document.getElementById('confirm').open", "the confirmation").await;
    assert_eq!(
        admin(&gw, "GET", "/admin/models/fast", None).await.1["targets"][0]["model"],
        "gpt-4o-2",
        "rolled back before confirming"
    );
    page.click("#confirm-ok").await;
    page.wait_for(
        "document.getElementById('versions-msg').textContent.startsWith('Rolled back')",
        "the rollback message",
    )
    .await;
    assert_eq!(admin(&gw, "GET", "/admin/models/fast", None).await.1["targets"][0]["model"], "gpt-4o-mini");
    assert_eq!(chat(&gw, KEY).await, 200);
    sent += 1;
    assert_eq!(up.requests().last().unwrap().json()["model"], "gpt-4o-mini");
    let audit = admin(&gw, "GET", "/admin/audit?limit=1", None).await.1;
    assert_eq!(audit["entries"][0]["action"], "config.rollback");
    page.wait_for(
        &format!(
            "document.querySelector('#versions-body tr[data-version=\"{}\"] .pill') !== null",
            before + 2
        ),
        "the rollback version running",
    )
    .await;

    // A key created through the API appears in the table; revoking it on the page makes the
    // data plane answer 401.
    let (status, created) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({ "id": "web1", "project": "search", "models": ["fast"] })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let web1 = created["key"].as_str().unwrap().to_string();
    assert_eq!(chat(&gw, &web1).await, 200);
    sent += 1;
    page.wait_for(
        "document.querySelector('#keys-body tr[data-key=\"web1\"]') !== null",
        "key web1 in the table",
    )
    .await;

    // The requests chart: one point per minute with requests, summing to what was sent.
    assert_eq!(gw.usage_lines(sent).await.len(), sent);
    let points = page
        .wait_for(
            &format!("(() => {{ const c = [...document.querySelectorAll('#chart-requests circle.pt[data-alias=\"fast\"]')]; const s = c.reduce((a, e) => a + Number(e.dataset.v), 0); return s === {sent} ? c.length : 0; }})()"),
            &format!("{sent} requests drawn on the chart"),
        )
        .await;
    assert!((1..=3).contains(&points.as_u64().unwrap()), "{points} points (one per minute)");
    let lat = page.eval("document.querySelectorAll('#chart-latency circle.pt[data-alias=\"fast\"][data-field=\"p99_ms\"]').length").await;
    assert_eq!(lat, points);
    assert_eq!(page.eval("document.querySelectorAll('#chart-errors circle.pt').length").await, 0);
    // Spend bars with a budget line.
    let spend = page.wait_for("(() => { const s = document.querySelector('#spend-projects .spend-row[data-name=\"search\"] svg'); return s && s.querySelector('line.budget') ? s.dataset.limit : null; })()", "the project's spend bar").await;
    assert_eq!(spend, "5");

    page.click("#keys-body tr[data-key=\"web1\"] button.revoke").await;
    page.wait_for("document.getElementById('confirm').open", "the revoke confirmation").await;
    page.click("#confirm-ok").await;
    page.wait_for(
        "document.getElementById('keys-msg').textContent === 'Key web1 revoked.'",
        "the revoke message",
    )
    .await;
    eventually(WITHIN, "web1 refused with 401", || async { chat(&gw, &web1).await == 401 }).await;
    assert_eq!(chat(&gw, KEY).await, 200);
    page.wait_for(
        "document.querySelector('#keys-body tr[data-key=\"web1\"]') === null",
        "web1 gone from the table",
    )
    .await;
    let audit = page.wait_for("(() => { const r = document.querySelector('#audit-body tr'); return r && r.textContent.includes('keys.delete') ? r.textContent : null; })()", "the revoke at the top of the audit log").await;
    assert!(audit.as_str().unwrap().contains("web1"), "{audit}");

    // A key and a project created from the page: the plaintext shown once works at once.
    page.type_into("#key-form input[name=id]", "web2").await;
    page.type_into("#key-form input[name=models]", "fast").await;
    page.click("#key-form button[type=submit]").await;
    let plaintext = page.wait_for("document.getElementById('new-key').hidden ? null : document.getElementById('new-key-text').textContent", "the new key's plaintext").await;
    let plaintext = plaintext.as_str().unwrap().to_string();
    assert!(plaintext.starts_with("sk-gw-") && plaintext.len() > 40, "{plaintext}");
    assert_eq!(chat(&gw, &plaintext).await, 200);
    page.wait_for(
        "document.querySelector('#keys-body tr[data-key=\"web2\"]') !== null",
        "key web2 in the table",
    )
    .await;
    page.type_into("#project-form input[name=name]", "ads").await;
    page.type_into("#project-form input[name=usd]", "3.5").await;
    page.click("#project-form button[type=submit]").await;
    page.wait_for(
        "document.getElementById('projects-msg').textContent === 'Project ads created.'",
        "the project created",
    )
    .await;
    assert_eq!(
        admin(&gw, "GET", "/admin/projects/ads", None).await.1["budget"],
        json!({ "usd": 3.5, "period": "monthly" })
    );
    page.click("#projects-body tr[data-project=\"ads\"] button").await;
    assert_eq!(page.eval("document.activeElement === document.querySelector('#project-form input[name=usd]') && document.activeElement.value").await, "3.5");
    page.type_into("#project-form input[name=usd]", "4").await;
    page.click("#project-form button[type=submit]").await;
    page.wait_for(
        "document.getElementById('projects-msg').textContent === 'Project ads updated.'",
        "the project edited",
    )
    .await;
    assert_eq!(admin(&gw, "GET", "/admin/projects/ads", None).await.1["budget"]["usd"], 4.0);

    // A failed request: an error point on the errors chart and the target's last error.
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"fail"}]}"#;
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(body).send().await.unwrap();
    assert!(r.status().as_u16() >= 500, "{}", r.status());
    page.wait_for(
        "[...document.querySelectorAll('#chart-errors circle.pt[data-alias=\"fast\"]')].reduce((a, e) => a + Number(e.dataset.v), 0) === 1",
        "one error on the errors chart",
    )
    .await;
    let row = page
        .wait_for(
            "(() => { const r = document.querySelector('#targets-body tr[data-model=\"gpt-4o-mini\"] td:last-child'); return r && r.textContent !== 'none' ? r.textContent : null; })()",
            "the target's last error",
        )
        .await;
    assert!(row.as_str().unwrap().contains("500"), "{row}");

    // The screenshot, whole page.
    page.eval("window.scrollTo(0, 0)").await;
    let metrics = page.call("Page.getLayoutMetrics", json!({})).await;
    let (w, h) = (
        metrics["cssContentSize"]["width"].as_f64().unwrap(),
        metrics["cssContentSize"]["height"].as_f64().unwrap(),
    );
    let shot = page
        .call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true, "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 } }),
        )
        .await;
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let path = target_dir().join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    println!("dashboard: screenshot {} ({} bytes, {w}x{h} CSS px)", path.display(), png.len());

    // Dark mode: the same page, readable (dark background, light text).
    page.call(
        "Emulation.setEmulatedMedia",
        json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
    )
    .await;
    let colors = page
        .eval("[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]")
        .await;
    assert_eq!(colors, json!(["rgb(18, 20, 23)", "rgb(230, 232, 235)"]));
    let shot = page.call("Page.captureScreenshot", json!({ "format": "png" })).await;
    let dark = target_dir().join("dashboard-dark.png");
    std::fs::write(
        &dark,
        base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    println!("dashboard: dark-mode screenshot {} (viewport)", dark.display());

    let (network, other) = page.errors().await;
    assert!(other.is_empty() && network.is_empty(), "console errors after sign-in: {other:?} {network:?}");
    println!("dashboard: console errors and exceptions after sign-in: 0; network errors: 0");
}
