//! Conformance: the official Python SDKs (openai, anthropic, google-genai) through the gateway,
//! against Rust mock upstreams of every provider kind, for every inbound x outbound pair,
//! stream and non-stream, with and without tools. The SDKs are installed by pip into a venv under
//! `target/conformance-venv` on first run. Prints the pass table; fails if any cell fails.
//! Without python3 (or with `CONFORMANCE=skip`) the test says so and passes vacuously.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

const SDKS: &[&str] = &["openai>=1.60,<3", "anthropic>=0.40,<1", "google-genai>=1.0,<2"];

fn venv_python() -> Option<PathBuf> {
    if std::env::var("CONFORMANCE").as_deref() == Ok("skip") {
        return None;
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/conformance-venv");
    let py = venv.join("bin/python");
    let stamp = venv.join(".sdks-installed");
    if !stamp.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("conformance: python3 -m venv failed (is python3-venv installed?)");
            return None;
        }
        let st = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(SDKS)
            .status()
            .expect("pip");
        assert!(st.success(), "pip install of the SDKs failed");
        std::fs::write(&stamp, SDKS.join("\n")).unwrap();
    }
    Some(py)
}

#[tokio::test(flavor = "multi_thread")]
async fn official_sdks_work_for_every_inbound_and_outbound_pair() {
    let Some(py) = tokio::task::spawn_blocking(venv_python).await.unwrap() else {
        eprintln!("conformance: SKIPPED (no python3 venv)");
        return;
    };
    let (o, a, g, b) = (
        providers::openai().await,
        providers::anthropic().await,
        providers::gemini().await,
        providers::bedrock().await,
    );
    let gw = Gateway::start(&providers::config(&o, &a, &g, &b)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/conformance.py");
    let url = gw.url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .env("GATEWAY_URL", url)
            .env("GATEWAY_KEY", KEY)
            .output()
            .expect("run conformance.py")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    // .ci/run prints this report (cargo test captures the output of passing tests).
    let _ = std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/conformance-report.txt"),
        stdout.as_bytes(),
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "conformance failures:\n{stdout}\ngateway log tail:\n{}",
        tail(&gw.log(), 40)
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
