//! [`Snapshot`]: one immutable, shareable state of a mesh's configuration, and the checks against it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::cluster::{Cluster, ClusterObject, WorkloadId};
use crate::config::MeshConfig;
use mesh_identity::jwt::VerifiedToken;

use crate::crd::Action;
use crate::decision::{Decision, JwtRejection, Reason, TokenForwarding};
use crate::error::{FieldError, RequestError};
use crate::eval::authentication::{Authenticators, JwksDocuments};
use crate::eval::{self, attributes::Attributes, attributes::Token};
use crate::index::Index;
use crate::mesh::Warning;
use crate::model::peer_authentication::{self, CompiledPeerAuthentication, EffectiveMtls};
use crate::model::policy::PolicyRef;
use crate::model::request_authentication::CompiledRequestAuthentication;
use crate::proxy::{Connection, Request, Target};
use crate::request::{CheckRequest, Destination, Enforcement};
use crate::resource::ResourceId;

/// The resources a snapshot is built from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resources {
    pub(crate) policies: BTreeMap<ResourceId, PolicyRef>,
    pub(crate) peers: BTreeMap<ResourceId, Arc<CompiledPeerAuthentication>>,
    pub(crate) request_auths: BTreeMap<ResourceId, Arc<CompiledRequestAuthentication>>,
    pub(crate) cluster: BTreeMap<ResourceId, Arc<ClusterObject>>,
    pub(crate) warnings: BTreeMap<ResourceId, Vec<Warning>>,
    pub(crate) jwks: JwksDocuments,
}

/// One state of a mesh's configuration: compiled policies, their index, the cluster model and the JWT
/// validators, immutable and shareable across threads.
///
/// A proxy holds an `Arc<Snapshot>`, checks every request against it, and swaps in the next one when the
/// configuration changes; checks in flight finish against the snapshot they started with. Each snapshot has a
/// generation number, one more than the snapshot it replaced.
#[derive(Debug)]
pub struct Snapshot {
    generation: u64,
    config: MeshConfig,
    resources: Resources,
    authenticators: Authenticators,
    index: Arc<Index>,
    /// The index with dry-run policies enforced too, when there are any: for the shadow decision.
    shadow: Option<Arc<Index>>,
    cluster: Arc<Cluster>,
    /// For each workload of the cluster model, the policies ztunnel enforces for it, resolved once.
    workloads: Arc<Vec<eval::WorkloadPolicies>>,
}

/// Whether two maps hold the same objects under the same ids (the objects compared by address: a resource
/// recompiled counts as changed).
fn same_objects<T>(a: &BTreeMap<ResourceId, Arc<T>>, b: &BTreeMap<ResourceId, Arc<T>>) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && Arc::ptr_eq(va, vb))
}

impl Snapshot {
    pub(crate) fn build(
        generation: u64,
        config: MeshConfig,
        resources: Resources,
        previous: Option<&Snapshot>,
    ) -> Self {
        let authenticators = Authenticators::build(
            resources.request_auths.values(),
            &resources.jwks,
            previous.map(|p| &p.authenticators),
        );
        let index_of = |with_dry_run| {
            Index::build(
                &config.root_namespace,
                &config.waypoint_gateway_class,
                resources.policies.values(),
                resources.peers.values(),
                resources.request_auths.values(),
                with_dry_run,
            )
        };
        // What did not change is taken over from the previous snapshot: the index when no security resource
        // changed, the cluster model when no cluster object did, and a workload's resolved policies when
        // neither the index nor what the workload is matched by changed.
        let previous = previous.filter(|p| p.config == config);
        let security_unchanged = previous.filter(|p| {
            same_objects(&p.resources.policies, &resources.policies)
                && same_objects(&p.resources.peers, &resources.peers)
                && same_objects(&p.resources.request_auths, &resources.request_auths)
        });
        let (index, shadow) = match security_unchanged {
            Some(p) => (Arc::clone(&p.index), p.shadow.clone()),
            None => (
                Arc::new(index_of(false)),
                resources.policies.values().any(|p| p.dry_run).then(|| Arc::new(index_of(true))),
            ),
        };
        let cluster_unchanged = previous.filter(|p| same_objects(&p.resources.cluster, &resources.cluster));
        let cluster = match cluster_unchanged {
            Some(p) => Arc::clone(&p.cluster),
            None => Arc::new(Cluster::build(resources.cluster.values().map(|o| &**o), &config)),
        };
        let workloads = match (security_unchanged, cluster_unchanged) {
            (Some(p), Some(_)) => Arc::clone(&p.workloads),
            (reuse, _) => {
                let before: rustc_hash::FxHashMap<&ResourceId, WorkloadId> =
                    reuse.map(|p| p.cluster.workloads().map(|(id, w)| (&w.id, id)).collect()).unwrap_or_default();
                let resolved = cluster.workloads().map(|(_, w)| {
                    let earlier = reuse.and_then(|p| {
                        let id = *before.get(&w.id)?;
                        let old = p.cluster.workload(id)?;
                        let same = old.namespace() == w.namespace()
                            && old.labels == w.labels
                            && old.authorization_policies == w.authorization_policies;
                        same.then(|| p.workloads.get(id.0)).flatten()
                    });
                    if let Some(earlier) = earlier {
                        return earlier.clone();
                    }
                    let mut resolved = eval::WorkloadPolicies::resolve(&index, &Target::new(w.namespace(), &w.labels));
                    if !w.authorization_policies.is_empty() {
                        resolved.add_listed(&w.authorization_policies, &resources.policies);
                    }
                    resolved
                });
                Arc::new(resolved.collect())
            }
        };
        Snapshot { generation, config, resources, authenticators, index, shadow, cluster, workloads }
    }

    pub(crate) fn sources(&self) -> &Resources {
        &self.resources
    }

    /// The generation: 0 for an empty mesh, one more at each change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The settings.
    pub fn config(&self) -> &MeshConfig {
        &self.config
    }

    /// The cluster model.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The id of every applied resource, security kinds first, in order.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceId> {
        let r = &self.resources;
        r.policies.keys().chain(r.request_auths.keys()).chain(r.peers.keys()).chain(r.cluster.keys())
    }

    /// Every applied AuthorizationPolicy, compiled, by id.
    pub(crate) fn authorization_policies(&self) -> impl Iterator<Item = &PolicyRef> {
        self.resources.policies.values()
    }

    /// Every applied RequestAuthentication, compiled.
    pub(crate) fn request_authentications(&self) -> impl Iterator<Item = &Arc<CompiledRequestAuthentication>> {
        self.resources.request_auths.values()
    }

    /// The warnings each applied resource got when it was applied.
    pub fn apply_warnings(&self) -> impl Iterator<Item = &Warning> {
        self.resources.warnings.values().flatten()
    }

    /// How many resources are applied, cluster objects included.
    pub fn len(&self) -> usize {
        let r = &self.resources;
        r.policies.len() + r.peers.len() + r.request_auths.len() + r.cluster.len()
    }

    /// Whether nothing is applied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Findings about the configuration as a whole, most severe first: each with a stable code, the resources
    /// involved, a message and a fix.
    pub fn analyze(&self) -> Vec<crate::analyze::Finding> {
        crate::analyze::analyze(self)
    }

    /// The policies ztunnel enforces for a target, in evaluation order.
    pub(crate) fn ztunnel_policies(&self, target: &Target<'_>) -> Vec<&PolicyRef> {
        let mut out = Vec::new();
        self.index.for_each_ztunnel(target, |p| out.push(p));
        out
    }

    /// The effective mTLS mode ztunnel applies to plaintext arriving at a workload port.
    pub fn effective_mtls(&self, destination: &Destination) -> EffectiveMtls {
        let [mesh, ns, workload] = self.index.peer_authentications(&Target::from(destination));
        peer_authentication::resolve(mesh, ns, workload, destination.port)
    }

    /// Checks a request at its enforcement point, with no clock: a raw token carrying `exp` or `nbf` is rejected
    /// because its validity cannot be decided. Use [`Snapshot::check_at`] when requests carry raw tokens.
    pub fn check(&self, req: &CheckRequest) -> Result<Decision, RequestError> {
        self.check_inner(req, req.enforcement_point(), None)
    }

    /// Checks a request at its enforcement point at `now` (Unix seconds), the time raw tokens are validated at.
    pub fn check_at(&self, req: &CheckRequest, now: u64) -> Result<Decision, RequestError> {
        self.check_inner(req, req.enforcement_point(), Some(now))
    }

    /// Checks a connection at the destination's ztunnel (L4), whatever else the request carries.
    pub fn check_ztunnel(&self, req: &CheckRequest) -> Result<Decision, RequestError> {
        self.check_inner(req, Enforcement::Ztunnel, None)
    }

    /// Checks a request at the waypoint (L7) at `now` (Unix seconds, for raw tokens); `http` must be set.
    pub fn check_waypoint(&self, req: &CheckRequest, now: u64) -> Result<Decision, RequestError> {
        self.check_inner(req, Enforcement::Waypoint, Some(now))
    }

    /// Checks a plain TCP connection at the waypoint (a service the waypoint proxies at L4): the same policies,
    /// as Envoy's network RBAC filter reads them (an ALLOW rule with HTTP attributes never matches; a DENY rule
    /// matches without them). A denial has no HTTP status: the connection is closed.
    pub fn check_waypoint_tcp(&self, req: &CheckRequest) -> Result<Decision, RequestError> {
        let target = crate::named::target(&self.cluster, self.generation, &req.destination, Enforcement::Waypoint)?;
        if target.namespace.is_empty() {
            return Err(RequestError(FieldError::new("destination.namespace", "must be set")));
        }
        let attrs = Attributes::new(req, false, self.config.path_normalization, None)?;
        Ok(self.tcp_waypoint_decision(&target, &attrs))
    }

    /// The target of a connection to a workload of the cluster model, on `port`: its namespace, labels and
    /// address, with the policies this snapshot resolved for it, so that [`Snapshot::authorize_connection`]
    /// does not look them up again.
    pub fn workload_target(&self, id: WorkloadId, port: u16) -> Option<Target<'_>> {
        let w = self.cluster.workload(id)?;
        let mut target = Target::new(w.namespace(), &w.labels).with_port(port);
        target.ip = w.ips.first().copied();
        target.resolved = Some((self.generation, id));
        Some(target)
    }

    /// The destination ztunnel's decision for a proxy's connection. A connection with no peer identity is
    /// plaintext, and PeerAuthentication applies to it first; [`Snapshot::authorize_plaintext`] is the call for
    /// one, which also requires the source address and the workload port that decision depends on.
    pub fn authorize_connection(&self, connection: &Connection<'_>) -> Decision {
        // A proxy's connection has no field that can be malformed.
        match Attributes::proxy(connection, None, None) {
            Ok(attrs) => self.ztunnel_decision(&connection.target, &attrs),
            Err(e) => Decision::new(false, Action::Deny, Reason::Text(e.to_string()), Enforcement::Ztunnel),
        }
    }

    /// The destination ztunnel's decision for a plaintext connection from `source_ip` to the workload port of
    /// `target`: one that did not arrive over HBONE, so has no peer identity (inbound plaintext, redirected to
    /// ztunnel's port 15006). PeerAuthentication first, then L4 AuthorizationPolicy, as Istio's ztunnel decides.
    ///
    /// - The effective mTLS mode of the workload port is resolved as [`Snapshot::effective_mtls`] does: mesh,
    ///   then namespace, then workload PeerAuthentication, then the workload policy's `portLevelMtls` entry for
    ///   the port, each level that is not `UNSET` overriding the one above (`PERMISSIVE` when none is set).
    /// - `STRICT` refuses the connection before any AuthorizationPolicy is read: the decision is a denial whose
    ///   [`Decision::policy`] is the PeerAuthentication that made the port STRICT, with the reason
    ///   [`Reason::StrictMtls`] (saying whether a `portLevelMtls` entry did).
    /// - `PERMISSIVE` and `DISABLE` accept plaintext: the L4 AuthorizationPolicies of the workload decide, with
    ///   no peer identity (a rule on `principals` or `namespaces` does not match) and `source_ip` for
    ///   `ipBlocks`; the decision names the deciding policy and rule.
    ///
    /// Build `target` with [`Snapshot::workload_target`], which carries the workload's namespace, labels,
    /// address and the port, and the policies this snapshot resolved for it. A target without a port is
    /// refused: the mTLS mode of a workload depends on the port.
    ///
    /// ```
    /// use mesh_policy::Mesh;
    ///
    /// let mut mesh = Mesh::default();
    /// mesh.apply_yaml(r#"
    /// apiVersion: v1
    /// kind: Pod
    /// metadata: {name: ledger-0, namespace: payments, labels: {app: ledger}}
    /// status: {podIP: 10.0.0.7}
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: ledger, namespace: payments}
    /// spec:
    ///   selector: {matchLabels: {app: ledger}}
    ///   mtls: {mode: STRICT}
    ///   portLevelMtls: {"9090": {mode: PERMISSIVE}}
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: scrapers, namespace: payments}
    /// spec:
    ///   selector: {matchLabels: {app: ledger}}
    ///   rules: [{from: [{source: {ipBlocks: ["10.0.9.0/24"]}}], to: [{operation: {ports: ["9090"]}}]}]
    /// "#)?;
    /// let snapshot = mesh.snapshot();
    /// let ledger = snapshot.cluster().workload_by_ip("10.0.0.7".parse()?).ok_or("no ledger")?;
    /// let scraper = "10.0.9.1".parse()?;
    ///
    /// // STRICT refuses plaintext, whatever the AuthorizationPolicies say.
    /// let target = snapshot.workload_target(ledger, 8080).ok_or("no ledger")?;
    /// let refused = snapshot.authorize_plaintext(&target, scraper);
    /// assert!(!refused.allowed);
    /// assert_eq!(refused.policy.as_deref(), Some("payments/ledger"));
    /// assert_eq!(refused.reason.to_string(), "PeerAuthentication STRICT rejects plaintext (set by payments/ledger)");
    ///
    /// // The metrics port is PERMISSIVE: the L4 AuthorizationPolicy decides.
    /// let metrics = snapshot.workload_target(ledger, 9090).ok_or("no ledger")?;
    /// let allowed = snapshot.authorize_plaintext(&metrics, scraper);
    /// assert!(allowed.allowed, "{allowed}");
    /// assert_eq!((allowed.policy.as_deref(), allowed.rule), (Some("payments/scrapers"), Some(0)));
    /// assert!(!snapshot.authorize_plaintext(&metrics, "10.0.0.8".parse()?).allowed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn authorize_plaintext(&self, target: &Target<'_>, source_ip: IpAddr) -> Decision {
        if target.port.is_none() {
            let why = "a plaintext connection's workload port is not set, so its mTLS mode cannot be resolved";
            return Decision::new(false, Action::Deny, Reason::Text(why.to_owned()), Enforcement::Ztunnel);
        }
        // With no peer, the ztunnel decision resolves PeerAuthentication before it reads any policy.
        self.authorize_connection(&Connection::new(*target).with_source_ip(source_ip))
    }

    /// The waypoint's decision for a plain TCP connection it proxies (see [`Snapshot::check_waypoint_tcp`]).
    pub fn authorize_tcp_at_waypoint(&self, connection: &Connection<'_>) -> Decision {
        if let Err(e) = self.known_names(&connection.target) {
            return Decision::new(false, Action::Deny, Reason::Text(e.to_string()), Enforcement::Waypoint);
        }
        match Attributes::proxy(connection, None, None) {
            Ok(attrs) => self.tcp_waypoint_decision(&connection.target, &attrs),
            Err(e) => Decision::new(false, Action::Deny, Reason::Text(e.to_string()), Enforcement::Waypoint),
        }
    }

    /// Every `jwksUri` the applied RequestAuthentications name for rules without an inline `jwks`: the documents a
    /// proxy fetches and supplies with [`Mesh::add_jwks`](crate::Mesh::add_jwks). Sorted, without duplicates.
    pub fn jwks_uris(&self) -> std::collections::BTreeSet<&str> {
        self.resources
            .request_auths
            .values()
            .flat_map(|ra| ra.rules.iter())
            .filter(|r| r.jwks.is_none())
            .filter_map(|r| r.jwks_uri.as_deref())
            .collect()
    }

    /// The resources a waypoint applies to requests for `target` (which names the waypoint with
    /// [`Target::with_waypoint`]): the RequestAuthentications first, then the AuthorizationPolicies in
    /// evaluation order. For a proxy's view of what it enforces.
    pub fn waypoint_resources(&self, target: &Target<'_>) -> Vec<ResourceId> {
        let target = Target { resolved: None, ..*target };
        let mut out: Vec<ResourceId> = self.index.request_authentications(&target).map(|ra| ra.id.clone()).collect();
        self.index.for_each_waypoint(&target, |p| out.push(p.id.clone()));
        out
    }

    /// The waypoint's decision for a proxy's HTTP request: RequestAuthentication (tokens validated at `now`,
    /// Unix seconds, and borrowed from the verified-token cache), then AuthorizationPolicy. A request whose path
    /// does not start with `/` is an error.
    pub fn authorize_request(&self, request: &Request<'_>, now: u64) -> Result<Decision, RequestError> {
        let target = &request.connection.target;
        self.known_names(target).map_err(RequestError)?;
        let headers = HeaderPairs(request.http.headers);
        let (verified, forwarding) = match self.authenticate(target, headers, request.http.path, Some(now)) {
            Ok(Some((token, forwarding))) => (Some(token), Some(forwarding)),
            Ok(None) => (None, None),
            Err(rejection) => return Ok(rejected(rejection)),
        };
        let token = verified.as_deref().map(Token::Verified);
        let mut attrs = Attributes::proxy(&request.connection, Some((request, self.config.path_normalization)), token)?;
        Ok(self.waypoint_decision(target, &mut attrs, forwarding))
    }

    fn check_inner(&self, req: &CheckRequest, at: Enforcement, now: Option<u64>) -> Result<Decision, RequestError> {
        if req.destination.namespace.is_empty() && req.destination.ip.is_none() {
            return Err(RequestError(FieldError::new("destination.namespace", "must be set")));
        }
        let target = crate::named::target(&self.cluster, self.generation, &req.destination, at)?;
        self.evaluate_for(req, &target, at, now)
    }

    /// Evaluates a request in the shared shape at an enforcement point.
    pub(crate) fn evaluate(
        &self,
        req: &CheckRequest,
        at: Enforcement,
        now: Option<u64>,
    ) -> Result<Decision, RequestError> {
        self.evaluate_for(req, &Target::from(&req.destination), at, now)
    }

    /// Evaluates a request whose destination the cluster model may have completed (`target`; its address and
    /// port are the request's).
    fn evaluate_for(
        &self,
        req: &CheckRequest,
        target: &Target<'_>,
        at: Enforcement,
        now: Option<u64>,
    ) -> Result<Decision, RequestError> {
        if target.namespace.is_empty() {
            return Err(RequestError(FieldError::new("destination.namespace", "must be set")));
        }
        let target = *target;
        match at {
            Enforcement::Ztunnel => {
                let attrs = Attributes::new(req, false, self.config.path_normalization, None)?;
                Ok(self.ztunnel_decision(&target, &attrs))
            }
            Enforcement::Waypoint => {
                let Some(http) = &req.http else {
                    return Err(RequestError(FieldError::new(
                        "http",
                        "must be set for a waypoint check (method and path at least)",
                    )));
                };
                let (verified, forwarding) = match &req.jwt {
                    Some(_) => (None, None),
                    None => {
                        let headers = http.headers.iter();
                        match self.authenticate(&target, headers, &http.path, now) {
                            Ok(Some((token, forwarding))) => (Some(token), Some(forwarding)),
                            Ok(None) => (None, None),
                            Err(rejection) => return Ok(rejected(rejection)),
                        }
                    }
                };
                let token = match (&req.jwt, verified.as_deref()) {
                    (Some(given), _) => Some(Token::Given(given)),
                    (None, Some(t)) => Some(Token::Verified(t)),
                    (None, None) => None,
                };
                let mut attrs = Attributes::new(req, true, self.config.path_normalization, token)?;
                Ok(self.waypoint_decision(&target, &mut attrs, forwarding))
            }
        }
    }

    /// Fails when the manifests define cluster objects but not the Service, ServiceEntry or waypoint Gateway
    /// `target` names: a misspelled name would otherwise find no policy and be allowed. Without cluster
    /// objects (policies alone) every name is taken as given, as a check request's is.
    fn known_names(&self, target: &Target<'_>) -> Result<(), FieldError> {
        if self.cluster.is_empty() {
            return Ok(());
        }
        if let Some((name, kind)) = target.service
            && self.cluster.service_in(target.namespace, name, kind).is_none()
        {
            let kind = match kind {
                crate::request::ServiceKind::Service => crate::resource::Kind::Service,
                crate::request::ServiceKind::ServiceEntry => crate::resource::Kind::ServiceEntry,
            };
            let id = ResourceId::new(kind, target.namespace, name);
            return Err(FieldError::new("destination.service", format!("the manifests define no {id}")));
        }
        // Waypoints are few: a scan, without building an id on the hot path.
        if let Some((namespace, name)) = target.waypoint
            && !self.cluster.waypoints().any(|w| w.id.namespace() == namespace && w.id.name() == name)
        {
            return Err(FieldError::new(
                "destination.waypoint",
                format!("the manifests define no waypoint Gateway {namespace}/{name}"),
            ));
        }
        Ok(())
    }

    fn authenticate<'h>(
        &self,
        target: &Target<'_>,
        headers: impl IntoIterator<Item = (&'h str, &'h str)> + Clone,
        path: &str,
        now: Option<u64>,
    ) -> Result<Option<(Arc<VerifiedToken>, TokenForwarding)>, JwtRejection> {
        let applicable = self.index.request_authentications(target);
        self.authenticators.authenticate(applicable, headers, path, now)
    }

    fn ztunnel_decision(&self, target: &Target<'_>, attrs: &Attributes<'_>) -> Decision {
        let resolved = target
            .resolved
            .filter(|(generation, _)| *generation == self.generation)
            .map(|(_, id)| id)
            .or_else(|| self.listing_workload(target))
            .and_then(|id| self.workloads.get(id.0));
        let mut decision = match resolved {
            Some(policies) => eval::ztunnel_resolved(policies, target.port, attrs),
            None => eval::ztunnel(&self.index, target, attrs),
        };
        if let Some(shadow) = self.shadow.as_ref().filter(|s| eval::dry_run_applies(s, target, Enforcement::Ztunnel)) {
            decision.dry_run = Some(Box::new(eval::ztunnel(shadow, target, attrs)));
        }
        decision
    }

    /// The workload of istiod's form at the target's address, when it names policies of its own: a target
    /// described by namespace and labels alone would miss them.
    fn listing_workload(&self, target: &Target<'_>) -> Option<crate::cluster::WorkloadId> {
        let id = self.cluster.workload_by_ip(target.ip?)?;
        let w = self.cluster.workload(id)?;
        (!w.authorization_policies.is_empty() && w.namespace() == target.namespace).then_some(id)
    }

    fn tcp_waypoint_decision(&self, target: &Target<'_>, attrs: &Attributes<'_>) -> Decision {
        let mut decision = eval::waypoint_tcp(&self.index, target, attrs);
        if let Some(shadow) = self.shadow.as_ref().filter(|s| eval::dry_run_applies(s, target, Enforcement::Waypoint)) {
            decision.dry_run = Some(Box::new(eval::waypoint_tcp(shadow, target, attrs)));
        }
        decision
    }

    fn waypoint_decision<'a>(
        &'a self,
        target: &Target<'a>,
        attrs: &mut Attributes<'a>,
        forwarding: Option<TokenForwarding>,
    ) -> Decision {
        if let Some((issuer, _)) = attrs.token_subject() {
            let extra: Vec<&str> =
                self.index.request_authentications(target).flat_map(|ra| ra.space_delimited_claims(issuer)).collect();
            attrs.split_claims(extra);
        }
        let mut decision = eval::waypoint(&self.index, target, attrs);
        decision.token_forwarding = forwarding.map(Box::new);
        if let Some(shadow) = self.shadow.as_ref().filter(|s| eval::dry_run_applies(s, target, Enforcement::Waypoint)) {
            decision.dry_run = Some(Box::new(eval::waypoint(shadow, target, attrs)));
        }
        decision
    }
}

/// A header map's (name, value) pairs, as often as they are asked for; values that are not text are left out
/// (a token is text).
#[derive(Clone, Copy)]
struct HeaderPairs<'a>(&'a http::HeaderMap);

impl<'a> IntoIterator for HeaderPairs<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = HeaderPairsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        HeaderPairsIter(self.0.iter())
    }
}

struct HeaderPairsIter<'a>(http::header::Iter<'a, http::HeaderValue>);

impl<'a> Iterator for HeaderPairsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.by_ref().find_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
    }
}

fn rejected(rejection: JwtRejection) -> Decision {
    Decision::new(false, Action::Deny, Reason::JwtRejected(rejection), Enforcement::Waypoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{Mesh, Source};

    const RA: &str = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: app}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/jwks"}]
"#;
    const POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: app}
spec: {action: DENY, rules: [{}]}
"#;
    const JWKS: &str = r#"{"keys":[{"alg":"ES256","crv":"P-256","kid":"test-1","kty":"EC","use":"sig","x":"vXDThDu1Cg5MsIaCiTM3lWgCXZeGaHOLJTg2dUf5joI","y":"GB08HIaJkc_81AgWRRIoZefcjrS140fHNj2Ax03gars"}]}"#;

    #[test]
    fn snapshots_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Snapshot>();
        assert_send_sync::<Arc<Snapshot>>();
        assert_send_sync::<Mesh>();
    }

    #[test]
    fn a_reload_keeps_the_token_cache_of_an_unchanged_request_authentication() {
        let mut mesh = Mesh::default();
        mesh.replace_all(&[Source { name: "ra.yaml", text: RA }]).unwrap();
        mesh.add_jwks("https://idp.example.com/jwks", JWKS).unwrap();
        let before = mesh.snapshot();
        let id = ResourceId::new(crate::resource::Kind::RequestAuthentication, "app", "jwt");
        // Another file changes; the RequestAuthentication does not.
        mesh.replace_all(&[Source { name: "ra.yaml", text: RA }, Source { name: "p.yaml", text: POLICY }]).unwrap();
        let after = mesh.snapshot();
        assert_eq!(after.generation(), before.generation() + 1);
        assert!(after.authenticators.shares(&before.authenticators, &id));
        // A changed RequestAuthentication gets a new validator (and an empty cache).
        let changed = RA.replace("idp.example.com\"", "idp.example.com\", audiences: [api]");
        assert_ne!(changed, RA);
        mesh.replace_all(&[Source { name: "ra.yaml", text: &changed }]).unwrap();
        assert!(!mesh.snapshot().authenticators.shares(&after.authenticators, &id));
        // So does one whose JWKS document was replaced.
        let now = mesh.snapshot();
        mesh.add_jwks("https://idp.example.com/jwks", JWKS).unwrap();
        assert!(!mesh.snapshot().authenticators.shares(&now.authenticators, &id));
    }
}
