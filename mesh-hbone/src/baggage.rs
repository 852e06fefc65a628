//! The `baggage` header as ztunnel writes and reads it: the source workload's cluster, namespace, workload,
//! canonical service and revision, region and zone, as OpenTelemetry resource attribute names.
//!
//! Written in ztunnel's order, members joined by `,` with no spaces, absent values left out:
//! `k8s.cluster.name=…,k8s.namespace.name=…,k8s.<kind>.name=…,service.name=…,service.version=…,cloud.region=…,
//! cloud.availability_zone=…`. Values are written and read as they are, not percent-decoded, as ztunnel does.
//! Reading accepts several `baggage` headers, ignores unknown keys, treats an empty value as absent and lets a
//! later member override an earlier one; W3C optional whitespace and member properties (`;…`) are skipped.

use std::fmt;

use http::HeaderValue;

/// The `baggage` header name.
pub const BAGGAGE_HEADER: &str = "baggage";

/// The longest `baggage` header accepted, in bytes (the W3C Baggage limit).
pub const MAX_BAGGAGE_LENGTH: usize = 8192;

/// Why baggage cannot be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaggageError {
    /// A header value is not visible ASCII.
    #[error("baggage header is not visible ASCII; W3C baggage values must be percent-encoded")]
    NotAscii,
    /// The headers together are longer than [`MAX_BAGGAGE_LENGTH`].
    #[error("baggage is {length} bytes, over the {MAX_BAGGAGE_LENGTH}-byte W3C limit")]
    TooLong {
        /// The total length.
        length: usize,
    },
    /// A list member has no `=`.
    #[error("baggage member {member:?} has no '='; members are key=value")]
    MissingEquals {
        /// The member as received.
        member: String,
    },
    /// A list member has an empty key.
    #[error("baggage member {member:?} has an empty key")]
    EmptyKey {
        /// The member as received.
        member: String,
    },
    /// A value to write contains a character W3C baggage does not allow unencoded.
    #[error(
        "baggage value {value:?} for {key} contains a character not allowed in baggage (space, '\"', ',', ';', '\\\\' \
         or non-ASCII); Kubernetes names never do, check where it came from"
    )]
    InvalidValue {
        /// The key the value was for.
        key: &'static str,
        /// The value.
        value: String,
    },
}

/// The kind of workload named by `k8s.<kind>.name`; the kinds ztunnel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WorkloadKind {
    /// `k8s.deployment.name`.
    #[default]
    Deployment,
    /// `k8s.cronjob.name`.
    CronJob,
    /// `k8s.pod.name`.
    Pod,
    /// `k8s.job.name`.
    Job,
}

impl WorkloadKind {
    /// The baggage key for this kind.
    pub fn key(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "k8s.deployment.name",
            WorkloadKind::CronJob => "k8s.cronjob.name",
            WorkloadKind::Pod => "k8s.pod.name",
            WorkloadKind::Job => "k8s.job.name",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        [WorkloadKind::Deployment, WorkloadKind::CronJob, WorkloadKind::Pod, WorkloadKind::Job]
            .into_iter()
            .find(|kind| kind.key() == key)
    }
}

/// The source workload's identity for telemetry, as ztunnel sends it in `baggage`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Baggage {
    /// `k8s.cluster.name`.
    pub cluster: Option<String>,
    /// `k8s.namespace.name`.
    pub namespace: Option<String>,
    /// `k8s.<kind>.name`: the workload's kind and name.
    pub workload: Option<(WorkloadKind, String)>,
    /// `service.name`: the canonical service.
    pub service: Option<String>,
    /// `service.version`: the canonical revision.
    pub revision: Option<String>,
    /// `cloud.region`.
    pub region: Option<String>,
    /// `cloud.availability_zone`.
    pub zone: Option<String>,
}

const CLUSTER: &str = "k8s.cluster.name";
const NAMESPACE: &str = "k8s.namespace.name";
const SERVICE: &str = "service.name";
const REVISION: &str = "service.version";
const REGION: &str = "cloud.region";
const ZONE: &str = "cloud.availability_zone";

impl Baggage {
    /// Whether no member is set.
    pub fn is_empty(&self) -> bool {
        *self == Baggage::default()
    }

    /// The members in ztunnel's order.
    fn members(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            self.cluster.as_deref().map(|v| (CLUSTER, v)),
            self.namespace.as_deref().map(|v| (NAMESPACE, v)),
            self.workload.as_ref().map(|(kind, v)| (kind.key(), v.as_str())),
            self.service.as_deref().map(|v| (SERVICE, v)),
            self.revision.as_deref().map(|v| (REVISION, v)),
            self.region.as_deref().map(|v| (REGION, v)),
            self.zone.as_deref().map(|v| (ZONE, v)),
        ]
        .into_iter()
        .flatten()
    }

    /// The header text, checking every value.
    pub fn format(&self) -> Result<String, BaggageError> {
        for (key, value) in self.members() {
            if !value.bytes().all(is_baggage_octet) {
                return Err(BaggageError::InvalidValue { key, value: value.to_owned() });
            }
        }
        Ok(self.to_string())
    }

    /// The header value.
    pub fn to_header_value(&self) -> Result<HeaderValue, BaggageError> {
        let text = self.format()?;
        if text.len() > MAX_BAGGAGE_LENGTH {
            return Err(BaggageError::TooLong { length: text.len() });
        }
        HeaderValue::from_str(&text).map_err(|_| BaggageError::NotAscii)
    }

    /// Reads one header's text.
    pub fn parse(text: &str) -> Result<Self, BaggageError> {
        let mut baggage = Baggage::default();
        baggage.merge(text)?;
        Ok(baggage)
    }

    /// Reads every `baggage` header value, in order.
    pub fn from_headers<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Result<Self, BaggageError> {
        let mut baggage = Baggage::default();
        let mut length = 0;
        for value in values {
            length += value.len();
            if length > MAX_BAGGAGE_LENGTH {
                return Err(BaggageError::TooLong { length });
            }
            baggage.merge(value.to_str().map_err(|_| BaggageError::NotAscii)?)?;
        }
        Ok(baggage)
    }

    fn merge(&mut self, text: &str) -> Result<(), BaggageError> {
        if !text.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(BaggageError::NotAscii);
        }
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            // Properties after ';' describe the member; ztunnel keeps none.
            let pair = member.split(';').next().unwrap_or_default();
            let Some((key, value)) = pair.split_once('=') else {
                return Err(BaggageError::MissingEquals { member: member.to_owned() });
            };
            let key = key.trim_matches([' ', '\t']);
            let value = value.trim_matches([' ', '\t']);
            if key.is_empty() {
                return Err(BaggageError::EmptyKey { member: member.to_owned() });
            }
            let value = (!value.is_empty()).then(|| value.to_owned());
            match key {
                CLUSTER => self.cluster = value,
                NAMESPACE => self.namespace = value,
                SERVICE => self.service = value,
                REVISION => self.revision = value,
                REGION => self.region = value,
                ZONE => self.zone = value,
                other => {
                    if let Some(kind) = WorkloadKind::from_key(other) {
                        self.workload = value.map(|name| (kind, name));
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Baggage {
    /// The header text, unchecked; see [`Baggage::format`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.members().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

/// W3C baggage-octet: visible ASCII except `"`, `,`, `;` and `\`.
fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Baggage {
        Baggage {
            cluster: Some("K1".into()),
            namespace: Some("NS1".into()),
            workload: Some((WorkloadKind::Deployment, "N1".into())),
            service: Some("N2".into()),
            revision: Some("V1".into()),
            region: None,
            zone: None,
        }
    }

    #[test]
    fn formats_in_ztunnel_order() {
        assert_eq!(
            full().format().unwrap(),
            "k8s.cluster.name=K1,k8s.namespace.name=NS1,k8s.deployment.name=N1,service.name=N2,service.version=V1"
        );
        let all = Baggage { region: Some("us-east1".into()), zone: Some("us-east1-b".into()), ..full() };
        assert_eq!(
            all.to_header_value().unwrap().as_bytes(),
            b"k8s.cluster.name=K1,k8s.namespace.name=NS1,k8s.deployment.name=N1,service.name=N2,service.version=V1,\
cloud.region=us-east1,cloud.availability_zone=us-east1-b"
        );
        assert_eq!(Baggage::default().format().unwrap(), "");
    }

    #[test]
    fn parses_what_ztunnel_writes() {
        let text =
            "k8s.cluster.name=K1,k8s.namespace.name=NS1,k8s.deployment.name=N1,service.name=N2,service.version=V1";
        assert_eq!(Baggage::parse(text).unwrap(), full());
    }

    #[test]
    fn empty_values_are_absent() {
        let text = "k8s.cluster.name=,k8s.namespace.name=,k8s.deployment.name=,service.name=,service.version=";
        assert!(Baggage::parse(text).unwrap().is_empty());
    }

    #[test]
    fn several_headers_merge() {
        let values: Vec<HeaderValue> = ["k8s.cluster.name=K1", "k8s.namespace.name=NS1", "k8s.cronjob.name=N1"]
            .into_iter()
            .map(HeaderValue::from_static)
            .collect();
        let baggage = Baggage::from_headers(&values).unwrap();
        assert_eq!(baggage.cluster.as_deref(), Some("K1"));
        assert_eq!(baggage.workload, Some((WorkloadKind::CronJob, "N1".into())));
        assert!(Baggage::from_headers(&[]).unwrap().is_empty());
    }

    #[test]
    fn whitespace_properties_and_unknown_keys() {
        let baggage = Baggage::parse(" k8s.pod.name = p1 ;prop=1 , other=x,, service.name=s").unwrap();
        assert_eq!(baggage.workload, Some((WorkloadKind::Pod, "p1".into())));
        assert_eq!(baggage.service.as_deref(), Some("s"));
    }

    #[test]
    fn malformed_baggage_is_typed() {
        assert!(matches!(Baggage::parse("k8s.cluster.name"), Err(BaggageError::MissingEquals { .. })));
        assert!(matches!(Baggage::parse("=v"), Err(BaggageError::EmptyKey { .. })));
        assert!(matches!(Baggage::parse("a=\u{e9}"), Err(BaggageError::NotAscii)));
        let long = HeaderValue::from_str(&"a=b,".repeat(3000)).unwrap();
        assert!(matches!(Baggage::from_headers([&long]), Err(BaggageError::TooLong { .. })));
        let bad = Baggage { namespace: Some("a,b".into()), ..Baggage::default() };
        assert!(matches!(bad.format(), Err(BaggageError::InvalidValue { key: "k8s.namespace.name", .. })));
    }
}
