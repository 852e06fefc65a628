//! The `peers` group: one L7 decision, the `payments` ledger debit, by mesh-policy and by two general-purpose
//! policy engines, in the same run so the ratios can be read off one report.
//!
//! The rule: `accounts` may `POST /ledger/v1/debit` with a token whose `scp` claim holds `ledger.debit`, and
//! any request without a token (request principal) is denied.
//!
//! - `peers/mesh-policy`: `Mesh::check` at the waypoint with only `ledger-require-jwt` (DENY
//!   `notRequestPrincipals: ["*"]`) and `ledger-debit` loaded. Includes everything a check does: reading the
//!   identity, stripping the query and normalizing the path, walking the policies, building the `Decision`.
//! - `peers/cedar`: `Authorizer::is_authorized` with the `Request`, `Entities` and `PolicySet` built beforehand
//!   (the path in the context is already stripped of its query).
//! - `peers/regorus`: `Engine::eval_rule("data.mesh.allow")` with the policy and input set beforehand. The
//!   input stays set across evaluations (`eval_rule` resets only evaluation state), so it is not re-set per
//!   iteration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench setup: fail loudly

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request};
use criterion::Criterion;
use mesh_policy::request::{Destination, HttpRequest, JwtAttributes, SourceAttributes};
use mesh_policy::{CheckRequest, Mesh};

const ACCOUNTS: &str = "cluster.local/ns/payments/sa/accounts";
const TOKEN_PRINCIPAL: &str = "https://idp.example.com/accounts-service";

const MESH_POLICIES: &str = include_str!("ledger.yaml");

const CEDAR_POLICIES: &str = r#"
@id("ledger-debit")
permit(principal == Service::"cluster.local/ns/payments/sa/accounts", action == Action::"POST", resource)
when { context.path == "/ledger/v1/debit" && context.scp.contains("ledger.debit") };

@id("ledger-require-jwt")
forbid(principal, action, resource)
unless { context has request_principal };
"#;

const REGO_POLICY: &str = r#"
package mesh

import rego.v1

default allow := false

deny if not input.request_principal

allow if {
	not deny
	input.principal == "cluster.local/ns/payments/sa/accounts"
	input.method == "POST"
	input.path == "/ledger/v1/debit"
	"ledger.debit" in input.claims.scp
}
"#;

fn mesh_request(with_token: bool) -> CheckRequest {
    let claims = serde_json::json!({
        "iss": "https://idp.example.com",
        "sub": "accounts-service",
        "scp": ["ledger.read", "ledger.debit"],
    });
    CheckRequest {
        destination: Destination {
            namespace: "payments".into(),
            service: Some("ledger".into()),
            waypoint: Some("payments-waypoint".into()),
            port: Some(8080),
            ..Destination::default()
        },
        source: SourceAttributes { principal: Some(ACCOUNTS.into()), ..SourceAttributes::default() },
        http: Some(HttpRequest {
            method: "POST".into(),
            path: "/ledger/v1/debit?x=1".into(),
            host: None,
            headers: Default::default(),
        }),
        jwt: with_token.then(|| JwtAttributes {
            principal: Some(TOKEN_PRINCIPAL.into()),
            claims: claims.as_object().cloned().unwrap(),
            ..JwtAttributes::default()
        }),
        ..CheckRequest::default()
    }
}

fn cedar_request(with_token: bool) -> Request {
    let mut context = serde_json::json!({
        "path": "/ledger/v1/debit",
        "scp": ["ledger.read", "ledger.debit"],
    });
    if with_token {
        context["request_principal"] = TOKEN_PRINCIPAL.into();
    }
    Request::new(
        EntityUid::from_str(&format!("Service::{ACCOUNTS:?}")).unwrap(),
        EntityUid::from_str(r#"Action::"POST""#).unwrap(),
        EntityUid::from_str(r#"Service::"ledger""#).unwrap(),
        Context::from_json_value(context, None).unwrap(),
        None,
    )
    .unwrap()
}

fn rego_input(with_token: bool) -> regorus::Value {
    let mut input = serde_json::json!({
        "principal": ACCOUNTS,
        "method": "POST",
        "path": "/ledger/v1/debit",
        "claims": {"iss": "https://idp.example.com", "sub": "accounts-service", "scp": ["ledger.read", "ledger.debit"]},
    });
    if with_token {
        input["request_principal"] = TOKEN_PRINCIPAL.into();
    }
    regorus::Value::from_json_str(&input.to_string()).unwrap()
}

fn peers(c: &mut Criterion) {
    // mesh-policy, with only the two policies of the rule.
    let mut mesh = Mesh::default();
    mesh.apply_yaml(MESH_POLICIES).unwrap();
    let req = mesh_request(true);
    let d = mesh.check(&req).unwrap();
    assert!(d.allowed && d.policy.as_deref() == Some("payments/ledger-debit"), "{d}");
    let d = mesh.check(&mesh_request(false)).unwrap();
    assert!(!d.allowed && d.policy.as_deref() == Some("payments/ledger-require-jwt"), "{d}");

    // Cedar.
    let policies = PolicySet::from_str(CEDAR_POLICIES).unwrap();
    let entities = Entities::empty();
    let authorizer = Authorizer::new();
    let request = cedar_request(true);
    let r = authorizer.is_authorized(&request, &policies, &entities);
    assert_eq!(r.decision(), cedar_policy::Decision::Allow, "{r:?}");
    assert!(r.diagnostics().errors().next().is_none(), "{r:?}");
    let r = authorizer.is_authorized(&cedar_request(false), &policies, &entities);
    assert_eq!(r.decision(), cedar_policy::Decision::Deny, "{r:?}");

    // Rego.
    let mut engine = regorus::Engine::new();
    engine.add_policy("mesh.rego".into(), REGO_POLICY.into()).unwrap();
    engine.set_input(rego_input(false));
    assert_eq!(engine.eval_rule("data.mesh.allow".into()).unwrap(), regorus::Value::from(false));
    engine.set_input(rego_input(true));
    assert_eq!(engine.eval_rule("data.mesh.allow".into()).unwrap(), regorus::Value::from(true));
    // Still true on a second evaluation: the input persists.
    assert_eq!(engine.eval_rule("data.mesh.allow".into()).unwrap(), regorus::Value::from(true));

    let mut group = c.benchmark_group("peers");
    group.bench_function("mesh-policy", |b| b.iter(|| mesh.check(black_box(&req))));
    group.bench_function("cedar", |b| {
        b.iter(|| authorizer.is_authorized(black_box(&request), black_box(&policies), black_box(&entities)))
    });
    group.bench_function("regorus", |b| b.iter(|| black_box(&mut engine).eval_rule("data.mesh.allow".into())));
    group.finish();
}

fn main() {
    let mut c = Criterion::default().warm_up_time(Duration::from_secs(1)).configure_from_args();
    peers(&mut c);
    c.final_summary();
}
