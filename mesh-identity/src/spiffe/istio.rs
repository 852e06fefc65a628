//! Istio's identities `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`, and trust-domain aliases.

use std::fmt;

use super::{SpiffeId, SpiffeIdError, TrustDomain};

/// `/ns/<namespace>/sa/<service account>` split into its two names: exactly four slashes, with `/ns` and `/sa`
/// as the first and third segments and neither name empty. One pass over the bytes, no substring search: this
/// runs on every policy check.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let mut slashes = [0usize; 4];
    let mut n = 0;
    for (i, b) in path.bytes().enumerate() {
        if b == b'/' {
            *slashes.get_mut(n)? = i;
            n += 1;
        }
    }
    let [a, b, c, d] = slashes;
    if n != 4 || a != 0 || path.get(a..b)? != "/ns" || path.get(c..d)? != "/sa" {
        return None;
    }
    let (ns, sa) = (path.get(b + 1..c)?, path.get(d + 1..)?);
    (!ns.is_empty() && !sa.is_empty()).then_some((ns, sa))
}

/// The parts of a principal in Istio's form, `<trust domain>/ns/<namespace>/sa/<service account>`, borrowed:
/// `(trust domain, namespace, service account)`, or `None` for any other shape. Nothing is allocated and the
/// characters are not checked against the SPIFFE grammar (a policy compares them as they are);
/// [`IstioIdentity::parse_principal`] validates fully.
pub fn split_principal(principal: &str) -> Option<(&str, &str, &str)> {
    let slash = principal.find('/')?;
    let (trust_domain, path) = principal.split_at(slash);
    let (ns, sa) = split_path(path)?;
    (!trust_domain.is_empty()).then_some((trust_domain, ns, sa))
}

/// An Istio workload identity: a SPIFFE ID whose path is `/ns/<namespace>/sa/<service account>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IstioIdentity {
    id: SpiffeId,
    /// Byte range of the namespace and service account in `id`.
    namespace: (usize, usize),
    service_account: usize,
}

impl IstioIdentity {
    /// The Istio view of a SPIFFE ID.
    pub fn from_spiffe_id(id: SpiffeId) -> Result<Self, SpiffeIdError> {
        let base = id.as_str().len() - id.path().len();
        let (ns, _) = split_path(id.path()).ok_or(SpiffeIdError::NotIstio)?;
        let ns_start = base + "/ns/".len();
        let ns_end = ns_start + ns.len();
        Ok(IstioIdentity { id, namespace: (ns_start, ns_end), service_account: ns_end + "/sa/".len() })
    }

    /// Parses `spiffe://td/ns/N/sa/S`.
    pub fn parse(id: &str) -> Result<Self, SpiffeIdError> {
        Self::from_spiffe_id(SpiffeId::new(id)?)
    }

    /// Parses the principal form `td/ns/N/sa/S` that AuthorizationPolicy uses.
    pub fn parse_principal(principal: &str) -> Result<Self, SpiffeIdError> {
        Self::parse(&format!("spiffe://{principal}"))
    }

    /// The identity of `service_account` in `namespace` of `trust_domain`.
    pub fn new(trust_domain: &TrustDomain, namespace: &str, service_account: &str) -> Result<Self, SpiffeIdError> {
        Self::from_spiffe_id(SpiffeId::from_parts(trust_domain, &format!("/ns/{namespace}/sa/{service_account}"))?)
    }

    /// The SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// The trust domain name.
    pub fn trust_domain_name(&self) -> &str {
        self.id.trust_domain_name()
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.id.as_str()[self.namespace.0..self.namespace.1]
    }

    /// The service account.
    pub fn service_account(&self) -> &str {
        &self.id.as_str()[self.service_account..]
    }

    /// `td/ns/N/sa/S`, the form AuthorizationPolicy `principals` use.
    pub fn principal(&self) -> &str {
        self.id.principal()
    }
}

impl fmt::Display for IstioIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.id.fmt(f)
    }
}

/// The trust domain of a mesh and its aliases (`meshConfig.trustDomainAliases`): a peer from an alias domain is
/// the same workload for policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomains {
    local: TrustDomain,
    aliases: Vec<TrustDomain>,
}

impl TrustDomains {
    /// The local trust domain with its aliases.
    pub fn new(local: TrustDomain, aliases: impl IntoIterator<Item = TrustDomain>) -> Self {
        let mut aliases: Vec<TrustDomain> = aliases.into_iter().filter(|a| *a != local).collect();
        aliases.sort();
        aliases.dedup();
        TrustDomains { local, aliases }
    }

    /// The local trust domain.
    pub fn local(&self) -> &TrustDomain {
        &self.local
    }

    /// The aliases.
    pub fn aliases(&self) -> &[TrustDomain] {
        &self.aliases
    }

    /// Whether `name` is the local trust domain or an alias.
    pub fn contains(&self, name: &str) -> bool {
        self.local.as_str() == name || self.aliases.iter().any(|a| a.as_str() == name)
    }

    /// Whether two identities are the same workload: same namespace and service account, both in this mesh's
    /// trust domains.
    pub fn same_workload(&self, a: &IstioIdentity, b: &IstioIdentity) -> bool {
        a.namespace() == b.namespace()
            && a.service_account() == b.service_account()
            && self.contains(a.trust_domain_name())
            && self.contains(b.trust_domain_name())
    }

    /// The identity as the local trust domain names it, when its trust domain belongs to this mesh.
    pub fn canonical(&self, id: &IstioIdentity) -> Option<IstioIdentity> {
        if !self.contains(id.trust_domain_name()) {
            return None;
        }
        IstioIdentity::new(&self.local, id.namespace(), id.service_account()).ok()
    }
}
