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
use mesh_runtime::access::Request as Logged;
use mesh_runtime::metrics::{ResponseFlags, TcpLabels};
use mesh_runtime::unix_now;
use tracing::debug;

use crate::metrics::RequestLabels;
use crate::pool::SendError;
use crate::proxy::{Downstream, Proxy, access};
use crate::reply::{self, Body, BoxError};
use crate::upstream::{Dial, Io};
use crate::{Error, forwarding, served};

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
    endpoint: (Dial, std::net::SocketAddr),
    labels: TcpLabels,
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
fn decide(proxy: &Proxy, down: &Downstream, request: &Request<Incoming>) -> Result<Decided, Error> {
    let snapshot = proxy.state.snapshot();
    let served =
        served::resolve(&snapshot, &proxy.gateway, down.authority).map_err(|why| Error::NotServed(why.to_string()))?;
    let ep = served.pick(&proxy.next_endpoint);
    let view = HttpView {
        method: request.method().as_str(),
        path: path_of(request.uri()),
        host: host_of(request),
        headers: request.headers(),
    };
    let policy_request = PolicyRequest::new(down.connection(served.target(&ep)), view).with_remote_ip(down.source_ip);
    let decision =
        snapshot.authorize_request(&policy_request, unix_now()).map_err(|e| Error::BadRequest(e.to_string()))?;
    let mut labels = crate::proxy::labels(&snapshot, down, &served, &ep, "http");
    if reply::is_grpc(request.headers()) {
        labels.request_protocol = "grpc";
    }
    Ok(Decided { decision, endpoint: (Dial::from(&ep), std::net::SocketAddr::new(ep.ip, ep.port)), labels })
}

async fn handle(proxy: &Proxy, down: &Downstream, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let grpc = reply::is_grpc(request.headers());
    let method = request.method().clone();
    let path = path_of(request.uri()).to_owned();
    let host = host_of(&request).unwrap_or("").to_owned();
    let logged =
        |status: StatusCode| Logged { method: method.as_str(), path: &path, host: &host, status: status.as_u16() };
    let Decided { decision, endpoint, labels } = match decide(proxy, down, &request) {
        Ok(decided) => decided,
        Err(error) => {
            let response = error.reply(grpc);
            let mut line = access(down, None);
            line.request = Some(logged(response.status()));
            line.duration = started.elapsed();
            line.error = Some(&error);
            line.emit("request");
            return response;
        }
    };
    let outcome = if decision.allowed {
        let forwarding = decision.token_forwarding.as_deref();
        forward(proxy, down, request, &endpoint.0, forwarding).await.map_err(|e| send_error(&e))
    } else if let Some(rejection) = decision.jwt_rejection() {
        if rejection.error == JwtError::KidAlgMismatch {
            proxy.jwks.unknown_kid();
        }
        let realm = format!("http://{host}{}", request.uri().path());
        Err(Error::Unauthenticated { message: rejection.error.to_string(), realm })
    } else {
        let policy = decision.policy.as_deref().map(str::to_owned);
        Err(Error::Denied { reason: decision.to_string(), policy })
    };
    let (response, error) = match outcome {
        Ok(response) => (response, None),
        Err(error) => (error.reply(grpc), Some(error)),
    };
    let flags = error.as_ref().map_or(ResponseFlags::None, Error::response_flags);
    let labels = RequestLabels { tcp: labels.with_flags(flags), response_code: response.status().as_u16() };
    proxy.metrics.record(&labels, started.elapsed());
    let mut line = access(down, Some(&endpoint));
    line.request = Some(logged(response.status()));
    line.decision = Some(if decision.allowed { "allow" } else { "deny" });
    line.policy = decision.policy.as_deref();
    line.reason = Some(&decision);
    line.duration = started.elapsed();
    line.error = error.as_ref().map(|e| e as &dyn std::fmt::Display);
    line.emit("request");
    response
}

/// The error of a failed forward.
fn send_error(error: &SendError) -> Error {
    match error {
        SendError::Upstream(e) => crate::tcp::upstream_error(e),
        SendError::Http { .. } => Error::UpstreamReset(error.to_string()),
    }
}

/// Forwards an allowed request to `endpoint`.
async fn forward(
    proxy: &Proxy,
    down: &Downstream,
    request: Request<Incoming>,
    endpoint: &Dial,
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
