//! The `:authority` of an HBONE CONNECT: the destination `ip:port`, or `host:port` for a request that crossed a
//! network gateway (the inner hop of double HBONE), as ztunnel's `HboneAddress` has it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The longest DNS name accepted as a host, in bytes.
pub const MAX_HOST_LENGTH: usize = 253;

/// Why an authority is not a usable HBONE destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// The request carried no authority.
    #[error("CONNECT has no :authority; HBONE needs the destination as ip:port or host:port")]
    Missing,
    /// The request URI has a scheme or a path: CONNECT uses the authority form only.
    #[error("CONNECT target {uri:?} is not in authority form (no scheme, no path): send only ip:port or host:port")]
    NotAuthorityForm {
        /// The URI as received.
        uri: String,
    },
    /// User information (`user@`) is not allowed in an HBONE authority.
    #[error("authority {authority:?} carries user information; send only ip:port or host:port")]
    UserInfo {
        /// The authority as received.
        authority: String,
    },
    /// There is no `:port`.
    #[error("authority {authority:?} has no port; HBONE destinations are always ip:port or host:port")]
    MissingPort {
        /// The authority as received.
        authority: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("authority {authority:?} has an invalid port: give a number from 1 to 65535")]
    InvalidPort {
        /// The authority as received.
        authority: String,
    },
    /// The host is neither an IP address nor a DNS name.
    #[error(
        "authority {authority:?} has an invalid host: give an IPv4 address, a bracketed IPv6 address or a DNS name \
         (letters, digits, '-' and '.', labels of 1 to 63 bytes)"
    )]
    InvalidHost {
        /// The authority as received.
        authority: String,
    },
}

/// The destination named by a CONNECT `:authority`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HboneAddress {
    /// `ip:port` (`[v6]:port` for IPv6): the destination workload's address.
    Socket(SocketAddr),
    /// `host:port`: a service hostname and port, as double HBONE's inner request carries it.
    Host {
        /// The DNS name, as given (not case-folded).
        host: String,
        /// The service port.
        port: u16,
    },
}

impl HboneAddress {
    /// A `host:port` destination; the host must be a DNS name.
    pub fn host(host: &str, port: u16) -> Result<Self, AuthorityError> {
        let shown = format!("{host}:{port}");
        if port == 0 {
            return Err(AuthorityError::InvalidPort { authority: shown });
        }
        if !is_dns_name(host) {
            return Err(AuthorityError::InvalidHost { authority: shown });
        }
        Ok(HboneAddress::Host { host: host.to_owned(), port })
    }

    /// Parses `ip:port`, `[v6]:port` or `host:port`.
    pub fn parse(authority: &str) -> Result<Self, AuthorityError> {
        if authority.is_empty() {
            return Err(AuthorityError::Missing);
        }
        let owned = || authority.to_owned();
        if authority.contains('@') {
            return Err(AuthorityError::UserInfo { authority: owned() });
        }
        if let Ok(addr) = SocketAddr::from_str(authority) {
            if addr.port() == 0 {
                return Err(AuthorityError::InvalidPort { authority: owned() });
            }
            return Ok(HboneAddress::Socket(addr));
        }
        if let Some(rest) = authority.strip_prefix('[') {
            // A bracketed host that did not parse as a socket address: a bad IPv6 literal or a bad port.
            let (inside, after) =
                rest.split_once(']').ok_or_else(|| AuthorityError::InvalidHost { authority: owned() })?;
            if inside.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(AuthorityError::InvalidHost { authority: owned() });
            }
            let port = after.strip_prefix(':').ok_or_else(|| AuthorityError::MissingPort { authority: owned() })?;
            return Err(port_error(port, owned()));
        }
        let Some((host, port)) = authority.rsplit_once(':') else {
            return Err(if authority.parse::<IpAddr>().is_ok() || is_dns_name(authority) {
                AuthorityError::MissingPort { authority: owned() }
            } else {
                AuthorityError::InvalidHost { authority: owned() }
            });
        };
        if host.contains(':') {
            // An unbracketed IPv6 address, or several colons.
            return Err(AuthorityError::InvalidHost { authority: owned() });
        }
        let port = parse_port(port).ok_or_else(|| port_error(port, owned()))?;
        if looks_like_ipv4(host) || !is_dns_name(host) {
            return Err(AuthorityError::InvalidHost { authority: owned() });
        }
        Ok(HboneAddress::Host { host: host.to_owned(), port })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            HboneAddress::Socket(addr) => addr.port(),
            HboneAddress::Host { port, .. } => *port,
        }
    }

    /// The IP address, for an `ip:port` destination.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            HboneAddress::Socket(addr) => Some(addr.ip()),
            HboneAddress::Host { .. } => None,
        }
    }

    /// The authority-form URI of a CONNECT to this destination.
    pub fn to_uri(&self) -> Result<http::Uri, AuthorityError> {
        let text = self.to_string();
        let authority = http::uri::Authority::from_str(&text)
            .map_err(|_| AuthorityError::InvalidHost { authority: text.clone() })?;
        http::Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.authority = Some(authority);
            parts
        })
        .map_err(|_| AuthorityError::InvalidHost { authority: text })
    }

    /// The destination of a received CONNECT URI, which must be in authority form.
    pub fn from_uri(uri: &http::Uri) -> Result<Self, AuthorityError> {
        let has_path = uri.path_and_query().is_some_and(|p| !p.as_str().is_empty() && p.as_str() != "/");
        if uri.scheme().is_some() || has_path {
            return Err(AuthorityError::NotAuthorityForm { uri: uri.to_string() });
        }
        let authority = uri.authority().ok_or(AuthorityError::Missing)?;
        Self::parse(authority.as_str())
    }
}

impl From<SocketAddr> for HboneAddress {
    fn from(addr: SocketAddr) -> Self {
        HboneAddress::Socket(addr)
    }
}

impl FromStr for HboneAddress {
    type Err = AuthorityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for HboneAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HboneAddress::Socket(addr) => write!(f, "{addr}"),
            HboneAddress::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

fn parse_port(port: &str) -> Option<u16> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse::<u16>().ok().filter(|p| *p != 0)
}

fn port_error(port: &str, authority: String) -> AuthorityError {
    if port.is_empty() { AuthorityError::MissingPort { authority } } else { AuthorityError::InvalidPort { authority } }
}

/// Dotted digits only: an IPv4-like name that is not a valid address (`1.2.3.256`) is not a hostname either.
fn looks_like_ipv4(host: &str) -> bool {
    !host.is_empty() && host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A DNS name: labels of 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen; at most
/// [`MAX_HOST_LENGTH`] bytes.
pub(crate) fn is_dns_name(host: &str) -> bool {
    if host.is_empty() || host.len() > MAX_HOST_LENGTH {
        return false;
    }
    host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_round_trip() {
        for text in ["10.0.0.1:8080", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:80"] {
            let addr = HboneAddress::parse(text).unwrap();
            assert!(matches!(addr, HboneAddress::Socket(_)));
            assert_eq!(addr.to_string(), text);
            assert_eq!(addr.to_uri().unwrap().to_string(), text);
        }
    }

    #[test]
    fn hostnames_parse() {
        let addr = HboneAddress::parse("reviews.bookinfo.svc.cluster.local:9080").unwrap();
        assert_eq!(addr, HboneAddress::Host { host: "reviews.bookinfo.svc.cluster.local".into(), port: 9080 });
        assert_eq!(addr.port(), 9080);
        assert_eq!(addr.ip(), None);
        assert_eq!(addr.to_uri().unwrap().to_string(), "reviews.bookinfo.svc.cluster.local:9080");
    }

    #[test]
    fn malformed_authorities_are_typed() {
        type Check = fn(&AuthorityError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, AuthorityError::Missing)),
            ("10.0.0.1", |e| matches!(e, AuthorityError::MissingPort { .. })),
            ("example.com", |e| matches!(e, AuthorityError::MissingPort { .. })),
            ("10.0.0.1:", |e| matches!(e, AuthorityError::MissingPort { .. })),
            ("10.0.0.1:0", |e| matches!(e, AuthorityError::InvalidPort { .. })),
            ("10.0.0.1:65536", |e| matches!(e, AuthorityError::InvalidPort { .. })),
            ("10.0.0.1:+80", |e| matches!(e, AuthorityError::InvalidPort { .. })),
            ("[2001:db8::1]", |e| matches!(e, AuthorityError::MissingPort { .. })),
            ("[2001:db8::1]:x", |e| matches!(e, AuthorityError::InvalidPort { .. })),
            ("[2001:db8::zz]:80", |e| matches!(e, AuthorityError::InvalidHost { .. })),
            ("2001:db8::1:80", |e| matches!(e, AuthorityError::InvalidHost { .. })),
            ("1.2.3.256:80", |e| matches!(e, AuthorityError::InvalidHost { .. })),
            ("bad_host:80", |e| matches!(e, AuthorityError::InvalidHost { .. })),
            ("-bad.example:80", |e| matches!(e, AuthorityError::InvalidHost { .. })),
            ("user@10.0.0.1:80", |e| matches!(e, AuthorityError::UserInfo { .. })),
        ];
        for (text, check) in cases {
            let error = HboneAddress::parse(text).unwrap_err();
            assert!(check(&error), "{text:?} gave {error:?}");
        }
    }

    #[test]
    fn uris_must_be_authority_form() {
        let uri: http::Uri = "http://10.0.0.1:80/".parse().unwrap();
        assert!(matches!(HboneAddress::from_uri(&uri), Err(AuthorityError::NotAuthorityForm { .. })));
        let uri: http::Uri = "/path".parse().unwrap();
        assert!(matches!(HboneAddress::from_uri(&uri), Err(AuthorityError::NotAuthorityForm { .. })));
        let uri: http::Uri = "10.0.0.1:80".parse().unwrap();
        assert_eq!(HboneAddress::from_uri(&uri).unwrap(), HboneAddress::Socket("10.0.0.1:80".parse().unwrap()));
    }

    #[test]
    fn host_constructor_validates() {
        assert!(HboneAddress::host("a.example", 80).is_ok());
        assert!(matches!(HboneAddress::host("a.example", 0), Err(AuthorityError::InvalidPort { .. })));
        assert!(matches!(HboneAddress::host("a b", 80), Err(AuthorityError::InvalidHost { .. })));
    }
}
