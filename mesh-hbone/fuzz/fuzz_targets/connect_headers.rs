//! Feeds arbitrary text to the parsers of what a CONNECT carries (`:authority`, `baggage`, `forwarded`,
//! `traceparent`): they must never panic, and whatever parses must be written back in a form that parses to the
//! same value.
//!
//! Run with `cargo +nightly fuzz run connect_headers` from `mesh-hbone/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_hbone::{Baggage, Forwarded, HboneAddress, TraceParent};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(address) = HboneAddress::parse(text) {
        assert_eq!(HboneAddress::parse(&address.to_string()).ok(), Some(address));
    }
    if let Ok(baggage) = Baggage::parse(text) {
        if let Ok(written) = baggage.format() {
            assert_eq!(Baggage::parse(&written).ok(), Some(baggage));
        }
    }
    if let Ok(forwarded) = Forwarded::parse(text) {
        if let Ok(written) = forwarded.format() {
            assert_eq!(Forwarded::parse(&written).ok(), Some(forwarded));
        }
    }
    if let Ok(traceparent) = TraceParent::parse(text) {
        assert_eq!(TraceParent::parse(&traceparent.to_string()).ok(), Some(traceparent));
    }
});
