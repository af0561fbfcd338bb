//! Conformance: the official Python SDKs (openai, anthropic, google-genai) through the gateway,
//! against Rust mock upstreams of every provider kind, for every inbound x outbound pair,
//! stream and non-stream, with and without tools, plus the Google SDK's count_tokens,
//! embed_content and models. Run twice: with the current major of each SDK and with the
//! previous one, each installed once by pip into its own venv under `target/` (stamped with the
//! requirement list; a changed list reinstalls). Every client uses its default settings plus
//! only the base URL and the key. Prints the pass tables (also to
//! `target/conformance-report.txt`); fails if any cell fails.
//! Without python3 (or with `CONFORMANCE=skip`) the test says so and passes vacuously.

mod common;

use common::*;

/// The SDK sets, (venv directory under target/, requirements). "current" is each SDK's major
/// on PyPI when this was written (openai 3.57, anthropic 2.14, google-genai 3.6.1); "previous"
/// is the major before it.
const RUNS: &[(&str, &[&str])] = &[
    ("conformance-current", &["openai>=3,<4", "anthropic>=2,<3", "google-genai>=3,<4"]),
    ("conformance-previous", &["openai>=2,<3", "anthropic>=1,<2", "google-genai>=2,<3"]),
];

#[tokio::test(flavor = "multi_thread")]
async fn official_sdks_current_and_previous_majors_work_for_every_inbound_and_outbound_pair() {
    if std::env::var("CONFORMANCE").as_deref() == Ok("skip") {
        eprintln!("conformance: SKIPPED (CONFORMANCE=skip)");
        return;
    }
    let (o, a, g, b) = (
        providers::openai().await,
        providers::anthropic().await,
        providers::gemini().await,
        providers::bedrock().await,
    );
    let gw = Gateway::start(&providers::config(&o, &a, &g, &b)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/conformance.py");
    let mut report = String::new();
    let mut failed = Vec::new();
    for (dir, sdks) in RUNS {
        let Some(py) = tokio::task::spawn_blocking(move || venv_python(dir, sdks)).await.unwrap() else {
            eprintln!("conformance: SKIPPED (no python3 venv)");
            return;
        };
        let url = gw.url("");
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(py)
                .arg(script)
                .env("GATEWAY_URL", url)
                .env("GATEWAY_KEY", KEY)
                .output()
                .expect("run conformance.py")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("== {dir}\n{stdout}");
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        report.push_str(&format!("== {dir}\n{stdout}\n"));
        // The script prints its summary line last; a crash before it is a failure too.
        if !out.status.success() || !stdout.contains(" 0 failed") {
            failed.push(*dir);
        }
    }
    // .ci/run prints this report (cargo test captures the output of passing tests).
    let _ = std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/conformance-report.txt"),
        report.as_bytes(),
    );
    assert!(
        failed.is_empty(),
        "conformance failures in {failed:?}:\n{report}\ngateway log tail:\n{}",
        tail(&gw.log(), 40)
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
