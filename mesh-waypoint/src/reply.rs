//! The answers the waypoint gives itself, worded as Envoy's: `403 RBAC: access denied`, `401` with the token's
//! rejection and `www-authenticate`, `503 upstream connect error ...`; to a gRPC client, HTTP 200 with
//! `grpc-status` and `grpc-message` in a trailers-only response.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// The error type of bodies the waypoint relays.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A response body: the upstream's, or one of the waypoint's own.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// Envoy's body when the upstream connection failed or was refused.
pub(crate) const UPSTREAM_REFUSED: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
/// Envoy's body when the upstream could not be connected to at all.
pub(crate) const UPSTREAM_FAILED: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
/// Envoy's body when a cluster has no endpoint.
pub(crate) const NO_UPSTREAM: &str = "no healthy upstream";
/// Envoy's RBAC denial.
pub(crate) const RBAC_DENIED: &str = "RBAC: access denied";

/// Whether a request is gRPC (its content type is `application/grpc` or a subtype).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/grpc" || v.starts_with("application/grpc+"))
}

/// The gRPC status code for an HTTP status the waypoint answers with.
fn grpc_status(status: StatusCode) -> u8 {
    match status {
        StatusCode::UNAUTHORIZED => 16, // UNAUTHENTICATED
        StatusCode::FORBIDDEN => 7,     // PERMISSION_DENIED
        StatusCode::BAD_REQUEST => 13,  // INTERNAL, as Envoy maps 400
        _ => 14,                        // UNAVAILABLE
    }
}

/// The waypoint's own answer: `status` with `text` as body, or its gRPC form for a gRPC request.
pub(crate) fn local(status: StatusCode, text: &str, grpc: bool) -> Response<Body> {
    let mut response = if grpc {
        let mut r = Response::new(Empty::<Bytes>::new().map_err(|never| match never {}).boxed());
        let headers = r.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(u16::from(grpc_status(status))));
        if let Ok(message) = HeaderValue::from_str(&percent_encode(text)) {
            headers.insert("grpc-message", message);
        }
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from(text.to_owned())).map_err(|never| match never {}).boxed());
        *r.status_mut() = status;
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    };
    response.headers_mut().insert("server", HeaderValue::from_static("mesh-waypoint"));
    response
}

/// `401` for a rejected token, with Envoy's `www-authenticate: Bearer realm="<url>", error="invalid_token"`.
pub(crate) fn unauthorized(text: &str, realm: &str, grpc: bool) -> Response<Body> {
    let mut response = local(StatusCode::UNAUTHORIZED, text, grpc);
    let challenge = format!("Bearer realm=\"{}\", error=\"invalid_token\"", realm.replace(['"', '\\'], ""));
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// gRPC's percent-encoding of `grpc-message`: printable ASCII except `%` as is, every other byte `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' && b != b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_denials_are_trailers_only_with_the_matching_status() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        assert!(is_grpc(&headers));
        let r = local(StatusCode::FORBIDDEN, RBAC_DENIED, true);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()["grpc-message"], "RBAC:%20access%20denied");
        let r = unauthorized("Jwt is expired", "http://a/b", true);
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer realm=\"http://a/b\", error=\"invalid_token\"");
        let r = local(StatusCode::SERVICE_UNAVAILABLE, UPSTREAM_REFUSED, false);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
