//! Startup, the run loop and drain.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use mesh_hbone::status::InboundRules;
use mesh_hbone::transport::{ClientConfig, HboneClient, HboneServer, InboundRequest};
use mesh_policy::resource::{Kind, ResourceId};
use mesh_runtime::drain::Connections;
use mesh_runtime::ops::{OpsListeners, Readiness, metrics_routes};
use mesh_runtime::pki::Pki;
use mesh_runtime::shutdown::Shutdown;
use mesh_runtime::source::ConfigSource;
use mesh_runtime::state::MeshState;
use mesh_runtime::{listen, rotation, shutdown};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::admin::Views;
use crate::jwks::{FetchOptions, Jwks};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::upstream::Upstreams;
use crate::{Config, Error, jwks, pool, sandwich};

/// Runs the waypoint with `config`, its configuration from `source`, until `shutdown`; then drains and
/// returns.
///
/// Every listener is bound first, so that a port in use is an error at once. The waypoint serves once the
/// source's configuration defines its Gateway and its certificate is issued: until then its readiness
/// answers 503 saying what it waits for, and an invalid configuration is reported (logs, `/config_dump`)
/// while it keeps waiting. On `shutdown` readiness answers 503, the listener closes, tunnels in flight get
/// `config.common.drain_timeout`, and the operational endpoints stop last.
pub async fn run(config: Config, source: impl ConfigSource, shutdown: Shutdown) -> Result<(), Error> {
    config.common.validate()?;
    let gateway = ResourceId::new(Kind::Gateway, &config.gateway.namespace, &config.gateway.name);
    let pki = Pki::load(&config.common)?;
    let tls = jwks::tls_config(config.jwks.ca_file.as_deref()).map_err(|e| Error::JwksTrust(e.to_string()))?;
    // Every listener first, so that a port in use stops the proxy at once.
    let inbound = listen::bind("HBONE inbound", config.inbound_addr, "--inbound-addr").await?;
    let sandwich = match config.proxy_protocol_addr {
        Some(addr) if !addr.ip().is_loopback() => return Err(Error::ProxyNotLoopback(addr)),
        Some(addr) => Some(listen::bind("PROXY protocol", addr, "--proxy-protocol-addr").await?),
        None => None,
    };
    let ops = OpsListeners::bind(&config.common.endpoints).await?;

    let readiness = Readiness::new();
    let waiting = readiness.block("the configuration to define the Gateway, and its certificate");
    // On shutdown readiness answers 503 first, then the listener closes and tunnels in flight get the drain
    // timeout; the operational endpoints stay up until the drain is over.
    let (trigger, down) = shutdown::channel();
    let (ops_trigger, ops_down) = shutdown::channel();
    tokio::spawn({
        let readiness = readiness.clone();
        async move {
            shutdown.wait().await;
            readiness.drain();
            trigger.trigger();
        }
    });

    let state = Arc::new(MeshState::new(config.common.mesh.clone()));
    let description = source.describe();
    let (updates_tx, updates_rx) = mpsc::channel(4);
    tokio::spawn(Box::new(source).run(updates_tx));
    tokio::spawn(Arc::clone(&state).follow(updates_rx, readiness.clone()));

    let options = FetchOptions {
        refresh: config.jwks.refresh,
        min_refetch: config.jwks.min_refetch,
        allow_http: config.jwks.allow_http,
        resolve: config.jwks.resolve.clone(),
    };
    let jwks = Arc::new(Jwks::new(tls, options));
    tokio::spawn(Arc::clone(&jwks).run(Arc::clone(&state), down.clone()));
    let metrics = Arc::new(Metrics::new());
    tokio::spawn(prune_metrics(Arc::clone(&state), Arc::clone(&metrics), down.clone()));
    let views = Views {
        state: Arc::clone(&state),
        gateway: gateway.clone(),
        pki: pki.clone(),
        jwks: Arc::clone(&jwks),
        readiness: readiness.clone(),
        source: description.clone(),
        config: config.clone(),
    };
    let metrics_page = {
        let metrics = Arc::clone(&metrics);
        metrics_routes(move || metrics.render())
    };
    let _ops = ops.serve(views.admin(), metrics_page, &readiness, &ops_down);
    info!(source = %description, gateway = %gateway.qualified(), "mesh-waypoint starting");

    let Some(service_account) = wait_for_gateway(&state, &gateway, &down).await else {
        info!("stopped before the configuration defined the Gateway");
        ops_trigger.trigger();
        return Ok(());
    };
    let identity = pki.issue(&pki.identity(gateway.namespace(), &service_account)?)?;
    tokio::spawn(watch_identity(Arc::clone(&state), gateway.clone(), service_account, down.clone()));
    tokio::spawn(rotation::run(pki.clone(), down.clone()));
    let server_config =
        pki.store.server_config(&identity, pki.accepted.iter().cloned()).map_err(|e| Error::Identity(e.to_string()))?;
    let server = HboneServer::with_identity(Arc::new(server_config)).with_rules(InboundRules::default().any_target());
    // Onward connections leave from the waypoint's own address (its Pod IP), which is what the destination's
    // node proxy matches `ipBlocks` against.
    let local_ip = Some(config.inbound_addr.ip()).filter(|ip| !ip.is_unspecified());
    let client_config = ClientConfig { connect_timeout: config.connect_timeout, local_ip, ..ClientConfig::default() };
    let client = HboneClient::from_store_with_config(pki.store.clone(), identity.clone(), client_config);
    let proxy = Arc::new(Proxy {
        state: Arc::clone(&state),
        gateway,
        upstreams: Upstreams {
            client,
            identity: identity.clone(),
            hbone_port: config.hbone_port,
            connect_timeout: config.connect_timeout,
            local_ip,
            onward: config.onward,
        },
        metrics,
        jwks,
        next_endpoint: AtomicUsize::new(0),
        pool: pool::Pool::default(),
    });
    let sandwiched = Connections::new();
    if let Some(listener) = sandwich {
        tokio::spawn(sandwich::serve(Arc::clone(&proxy), listener, down.clone(), sandwiched.clone()));
    }
    waiting.release();
    info!(%identity, inbound = %config.inbound_addr, proxy_protocol = ?config.proxy_protocol_addr, "waypoint ready");
    let handler = move |request: InboundRequest| {
        let proxy = Arc::clone(&proxy);
        async move { proxy.accept(request) }
    };
    let until = {
        let down = down.clone();
        async move { down.wait().await }
    };
    let (drained, _) = tokio::join!(server.serve_until(inbound, handler, until, config.common.drain_timeout), async {
        down.wait().await;
        sandwiched.drain(config.common.drain_timeout).await
    });
    ops_trigger.trigger();
    info!(cut_off = drained.as_ref().map_or(0, |d| d.cut_off), "drained; stopping");
    drained.map(drop).map_err(|e| Error::Serve(e.to_string()))
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
