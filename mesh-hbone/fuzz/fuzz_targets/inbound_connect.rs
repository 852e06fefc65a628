//! Feeds arbitrary CONNECTs to the server's validation: it must never panic, an accepted CONNECT must go to the
//! dialled IP on a port that is not the proxy's own, and a refusal must be a 400 or a 503.
//!
//! The input is split on newlines: the method, the authority, then `name: value` header lines.
//!
//! Run with `cargo +nightly fuzz run inbound_connect` from `mesh-hbone/`.
#![no_main]

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;
use mesh_hbone::status::{InboundRules, PROXY_PORTS, canonical, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let (Some(method), Some(authority)) = (lines.next(), lines.next()) else { return };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), authority.parse::<Uri>()) else { return };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(": ") else { continue };
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    let dialled: SocketAddr = "10.0.0.2:15008".parse().unwrap_or_else(|_| unreachable!());
    let rules = InboundRules::default().with_service("reviews.default.svc.cluster.local", 9080, 9080);
    match validate(&method, &uri, &headers, dialled, &rules) {
        Ok(accepted) => {
            assert_eq!(accepted.target.ip(), canonical(dialled.ip()));
            assert!(!PROXY_PORTS.contains(&accepted.target.port()));
        }
        Err(rejection) => {
            let status = rejection.status();
            assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::SERVICE_UNAVAILABLE);
        }
    }
});
