//! A graceful stop that keeps streams: on SIGTERM (or SIGQUIT after an upgrade handed the
//! listeners over) Pingora stops accepting at once; this task then waits until every request
//! in flight has finished and been accounted (or `limits.shutdown_grace_s` has passed), writes
//! the last usage lines (fsynced) and exits 0 — without waiting out the rest of the grace time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::accounting::UsageLog;
use crate::proxy::Counters;

/// How often the in-flight count is looked at while draining.
const POLL: Duration = Duration::from_millis(20);

pub struct Drain {
    pub counters: Arc<Counters>,
    pub usage: UsageLog,
    pub grace: Duration,
    /// Flushed after the usage log (its last spans and metrics), bounded by `OTEL_FLUSH`.
    pub otel: Option<Arc<crate::telemetry::Otel>>,
}

/// The most the stop waits for the OpenTelemetry export to flush.
const OTEL_FLUSH: Duration = Duration::from_secs(5);

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        let started = Instant::now();
        let running = self.counters.active.load(Ordering::Acquire);
        tracing::info!(
            in_flight = running,
            grace_s = self.grace.as_secs(),
            "stopping: no new connections; waiting for requests in flight"
        );
        while self.counters.active.load(Ordering::Acquire) > 0 && started.elapsed() < self.grace {
            tokio::time::sleep(POLL).await;
        }
        let left = self.counters.active.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(
                in_flight = left,
                "shutdown_grace_s is over: stopping {left} request(s) still running"
            );
        } else {
            tracing::info!(
                after_ms = started.elapsed().as_millis() as u64,
                "every request in flight finished"
            );
        }
        // The account step of every finished request has queued its line: write them all.
        self.usage.close();
        tracing::info!("usage log flushed; exiting");
        if let Some(otel) = self.otel.clone() {
            let flushed = tokio::task::spawn_blocking(move || otel.shutdown(OTEL_FLUSH)).await;
            if !matches!(flushed, Ok(true)) {
                tracing::warn!("otel: the last spans were not all sent within {OTEL_FLUSH:?}");
            }
        }
        std::process::exit(0);
    }
}
