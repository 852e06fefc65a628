//! Invariants of the zero-IO core, over generated input:
//! - no parser panics, whatever bytes a peer sends;
//! - what the core writes, it reads back as the same value;
//! - the server never tunnels to an IP other than the one it was dialled at, and answers every CONNECT it
//!   refuses from the request alone with 400 or 503.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use mesh_hbone::status::{InboundRules, PROXY_PORTS, validate};
use mesh_hbone::{Baggage, ConnectRequest, Forwarded, HboneAddress, TraceParent};
use proptest::prelude::*;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
    ]
}

fn socket() -> impl Strategy<Value = SocketAddr> {
    (ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// Header text a peer might send: printable ASCII, with the separators these headers use well represented.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,64}", "[a-z0-9.=;,\":\\[\\] -]{0,64}", "(for|host|k8s\\.namespace\\.name|00)[=\\-][ -~]{0,40}",]
}

fn authority_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "[0-9.:\\[\\]a-f]{0,40}",
        (socket()).prop_map(|s| s.to_string()),
        ("[a-z][a-z0-9-]{0,10}(\\.[a-z0-9-]{1,10}){0,3}", any::<u16>()).prop_map(|(h, p)| format!("{h}:{p}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(text in header_text(), authority in authority_text()) {
        let _ = HboneAddress::parse(&authority);
        let _ = Baggage::parse(&text);
        let _ = Forwarded::parse(&text);
        let _ = TraceParent::parse(&text);
    }

    #[test]
    fn socket_authorities_round_trip(addr in socket()) {
        let parsed = HboneAddress::parse(&HboneAddress::Socket(addr).to_string()).unwrap();
        prop_assert_eq!(parsed, HboneAddress::Socket(addr));
    }

    #[test]
    fn traceparents_round_trip(trace in 1..=u128::MAX, parent in 1..=u64::MAX, flags in any::<u8>()) {
        let written = TraceParent::new(trace, parent, flags).unwrap();
        prop_assert_eq!(TraceParent::parse(&written.to_string()).unwrap(), written);
    }

    #[test]
    fn forwarded_sources_round_trip(source in socket()) {
        let written = Forwarded::for_source(source);
        let parsed = Forwarded::parse(&written.format().unwrap()).unwrap();
        prop_assert_eq!(parsed.for_node.map(|n| n.ip()), Some(source.ip()));
        prop_assert_eq!(parsed, written);
    }

    #[test]
    fn requests_read_back_as_written(target in socket(), source in socket(), trace in 1..=u128::MAX) {
        let written = ConnectRequest::new(target)
            .with_forwarded(Forwarded::for_source(source))
            .with_traceparent(TraceParent::new(trace, 7, 1).unwrap());
        let read = ConnectRequest::from_request(&written.to_request().unwrap()).unwrap();
        prop_assert_eq!(read, written);
    }

    /// Whatever arrives, an accepted CONNECT goes to the dialled IP, on a port that is not the proxy's own;
    /// anything else is refused with 400 or 503, never let through elsewhere.
    #[test]
    fn the_server_only_tunnels_to_the_dialled_ip(
        method in prop_oneof![Just(Method::CONNECT), Just(Method::GET), Just(Method::POST)],
        random in authority_text(),
        dialled in socket(),
        port in any::<u16>(),
        pick in 0..4u8,
        headers in proptest::collection::vec(
            (prop_oneof![Just("baggage"), Just("forwarded"), Just("traceparent"), Just("x-forwarded-network")],
             header_text()),
            0..4,
        ),
    ) {
        // Half the time the authority names the dialled IP or a served host, so that both outcomes are common.
        let authority = match pick {
            0 => SocketAddr::new(dialled.ip(), port).to_string(),
            1 => format!("reviews.default.svc.cluster.local:{}", if port % 2 == 0 { 9080 } else { port }),
            _ => random,
        };
        let Ok(uri) = authority.parse::<Uri>() else { return Ok(()) };
        let mut map = HeaderMap::new();
        for (name, value) in &headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                map.append(HeaderName::from_static(name), value);
            }
        }
        let rules = InboundRules::default().with_service("reviews.default.svc.cluster.local", 9080, 9080);
        match validate(&method, &uri, &map, dialled, &rules) {
            Ok(accepted) => {
                prop_assert_eq!(method, Method::CONNECT);
                prop_assert_eq!(accepted.target.ip(), mesh_hbone::status::canonical(dialled.ip()));
                prop_assert!(!PROXY_PORTS.contains(&accepted.target.port()));
            }
            Err(rejection) => {
                let status = rejection.status();
                prop_assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{rejection} answered {status}");
            }
        }
    }
}
