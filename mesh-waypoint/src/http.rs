//! HTTP inside a tunnel (HTTP/1.1 or HTTP/2, gRPC included): each request is decided against the configuration
//! in force when it arrives (RequestAuthentication, then AuthorizationPolicy), answered by the waypoint when
//! denied, else forwarded to an endpoint, round-robin, over a tunnel of its own, in the client's HTTP version.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_identity::jwt::JwtError;
use mesh_policy::proxy::{HttpView, Request as PolicyRequest};
use mesh_policy::{Decision, TokenForwarding};
use mesh_runtime::unix_now;
use tracing::{debug, info};

use crate::forwarding;
use crate::metrics::RequestLabels;
use crate::pool::SendError;
use crate::proxy::{Downstream, Proxy};
use crate::reply::{self, Body, BoxError};
use crate::served;
use crate::upstream::{Endpoint, Io, UpstreamError};

/// Serves HTTP on a tunnel until it ends.
pub(crate) async fn serve<S: Io>(proxy: Arc<Proxy>, down: Arc<Downstream>, io: S) {
    let authority = down.authority;
    let service = service_fn(move |request: Request<Incoming>| {
        let (proxy, down) = (Arc::clone(&proxy), Arc::clone(&down));
        async move { Ok::<_, Infallible>(handle(&proxy, &down, request).await) }
    });
    let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(error) = served {
        debug!(%error, %authority, "HTTP in the tunnel ended with an error");
    }
}

/// What the policy decided for a request, with what the forward needs.
struct Decided {
    decision: Decision,
    endpoint: Endpoint,
    labels: RequestLabels,
}

/// The `:path` of a request, query included (`/` when there is none).
fn path_of(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The host of a request: its authority, else its `host` header.
fn host_of<B>(request: &Request<B>) -> Option<&str> {
    request.uri().authority().map(|a| a.as_str()).or_else(|| request.headers().get(http::header::HOST)?.to_str().ok())
}

/// Resolves, picks an endpoint and decides, against one snapshot.
fn decide(proxy: &Proxy, down: &Downstream, request: &Request<Incoming>) -> Result<Decided, (StatusCode, String)> {
    let snapshot = proxy.state.snapshot();
    let served = served::resolve(&snapshot, &proxy.gateway, down.authority)
        .map_err(|why| (StatusCode::SERVICE_UNAVAILABLE, why.to_string()))?;
    let ep = served.pick(&proxy.next_endpoint);
    let view = HttpView {
        method: request.method().as_str(),
        path: path_of(request.uri()),
        host: host_of(request),
        headers: request.headers(),
    };
    let policy_request = PolicyRequest::new(down.connection(served.target(&ep)), view).with_remote_ip(down.source_ip);
    let decision = snapshot
        .authorize_request(&policy_request, unix_now())
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut labels = crate::proxy::labels(&snapshot, down, &served, &ep, "http");
    if reply::is_grpc(request.headers()) {
        labels.request_protocol = "grpc";
    }
    Ok(Decided { decision, endpoint: Endpoint::from(&ep), labels })
}

/// The JWT outcome, for the access log.
fn jwt_outcome(decision: &Decision) -> String {
    match (decision.jwt_rejection(), &decision.token_forwarding) {
        (Some(rejection), _) => format!("rejected: {rejection}"),
        (None, Some(_)) => "verified".to_owned(),
        (None, None) => "none".to_owned(),
    }
}

async fn handle(proxy: &Proxy, down: &Downstream, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let grpc = reply::is_grpc(request.headers());
    let (method, path) = (request.method().clone(), path_of(request.uri()).to_owned());
    let decided = match decide(proxy, down, &request) {
        Ok(d) => d,
        Err((status, why)) => {
            info!(
                target: "access", authority = %down.authority, method = %method, path = %path,
                peer = %down.peer_id, source = %down.source_ip, response_code = status.as_u16(),
                reason = %why, "request not served"
            );
            let text = if status == StatusCode::SERVICE_UNAVAILABLE { reply::NO_UPSTREAM } else { "Bad Request" };
            return reply::local(status, text, grpc);
        }
    };
    let Decided { decision, endpoint, mut labels } = decided;
    let jwt = jwt_outcome(&decision);
    let (response, flags, upstream_error) = if decision.allowed {
        let forwarding = decision.token_forwarding.as_deref();
        match forward(proxy, down, request, &endpoint, forwarding).await {
            Ok(response) => (response, "-", None),
            Err(error) => {
                let (flags, body) = failure(&error);
                (reply::local(StatusCode::SERVICE_UNAVAILABLE, body, grpc), flags, Some(error))
            }
        }
    } else if let Some(rejection) = decision.jwt_rejection() {
        if rejection.error == JwtError::KidAlgMismatch {
            proxy.jwks.unknown_kid();
        }
        let realm = format!("http://{}{}", host_of(&request).unwrap_or(""), request.uri().path());
        (reply::unauthorized(&rejection.error.to_string(), &realm, grpc), "-", None)
    } else {
        (reply::local(StatusCode::FORBIDDEN, reply::RBAC_DENIED, grpc), "RBAC", None)
    };
    labels.response_code = response.status().as_u16();
    labels.response_flags = flags;
    proxy.metrics.record(&labels, started.elapsed());
    info!(
        target: "access",
        authority = %down.authority,
        method = %method,
        path = %path,
        protocol = labels.request_protocol,
        peer = %down.peer_id,
        source = %down.source_ip,
        endpoint = %endpoint.name,
        response_code = labels.response_code,
        grpc_status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("-"),
        response_flags = flags,
        rbac = if decision.allowed { "allowed" } else { "denied" },
        policy = decision.policy.as_deref().unwrap_or("-"),
        rule = ?decision.rule,
        jwt = %jwt,
        upstream_error = upstream_error.as_ref().map(|e| e.to_string()).as_deref().unwrap_or("-"),
        decision = %decision,
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// The response flag and the 503 body for a failed forward.
fn failure(error: &SendError) -> (&'static str, &'static str) {
    match error {
        SendError::Upstream(UpstreamError::Failed { .. }) => ("UF", reply::UPSTREAM_FAILED),
        SendError::Upstream(UpstreamError::Refused { .. }) => ("UF", reply::UPSTREAM_REFUSED),
        SendError::Http { .. } => ("UC", reply::UPSTREAM_REFUSED),
    }
}

/// Forwards an allowed request to `endpoint`.
async fn forward(
    proxy: &Proxy,
    down: &Downstream,
    request: Request<Incoming>,
    endpoint: &Endpoint,
    forwarding: Option<&TokenForwarding>,
) -> Result<Response<Body>, SendError> {
    let (mut parts, body) = request.into_parts();
    forwarding::strip_hop_by_hop(&mut parts.headers);
    if let Some(forwarding) = forwarding {
        forwarding::apply_token_forwarding(&mut parts.headers, forwarding);
    }
    forwarding::add_forwarded(&mut parts.headers, down.source_ip);
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let uri = if parts.version == Version::HTTP_2 {
        // HTTP/2 carries the scheme and authority in the request.
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned));
        authority.and_then(|a| {
            Uri::builder()
                .scheme(parts.uri.scheme_str().unwrap_or("http"))
                .authority(a)
                .path_and_query(pq.as_str())
                .build()
                .ok()
        })
    } else {
        pq.parse().ok()
    };
    if let Some(uri) = uri {
        parts.uri = uri;
    }
    let body: Body = body.map_err(|e| Box::new(e) as BoxError).boxed();
    let request = Request::from_parts(parts, body);
    let mut response = proxy.pool.send(&proxy.upstreams, endpoint, down.source_ip, request).await?;
    forwarding::strip_hop_by_hop(response.headers_mut());
    Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()))
}
