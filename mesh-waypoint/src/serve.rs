//! Startup, the run loop and drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mesh_hbone::status::InboundRules;
use mesh_hbone::transport::{ClientConfig, HboneClient, HboneServer, InboundRequest};
use mesh_policy::resource::{Kind, ResourceId};
use mesh_runtime::shutdown::Shutdown;
use mesh_runtime::source::{ConfigSource, FileSource};
use mesh_runtime::state::MeshState;
use mesh_runtime::{listen, rotation, shutdown};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::admin::Views;
use crate::args::Args;
use crate::jwks::{FetchOptions, Jwks};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::upstream::Upstreams;
use crate::{admin, jwks, pool};
use mesh_runtime::pki::Pki;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the waypoint until SIGTERM or SIGINT, then drains.
pub async fn run(args: Args) -> Result<(), String> {
    run_inner(args).await.map_err(|e| e.to_string())
}

async fn run_inner(args: Args) -> Result<(), BoxError> {
    let common = &args.common;
    let gateway = ResourceId::new(Kind::Gateway, &args.gateway.0, &args.gateway.1);
    let pki = Pki::load(common)?;
    let tls = jwks::tls_config(args.jwks_ca_file.as_deref())?;
    // Every listener first, so that a port in use stops the proxy at once.
    let inbound = listen::bind("HBONE inbound", args.inbound_addr, "--inbound-addr").await?;
    let admin_listener = listen::bind("admin", common.admin_addr, "--admin-addr").await?;
    let metrics_listener = listen::bind("metrics", common.metrics_addr, "--metrics-addr").await?;
    let readiness_listener = listen::bind("readiness", common.readiness_addr, "--readiness-addr").await?;

    // On SIGTERM readiness answers 503 first, then the listener closes and tunnels in flight get the drain
    // timeout; the operational endpoints stay up until the drain is over.
    let (trigger, shutdown) = shutdown::channel();
    let (ops_trigger, ops_down) = shutdown::channel();
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let ready = Arc::clone(&ready);
        async move {
            shutdown::signal().await;
            ready.store(false, Ordering::Relaxed);
            trigger.trigger();
        }
    });

    let state = Arc::new(MeshState::new(common.mesh_config()));
    let source = FileSource::new(common.config.clone(), common.reload_interval);
    let description = source.describe();
    let (updates_tx, updates_rx) = mpsc::channel(4);
    tokio::spawn(Box::new(source).run(updates_tx));
    tokio::spawn(Arc::clone(&state).follow(updates_rx));

    let options = FetchOptions {
        refresh: args.jwks_refresh,
        min_refetch: args.jwks_min_refetch,
        allow_http: args.jwks_allow_http,
        resolve: args.jwks_resolve.clone(),
    };
    let jwks = Arc::new(Jwks::new(tls, options));
    tokio::spawn(Arc::clone(&jwks).run(Arc::clone(&state), shutdown.clone()));
    let metrics = Arc::new(Metrics::new());
    tokio::spawn(prune_metrics(Arc::clone(&state), Arc::clone(&metrics), shutdown.clone()));
    let views = Views {
        state: Arc::clone(&state),
        gateway: gateway.clone(),
        pki: pki.clone(),
        jwks: Arc::clone(&jwks),
        ready: Arc::clone(&ready),
        source: description.clone(),
    };
    tokio::spawn(mesh_runtime::http::serve(admin_listener, views.admin(), ops_down.clone()));
    tokio::spawn(mesh_runtime::http::serve(metrics_listener, admin::metrics(&metrics), ops_down.clone()));
    tokio::spawn(mesh_runtime::http::serve(readiness_listener, views.readiness(), ops_down));
    info!(config = %description, gateway = %gateway.qualified(), "mesh-waypoint starting");

    let Some(service_account) = wait_for_gateway(&state, &gateway, &shutdown).await else {
        info!("stopped before the configuration defined the Gateway");
        return Ok(());
    };
    let identity = pki.issue(&pki.identity(gateway.namespace(), &service_account)?)?;
    tokio::spawn(watch_identity(Arc::clone(&state), gateway.clone(), service_account, shutdown.clone()));
    tokio::spawn(rotation::run(pki.store.clone(), Arc::clone(&pki.ca), shutdown.clone()));
    let server_config = pki.store.server_config(&identity, pki.accepted.iter().cloned())?;
    let server = HboneServer::with_identity(Arc::new(server_config)).with_rules(InboundRules::default().any_target());
    // Onward connections leave from the waypoint's own address (its Pod IP), which is what the destination's
    // node proxy matches `ipBlocks` against.
    let local_ip = Some(args.inbound_addr.ip()).filter(|ip| !ip.is_unspecified());
    let client_config = ClientConfig { connect_timeout: args.connect_timeout, local_ip, ..ClientConfig::default() };
    let client = HboneClient::from_store_with_config(pki.store.clone(), identity.clone(), client_config);
    let proxy = Arc::new(Proxy {
        state: Arc::clone(&state),
        gateway,
        upstreams: Upstreams {
            client,
            identity: identity.clone(),
            hbone_port: args.hbone_port,
            connect_timeout: args.connect_timeout,
            local_ip,
        },
        metrics,
        jwks,
        next_endpoint: AtomicUsize::new(0),
        pool: pool::Pool::default(),
    });
    if !shutdown.is_down() {
        ready.store(true, Ordering::Relaxed);
    }
    info!(%identity, inbound = %args.inbound_addr, "waypoint ready");
    let handler = move |request: InboundRequest| {
        let proxy = Arc::clone(&proxy);
        async move { proxy.accept(request) }
    };
    let until = {
        let shutdown = shutdown.clone();
        async move { shutdown.wait().await }
    };
    let drained = server.serve_until(inbound, handler, until, common.drain_timeout).await;
    ops_trigger.trigger();
    info!(cut_off = drained?.cut_off, "drained; stopping");
    Ok(())
}

/// After each configuration change, drops the metric series of workloads that are gone.
async fn prune_metrics(state: Arc<MeshState>, metrics: Arc<Metrics>, shutdown: Shutdown) {
    let mut changes = state.subscribe();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = shutdown.wait() => return,
        }
        let snapshot = state.snapshot();
        let alive: std::collections::HashSet<(&str, &str)> =
            snapshot.cluster().workloads().map(|(_, w)| (w.namespace(), w.workload_name.as_str())).collect();
        metrics.prune(|namespace, name| alive.contains(&(namespace, name)));
    }
}

/// Warns when the configuration changes the Gateway's service account (or removes the Gateway): the waypoint
/// keeps the identity it started with until it is restarted.
async fn watch_identity(state: Arc<MeshState>, gateway: ResourceId, issued: String, shutdown: Shutdown) {
    let mut changes = state.subscribe();
    let mut last = Some(issued.clone());
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = shutdown.wait() => return,
        }
        let now = state.snapshot().cluster().waypoint(&gateway).map(|w| w.service_account.clone());
        if now != last {
            match &now {
                Some(sa) if *sa == issued => {
                    info!(gateway = %gateway.qualified(), "the Gateway's service account is the waypoint's again")
                }
                Some(sa) => {
                    warn!(gateway = %gateway.qualified(), service_account = %sa, running_as = %issued, "the Gateway's service account changed; restart the waypoint to take the new identity")
                }
                None => {
                    warn!(gateway = %gateway.qualified(), "the configuration no longer defines the Gateway; every tunnel is refused until it does")
                }
            }
            last = now;
        }
    }
}

/// Waits until the configuration defines the waypoint Gateway; returns its service account, or `None` on
/// shutdown.
async fn wait_for_gateway(state: &MeshState, gateway: &ResourceId, shutdown: &Shutdown) -> Option<String> {
    let mut changes = state.subscribe();
    let mut warned = false;
    loop {
        let snapshot = state.snapshot();
        if let Some(w) = snapshot.cluster().waypoint(gateway) {
            return Some(w.service_account.clone());
        }
        if !warned && state.status().applied > 0 {
            warn!(
                gateway = %gateway.qualified(),
                "the configuration defines no Gateway of the waypoint class by this name; waiting for it"
            );
            warned = true;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return None },
            () = shutdown.wait() => return None,
        }
    }
}
