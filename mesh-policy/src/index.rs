//! Policies indexed by where they attach, so a check touches only those that can apply to its destination.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::peer_authentication::CompiledPeerAuthentication;
use crate::model::policy::{CompiledPolicy, PolicyRef, Scope, TargetKind};
use crate::model::request_authentication::CompiledRequestAuthentication;
use crate::proxy::Target as Destination;
use crate::request::ServiceKind;

/// Policies with a workload selector, indexed by one of their labels.
#[derive(Debug, Default)]
struct SelectorIndex {
    /// label key → label value → policies whose selector holds that label (its first one), each with the
    /// selector's other labels, which must also be on the workload.
    by_label: FxHashMap<Box<str>, FxHashMap<Box<str>, Vec<Selected>>>,
    /// Selectors without labels: every workload.
    all: Vec<PolicyRef>,
}

impl SelectorIndex {
    fn insert(&mut self, p: PolicyRef, labels: &BTreeMap<String, String>) {
        let mut it = labels.iter();
        match it.next() {
            Some((k, v)) => {
                let rest = it.map(|(k, v)| (k.clone(), v.clone())).collect();
                let entry = Selected { rest, policy: p };
                self.by_label.entry(k.as_str().into()).or_default().entry(v.as_str().into()).or_default().push(entry)
            }
            None => self.all.push(p),
        }
    }

    fn for_each<'a>(&'a self, labels: &BTreeMap<String, String>, f: &mut impl FnMut(&'a PolicyRef)) {
        self.all.iter().for_each(&mut *f);
        if self.by_label.is_empty() {
            return;
        }
        for (k, v) in labels {
            let Some(bucket) = self.by_label.get(k.as_str()).and_then(|vs| vs.get(v.as_str())) else { continue };
            for s in bucket {
                if s.rest.iter().all(|(sk, sv)| labels.get(sk) == Some(sv)) {
                    f(&s.policy);
                }
            }
        }
    }

    fn sort(&mut self) {
        self.all.sort_by(|a, b| a.id.cmp(&b.id));
        for vs in self.by_label.values_mut() {
            for bucket in vs.values_mut() {
                bucket.sort_by(|a, b| a.policy.id.cmp(&b.policy.id));
            }
        }
    }
}

/// A selector policy in its bucket: the labels left to check besides the bucket's own.
#[derive(Debug)]
struct Selected {
    rest: Box<[(String, String)]>,
    policy: PolicyRef,
}

/// Everything attached in one namespace.
#[derive(Debug, Default)]
struct NamespaceIndex {
    ztunnel_all: Vec<PolicyRef>,
    ztunnel_selected: SelectorIndex,
    services: FxHashMap<Box<str>, Vec<PolicyRef>>,
    service_entries: FxHashMap<Box<str>, Vec<PolicyRef>>,
    gateways: FxHashMap<Box<str>, Vec<PolicyRef>>,
    gateway_classes: FxHashMap<Box<str>, Vec<PolicyRef>>,
    peer_namespace: Option<Arc<CompiledPeerAuthentication>>,
    peer_workloads: Vec<Arc<CompiledPeerAuthentication>>,
    request_auth: Vec<Arc<CompiledRequestAuthentication>>,
}

/// The index over every compiled resource of a mesh.
#[derive(Debug, Default)]
pub(crate) struct Index {
    root: Box<str>,
    /// The root namespace, consulted on every check, kept out of the map.
    root_ns: NamespaceIndex,
    /// Every other namespace.
    namespaces: FxHashMap<Box<str>, NamespaceIndex>,
    gateway_class: Box<str>,
}

impl Index {
    pub(crate) fn build<'a>(
        root: &str,
        gateway_class: &str,
        policies: impl Iterator<Item = &'a PolicyRef>,
        peers: impl Iterator<Item = &'a Arc<CompiledPeerAuthentication>>,
        request_auths: impl Iterator<Item = &'a Arc<CompiledRequestAuthentication>>,
        with_dry_run: bool,
    ) -> Self {
        let mut index = Index {
            root: root.into(),
            root_ns: NamespaceIndex::default(),
            namespaces: FxHashMap::default(),
            gateway_class: gateway_class.into(),
        };
        for p in policies {
            if (p.dry_run && !with_dry_run) || !enforced(p) {
                continue;
            }
            if p.scope == Scope::Mesh {
                index.root_ns.ztunnel_all.push(p.clone());
                continue;
            }
            let ns = index.entry(p.id.namespace());
            match &p.scope {
                Scope::Namespace => ns.ztunnel_all.push(p.clone()),
                // Mesh: above. Listed: found through the workloads that name it (`WorkloadPolicies::resolve`).
                Scope::Mesh | Scope::Listed => {}
                Scope::Selector(labels) => ns.ztunnel_selected.insert(p.clone(), labels),
                Scope::Targets(targets) => {
                    let mut seen = FxHashSet::default();
                    for t in targets {
                        if !seen.insert(t) {
                            continue;
                        }
                        let map = match t.kind {
                            TargetKind::Service => &mut ns.services,
                            TargetKind::ServiceEntry => &mut ns.service_entries,
                            TargetKind::Gateway => &mut ns.gateways,
                            TargetKind::GatewayClass => &mut ns.gateway_classes,
                        };
                        map.entry(t.name.clone()).or_default().push(p.clone());
                    }
                }
            }
        }
        for pa in peers {
            let ns = index.entry(pa.id.namespace());
            match pa.selector {
                None => {
                    let older = ns.peer_namespace.as_ref().is_some_and(|cur| cur.age_key() <= pa.age_key());
                    if !older {
                        ns.peer_namespace = Some(pa.clone());
                    }
                }
                Some(_) => ns.peer_workloads.push(pa.clone()),
            }
        }
        for ra in request_auths {
            index.entry(ra.id.namespace()).request_auth.push(ra.clone());
        }
        for ns in index.namespaces.values_mut().chain(std::iter::once(&mut index.root_ns)) {
            ns.ztunnel_all.sort_by(|a, b| a.id.cmp(&b.id));
            ns.ztunnel_selected.sort();
            for map in [&mut ns.services, &mut ns.service_entries, &mut ns.gateways, &mut ns.gateway_classes] {
                map.values_mut().for_each(|v| v.sort_by(|a, b| a.id.cmp(&b.id)));
            }
            ns.peer_workloads.sort_by(|a, b| a.age_key().cmp(&b.age_key()));
            ns.request_auth.sort_by(|a, b| a.id.cmp(&b.id));
        }
        index
    }

    fn entry(&mut self, namespace: &str) -> &mut NamespaceIndex {
        if namespace == &*self.root { &mut self.root_ns } else { self.namespaces.entry(namespace.into()).or_default() }
    }

    /// The index of a namespace other than the root one.
    #[inline]
    fn non_root(&self, namespace: &str) -> Option<&NamespaceIndex> {
        if namespace == &*self.root { None } else { self.namespaces.get(namespace) }
    }

    /// The index of any namespace.
    #[inline]
    fn namespace(&self, namespace: &str) -> Option<&NamespaceIndex> {
        if namespace == &*self.root { Some(&self.root_ns) } else { self.namespaces.get(namespace) }
    }

    /// Calls `f` for each policy ztunnel enforces for the destination workload: mesh-wide, root-namespace
    /// selectors, namespace-wide, then the namespace's selectors.
    pub(crate) fn for_each_ztunnel<'a>(&'a self, dest: &Destination, mut f: impl FnMut(&'a PolicyRef)) {
        self.root_ns.ztunnel_all.iter().for_each(&mut f);
        self.root_ns.ztunnel_selected.for_each(dest.labels, &mut f);
        if let Some(ns) = self.non_root(dest.namespace) {
            ns.ztunnel_all.iter().for_each(&mut f);
            ns.ztunnel_selected.for_each(dest.labels, &mut f);
        }
    }

    /// Calls `f` for each policy the waypoint enforces for the destination: those targeting the waypoint class
    /// (root namespace; every waypoint is of the mesh's waypoint class), the waypoint Gateway (in its own
    /// namespace, which may not be the destination's), and the Service or ServiceEntry addressed.
    pub(crate) fn for_each_waypoint<'a>(&'a self, dest: &Destination, mut f: impl FnMut(&'a PolicyRef)) {
        if let Some(ps) = self.root_ns.gateway_classes.get(&*self.gateway_class) {
            ps.iter().for_each(&mut f);
        }
        let ns = self.namespace(dest.namespace);
        if let Some((wns, w)) = dest.waypoint {
            // Most waypoints are in the destination's namespace: look it up once.
            let waypoint_ns = if wns == dest.namespace { ns } else { self.namespace(wns) };
            if let Some(ps) = waypoint_ns.and_then(|n| n.gateways.get(w)) {
                ps.iter().for_each(&mut f);
            }
        }
        let Some(ns) = ns else { return };
        if let Some((svc, kind)) = dest.service {
            let map = match kind {
                ServiceKind::Service => &ns.services,
                ServiceKind::ServiceEntry => &ns.service_entries,
            };
            if let Some(ps) = map.get(svc) {
                ps.iter().for_each(&mut f);
            }
        }
    }

    /// The PeerAuthentications that decide a workload's mode: mesh, namespace, workload.
    pub(crate) fn peer_authentications(&self, dest: &Destination) -> [Option<&CompiledPeerAuthentication>; 3] {
        let mesh = self.root_ns.peer_namespace.as_deref();
        let ns = self.non_root(dest.namespace);
        let namespace = ns.and_then(|n| n.peer_namespace.as_deref());
        let workload = ns.and_then(|n| {
            n.peer_workloads
                .iter()
                .map(|p| &**p)
                .find(|p| p.selector.as_ref().is_some_and(|sel| sel.iter().all(|(k, v)| dest.labels.get(k) == Some(v))))
        });
        [mesh, namespace, workload]
    }

    /// RequestAuthentications that apply at the waypoint for the destination.
    pub(crate) fn request_authentications<'a>(
        &'a self,
        dest: &Destination<'a>,
    ) -> impl Iterator<Item = &'a CompiledRequestAuthentication> + 'a {
        let dest = *dest;
        let waypoint = dest.waypoint;
        let root = self.root_ns.request_auth.iter();
        let ns = self.non_root(dest.namespace).into_iter().flat_map(|n| n.request_auth.iter());
        let waypoint_ns = waypoint
            .map(|(wns, _)| wns)
            .filter(|wns| *wns != dest.namespace && *wns != &*self.root)
            .and_then(|wns| self.non_root(wns))
            .into_iter()
            .flat_map(|n| n.request_auth.iter());
        root.chain(ns).chain(waypoint_ns).map(|ra| &**ra).filter(move |ra| {
            let Scope::Targets(targets) = &ra.scope else { return false };
            targets.iter().any(|t| match t.kind {
                TargetKind::GatewayClass => ra.id.namespace() == &*self.root && t.name == self.gateway_class,
                TargetKind::Gateway => waypoint.is_some_and(|(wns, w)| ra.id.namespace() == wns && w == &*t.name),
                _ if ra.id.namespace() != dest.namespace => false,
                TargetKind::Service => dest.service == Some((&*t.name, ServiceKind::Service)),
                TargetKind::ServiceEntry => dest.service == Some((&*t.name, ServiceKind::ServiceEntry)),
            })
        })
    }
}

/// Whether an enforcement point enforces the policy at all: ztunnel ignores AUDIT and CUSTOM.
fn enforced(p: &CompiledPolicy) -> bool {
    use crate::crd::Action;
    match p.action {
        Action::Allow | Action::Deny => true,
        Action::Custom => !p.is_ztunnel(),
        Action::Audit => false,
    }
}
