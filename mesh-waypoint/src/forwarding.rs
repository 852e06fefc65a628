//! The headers of a forwarded request, as Envoy sets them: hop-by-hop headers dropped, `x-forwarded-for`
//! appended with the client's address, `x-forwarded-proto` set, `x-request-id` generated when absent; and what
//! a RequestAuthentication rule asks for a validated token (`forwardOriginalToken: false` removes it,
//! `outputPayloadToHeader` and `outputClaimToHeaders` add headers).

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::{AUTHORIZATION, CONNECTION, HeaderName, HeaderValue};
use mesh_policy::TokenForwarding;
use ring::rand::{SecureRandom, SystemRandom};

/// Hop-by-hop headers, never forwarded.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "proxy-authenticate", "te"];

/// Removes hop-by-hop headers, and those the `connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let keep_te_trailers = headers.get("te").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        if name == "te" && keep_te_trailers {
            continue;
        }
        headers.remove(name);
    }
}

/// Sets the `x-forwarded-*` and `x-request-id` headers of a request from `client`.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: IpAddr) {
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => format!("{existing},{client}"),
        _ => client.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", value);
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !headers.contains_key("x-request-id")
        && let Ok(value) = HeaderValue::from_str(&request_id())
    {
        headers.insert("x-request-id", value);
    }
}

/// A random UUID (version 4), as Envoy generates request ids.
pub(crate) fn request_id() -> String {
    let mut b = [0u8; 16];
    // The system generator does not fail on the platforms this runs on; zeros would still be a valid id.
    let _ = SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The bearer token of the `authorization` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Applies what the validating rule asks for the token of a request: payload and claims to headers, then the
/// token removed unless `forwardOriginalToken` is set. The token is the `authorization` bearer token (the
/// default location; a token read from another header or a query parameter is left where it is).
pub(crate) fn apply_token_forwarding(headers: &mut HeaderMap, forwarding: &TokenForwarding) {
    let payload = bearer(headers).and_then(|t| t.split('.').nth(1)).map(str::to_owned);
    if let (Some(name), Some(payload)) = (&forwarding.output_payload_to_header, &payload)
        && let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(payload))
    {
        headers.insert(name, value);
    }
    if !forwarding.output_claim_to_headers.is_empty() {
        let claims: Option<serde_json::Value> = payload
            .as_deref()
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|json| serde_json::from_slice(&json).ok());
        for (header, claim) in &forwarding.output_claim_to_headers {
            let value = claims.as_ref().and_then(|c| c.get(claim)).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            });
            if let (Ok(name), Some(Ok(value))) =
                (HeaderName::from_bytes(header.as_bytes()), value.map(|v| HeaderValue::from_str(&v)))
            {
                headers.insert(name, value);
            }
        }
    }
    if !forwarding.forward_original_token {
        headers.remove(AUTHORIZATION);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_headers_go_and_forwarded_headers_come() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("5"));
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-request-id", HeaderValue::from_static("given"));
        strip_hop_by_hop(&mut h);
        add_forwarded(&mut h, IpAddr::from([10, 0, 0, 1]));
        assert!(!h.contains_key("x-secret") && !h.contains_key("keep-alive") && !h.contains_key("connection"));
        assert_eq!(h["x-forwarded-for"], "1.2.3.4,10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-request-id"], "given");
        let mut fresh = HeaderMap::new();
        add_forwarded(&mut fresh, IpAddr::from([10, 0, 0, 1]));
        let id = fresh["x-request-id"].to_str().unwrap_or_default().to_owned();
        assert_eq!((id.len(), &id[14..15]), (36, "4"));
        assert_ne!(request_id(), request_id());
    }

    #[test]
    fn a_token_is_removed_and_its_claims_copied_as_the_rule_asks() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","n":3,"scp":["a"]}"#);
        let mut h = HeaderMap::new();
        let value = format!("Bearer e30.{payload}.c2ln");
        h.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("")));
        let forwarding = TokenForwarding {
            forward_original_token: false,
            output_payload_to_header: Some("x-jwt-payload".into()),
            output_claim_to_headers: vec![("x-sub".into(), "sub".into()), ("x-n".into(), "n".into())],
        };
        apply_token_forwarding(&mut h, &forwarding);
        assert!(!h.contains_key(AUTHORIZATION));
        assert_eq!(h["x-jwt-payload"], payload.as_str());
        assert_eq!((&h["x-sub"], &h["x-n"]), (&HeaderValue::from_static("alice"), &HeaderValue::from_static("3")));
        let mut kept = HeaderMap::new();
        kept.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        apply_token_forwarding(&mut kept, &TokenForwarding { forward_original_token: true, ..forwarding });
        assert_eq!(kept[AUTHORIZATION], "Bearer a.b.c");
    }
}
