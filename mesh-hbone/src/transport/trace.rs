//! Trace ids for CONNECTs that carry none.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::traceparent::TraceParent;

static COUNTER: AtomicU64 = AtomicU64::new(1);

fn random_u64() -> u64 {
    // SipHash with a per-process random key over a counter: unpredictable enough for trace ids, which are not
    // secrets; no RNG dependency is needed.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A fresh version-00 `traceparent` (not sampled), as ztunnel starts one per outbound connection.
pub fn random_traceparent() -> TraceParent {
    loop {
        let trace_id = (u128::from(random_u64()) << 64) | u128::from(random_u64());
        if let Ok(tp) = TraceParent::new(trace_id, random_u64(), 0) {
            return tp;
        }
    }
}
