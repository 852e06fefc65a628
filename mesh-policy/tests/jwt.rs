//! RequestAuthentication end to end: raw tokens signed with real keys, validated at the waypoint.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use common::Idp;
use mesh_policy::{CheckRequest, Mesh};
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://idp.example.com";
const JWKS_URI: &str = "https://idp.example.com/.well-known/jwks.json";

const MANIFESTS: &str = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ledger-jwt, namespace: payments}
spec:
  targetRefs: [{kind: Service, group: "", name: ledger}]
  jwtRules:
  - issuer: https://idp.example.com
    jwksUri: https://idp.example.com/.well-known/jwks.json
    audiences: [ledger]
    forwardOriginalToken: true
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-user, claim: sub}]
  - issuer: https://partner.example.com
    jwksUri: https://partner.example.com/jwks
    fromHeaders: [{name: x-partner-token, prefix: "Token "}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: payments}
spec:
  targetRefs: [{kind: Service, group: "", name: ledger}]
  action: DENY
  rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: alice, namespace: payments}
spec:
  targetRefs: [{kind: Service, group: "", name: ledger}]
  rules:
  - from: [{source: {requestPrincipals: ["https://idp.example.com/alice"]}}]
    when: [{key: "request.auth.claims[scope]", values: ["ledger.read"]}]
"#;

fn alice_claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": "ledger", "exp": NOW + 600, "scope": "ledger.read ledger.write"})
}

fn request(headers: Value) -> CheckRequest {
    serde_json::from_value(json!({
        "destination": {"namespace": "payments", "service": "ledger", "waypoint": "w"},
        "source": {"principal": "cluster.local/ns/payments/sa/accounts"},
        "http": {"method": "GET", "path": "/ledger/v1/balance", "headers": headers},
    }))
    .unwrap()
}

fn bearer(token: &str) -> CheckRequest {
    request(json!({"Authorization": format!("Bearer {token}")}))
}

fn mesh(idp: &Idp) -> Mesh {
    let mut mesh = Mesh::default();
    mesh.apply_yaml(MANIFESTS).unwrap();
    mesh.add_jwks(JWKS_URI, &idp.jwks()).unwrap();
    mesh
}

#[test]
fn a_valid_token_authenticates_the_request() {
    let idp = Idp::new("k1");
    let d = mesh(&idp).check_at(&bearer(&idp.sign(alice_claims())), NOW).unwrap();
    assert!(d.allowed, "{}", d.reason);
    assert_eq!((d.status, d.policy.as_deref(), d.rule), (Some(200), Some("payments/alice"), Some(0)));
    assert!(d.reason.to_string().contains("request principal is https://idp.example.com/alice"));
    let forwarding = d.token_forwarding.clone().expect("the validating rule's forwarding");
    assert!(forwarding.forward_original_token);
    assert_eq!(forwarding.output_payload_to_header.as_deref(), Some("x-jwt-payload"));
    assert_eq!(forwarding.output_claim_to_headers, vec![("x-user".to_owned(), "sub".to_owned())]);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json.as_object().unwrap().len(), 7, "the shared shape is unchanged: {json}");
}

#[test]
fn no_token_leaves_the_request_unauthenticated() {
    let idp = Idp::new("k1");
    let d = mesh(&idp).check_at(&request(json!({})), NOW).unwrap();
    assert_eq!((d.allowed, d.status, d.policy.as_deref()), (false, Some(403), Some("payments/require-jwt")));
    assert_eq!(d.token_forwarding, None);
}

#[test]
fn invalid_tokens_get_401() {
    let idp = Idp::new("k1");
    let mesh = mesh(&idp);
    let mallory = Idp::new("k1");
    let cases = [
        ("expired", idp.sign(json!({"iss": ISSUER, "sub": "alice", "aud": "ledger", "exp": NOW - 120}))),
        ("future nbf", idp.sign(json!({"iss": ISSUER, "sub": "alice", "aud": "ledger", "nbf": NOW + 120}))),
        ("wrong audience", idp.sign(json!({"iss": ISSUER, "sub": "alice", "aud": "billing"}))),
        ("unknown issuer", idp.sign(json!({"iss": "https://evil.example.com", "sub": "alice"}))),
        ("attacker key with a trusted kid", mallory.sign(alice_claims())),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    for (what, token) in cases {
        let d = mesh.check_at(&bearer(&token), NOW).unwrap();
        assert_eq!((d.allowed, d.status), (false, Some(401)), "{what}: {}", d.reason);
        assert!(d.reason.to_string().starts_with("JWT rejected: "), "{what}: {}", d.reason);
        assert!(d.reason.to_string().contains("RequestAuthentication payments/ledger-jwt"), "{what}");
    }
}

#[test]
fn tampered_payload_is_rejected() {
    let idp = Idp::new("k1");
    let token = idp.sign(alice_claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = alice_claims();
    claims["sub"] = json!("admin");
    parts[1] = B64.encode(claims.to_string());
    let d = mesh(&idp).check_at(&bearer(&parts.join(".")), NOW).unwrap();
    assert_eq!(d.status, Some(401), "{}", d.reason);
}

#[test]
fn tokens_are_rejected_until_their_jwks_is_supplied() {
    let idp = Idp::new("k1");
    let mut mesh = Mesh::default();
    mesh.apply_yaml(MANIFESTS).unwrap();
    let token = idp.sign(alice_claims());
    assert_eq!(mesh.check_at(&bearer(&token), NOW).unwrap().status, Some(401));
    mesh.add_jwks(JWKS_URI, &idp.jwks()).unwrap();
    assert_eq!(mesh.check_at(&bearer(&token), NOW).unwrap().status, Some(200));
}

#[test]
fn without_a_clock_an_expiring_token_cannot_be_accepted() {
    let idp = Idp::new("k1");
    let d = mesh(&idp).check(&bearer(&idp.sign(alice_claims()))).unwrap();
    assert_eq!(d.status, Some(401), "{}", d.reason);
}

#[test]
fn custom_header_location_with_prefix() {
    let idp = Idp::new("k1");
    let partner = Idp::new("p1");
    let mut mesh = mesh(&idp);
    mesh.add_jwks("https://partner.example.com/jwks", &partner.jwks()).unwrap();
    let token = partner.sign(json!({"iss": "https://partner.example.com", "sub": "bob", "exp": NOW + 60}));
    // Authenticated (the DENY of anonymous requests does not fire), but bob is not allowed.
    let d = mesh.check_at(&request(json!({"x-partner-token": format!("Token {token}")})), NOW).unwrap();
    assert_eq!((d.status, d.policy.as_deref()), (Some(403), None), "{}", d.reason);
    assert_eq!(d.reason.to_string(), "no ALLOW policy matched (1 applies)");
}

#[test]
fn a_prevalidated_jwt_is_used_as_given() {
    let idp = Idp::new("k1");
    let mut req = bearer("garbage");
    req.jwt = Some(
        serde_json::from_value(json!({"principal": "https://idp.example.com/alice",
        "claims": {"iss": ISSUER, "sub": "alice", "scope": "ledger.read"}}))
        .unwrap(),
    );
    assert!(mesh(&idp).check_at(&req, NOW).unwrap().allowed);
}

#[test]
fn invalid_inline_jwks_is_a_manifest_error() {
    let err = Mesh::default()
        .apply_yaml(
            r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: bad, namespace: payments}
spec:
  jwtRules: [{issuer: "https://idp", jwks: '{"keys": [{"kty": "EC"}]}'}]
"#,
        )
        .unwrap_err();
    assert!(err.to_string().contains("RequestAuthentication payments/bad"), "{err}");
    assert!(err.to_string().contains("spec.jwtRules[0].jwks: jwks parse error"), "{err}");
}
