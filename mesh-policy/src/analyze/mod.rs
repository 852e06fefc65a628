//! The analyzer: findings about a configuration as a whole, for the mistakes that silently leave a service
//! open or break it in ambient mode. Each finding has a stable code, a severity, the resources involved (and
//! the field), a one-line message and a fix.
//!
//! Checks that need the cluster model (which Pods, Services and waypoints exist) run where the manifests
//! define that part of the cluster, so that policies analysed alone are not flagged for what is not there.

mod lowering;
mod tokens;
mod topology;
mod waypoints;

use std::fmt;

use serde::Serialize;

use crate::resource::ResourceId;
use crate::snapshot::Snapshot;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Probably not what was meant.
    Warning,
    /// Traffic is refused that the configuration means to allow, or allowed that it means to refuse.
    Error,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// Parses `error`, `warning` or `info`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource a finding is about, and the field when one is to blame.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Involved {
    /// The resource.
    pub resource: ResourceId,
    /// The field, e.g. `spec.rules[0].from[0].source.principals`.
    pub field: Option<String>,
}

impl Involved {
    pub(crate) fn new(resource: &ResourceId) -> Self {
        Involved { resource: resource.clone(), field: None }
    }

    pub(crate) fn at(resource: &ResourceId, field: impl Into<String>) -> Self {
        Involved { resource: resource.clone(), field: Some(field.into()) }
    }
}

impl Serialize for Involved {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Involved", 4)?;
        st.serialize_field("kind", self.resource.kind().as_str())?;
        let ns = self.resource.namespace();
        st.serialize_field("namespace", &(!ns.is_empty()).then_some(ns))?;
        st.serialize_field("name", self.resource.name())?;
        st.serialize_field("field", &self.field)?;
        st.end()
    }
}

impl fmt::Display for Involved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.resource)?;
        if let Some(field) = &self.field {
            write!(f, " ({field})")?;
        }
        Ok(())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// A stable code, e.g. `waypoint-identity-not-allowed`.
    pub code: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// The resources involved, the first being the one to change.
    pub resources: Vec<Involved>,
    /// What is wrong, in one line.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl Finding {
    pub(crate) fn new(
        code: &'static str,
        severity: Severity,
        resources: Vec<Involved>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding { code, severity, resources, message: message.into(), fix: fix.into() }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.severity, self.code)?;
        if let Some(first) = self.resources.first() {
            write!(f, " {first}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every finding about a snapshot, most severe first, then by code and resource.
pub(crate) fn analyze(snapshot: &Snapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    for w in snapshot.apply_warnings() {
        out.push(lowering::from_warning(w));
    }
    waypoints::check(snapshot, &mut out);
    tokens::check(snapshot, &mut out);
    topology::check(snapshot, &mut out);
    out.sort_by(|a, b| {
        b.severity.cmp(&a.severity).then(a.code.cmp(b.code)).then_with(|| a.resources.cmp(&b.resources))
    });
    out.dedup();
    out
}
