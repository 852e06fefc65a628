//! The W3C Trace Context `traceparent` header: `version-traceid-parentid-flags` in lower-case hex, written as
//! ztunnel writes it (version `00`).

use std::fmt;
use std::str::FromStr;

use http::HeaderValue;

/// The `traceparent` header name.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Why a `traceparent` is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// The header is not ASCII.
    #[error("traceparent is not ASCII")]
    NotAscii,
    /// Too short, or version `00` with trailing data.
    #[error("traceparent is {length} bytes; version 00 is exactly 55 (00-<32 hex>-<16 hex>-<2 hex>)")]
    Length {
        /// The length received.
        length: usize,
    },
    /// A field is not lower-case hex of its width, or a separator is not `-`.
    #[error("traceparent field {field} is not {width} lower-case hex digits")]
    Field {
        /// `version`, `trace-id`, `parent-id` or `flags`.
        field: &'static str,
        /// The expected number of hex digits.
        width: usize,
    },
    /// Version `ff` is forbidden.
    #[error("traceparent version ff is invalid")]
    ForbiddenVersion,
    /// An all-zero trace id.
    #[error("traceparent trace-id is all zeros, which is invalid")]
    ZeroTraceId,
    /// An all-zero parent id.
    #[error("traceparent parent-id is all zeros, which is invalid")]
    ZeroParentId,
}

/// A W3C trace context parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    version: u8,
    trace_id: u128,
    parent_id: u64,
    flags: u8,
}

impl TraceParent {
    /// A version-00 traceparent; the ids must not be zero. The caller supplies the randomness.
    pub fn new(trace_id: u128, parent_id: u64, flags: u8) -> Result<Self, TraceParentError> {
        if trace_id == 0 {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == 0 {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(TraceParent { version: 0, trace_id, parent_id, flags })
    }

    /// The version.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The trace id.
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The parent (span) id.
    pub fn parent_id(&self) -> u64 {
        self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The header value.
    pub fn to_header_value(&self) -> HeaderValue {
        // Always 55 bytes of hex digits and '-', which are valid header bytes.
        HeaderValue::from_maybe_shared(self.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Parses the header text. Versions above `00` may carry more fields after a `-`, which are ignored.
    pub fn parse(text: &str) -> Result<Self, TraceParentError> {
        if !text.is_ascii() {
            return Err(TraceParentError::NotAscii);
        }
        if text.len() < 55 {
            return Err(TraceParentError::Length { length: text.len() });
        }
        let bytes = text.as_bytes();
        let version = hex_field(&text[0..2], "version")? as u8;
        if version == 0xff {
            return Err(TraceParentError::ForbiddenVersion);
        }
        if (version == 0 && text.len() != 55) || (text.len() > 55 && bytes[55] != b'-') {
            return Err(TraceParentError::Length { length: text.len() });
        }
        for (at, field, width) in [(2, "trace-id", 32), (35, "parent-id", 16), (52, "flags", 2)] {
            if bytes[at] != b'-' {
                return Err(TraceParentError::Field { field, width });
            }
        }
        let trace_id = hex_field(&text[3..35], "trace-id")?;
        let parent_id = hex_field(&text[36..52], "parent-id")? as u64;
        let flags = hex_field(&text[53..55], "flags")? as u8;
        if trace_id == 0 {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == 0 {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(TraceParent { version, trace_id, parent_id, flags })
    }
}

fn hex_field(text: &str, field: &'static str) -> Result<u128, TraceParentError> {
    let error = TraceParentError::Field { field, width: text.len() };
    if !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(error);
    }
    u128::from_str_radix(text, 16).map_err(|_| error)
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}-{:032x}-{:016x}-{:02x}", self.version, self.trace_id, self.parent_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn round_trips_the_w3c_example() {
        let tp = TraceParent::parse(SAMPLE).unwrap();
        assert_eq!(tp.trace_id(), 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(tp.parent_id(), 0xb7ad6b7169203331);
        assert_eq!(tp.flags(), 1);
        assert_eq!(tp.to_string(), SAMPLE);
        assert_eq!(tp.to_header_value().as_bytes(), SAMPLE.as_bytes());
        assert_eq!(
            TraceParent::new(1, 2, 0).unwrap().to_string(),
            "00-00000000000000000000000000000001-0000000000000002-00"
        );
    }

    #[test]
    fn future_versions_may_extend() {
        let tp = TraceParent::parse(&format!("cc{}-what-the-future-will-be-like", &SAMPLE[2..])).unwrap();
        assert_eq!(tp.version(), 0xcc);
        assert!(matches!(TraceParent::parse(&format!("cc{}x", &SAMPLE[2..])), Err(TraceParentError::Length { .. })));
    }

    #[test]
    fn malformed_traceparents_are_typed() {
        let cases: &[(&str, TraceParentError)] = &[
            ("00-abc", TraceParentError::Length { length: 6 }),
            ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-", TraceParentError::Length { length: 56 }),
            (
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                TraceParentError::Field { field: "trace-id", width: 32 },
            ),
            (
                "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                TraceParentError::Field { field: "trace-id", width: 32 },
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
                TraceParentError::Field { field: "parent-id", width: 16 },
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x",
                TraceParentError::Field { field: "flags", width: 2 },
            ),
            ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceParentError::ForbiddenVersion),
            ("00-00000000000000000000000000000000-b7ad6b7169203331-01", TraceParentError::ZeroTraceId),
            ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", TraceParentError::ZeroParentId),
        ];
        for (text, expected) in cases {
            assert_eq!(&TraceParent::parse(text).unwrap_err(), expected, "{text}");
        }
        assert_eq!(TraceParent::new(0, 1, 0), Err(TraceParentError::ZeroTraceId));
    }
}
