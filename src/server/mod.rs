//! Wiring: build the Pingora server with the data listener (HTTP and optional HTTPS), the
//! admin listener and the background services, from an opened config store.

use std::sync::Arc;
use std::time::SystemTime;

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::accounting::UsageLog;
use crate::admin::{Admin, AdminService, Source};
use crate::proxy::{Counters, DataPlane, Gateway};
use crate::routing::HealthChecker;
use crate::runtime::{Reloader, RuntimeStore, Trigger};
use crate::telemetry::alerts::AlertOptions;
use crate::telemetry::{AlertEvent, AlertKind, Alerts, Events, KnownNames, Metrics};

mod admin_host;
mod certs;
mod drain;
mod events;
mod health_sync;
pub mod release;
pub mod upgrade;

/// Build and run the server; returns only on a startup error. `upgrade`: take the listening
/// sockets over from the running process (see `upgrade.rs`). `release_memory`: the global
/// allocator's collect for the calling thread, run on each data-plane worker once a burst is
/// over (see `release.rs`); `None` leaves freed memory to the allocator.
pub fn run(
    store: Arc<RuntimeStore>,
    threads: usize,
    upgrade: bool,
    release_memory: Option<fn()>,
) -> Result<(), String> {
    crate::net::check_trust_roots()?;
    // SIGTERM: stop accepting after 1 s, then give in-flight requests and streams
    // `limits.shutdown_grace_s` (default 30, the unit's TimeoutStopSec) to finish.
    let grace = store.load().snap.config.limits.shutdown_grace_s;
    let state_dir = std::path::PathBuf::from(&store.load().snap.state_dir);
    std::fs::create_dir_all(&state_dir)
        .map_err(|e| format!("state_dir {}: cannot create it: {e}", state_dir.display()))?;
    let conf = ServerConf {
        threads: threads.max(1),
        // One single-threaded tokio runtime per worker thread (Pingora's "no steal" runtime):
        // a connection's tasks stay on the thread that accepted it, and its scheduler needs no
        // cross-thread queue (1.5k instructions less per chat request than the work-stealing
        // runtime, README "Performance").
        work_stealing: false,
        // The grace period is the upper bound: the drain task exits as soon as the last request
        // in flight is accounted (see drain.rs); the runtimes then get one more second.
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: std::env::temp_dir()
            .join(format!("llm-gateway-{}.pid", std::process::id()))
            .display()
            .to_string(),
        // Both processes of an upgrade read the same config, so they meet on the same socket.
        upgrade_sock: upgrade::upgrade_sock(&state_dir).display().to_string(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt { upgrade, ..Default::default() };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();
    // Nothing here reads a stream's pending times; not timing them saves four clock reads per
    // proxied request (vendored Pingora patch, vendor/README.md).
    pingora::protocols::l4::stream::track_pending_time(false);

    let rt = store.load();
    let cfg = &rt.snap.config;
    let spent = seed_spend(&rt);
    for w in &rt.warnings {
        tracing::warn!("{w}");
    }
    let counters = Arc::new(Counters::default());
    let (usage, writer) = UsageLog::new(store.state_dir_watch());
    // SIGHUP also reopens usage.jsonl (logrotate renames it, then signals).
    let reopener = usage.reopener();
    let metrics = Arc::new(Metrics::new(&KnownNames::from_config(cfg)));
    let targets = store.registries().targets.clone();

    // The admin API; file and SIGHUP reloads go through it so they are versioned, audited and
    // serialised with API mutations.
    let admin = match &cfg.admin {
        Some(_) => {
            let host = Arc::new(admin_host::Host { store: store.clone() });
            let usage_index = crate::admin::usage_index::UsageIndex::open(&rt.snap.state_dir)
                .map_err(|e| tracing::warn!("usage API unavailable: {e}"))
                .ok();
            let views = Arc::new(admin_host::Views {
                store: store.clone(),
                targets: targets.clone(),
                usage: usage_index,
                metrics: metrics.clone(),
            });
            Some(Admin::new(host, views).map_err(|e| format!("admin: {e}"))?)
        }
        None => None,
    };

    // Operational events: raised by the account step, the reloader and the watcher; logged,
    // counted, audited and posted to the webhook by one background task.
    let (alerts, alert_worker) =
        Alerts::new(cfg.alerts.as_ref(), AlertOptions::default()).map_err(|e| format!("alerts: {e}"))?;
    let (events, event_rx) = Events::new();
    let watch = events::Watch::new(event_rx, store.clone(), metrics.clone(), alerts, admin.clone(), spent);

    // OpenTelemetry export: built once at start (a changed `otel:` takes a restart).
    let otel = match &cfg.otel {
        Some(o) => Some(Arc::new(crate::telemetry::Otel::start(o).map_err(|e| e.to_string())?)),
        None => None,
    };
    let drain = drain::Drain {
        counters: counters.clone(),
        usage: usage.clone(),
        grace: std::time::Duration::from_secs(grace),
        otel: otel.clone(),
    };
    let mut gateway = Gateway::new(store.clone(), usage, counters.clone(), metrics.clone(), events.clone());
    gateway.otel = otel;
    let data_plane = gateway.workers.clone();
    let health = background_service("health checks", HealthChecker::new(targets.clone(), Vec::new()));
    let sync = health_sync::HealthSync {
        store: store.clone(),
        checker: health.task(),
        resolver: Default::default(),
    };
    // The deadline on each request head is the app's own (`proxy::DataPlane`).
    let mut proxy = Service::new("llm-gateway data plane".to_string(), DataPlane::new(gateway));
    if let Some(addr) = &cfg.listen {
        // Plain HTTP: Pingora's HTTP/1 reader has its own header and body buffers, so the
        // default 64 KiB L4 read buffer in front of them only costs 64 KiB per open connection
        // (see README "Memory"). TLS keeps it: rustls reads 16 KiB records.
        let read_unbuffered = L4BufferSettings::default().read(0);
        proxy.add_listener(ListenerConfig::tcp(addr.as_str()).l4_buffer(read_unbuffered));
    }
    let mut cert_reloader = None;
    if let Some(tls) = &cfg.tls {
        let mut settings = TlsSettings::intermediate(&tls.cert, &tls.key)
            .map_err(|e| format!("tls: cannot load {} / {}: {e}", tls.cert, tls.key))?;
        // The certificate is served from a resolver the reloader swaps (renewals without restart).
        let certs = certs::Certs::load(&tls.cert, &tls.key).map_err(|e| format!("tls: {e}"))?;
        settings.set_cert_resolver(certs.clone());
        settings.enable_h2();
        proxy.add_tls_with_settings(&tls.listen, None, settings);
        cert_reloader = Some(certs::CertReloader { certs, store: store.clone() });
    }
    server.add_service(proxy);

    let config_path = store.path().display().to_string();
    let failed = {
        let (metrics, events) = (metrics.clone(), events.clone());
        move |why: String| {
            metrics.config_reloaded(false);
            tracing::error!("config reload refused, still serving the previous config: {why}");
            events.raise(AlertEvent::new(
                AlertKind::ReloadFailed,
                config_path.clone(),
                why,
                SystemTime::now(),
            ));
        }
    };
    let reload: Arc<dyn Fn(Trigger) + Send + Sync> = match &admin {
        None => {
            let (store, metrics) = (store.clone(), metrics.clone());
            Arc::new(move |t| match store.reload(t) {
                Ok(crate::runtime::Reload::Applied) => metrics.config_reloaded(true),
                Ok(crate::runtime::Reload::Unchanged) => {}
                Err(e) => failed(e.to_string()),
            })
        }
        Some(a) => {
            let (a, metrics) = (a.clone(), metrics.clone());
            Arc::new(move |t| {
                let source = if t == Trigger::Signal { Source::Sighup } else { Source::File };
                match a.reload_from_file(source, "file") {
                    Ok(crate::admin::Reloaded::Applied { .. }) => metrics.config_reloaded(true),
                    Ok(_) => {}
                    Err(e) => failed(e.to_string()),
                }
            })
        }
    };
    if let (Some(admin), Some(admin_cfg)) = (&admin, &cfg.admin) {
        // The same head deadline as the data listener: a client dribbling a request head (or
        // holding an idle connection) cannot keep an admin connection open.
        let app = crate::net::HeaderDeadline::new(AdminService::new(admin.clone()), {
            let store = store.clone();
            move || std::time::Duration::from_millis(store.load().snap.config.limits.header_timeout_ms)
        });
        let mut svc = Service::new("llm-gateway admin".to_string(), app);
        svc.add_tcp(&admin_cfg.listen);
        server.add_service(svc);
    }
    server.add_service(background_service("config reloader", Reloader { store: store.clone(), reload }));
    let background = release::Background::default();
    let tracked_writer = release::Tracked { service: writer, threads: background.clone() };
    server.add_service(background_service("usage log", tracked_writer));
    server.add_service(background_service("alert webhook", alert_worker));
    let tracked_watch = release::Tracked { service: watch, threads: background.clone() };
    server.add_service(background_service("events", tracked_watch));
    server.add_service(background_service("drain on stop", drain));
    if let Some(r) = cert_reloader {
        server.add_service(background_service("certificate reloader", r));
    }
    server.add_service(background_service("usage log reopen on SIGHUP", reopener));
    server.add_service(health);
    server.add_service(background_service("health check sync", sync));
    let listen = [
        cfg.listen.clone(),
        cfg.tls.as_ref().map(|t| t.listen.clone()),
        cfg.admin.as_ref().map(|a| a.listen.clone()),
    ];
    let listen = listen.into_iter().flatten().collect();
    server.add_service(background_service("ready", upgrade::Ready { state_dir, listen }));
    if let Some(hook) = release_memory {
        let release = release::Release { counters, workers: data_plane, hook, background };
        server.add_service(background_service("memory release after bursts", release));
    }
    tracing::info!(
        listen = cfg.listen.as_deref().unwrap_or("-"),
        tls = cfg.tls.as_ref().map(|t| t.listen.as_str()).unwrap_or("-"),
        admin = cfg.admin.as_ref().map(|a| a.listen.as_str()).unwrap_or("-"),
        "llm-gateway starting"
    );
    server.run_forever();
}

/// Budgets survive a restart: spend of the current period of every key and project budget is
/// rebuilt from `usage.jsonl` and its rotated files.
fn seed_spend(rt: &crate::runtime::Runtime) -> Vec<(crate::limits::ScopeId, u64)> {
    use crate::limits::ScopeId;
    let c = &rt.snap.config;
    let mut wants = Vec::new();
    for k in &c.keys {
        if let Some(b) = &k.budget {
            wants.push((ScopeId::key(k.id.as_str()), b.period));
        }
    }
    for p in &c.projects {
        if let Some(b) = &p.budget {
            wants.push((ScopeId::project(p.name.as_str()), b.period));
        }
    }
    if wants.is_empty() {
        return Vec::new();
    }
    let now = std::time::SystemTime::now();
    match crate::accounting::rebuild_spend(std::path::Path::new(&rt.snap.state_dir), now, &wants) {
        Ok(spent) => wants
            .into_iter()
            .map(|(scope, period)| {
                let micros = spent.get(&scope).copied().unwrap_or(0);
                tracing::info!(%scope, spent_micros = micros, "budget spend rebuilt from the usage log");
                rt.limits.seed_spend(scope.clone(), period, micros, now);
                (scope, micros)
            })
            .collect(),
        Err(e) => {
            tracing::error!("cannot rebuild spend from the usage log: {e}");
            Vec::new()
        }
    }
}
