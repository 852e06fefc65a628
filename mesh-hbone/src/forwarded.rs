//! The `forwarded` header (RFC 7239) of an HBONE CONNECT: `for=` the original source, and `host=` the
//! destination service's hostname when the source addressed a service.
//!
//! ztunnel writes `for="<ip>:<port>"` with the source socket address always quoted (IPv6 bracketed inside the
//! quotes), then `;host=<hostname>` when there is a service. A bare IP is written as RFC 7239 asks: IPv4 as a
//! token, IPv6 as `"[v6]"`. Only the first forwarded-element is read, as ztunnel reads it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The `forwarded` header name.
pub const FORWARDED_HEADER: &str = "forwarded";

/// Why a `forwarded` header cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    /// The header is not visible ASCII.
    #[error("forwarded header is not visible ASCII")]
    NotAscii,
    /// A forwarded-pair has no `=`.
    #[error("forwarded pair {pair:?} has no '='; pairs are name=value")]
    MissingEquals {
        /// The pair as received.
        pair: String,
    },
    /// A parameter name is empty or not a token.
    #[error("forwarded parameter name {name:?} is not a token")]
    InvalidName {
        /// The name as received.
        name: String,
    },
    /// A parameter value is neither a token nor a well-formed quoted string.
    #[error(
        "forwarded value {value:?} is neither a token nor a quoted string (an unterminated quote, or a ':' or '[' left unquoted)"
    )]
    InvalidValue {
        /// The value as received.
        value: String,
    },
    /// A parameter occurs twice in the element (RFC 7239 section 4).
    #[error("forwarded parameter {name:?} occurs twice in one element")]
    Duplicate {
        /// The parameter name.
        name: String,
    },
    /// The `for=` node is not an address ztunnel writes.
    #[error("forwarded for={node:?} is not an IP address or ip:port (IPv6 must be bracketed: \"[2001:db8::1]:80\")")]
    InvalidNode {
        /// The node as received.
        node: String,
    },
    /// The `host=` value is empty.
    #[error("forwarded host= is empty")]
    EmptyHost,
}

/// The original source of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardedFor {
    /// Address and port, as ztunnel writes it.
    Socket(SocketAddr),
    /// An address without port.
    Ip(IpAddr),
}

impl ForwardedFor {
    /// The source IP.
    pub fn ip(&self) -> IpAddr {
        match self {
            ForwardedFor::Socket(addr) => addr.ip(),
            ForwardedFor::Ip(ip) => *ip,
        }
    }

    fn parse(node: &str) -> Result<Self, ForwardedError> {
        let invalid = || ForwardedError::InvalidNode { node: node.to_owned() };
        if let Some(rest) = node.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(invalid)?;
            let ip: Ipv6Addr = inside.parse().map_err(|_| invalid())?;
            return match after {
                "" => Ok(ForwardedFor::Ip(IpAddr::V6(ip))),
                _ => node.parse::<SocketAddr>().map(ForwardedFor::Socket).map_err(|_| invalid()),
            };
        }
        if let Ok(addr) = node.parse::<SocketAddr>() {
            return Ok(ForwardedFor::Socket(addr));
        }
        match node.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => Ok(ForwardedFor::Ip(IpAddr::V4(ip))),
            // A bare IPv6 address must be bracketed.
            _ => Err(invalid()),
        }
    }
}

impl From<SocketAddr> for ForwardedFor {
    fn from(addr: SocketAddr) -> Self {
        ForwardedFor::Socket(addr)
    }
}

impl From<IpAddr> for ForwardedFor {
    fn from(ip: IpAddr) -> Self {
        ForwardedFor::Ip(ip)
    }
}

impl fmt::Display for ForwardedFor {
    /// The `for=` value, quoted where RFC 7239 requires it (and always for `ip:port`, as ztunnel writes it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardedFor::Socket(addr) => write!(f, "\"{addr}\""),
            ForwardedFor::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            ForwardedFor::Ip(IpAddr::V6(ip)) => write!(f, "\"[{ip}]\""),
        }
    }
}

/// What an HBONE `forwarded` header says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Forwarded {
    /// `for=`: the original source.
    pub for_node: Option<ForwardedFor>,
    /// `host=`: the hostname of the service the source addressed.
    pub host: Option<String>,
}

impl Forwarded {
    /// `for=` the source only.
    pub fn for_source(source: impl Into<ForwardedFor>) -> Self {
        Forwarded { for_node: Some(source.into()), host: None }
    }

    /// Adds `host=`.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The header text, checking the host.
    pub fn format(&self) -> Result<String, ForwardedError> {
        if let Some(host) = &self.host {
            if host.is_empty() {
                return Err(ForwardedError::EmptyHost);
            }
            if !host.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(ForwardedError::NotAscii);
            }
        }
        Ok(self.to_string())
    }

    /// Reads the first forwarded-element of the header text; `by=`, `proto=` and extensions are checked for
    /// syntax and otherwise ignored.
    pub fn parse(text: &str) -> Result<Self, ForwardedError> {
        if !text.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(ForwardedError::NotAscii);
        }
        let element = first_element(text);
        let mut forwarded = Forwarded::default();
        let mut seen: Vec<String> = Vec::new();
        for pair in split_unquoted(element, ';') {
            let pair = pair.trim_matches([' ', '\t']);
            if pair.is_empty() {
                continue;
            }
            let Some((name, value)) = pair.split_once('=') else {
                return Err(ForwardedError::MissingEquals { pair: pair.to_owned() });
            };
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(ForwardedError::InvalidName { name: name.to_owned() });
            }
            let name = name.to_ascii_lowercase();
            if seen.contains(&name) {
                return Err(ForwardedError::Duplicate { name });
            }
            let value = unquote(value)?;
            match name.as_str() {
                "for" => forwarded.for_node = Some(ForwardedFor::parse(&value)?),
                "host" => {
                    if value.is_empty() {
                        return Err(ForwardedError::EmptyHost);
                    }
                    forwarded.host = Some(value);
                }
                _ => {}
            }
            seen.push(name);
        }
        Ok(forwarded)
    }
}

impl fmt::Display for Forwarded {
    /// The header text, unchecked; see [`Forwarded::format`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        if let Some(node) = &self.for_node {
            write!(f, "for={node}")?;
            first = false;
        }
        if let Some(host) = &self.host {
            if !first {
                f.write_str(";")?;
            }
            if !host.is_empty() && host.bytes().all(is_tchar) {
                write!(f, "host={host}")?;
            } else {
                f.write_str("host=\"")?;
                for c in host.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")?;
            }
        }
        Ok(())
    }
}

/// RFC 7230 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits on `sep` outside quoted strings.
fn split_unquoted(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

fn first_element(text: &str) -> &str {
    split_unquoted(text, ',').into_iter().next().unwrap_or_default()
}

/// A token, or a quoted-string with its escapes removed.
fn unquote(value: &str) -> Result<String, ForwardedError> {
    let invalid = || ForwardedError::InvalidValue { value: value.to_owned() };
    let Some(inner) = value.strip_prefix('"') else {
        return if value.bytes().all(is_tchar) { Ok(value.to_owned()) } else { Err(invalid()) };
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    loop {
        match chars.next() {
            None => return Err(invalid()),
            Some('"') => break,
            Some('\\') => out.push(chars.next().ok_or_else(invalid)?),
            Some(c) => out.push(c),
        }
    }
    if chars.next().is_some() {
        return Err(invalid());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_as_ztunnel_does() {
        let v4 = Forwarded::for_source("10.0.0.1:34567".parse::<SocketAddr>().unwrap());
        assert_eq!(v4.format().unwrap(), "for=\"10.0.0.1:34567\"");
        let v6 = Forwarded::for_source("[2001:db8::1]:34567".parse::<SocketAddr>().unwrap())
            .with_host("reviews.bookinfo.svc.cluster.local");
        assert_eq!(v6.format().unwrap(), "for=\"[2001:db8::1]:34567\";host=reviews.bookinfo.svc.cluster.local");
    }

    #[test]
    fn bare_ips_follow_rfc7239() {
        assert_eq!(Forwarded::for_source("192.0.2.60".parse::<IpAddr>().unwrap()).to_string(), "for=192.0.2.60");
        assert_eq!(
            Forwarded::for_source("2001:db8:cafe::17".parse::<IpAddr>().unwrap()).to_string(),
            "for=\"[2001:db8:cafe::17]\""
        );
        let host = Forwarded { for_node: None, host: Some("example.com:8080".into()) };
        assert_eq!(host.to_string(), "host=\"example.com:8080\"");
    }

    #[test]
    fn round_trips() {
        for text in [
            "for=\"10.0.0.1:34567\"",
            "for=\"[2001:db8::1]:34567\";host=reviews.bookinfo.svc.cluster.local",
            "for=192.0.2.60",
            "for=\"[2001:db8:cafe::17]\"",
        ] {
            assert_eq!(Forwarded::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn reads_rfc7239_forms() {
        let f = Forwarded::parse("For=\"[2001:db8:cafe::17]:4711\"; proto=http;by=203.0.113.43, for=198.51.100.17")
            .unwrap();
        assert_eq!(f.for_node, Some(ForwardedFor::Socket("[2001:db8:cafe::17]:4711".parse().unwrap())));
        let f = Forwarded::parse("by=identifier;for=identifier2;host=\"example.com\";proto=https");
        assert!(matches!(f, Err(ForwardedError::InvalidNode { .. })));
        let f = Forwarded::parse("host=\"a\\\"b\"").unwrap();
        assert_eq!(f.host.as_deref(), Some("a\"b"));
    }

    #[test]
    fn malformed_forwarded_is_typed() {
        assert!(matches!(Forwarded::parse("for"), Err(ForwardedError::MissingEquals { .. })));
        assert!(matches!(Forwarded::parse("f r=1"), Err(ForwardedError::InvalidName { .. })));
        assert!(matches!(Forwarded::parse("for=\"10.0.0.1:1"), Err(ForwardedError::InvalidValue { .. })));
        assert!(matches!(Forwarded::parse("for=10.0.0.1:1"), Err(ForwardedError::InvalidValue { .. })));
        assert!(matches!(Forwarded::parse("for=\"2001:db8::1\""), Err(ForwardedError::InvalidNode { .. })));
        assert!(matches!(Forwarded::parse("for=\"[2001:db8::1]:x\""), Err(ForwardedError::InvalidNode { .. })));
        assert!(matches!(Forwarded::parse("for=1.2.3.4;FOR=1.2.3.5"), Err(ForwardedError::Duplicate { .. })));
        assert!(matches!(
            Forwarded::parse("host="),
            Err(ForwardedError::InvalidValue { .. }) | Err(ForwardedError::EmptyHost)
        ));
        assert!(matches!(Forwarded::parse("host=\"\""), Err(ForwardedError::EmptyHost)));
        assert!(matches!(Forwarded::parse("proto=\"pr\u{f6}to\""), Err(ForwardedError::NotAscii)));
    }
}
