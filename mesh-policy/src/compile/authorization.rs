//! AuthorizationPolicy: validation as Istio's webhook does it, then lowering to the enforcement point.
//!
//! A policy with `targetRefs` is enforced by a waypoint and keeps every field. A policy without is enforced by
//! the destination's ztunnel, which sees only L4 attributes; istiod lowers such a policy as follows, and so does
//! this module:
//! - ALLOW: a rule using any HTTP attribute never matches (it is left out, which is more restrictive).
//! - DENY: HTTP fields are dropped from `from` / `to` entries. An entry left with nothing, or any `when`
//!   condition on an HTTP attribute, becomes an empty match that ztunnel skips, so the rule is **not
//!   enforced** at all (istio/istio#61126). This is narrower than the "more restrictive" wording of istiod's
//!   status message and istio.io's prose; it is what ztunnel does.
//! - AUDIT and CUSTOM: not supported by ztunnel; the policy has no effect there.

use rustc_hash::FxHashSet;

use crate::compile::fields::{self, Problems};
use crate::config::MeshConfig;
use crate::crd::{Action, AuthorizationPolicySpec, ObjectMeta, Operation, Source};
use crate::model::constraint::{Constraint, Glob, Test};
use crate::model::path::{PathMatch, PathTemplate};
use crate::model::policy::{CompiledPolicy, CompiledRule, Entry, Inert, Scope};
use crate::model::request_principal::RequestPrincipalMatch;
use crate::model::string_match::StringMatch;
use crate::resource::ResourceId;

/// The annotation that marks a policy dry-run.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// A compiled field with whether it needs HTTP (L7) to be evaluated.
#[derive(Clone)]
struct Field {
    name: &'static str,
    /// Needs the HTTP request (invisible on a plain TCP connection).
    http: bool,
    /// ztunnel cannot see it: HTTP attributes, and attributes ztunnel's authorization does not carry
    /// (trust domains).
    l7: bool,
    constraint: Constraint,
}

struct Ctx<'a> {
    config: &'a MeshConfig,
    namespace: &'a str,
    waypoint: bool,
    action: Action,
}

/// Validates and compiles one AuthorizationPolicy. Problems go to `p`; `None` when there are errors.
pub(crate) fn compile(
    id: ResourceId,
    meta: &ObjectMeta,
    spec: &AuthorizationPolicySpec,
    config: &MeshConfig,
    p: &mut Problems,
) -> Option<CompiledPolicy> {
    let namespace = id.namespace().to_owned();
    let targets = fields::targets(p, &spec.target_ref, &spec.target_refs, &namespace, &config.root_namespace);
    fields::one_attachment(p, spec.selector.is_some(), targets.is_some());
    let scope = match (&targets, &spec.selector) {
        (Some(t), _) => Scope::Targets(t.clone()),
        (None, Some(sel)) => Scope::Selector(fields::selector(p, "spec.selector", sel)),
        (None, None) => Scope::Namespace,
    };

    let dry_run = match meta.annotations.as_ref().and_then(|a| a.get(DRY_RUN_ANNOTATION)) {
        None => false,
        Some(v) => fields::parse_bool(v).unwrap_or_else(|| {
            p.error(
                format!("metadata.annotations[{DRY_RUN_ANNOTATION}]"),
                format!("invalid value {v:?}: must be \"true\" or \"false\""),
            );
            false
        }),
    };

    let action = spec.action.unwrap_or_default();
    let rules_missing = spec.rules.as_ref().is_none_or(Vec::is_empty);
    let provider = spec.provider.as_ref().map(|pr| pr.name.clone().unwrap_or_default());
    match action {
        Action::Deny | Action::Custom if rules_missing => p.error(
            "spec.rules",
            format!(
                "{action} action without rules is meaningless as it will never be triggered; \
                 add an empty rule `{{}}` if it should apply to every request"
            ),
        ),
        _ => {}
    }
    match (action, &provider) {
        (Action::Custom, None) => p.error("spec.provider.name", "must be set for the CUSTOM action"),
        (Action::Custom, Some(name)) if name.is_empty() => p.error("spec.provider.name", "must not be empty"),
        (Action::Custom, Some(_)) => {}
        (other, Some(_)) => p.error("spec.provider", format!("must not be set with the {other} action, only CUSTOM")),
        (_, None) => {}
    }

    let waypoint = targets.is_some();
    let ctx = Ctx { config, namespace: &namespace, waypoint, action };
    let mut rules = Vec::new();
    let mut tcp_rules = Vec::new();
    let mut any_http = false;
    for (r, rule) in spec.rules.iter().flatten().enumerate() {
        let at = format!("spec.rules[{r}]");
        let from = list_entries(p, &format!("{at}.from"), &rule.from, "source", |p, f, e| {
            e.source.as_ref().map(|s| source(p, f, s, &ctx))
        });
        let to = list_entries(p, &format!("{at}.to"), &rule.to, "operation", |p, f, e| {
            e.operation.as_ref().map(|o| operation(p, f, o, &ctx))
        });
        if rule.when.as_ref().is_some_and(Vec::is_empty) {
            p.error(format!("{at}.when"), "must not be empty; omit `when` to match any");
        }
        let mut when = Vec::new();
        for (i, c) in rule.when.iter().flatten().enumerate() {
            when.extend(condition(p, &format!("{at}.when[{i}]"), c, &ctx));
        }
        if waypoint {
            any_http |= from.iter().chain(&to).flatten().chain(&when).any(|f| f.http);
            tcp_rules.push(lower_tcp(from.clone(), to.clone(), when.clone(), action));
        }
        rules.push(lower(p, &at, from, to, when, &ctx));
    }
    let tcp_rules = any_http.then_some(tcp_rules);

    if !waypoint && matches!(action, Action::Audit | Action::Custom) {
        p.warn(
            "ztunnel-action-unsupported",
            "spec.action",
            format!(
                "ztunnel does not support the {action} action: without targetRefs to a waypoint this policy \
                 has no effect"
            ),
        );
    }

    if !p.errors.is_empty() {
        return None;
    }
    Some(CompiledPolicy { id, action, provider: provider.map(Into::into), dry_run, scope, rules, tcp_rules })
}

/// `from` / `to`: a present list must be non-empty and each entry must hold a non-empty source / operation.
fn list_entries<E>(
    p: &mut Problems,
    field: &str,
    list: &Option<Vec<E>>,
    inner: &str,
    mut each: impl FnMut(&mut Problems, &str, &E) -> Option<Vec<Field>>,
) -> Vec<Vec<Field>> {
    let Some(list) = list else { return Vec::new() };
    if list.is_empty() {
        p.error(field, format!("must not be empty; omit `{}` to match any", field.rsplit('.').next().unwrap_or("")));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        let at = format!("{field}[{i}].{inner}");
        match each(p, &at, e) {
            None => p.error(at, "must be set"),
            Some(fields) if fields.is_empty() => p.error(at, "must not be empty"),
            Some(fields) => out.push(fields),
        }
    }
    out
}

fn constraint(test: Test, negated: bool, values: &[String]) -> Constraint {
    Constraint { test, negated, values: values.iter().map(|v| v.as_str().into()).collect() }
}

/// Principals as the enforcement point compares them.
///
/// At a waypoint, istiod rewrites the trust domain of a principal `td/ns/N/sa/S`: `cluster.local`, or a trust
/// domain of the mesh, stands for every trust domain of the mesh (the local one and its aliases); a wildcard
/// trust domain (`*new`, `td-*`) that matches one of them is expanded the same way and also kept as written;
/// `*` alone and anything else are kept as written. ztunnel compares principals verbatim.
fn principal_matches(values: &[String], ctx: &Ctx<'_>) -> Vec<StringMatch> {
    let mut out = Vec::with_capacity(values.len());
    // Hashing keeps de-duplication linear in the number of values.
    let mut seen = FxHashSet::default();
    let mut push = |m: StringMatch| {
        if seen.insert(m.clone()) {
            out.push(m);
        }
    };
    for v in values {
        let parts: Vec<&str> = v.split('/').collect();
        let td = parts[0];
        let in_bundle = if td.contains('*') {
            td != "*" && ctx.config.trust_domains().any(|d| StringMatch::parse(td).matches(d))
        } else {
            td == "cluster.local" || ctx.config.trust_domains().any(|d| d == td)
        };
        if !(ctx.waypoint && parts.len() == 5 && in_bundle) {
            push(StringMatch::parse(v));
            continue;
        }
        if td.contains('*') {
            push(StringMatch::parse(v));
        }
        let rest = &v[td.len()..];
        for domain in ctx.config.trust_domains() {
            push(StringMatch::parse(&format!("{domain}{rest}")));
        }
    }
    out
}

/// Trust domain values checked as istiod's webhook does: at most one `*`, at the start or the end
/// (`CheckWildcardValues` in `pkg/config/security/security.go`), and for `trustDomains` / `notTrustDomains`
/// no `/` (`CheckTrustDomainValues`). istiod's matcher (`srcTrustDomainGenerator`) would read a `*` elsewhere
/// as a glob, which the webhook keeps from ever happening.
fn trust_domain_values(p: &mut Problems, field: &str, values: &[String], no_slash: bool) {
    for (i, v) in values.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let stars = v.matches('*').count();
        if stars > 1 {
            p.error(at, format!("at most one wildcard is allowed: {:?}", fields::Short(v)));
        } else if stars == 1 && v != "*" && !v.starts_with('*') && !v.ends_with('*') {
            p.error(at, format!("wildcard is only allowed at the start or end: {:?}", fields::Short(v)));
        } else if no_slash && v.contains('/') {
            p.error(at, format!("trust domain must not contain '/': {:?}", fields::Short(v)));
        }
    }
}

/// Trust domains as the enforcement point compares them: at a waypoint, the mesh's trust domain (or
/// `cluster.local`, or an alias) stands for every trust domain of the mesh, as for principals.
fn trust_domain_matches(values: &[String], ctx: &Ctx<'_>) -> Vec<StringMatch> {
    let mut out: Vec<StringMatch> = Vec::new();
    for v in values {
        let ours = v == "cluster.local" || ctx.config.trust_domains().any(|d| d == v);
        let expanded: Vec<StringMatch> = if ctx.waypoint && ours {
            ctx.config.trust_domains().map(StringMatch::parse).collect()
        } else {
            vec![StringMatch::parse(v)]
        };
        for m in expanded {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

fn namespace_test(values: &[String], ctx: &Ctx<'_>) -> Test {
    if ctx.waypoint {
        Test::NamespaceGlob(values.iter().map(|v| Glob::new(v)).collect())
    } else {
        Test::Namespace(values.iter().map(|v| StringMatch::parse(v)).collect())
    }
}

/// Values istiod matches with `StringMatcherWithPrefix` / `StringOrMatcher` (`*` is the regex `.+`).
fn strings(values: &[String]) -> Vec<StringMatch> {
    values.iter().map(|v| StringMatch::parse(v)).collect()
}

/// Values istiod matches with `HeaderMatcher` (`*` is Envoy's `present_match`).
fn header_values(values: &[String]) -> Vec<StringMatch> {
    values.iter().map(|v| StringMatch::parse_header(v)).collect()
}

fn source(p: &mut Problems, at: &str, s: &Source, ctx: &Ctx<'_>) -> Vec<Field> {
    let mut out = Vec::new();
    let has_sa = s.service_accounts.is_some() || s.not_service_accounts.is_some();
    let has_id =
        s.principals.is_some() || s.not_principals.is_some() || s.namespaces.is_some() || s.not_namespaces.is_some();
    if has_sa && has_id {
        p.error(at, "cannot set serviceAccounts with namespaces or principals");
    }
    if ctx.action == Action::Custom {
        for (name, set) in [
            ("principals", s.principals.is_some()),
            ("notPrincipals", s.not_principals.is_some()),
            ("requestPrincipals", s.request_principals.is_some()),
            ("notRequestPrincipals", s.not_request_principals.is_some()),
            ("namespaces", s.namespaces.is_some()),
            ("notNamespaces", s.not_namespaces.is_some()),
            ("serviceAccounts", s.service_accounts.is_some()),
            ("notServiceAccounts", s.not_service_accounts.is_some()),
        ] {
            if set {
                p.error(format!("{at}.{name}"), "is currently not supported with the CUSTOM action");
            }
        }
    }
    let mut add = |name: &'static str, http: bool, negated: bool, list: &Option<Vec<String>>, p: &mut Problems| {
        let field = format!("{at}.{name}");
        let vals = fields::values(p, &field, list)?;
        if matches!(name, "principals" | "notPrincipals")
            || (!ctx.waypoint && matches!(name, "namespaces" | "notNamespaces"))
        {
            fields::middle_wildcards(p, &field, vals);
        }
        let test = match name {
            "principals" | "notPrincipals" => Test::Principal(principal_matches(vals, ctx)),
            "requestPrincipals" | "notRequestPrincipals" => {
                Test::RequestPrincipal(vals.iter().map(|v| RequestPrincipalMatch::parse(v)).collect())
            }
            "namespaces" | "notNamespaces" => namespace_test(vals, ctx),
            "serviceAccounts" | "notServiceAccounts" => {
                Test::ServiceAccount(fields::service_accounts(p, &field, vals, ctx.namespace))
            }
            "ipBlocks" | "notIpBlocks" => Test::SourceIp(fields::ip_nets(p, &field, vals)),
            "trustDomains" | "notTrustDomains" => {
                trust_domain_values(p, &field, vals, true);
                Test::TrustDomain(trust_domain_matches(vals, ctx))
            }
            _ => Test::RemoteIp(fields::ip_nets(p, &field, vals)),
        };
        let l7 = http || matches!(name, "trustDomains" | "notTrustDomains");
        out.push(Field { name, http, l7, constraint: constraint(test, negated, vals) });
        Some(())
    };
    add("principals", false, false, &s.principals, p);
    add("notPrincipals", false, true, &s.not_principals, p);
    add("requestPrincipals", true, false, &s.request_principals, p);
    add("notRequestPrincipals", true, true, &s.not_request_principals, p);
    add("namespaces", false, false, &s.namespaces, p);
    add("notNamespaces", false, true, &s.not_namespaces, p);
    add("serviceAccounts", false, false, &s.service_accounts, p);
    add("notServiceAccounts", false, true, &s.not_service_accounts, p);
    add("ipBlocks", false, false, &s.ip_blocks, p);
    add("notIpBlocks", false, true, &s.not_ip_blocks, p);
    add("remoteIpBlocks", true, false, &s.remote_ip_blocks, p);
    add("notRemoteIpBlocks", true, true, &s.not_remote_ip_blocks, p);
    add("trustDomains", false, false, &s.trust_domains, p);
    add("notTrustDomains", false, true, &s.not_trust_domains, p);
    out
}

fn operation(p: &mut Problems, at: &str, o: &Operation, _ctx: &Ctx<'_>) -> Vec<Field> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, http: bool, negated: bool, list: &Option<Vec<String>>, p: &mut Problems| {
        let field = format!("{at}.{name}");
        let vals = fields::values(p, &field, list)?;
        match name {
            "hosts" | "notHosts" => fields::middle_wildcards(p, &field, vals),
            "methods" | "notMethods" => lowercase_methods(p, &field, vals),
            _ => {}
        }
        let test = match name {
            // istiod's hostGenerator (HostMatcher) and methodGenerator (HeaderMatcher): `*` is present_match.
            "hosts" | "notHosts" => Test::Host(vals.iter().map(|v| StringMatch::parse_host(v)).collect()),
            "ports" | "notPorts" => Test::DestinationPort(fields::ports(p, &field, vals)),
            "methods" | "notMethods" => Test::Method(header_values(vals)),
            _ => Test::Path(paths(p, &field, vals)),
        };
        out.push(Field { name, http, l7: http, constraint: constraint(test, negated, vals) });
        Some(())
    };
    add("hosts", true, false, &o.hosts, p);
    add("notHosts", true, true, &o.not_hosts, p);
    add("ports", false, false, &o.ports, p);
    add("notPorts", false, true, &o.not_ports, p);
    add("methods", true, false, &o.methods, p);
    add("notMethods", true, true, &o.not_methods, p);
    add("paths", true, false, &o.paths, p);
    add("notPaths", true, true, &o.not_paths, p);
    out
}

fn paths(p: &mut Problems, field: &str, vals: &[String]) -> Vec<PathMatch> {
    let mut out = Vec::with_capacity(vals.len());
    for (i, v) in vals.iter().enumerate() {
        match PathTemplate::parse(v) {
            Ok(Some(t)) => out.push(PathMatch::Template(t)),
            Ok(None) => {
                fields::middle_wildcard(p, format!("{field}[{i}]"), v);
                out.push(PathMatch::Str(StringMatch::parse(v)))
            }
            Err(e) => p.error(format!("{field}[{i}]"), format!("invalid or unsupported path {v:?}: {e}")),
        }
    }
    out
}

/// HTTP methods are matched as written and sent in upper case: `get` never matches a GET.
fn lowercase_methods(p: &mut Problems, field: &str, vals: &[String]) {
    for (i, v) in vals.iter().enumerate() {
        if v.bytes().any(|b| b.is_ascii_lowercase()) {
            p.warn(
                "method-lowercase",
                format!("{field}[{i}]"),
                format!(
                    "{:?}: methods are matched case-sensitively and requests send them in upper case; write {:?}",
                    fields::Short(v),
                    fields::Short(&v.to_ascii_uppercase())
                ),
            );
        }
    }
}

/// The bracketed names of a map key: `request.auth.claims[a][b]` gives `[a, b]`.
fn map_key<'a>(key: &'a str, prefix: &str) -> Option<Vec<&'a str>> {
    let mut rest = key.strip_prefix(prefix)?;
    let mut names = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        let name = &inner[..end];
        if name.is_empty() || name.contains('[') {
            return None;
        }
        names.push(name);
        rest = &inner[end + 1..];
    }
    (!names.is_empty()).then_some(names)
}

fn condition(p: &mut Problems, at: &str, c: &crate::crd::Condition, ctx: &Ctx<'_>) -> Vec<Field> {
    let key = c.key.as_deref().unwrap_or("");
    if key.is_empty() {
        p.error(format!("{at}.key"), "must not be empty");
        return Vec::new();
    }
    let values = fields::values(p, &format!("{at}.values"), &c.values);
    let not_values = fields::values(p, &format!("{at}.notValues"), &c.not_values);
    if c.values.is_none() && c.not_values.is_none() {
        p.error(at, format!("at least one of `values` or `notValues` must be set for key {key}"));
        return Vec::new();
    }
    if ctx.action == Action::Custom
        && (matches!(key, "source.namespace" | "source.serviceAccount" | "source.principal")
            || key.starts_with("request.auth."))
    {
        p.error(format!("{at}.key"), format!("{key} is currently not supported with the CUSTOM action"));
    }
    let bad_map_key =
        |p: &mut Problems| p.error(format!("{at}.key"), format!("bad key ({key}): should have format a[b]"));
    // (http, builder of the test for one value list)
    type Build<'b> = Box<dyn Fn(&mut Problems, &str, &[String]) -> Test + 'b>;
    let (http, build): (bool, Build<'_>) = match key {
        "source.ip" => (false, Box::new(|p, f, v| Test::SourceIp(fields::ip_nets(p, f, v)))),
        "remote.ip" => (true, Box::new(|p, f, v| Test::RemoteIp(fields::ip_nets(p, f, v)))),
        "destination.ip" => (false, Box::new(|p, f, v| Test::DestinationIp(fields::ip_nets(p, f, v)))),
        "destination.port" => (false, Box::new(|p, f, v| Test::DestinationPort(fields::ports(p, f, v)))),
        "source.namespace" => (
            false,
            Box::new(|p, f, v| {
                if !ctx.waypoint {
                    fields::middle_wildcards(p, f, v);
                }
                namespace_test(v, ctx)
            }),
        ),
        "source.principal" => (
            false,
            Box::new(|p, f, v| {
                fields::middle_wildcards(p, f, v);
                Test::Principal(principal_matches(v, ctx))
            }),
        ),
        "source.trustDomain" => (
            false,
            Box::new(|p, f, v| {
                trust_domain_values(p, f, v, false);
                Test::TrustDomain(trust_domain_matches(v, ctx))
            }),
        ),
        "source.serviceAccount" => {
            (true, Box::new(|p, f, v| Test::ServiceAccount(fields::service_accounts(p, f, v, ctx.namespace))))
        }
        "request.auth.principal" => (
            true,
            Box::new(|_, _, v| Test::RequestPrincipal(v.iter().map(|s| RequestPrincipalMatch::parse(s)).collect())),
        ),
        "request.auth.audiences" => (true, Box::new(|_, _, v| Test::Audience(strings(v)))),
        "request.auth.presenter" => (true, Box::new(|_, _, v| Test::Presenter(strings(v)))),
        "connection.sni" => (true, Box::new(|_, _, v| Test::Sni(strings(v)))),
        k if k.starts_with("request.headers") || k.starts_with("request.experimental.inline.headers") => {
            let prefix = if k.starts_with("request.headers") {
                "request.headers"
            } else {
                "request.experimental.inline.headers"
            };
            match map_key(k, prefix) {
                Some(names) if names.len() == 1 => {
                    let name: Box<str> = names[0].to_ascii_lowercase().into();
                    // istiod's requestHeaderGenerator (HeaderMatcher): `*` is present_match.
                    (true, Box::new(move |_, _, v| Test::Header(name.clone(), header_values(v))))
                }
                _ => {
                    bad_map_key(p);
                    return Vec::new();
                }
            }
        }
        k if k.starts_with("request.auth.claims") => match map_key(k, "request.auth.claims") {
            Some(names) => {
                let path: Vec<Box<str>> = names.into_iter().map(Into::into).collect();
                (true, Box::new(move |_, _, v| Test::Claim(path.clone(), strings(v))))
            }
            None => {
                bad_map_key(p);
                return Vec::new();
            }
        },
        k if k.starts_with("experimental.envoy.filters.") => {
            if !k.ends_with(']') || !k.contains('[') {
                bad_map_key(p);
                return Vec::new();
            }
            let outcome = matches!(ctx.action, Action::Deny | Action::Custom);
            let key: Box<str> = k.into();
            (true, Box::new(move |_, _, _| Test::Fixed(outcome, key.clone())))
        }
        "destination.namespace" => {
            p.error(format!("{at}.key"), "attribute destination.namespace is replaced by the metadata.namespace");
            return Vec::new();
        }
        k if k.starts_with("destination.labels") => {
            p.error(format!("{at}.key"), format!("attribute {k} is replaced by the workload selector"));
            return Vec::new();
        }
        "destination.name" | "destination.user" => {
            p.error(format!("{at}.key"), format!("deprecated attribute {key}: only supported in v1alpha1"));
            return Vec::new();
        }
        _ => {
            p.error(format!("{at}.key"), format!("unknown attribute: {key}"));
            return Vec::new();
        }
    };
    // `values` and `notValues` together: both must hold, as two fields of the rule.
    let l7 = http || key == "source.trustDomain";
    let name = if l7 { "HTTP `when` keys" } else { "`when` keys" };
    let name = if key == "source.trustDomain" { "source.trustDomain" } else { name };
    let mut out = Vec::with_capacity(2);
    if let Some(v) = values {
        out.push(Field { name, http, l7, constraint: constraint(build(p, &format!("{at}.values"), v), false, v) });
    }
    if let Some(v) = not_values {
        out.push(Field { name, http, l7, constraint: constraint(build(p, &format!("{at}.notValues"), v), true, v) });
    }
    out
}

/// A waypoint rule as Envoy's network RBAC filter evaluates it on a plain TCP connection, where no HTTP
/// attribute exists: an ALLOW (or AUDIT) rule that uses one never matches; a DENY (or CUSTOM) rule matches
/// without them (an entry left with nothing matches any connection), which denies more, never less.
fn lower_tcp(from: Vec<Vec<Field>>, to: Vec<Vec<Field>>, when: Vec<Field>, action: Action) -> CompiledRule {
    let mut dropped: Vec<&'static str> =
        from.iter().chain(&to).flatten().chain(&when).filter(|f| f.http).map(|f| f.name).collect();
    dropped.sort_unstable();
    dropped.dedup();
    let dropped_where = "on a TCP connection";
    if dropped.is_empty() {
        let take = |es: Vec<Vec<Field>>| {
            es.into_iter().map(|e| Entry { constraints: e.into_iter().map(|f| f.constraint).collect() }).collect()
        };
        return CompiledRule {
            from: take(from),
            to: take(to),
            when: when.into_iter().map(|f| f.constraint).collect(),
            ..CompiledRule::default()
        };
    }
    if !matches!(action, Action::Deny | Action::Custom) {
        return CompiledRule { inert: Some(Inert::HttpInAllow), dropped, dropped_where, ..CompiledRule::default() };
    }
    // Any entry left empty matches every connection, and so does its whole list.
    let strip = |es: Vec<Vec<Field>>| -> Vec<Entry> {
        let es: Vec<Entry> = es
            .into_iter()
            .map(|e| Entry { constraints: e.into_iter().filter(|f| !f.http).map(|f| f.constraint).collect() })
            .collect();
        if es.iter().any(|e| e.constraints.is_empty()) { Vec::new() } else { es }
    };
    CompiledRule {
        from: strip(from),
        to: strip(to),
        when: when.into_iter().filter(|f| !f.http).map(|f| f.constraint).collect(),
        inert: None,
        dropped,
        dropped_where,
    }
}

/// Lowers a validated rule to its enforcement point.
fn lower(
    p: &mut Problems,
    at: &str,
    from: Vec<Vec<Field>>,
    to: Vec<Vec<Field>>,
    when: Vec<Field>,
    ctx: &Ctx<'_>,
) -> CompiledRule {
    let take = |entries: Vec<Vec<Field>>| -> Vec<Entry> {
        entries.into_iter().map(|e| Entry { constraints: e.into_iter().map(|f| f.constraint).collect() }).collect()
    };
    // What ztunnel cannot see; nothing to lower at a waypoint.
    let http_fields: Vec<&'static str> = if ctx.waypoint {
        Vec::new()
    } else {
        let mut names: Vec<&'static str> =
            from.iter().chain(&to).flatten().chain(&when).filter(|f| f.l7).map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    if http_fields.is_empty() {
        return CompiledRule {
            from: take(from),
            to: take(to),
            when: when.into_iter().map(|f| f.constraint).collect(),
            inert: None,
            dropped: Vec::new(),
            dropped_where: "",
        };
    }
    let list = http_fields.join(", ");
    // Trust domains are not HTTP attributes, but ztunnel's authorization does not carry them either.
    let what = if http_fields.iter().any(|f| f.contains("rustDomain")) { "attributes" } else { "HTTP attributes" };
    if ctx.action != Action::Deny {
        if ctx.action == Action::Allow {
            p.warn(
                "ztunnel-allow-never-matches",
                at,
                format!(
                    "uses {what} ({list}) that ztunnel cannot see: this ALLOW rule never matches there; \
                     attach the policy to a waypoint with targetRefs to enforce it"
                ),
            );
        }
        return CompiledRule { inert: Some(Inert::HttpInAllow), dropped: http_fields, ..CompiledRule::default() };
    }
    let strip = |entries: Vec<Vec<Field>>| -> Vec<Entry> {
        entries
            .into_iter()
            .map(|e| Entry { constraints: e.into_iter().filter(|f| !f.l7).map(|f| f.constraint).collect() })
            .collect()
    };
    let from = strip(from);
    let to = strip(to);
    let http_when = when.iter().any(|f| f.l7);
    let all_empty = |es: &[Entry]| !es.is_empty() && es.iter().all(|e| e.constraints.is_empty());
    let inert = http_when || all_empty(&from) || all_empty(&to);
    if inert {
        p.warn(
            "ztunnel-deny-not-enforced",
            at,
            format!(
                "after leaving out the {what} ztunnel cannot see ({list}), this DENY rule has no \
                 enforceable part and is not enforced at ztunnel; attach the policy to a waypoint with \
                 targetRefs to enforce it"
            ),
        );
    } else {
        p.warn(
            "ztunnel-deny-http-dropped",
            at,
            format!(
                "{what} ({list}) are not enforced at ztunnel: this DENY rule applies to all traffic its \
                 other fields match"
            ),
        );
    }
    CompiledRule {
        from,
        to,
        when: when.into_iter().filter(|f| !f.l7).map(|f| f.constraint).collect(),
        inert: inert.then_some(Inert::HttpOnlyDeny),
        dropped: http_fields,
        dropped_where: "at ztunnel",
    }
}
