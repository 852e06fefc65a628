//! Everything that can go wrong in the waypoint, as one type: what stops it starting, and what a request or
//! tunnel is refused for. The answer each gets (the HTTP status and Envoy's body, its gRPC form, the CONNECT
//! status) and its response flags are decided here and nowhere else.

use http::{Response, StatusCode};
use mesh_hbone::Rejection;
use mesh_runtime::config::ConfigError;
use mesh_runtime::listen::ListenError;
use mesh_runtime::metrics::ResponseFlags;
use mesh_runtime::pki::PkiError;

use crate::reply::{self, Body};

/// Why the waypoint could not start, or did not serve a request or tunnel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The CA or the waypoint's certificate could not be set up.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A listener could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The CA file for `jwksUri` servers could not be read.
    #[error("{0}")]
    JwksTrust(String),
    /// The TLS configuration of the waypoint's identity could not be made.
    #[error("the waypoint's identity: {0}")]
    Identity(String),
    /// The PROXY protocol listener is not on loopback, where only the Pod's own node proxy reaches it.
    #[error(
        "the PROXY protocol listener {0} must be on a loopback address (127.0.0.1:15088): its header names the \
         client's identity, which only the Pod's own node proxy may do"
    )]
    ProxyNotLoopback(std::net::SocketAddr),
    /// The HBONE listener failed.
    #[error("the HBONE listener: {0}")]
    Serve(String),

    /// This waypoint does not serve the address (another waypoint's, unknown, or no endpoint).
    #[error("{0}")]
    NotServed(String),
    /// The request cannot be evaluated (its attributes are malformed).
    #[error("{0}")]
    BadRequest(String),
    /// AuthorizationPolicy denies it.
    #[error("{reason}")]
    Denied {
        /// The decision, explained.
        reason: String,
        /// `namespace/name` of the deciding policy.
        policy: Option<String>,
    },
    /// RequestAuthentication rejects its token.
    #[error("{message}")]
    Unauthenticated {
        /// What is wrong with the token, as Envoy words it.
        message: String,
        /// The `www-authenticate` realm: the request's URL.
        realm: String,
    },
    /// The endpoint (or its node proxy) could not be connected to.
    #[error("{0}")]
    UpstreamFailed(String),
    /// The endpoint's node proxy refused the waypoint's tunnel.
    #[error("{0}")]
    UpstreamRefused(String),
    /// The connection to the endpoint ended before the response.
    #[error("{0}")]
    UpstreamReset(String),
}

impl Error {
    /// The response flags of the request's or connection's metric series, as Envoy writes them.
    pub fn response_flags(&self) -> ResponseFlags {
        match self {
            Error::Denied { .. } => ResponseFlags::Denied,
            Error::NotServed(_) => ResponseFlags::NoHealthyUpstream,
            Error::UpstreamFailed(_) | Error::UpstreamRefused(_) => ResponseFlags::ConnectFailure,
            Error::UpstreamReset(_) => ResponseFlags::UpstreamConnectionTermination,
            _ => ResponseFlags::None,
        }
    }

    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Denied { .. } => StatusCode::FORBIDDEN,
            Error::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The waypoint's answer to an HTTP request, worded as Envoy's (or its gRPC form).
    pub(crate) fn reply(&self, grpc: bool) -> Response<Body> {
        let status = self.status();
        match self {
            Error::Denied { .. } => reply::local(status, reply::RBAC_DENIED, grpc),
            Error::Unauthenticated { message, realm } => reply::unauthorized(message, realm, grpc),
            Error::BadRequest(_) => reply::local(status, "Bad Request", grpc),
            Error::UpstreamFailed(_) => reply::local(status, reply::UPSTREAM_FAILED, grpc),
            Error::UpstreamRefused(_) | Error::UpstreamReset(_) => reply::local(status, reply::UPSTREAM_REFUSED, grpc),
            _ => reply::local(status, reply::NO_UPSTREAM, grpc),
        }
    }

    /// The answer to a CONNECT refused before the tunnel opens: 401 for a denial, as a node proxy answers, 503
    /// otherwise.
    pub(crate) fn rejection(&self, authority: std::net::SocketAddr) -> Rejection {
        match self {
            Error::Denied { reason, .. } => Rejection::Denied { reason: reason.clone() },
            _ => Rejection::UnknownHost { host: authority.ip().to_string(), port: authority.port() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_runtime::metrics::Reporter;

    #[test]
    fn each_error_maps_to_one_answer_and_flag() {
        let denied = Error::Denied { reason: "DENY at waypoint".into(), policy: None };
        assert_eq!(denied.reply(false).status(), StatusCode::FORBIDDEN);
        assert_eq!(denied.response_flags().code(Reporter::Waypoint), "RBAC");
        assert_eq!(denied.rejection(([10, 0, 0, 1], 80).into()).kind().status(), StatusCode::UNAUTHORIZED);
        let jwt = Error::Unauthenticated { message: "Jwt is expired".into(), realm: "http://a/b".into() };
        assert_eq!(jwt.reply(false).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(jwt.response_flags().code(Reporter::Waypoint), "-");
        let failed = Error::UpstreamFailed("connection refused".into());
        assert_eq!(failed.reply(false).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(failed.response_flags().code(Reporter::Waypoint), "UF");
        assert_eq!(Error::UpstreamReset("reset".into()).response_flags().code(Reporter::Waypoint), "UC");
        let none = Error::NotServed("no endpoint".into());
        assert_eq!(none.response_flags().code(Reporter::Waypoint), "UH");
        assert_eq!(none.rejection(([10, 0, 0, 1], 80).into()).kind().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Error::BadRequest("x".into()).reply(true).status(), StatusCode::OK, "gRPC: trailers only");
    }
}
