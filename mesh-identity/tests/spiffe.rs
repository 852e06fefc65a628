//! SPIFFE ID parsing against the specification's rules, and Istio identities.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mesh_identity::spiffe::{IstioIdentity, SpiffeId, SpiffeIdError, TrustDomain, TrustDomains};
use proptest::prelude::*;

#[test]
fn specification_vectors() {
    let text = include_str!("data/spiffe_ids.txt");
    let mut count = 0;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (expect, id) = line.split_once(' ').unwrap();
        let id = if id == "<empty>" { "" } else { id };
        let got = SpiffeId::new(id);
        match expect {
            "ok" => {
                let parsed = got.unwrap_or_else(|e| panic!("{id:?} should parse: {e}"));
                assert_eq!(parsed.as_str(), id, "no normalisation");
            }
            variant => {
                let err = got.expect_err(id);
                assert_eq!(format!("{err:?}"), variant, "{id:?}");
            }
        }
        count += 1;
    }
    assert!(count > 40);
}

#[test]
fn length_limits() {
    let td = "a".repeat(255);
    assert!(SpiffeId::new(&format!("spiffe://{td}")).is_ok());
    assert_eq!(SpiffeId::new(&format!("spiffe://{td}a")), Err(SpiffeIdError::TrustDomainTooLong));
    let path = "/x".repeat((2048 - "spiffe://td".len()) / 2);
    let at_limit = format!("spiffe://td{path}");
    assert!(at_limit.len() <= 2048);
    assert!(SpiffeId::new(&at_limit).is_ok());
    assert_eq!(SpiffeId::new(&format!("spiffe://td{path}/yy")), Err(SpiffeIdError::TooLong));
}

#[test]
fn parts() {
    let id = SpiffeId::new("spiffe://cluster.local/ns/payments/sa/accounts").unwrap();
    assert_eq!(id.trust_domain_name(), "cluster.local");
    assert_eq!(id.trust_domain(), TrustDomain::new("cluster.local").unwrap());
    assert_eq!(id.path(), "/ns/payments/sa/accounts");
    assert_eq!(id.principal(), "cluster.local/ns/payments/sa/accounts");
    assert!(id.is_member_of(&"cluster.local".parse().unwrap()));
    assert_eq!(SpiffeId::new("spiffe://td").unwrap().path(), "");
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, "\"spiffe://cluster.local/ns/payments/sa/accounts\"");
    assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
    assert!(serde_json::from_str::<SpiffeId>("\"spiffe://TD\"").is_err());
}

#[test]
fn trust_domains() {
    assert!(TrustDomain::new("spiffe://example.org").is_err(), "a bare name, not a URI");
    assert_eq!(TrustDomain::new(""), Err(SpiffeIdError::MissingTrustDomain));
    assert_eq!(TrustDomain::new("Example.org"), Err(SpiffeIdError::BadTrustDomainChar));
    assert_eq!(TrustDomain::new("example.org").unwrap().id_string(), "spiffe://example.org");
}

#[test]
fn istio_identities() {
    let id = IstioIdentity::parse("spiffe://cluster.local/ns/payments/sa/accounts").unwrap();
    assert_eq!(
        (id.trust_domain_name(), id.namespace(), id.service_account()),
        ("cluster.local", "payments", "accounts")
    );
    assert_eq!(id.principal(), "cluster.local/ns/payments/sa/accounts");
    assert_eq!(IstioIdentity::parse_principal("cluster.local/ns/payments/sa/accounts").unwrap(), id);
    let td = TrustDomain::new("cluster.local").unwrap();
    assert_eq!(IstioIdentity::new(&td, "payments", "accounts").unwrap(), id);
    for bad in [
        "spiffe://td/ns/a",
        "spiffe://td/ns/a/sa",
        "spiffe://td/ns/a/sa/b/c",
        "spiffe://td/namespace/a/sa/b",
        "spiffe://td/sa/b/ns/a",
        "spiffe://td",
    ] {
        assert_eq!(IstioIdentity::parse(bad), Err(SpiffeIdError::NotIstio), "{bad}");
    }
    assert_eq!(IstioIdentity::parse("spiffe://td/ns//sa/b"), Err(SpiffeIdError::EmptySegment));
}

#[test]
fn trust_domain_aliases() {
    let tds = TrustDomains::new("td-new".parse().unwrap(), ["td-old".parse().unwrap(), "td-new".parse().unwrap()]);
    assert_eq!(tds.aliases().len(), 1);
    let old = IstioIdentity::parse_principal("td-old/ns/a/sa/b").unwrap();
    let new = IstioIdentity::parse_principal("td-new/ns/a/sa/b").unwrap();
    let foreign = IstioIdentity::parse_principal("elsewhere/ns/a/sa/b").unwrap();
    assert!(tds.same_workload(&old, &new));
    assert!(!tds.same_workload(&old, &foreign));
    assert_eq!(tds.canonical(&old), Some(new.clone()));
    assert_eq!(tds.canonical(&foreign), None);
    assert!(!tds.same_workload(&new, &IstioIdentity::parse_principal("td-new/ns/a/sa/c").unwrap()));
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{1,12}".prop_filter("dot segment", |s| s != "." && s != "..")
}

proptest! {
    /// Every ID built from valid parts parses back to the same string.
    #[test]
    fn valid_ids_round_trip(td in "[a-z0-9_.-]{1,40}", segs in prop::collection::vec(segment(), 0..6)) {
        let path: String = segs.iter().map(|s| format!("/{s}")).collect();
        let text = format!("spiffe://{td}{path}");
        let id = SpiffeId::new(&text).unwrap();
        prop_assert_eq!(id.as_str(), text.as_str());
        prop_assert_eq!(id.trust_domain_name(), td.as_str());
        prop_assert_eq!(id.path(), path.as_str());
        prop_assert_eq!(SpiffeId::new(id.as_str()).unwrap(), id);
    }

    /// Arbitrary input never panics, and whatever parses is canonical.
    #[test]
    fn arbitrary_input(s in "\\PC{0,80}") {
        if let Ok(id) = SpiffeId::new(&s) {
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert!(id.as_str().starts_with("spiffe://"));
        }
        let _ = IstioIdentity::parse(&s);
        let _ = IstioIdentity::parse_principal(&s);
    }
}

#[test]
fn principals_split_without_allocating() {
    use mesh_identity::spiffe::split_principal;
    assert_eq!(
        split_principal("cluster.local/ns/payments/sa/accounts"),
        Some(("cluster.local", "payments", "accounts"))
    );
    assert_eq!(split_principal("td/ns/sa/sa/x"), Some(("td", "sa", "x")));
    for not_istio in
        ["cluster.local/ns/a", "/ns/a/sa/b", "td/ns//sa/b", "td/ns/a/sa/", "td/ns/a/b/sa/c", "td/ns/a/sa/b/c", "td"]
    {
        assert_eq!(split_principal(not_istio), None, "{not_istio}");
    }
    // The same identities as the full parser, which also checks the SPIFFE grammar.
    let full = mesh_identity::spiffe::IstioIdentity::parse_principal("cluster.local/ns/payments/sa/accounts").unwrap();
    assert_eq!(
        split_principal(full.principal()),
        Some((full.trust_domain_name(), full.namespace(), full.service_account()))
    );
}
