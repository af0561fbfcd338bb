//! Zero-downtime binary upgrade: `llm-gateway upgrade` during 100 long streams. The new
//! process takes the listening sockets, every stream on the old one runs to its end, requests
//! keep being answered throughout, the old process writes every usage line and exits 0, and
//! the new one tells systemd it is the main process.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_during_100_long_streams_completes_them_all_and_drops_nothing() {
    let up = MockUpstream::start(|r, _| {
        if r.json()["stream"] == true {
            tick_stream(10, Duration::from_millis(800))
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let cfg = openai_config(&up.url()).limits(serde_json::json!({ "shutdown_grace_s": 30 }));
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let notify_env = notify_path.to_str().unwrap().to_string();
    let mut old = Gateway::start_with_env(&cfg, &[("NOTIFY_SOCKET", &notify_env)], &[]).await;
    let pid_file = old.dir.path().join("state/llm-gateway.pid");
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), notify.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("MAINPID={}\nREADY=1\nSTATUS=serving", old.pid()));
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), old.pid().to_string());

    let url = old.url("/v1/chat/completions");
    let streams = open_streams(&url, 100);
    eventually(Duration::from_secs(10), "all 100 streams reached the upstream", || async {
        up.count() == 100
    })
    .await;

    // Requests keep coming during the whole hand-over, each on a new connection.
    let plain = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    let load = {
        let url = url.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            let until = Instant::now() + Duration::from_secs(12);
            while Instant::now() < until {
                let c = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
                let s = match c.post(&url).bearer_auth(KEY).body(plain).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                statuses.push(s);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            statuses
        })
    };

    let started = Instant::now();
    let new_log = std::fs::File::create(old.dir.path().join("gateway-new.log")).unwrap();
    let out = tokio::task::spawn_blocking({
        let config = old.config_path();
        let new_log = new_log.try_clone().unwrap();
        move || {
            Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
                .args(["upgrade", "--threads", "2", "-c"])
                .arg(config)
                .env("LLM_GATEWAY_LOG", "info")
                .env("NOTIFY_SOCKET", notify_env)
                .stdout(Stdio::null())
                .stderr(new_log)
                .status()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let new_log_path = old.dir.path().join("gateway-new.log");
    let new_log_text = || std::fs::read_to_string(&new_log_path).unwrap_or_default();
    assert!(out.success(), "upgrade failed: {}\nold log:\n{}", new_log_text(), old.log());
    let new_pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_ne!(new_pid, old.pid());
    // Started by `upgrade`, not a child of this test: stopped by pid if an assertion fails.
    let stop_new = scopeguard(new_pid);
    println!("upgrade: the new process {new_pid} served {:?} after the command started", started.elapsed());
    // The new process tells systemd it is now the main process.
    let n = tokio::time::timeout(Duration::from_secs(10), notify.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("MAINPID={new_pid}\nREADY=1\nSTATUS=serving"));

    let code = old.wait_exit(Duration::from_secs(30)).await;
    let old_exit = started.elapsed();
    let mut complete = 0;
    for s in streams {
        let text = s.await.unwrap();
        if tick_stream_complete(&text, 10) {
            complete += 1;
        }
    }
    let statuses = load.await.unwrap();
    // After the old process is gone, the new one answers alone.
    let after = client().post(&url).bearer_auth(KEY).body(plain).send().await.unwrap();
    assert_eq!(after.status(), 200, "the new process serves: {}", new_log_text());

    let usage = std::fs::read_to_string(old.dir.path().join("state/usage.jsonl")).unwrap_or_default();
    let lines: Vec<serde_json::Value> = usage.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let stream_lines = lines.iter().filter(|l| l["stream"] == true && l["output_tokens"] == 10).count();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    println!(
        "upgrade during 100 streams of 8 s: {complete} complete, {stream_lines} stream usage lines, {ok}/{} requests during the hand-over answered 200, old process exit {code:?} after {old_exit:?}",
        statuses.len()
    );
    assert_eq!(complete, 100, "every stream on the old process completes");
    assert_eq!(
        stream_lines,
        100,
        "every stream's usage line is written (old process exit {code:?} after {old_exit:?}); usage.jsonl:\n{usage}\nold log:\n{}\nnew log:\n{}",
        old.log(),
        new_log_text()
    );
    assert_eq!(ok, statuses.len(), "no request refused during the hand-over: {statuses:?}");
    eventually(Duration::from_secs(5), "a usage line for every request", || async {
        let usage = std::fs::read_to_string(old.dir.path().join("state/usage.jsonl")).unwrap_or_default();
        usage.lines().count() == 100 + statuses.len() + 1
    })
    .await;
    assert_eq!(code, Some(0), "the old process exits 0; log:\n{}", old.log());
    assert!(old.log().contains("every request in flight finished"), "{}", old.log());

    // Stop the new process (started by this test through `upgrade`) by its pid.
    let _ = Command::new("kill").args(["-TERM", &new_pid.to_string()]).status();
    eventually(Duration::from_secs(15), "the new process exits on SIGTERM", || async { !alive(new_pid) })
        .await;
    std::mem::forget(stop_new);
}

/// The systemd unit's own command lines, run as systemd runs them (there is no systemd to start
/// the unit here): `/usr/local/bin/llm-gateway` and `/etc/llm-gateway/gateway.yaml` replaced by
/// this build and a test config, `$MAINPID` by the main process's pid, the unit's
/// `Environment=` set and `NOTIFY_SOCKET` given. `ExecStartPre` (check) exits 0; `ExecStart`
/// serves and reports `READY=1`; `ExecReload` (the upgrade) exits 0 and a new main process
/// serves and reports itself; the old one exits 0; the unit's `KillSignal` stops the new one,
/// exit within `TimeoutStopSec`.
#[tokio::test(flavor = "multi_thread")]
async fn the_units_exec_lines_run_as_written() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/llm-gateway.service")).unwrap();
    let values = |key: &str| -> Vec<String> {
        unit.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_owned)).collect()
    };
    let one = |key: &str| -> String {
        let v = values(key);
        assert_eq!(v.len(), 1, "the unit has one {key}=: {v:?}");
        v[0].clone()
    };
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    let (port, admin_port) = two_free_ports();
    let body = openai_config(&up.url()).limits(serde_json::json!({ "shutdown_grace_s": 10 })).to_string();
    std::fs::write(&config, Gateway::config_text(port, admin_port, &dir.path().join("state"), &body))
        .unwrap();
    let environment: Vec<(String, String)> = values("Environment")
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    assert!(environment.iter().any(|(k, _)| k == "LLM_GATEWAY_LOG"), "{environment:?}");
    let command = |line: &str, mainpid: u32| -> Command {
        let line = line
            .replace("/usr/local/bin/llm-gateway", env!("CARGO_BIN_EXE_llm-gateway"))
            .replace("/etc/llm-gateway/gateway.yaml", config.to_str().unwrap())
            .replace("$MAINPID", &mainpid.to_string());
        assert!(!line.contains('$') && !line.contains("/etc/"), "unsubstituted: {line}");
        let mut words = line.split_whitespace();
        let mut cmd = Command::new(words.next().unwrap());
        cmd.args(words).envs(environment.iter().map(|(k, v)| (k, v)));
        cmd
    };
    let notify_path = dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let mut buf = vec![0u8; 256];
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let plain = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();

    // ExecStartPre: the config check.
    let pre = command(&one("ExecStartPre"), 0).output().unwrap();
    assert!(pre.status.success(), "ExecStartPre: {}", String::from_utf8_lossy(&pre.stderr));

    // ExecStart: serves and tells systemd (Type=notify) it is ready.
    assert_eq!(one("Type"), "notify");
    let mut main = command(&one("ExecStart"), 0)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("start.log")).unwrap())
        .spawn()
        .unwrap();
    let stop_main = scopeguard(main.id());
    let n = tokio::time::timeout(Duration::from_secs(15), notify.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("MAINPID={}\nREADY=1\nSTATUS=serving", main.id()));
    let r = client().post(&url).bearer_auth(KEY).body(plain).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", log("start.log"));

    // ExecReload: the zero-downtime upgrade, with $MAINPID the running process.
    let reload = command(&one("ExecReload"), main.id());
    let reload_log = std::fs::File::create(dir.path().join("reload.log")).unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let mut reload = reload;
        reload.env("NOTIFY_SOCKET", notify_path).stdout(Stdio::null()).stderr(reload_log).status().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "ExecReload: {}\n{}", log("reload.log"), log("start.log"));
    let n = tokio::time::timeout(Duration::from_secs(15), notify.recv(&mut buf)).await.unwrap().unwrap();
    let said = String::from_utf8_lossy(&buf[..n]).to_string();
    let new_pid: u32 = said
        .strip_prefix("MAINPID=")
        .and_then(|r| r.split('\n').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the new main process reports itself: {said:?}"));
    assert_ne!(new_pid, main.id());
    assert_eq!(said, format!("MAINPID={new_pid}\nREADY=1\nSTATUS=serving"));
    let stop_new = scopeguard(new_pid);
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = main.try_wait().unwrap() {
            // Reaped: its pid may be reused from here on, so the guard must not fire.
            std::mem::forget(stop_main);
            break s.code();
        }
        assert!(Instant::now() < deadline, "the old process exits after the upgrade: {}", log("start.log"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, Some(0), "{}", log("start.log"));
    let r = client().post(&url).bearer_auth(KEY).body(plain).send().await.unwrap();
    assert_eq!(r.status(), 200, "the new process serves: {}", log("reload.log"));

    // KillSignal, within TimeoutStopSec.
    assert_eq!(one("KillSignal"), "SIGTERM");
    let stop_within: u64 = one("TimeoutStopSec").parse().unwrap();
    let killed = Command::new("kill").args(["-TERM", &new_pid.to_string()]).status().unwrap();
    assert!(killed.success());
    eventually(
        Duration::from_secs(stop_within),
        "the new main process exits on the unit's KillSignal",
        || async { !alive(new_pid) },
    )
    .await;
    std::mem::forget(stop_new);
    assert!(log("reload.log").contains("every request in flight finished"), "{}", log("reload.log"));
}

/// SIGKILLs `pid` when dropped (a failed assertion must not leave a gateway running).
fn scopeguard(pid: u32) -> impl Drop {
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
    Kill(pid)
}
