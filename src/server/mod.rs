//! Wiring: build the Pingora server with the data listener (HTTP and optional HTTPS), the
//! admin listener and the background services, from an opened config store.

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::accounting::UsageLog;
use crate::admin::AdminApp;
use crate::proxy::{Counters, Gateway};
use crate::routing::HealthChecker;
use crate::runtime::{Reloader, RuntimeStore};

mod health_sync;

/// Build and run the server; returns only on a startup error.
pub fn run(store: Arc<RuntimeStore>, threads: usize) -> Result<(), String> {
    crate::net::check_trust_roots()?;
    let conf = ServerConf {
        threads: threads.max(1),
        work_stealing: true,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(10),
        pid_file: std::env::temp_dir()
            .join(format!("llm-gateway-{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: std::env::temp_dir().join("llm-gateway-upgrade.sock").display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let rt = store.load();
    let cfg = &rt.snap.config;
    for w in &rt.warnings {
        tracing::warn!("{w}");
    }
    let counters = Arc::new(Counters::default());
    let (usage, writer) = UsageLog::new(tokio::sync::watch::channel(snap.state_dir.clone().into()).1);

    let gateway = Gateway::new(store.clone(), usage, counters.clone());
    let targets = store.registries().targets.clone();
    let health = background_service("health checks", HealthChecker::new(targets.clone(), Vec::new()));
    let sync = health_sync::HealthSync {
        store: store.clone(),
        checker: health.task(),
        resolver: Default::default(),
    };
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        gateway,
        "llm-gateway data plane",
    );
    if let Some(addr) = &cfg.listen {
        proxy.add_tcp(addr);
    }
    if let Some(tls) = &cfg.tls {
        let mut settings = TlsSettings::intermediate(&tls.cert, &tls.key)
            .map_err(|e| format!("tls: cannot load {} / {}: {e}", tls.cert, tls.key))?;
        settings.enable_h2();
        proxy.add_tls_with_settings(&tls.listen, None, settings);
    }
    server.add_service(proxy);

    if let Some(admin) = &cfg.admin {
        let mut svc = Service::new(
            "llm-gateway admin".to_string(),
            AdminApp { store: store.clone(), counters, targets },
        );
        svc.add_tcp(&admin.listen);
        server.add_service(svc);
    }
    server.add_service(background_service("config reloader", Reloader(store.clone())));
    server.add_service(background_service("usage log", writer));
    server.add_service(health);
    server.add_service(background_service("health check sync", sync));
    tracing::info!(
        listen = cfg.listen.as_deref().unwrap_or("-"),
        tls = cfg.tls.as_ref().map(|t| t.listen.as_str()).unwrap_or("-"),
        admin = cfg.admin.as_ref().map(|a| a.listen.as_str()).unwrap_or("-"),
        "llm-gateway starting"
    );
    server.run_forever();
}
