//! A bounded least-recently-used cache of verified tokens, so a token seen again costs a hash lookup rather than a
//! signature check.
//!
//! Entries are keyed by the exact token text and record the rules the token has passed. Only tokens that passed
//! every check under a rule are stored, and a hit is re-checked against the current time, so the cache never
//! changes an outcome, only its cost. The list is kept in a slab (indices, not pointers), so there is no unsafe code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::claims::VerifiedToken;

/// The default number of tokens an [`Authenticator`](super::Authenticator) remembers (Envoy's default).
pub const DEFAULT_CACHE_CAPACITY: usize = 100;

/// Counters for an [`Authenticator`](super::Authenticator)'s token cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Tokens answered from the cache.
    pub hits: u64,
    /// Tokens that had to be parsed and verified.
    pub misses: u64,
    /// Tokens held now.
    pub len: usize,
    /// The most tokens held at once.
    pub capacity: usize,
}

/// What is remembered about a token.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) token: Arc<VerifiedToken>,
    /// The token's `nbf`, needed to re-check a hit against the current time.
    pub(crate) not_before: Option<u64>,
    /// The rules (by index) the token has passed.
    pub(crate) rules: Vec<usize>,
}

pub(crate) struct TokenCache {
    capacity: usize,
    lru: Mutex<Lru>,
}

const NIL: usize = usize::MAX;

#[derive(Default)]
struct Lru {
    index: HashMap<Arc<str>, usize>,
    slots: Vec<Slot>,
    /// Most recently used.
    head: usize,
    /// Least recently used: evicted first.
    tail: usize,
    free: Vec<usize>,
    hits: u64,
    misses: u64,
}

struct Slot {
    /// `None` while the slot is on the free list.
    item: Option<(Arc<str>, Entry)>,
    prev: usize,
    next: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache { capacity, lru: Mutex::new(Lru { head: NIL, tail: NIL, ..Lru::default() }) }
    }

    /// `None` when the cache is disabled or a thread panicked while holding it; callers then do the full check.
    fn lock(&self) -> Option<MutexGuard<'_, Lru>> {
        if self.capacity == 0 {
            return None;
        }
        self.lru.lock().ok()
    }

    /// Looks `token` up and lets `use_entry` decide whether the entry answers the question: `Some` counts as a
    /// hit (and marks the entry recently used), `None` as a miss.
    pub(crate) fn lookup<R>(&self, token: &str, use_entry: impl FnOnce(&Entry) -> Option<R>) -> Option<R> {
        let mut lru = self.lock()?;
        let answer = lru.index.get(token).copied().and_then(|slot| {
            let (_, entry) = lru.slots.get(slot)?.item.as_ref()?;
            let answer = use_entry(entry)?;
            lru.touch(slot);
            Some(answer)
        });
        match answer {
            Some(_) => lru.hits += 1,
            None => lru.misses += 1,
        }
        answer
    }

    /// Records that `token` passed `rule`.
    pub(crate) fn insert(&self, token: &str, verified: &Arc<VerifiedToken>, not_before: Option<u64>, rule: usize) {
        let Some(mut lru) = self.lock() else { return };
        if let Some(slot) = lru.index.get(token).copied() {
            if let Some(Slot { item: Some((_, entry)), .. }) = lru.slots.get_mut(slot)
                && !entry.rules.contains(&rule)
            {
                entry.rules.push(rule);
            }
            lru.touch(slot);
            return;
        }
        let key: Arc<str> = Arc::from(token);
        let entry = Entry { token: Arc::clone(verified), not_before, rules: vec![rule] };
        if lru.index.len() >= self.capacity {
            lru.evict_tail();
        }
        lru.push_front(key, entry);
    }

    /// Forgets `token` (e.g. once it has expired).
    pub(crate) fn remove(&self, token: &str) {
        let Some(mut lru) = self.lock() else { return };
        if let Some(slot) = lru.index.remove(token) {
            lru.unlink(slot);
            lru.release(slot);
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        match self.lock() {
            Some(lru) => {
                CacheStats { hits: lru.hits, misses: lru.misses, len: lru.index.len(), capacity: self.capacity }
            }
            None => CacheStats { capacity: self.capacity, ..CacheStats::default() },
        }
    }
}

impl Lru {
    fn touch(&mut self, slot: usize) {
        if self.head != slot {
            self.unlink(slot);
            self.link_front(slot);
        }
    }

    fn push_front(&mut self, key: Arc<str>, entry: Entry) {
        let slot = Slot { item: Some((Arc::clone(&key), entry)), prev: NIL, next: NIL };
        let index = match self.free.pop() {
            Some(index) if index < self.slots.len() => {
                self.slots[index] = slot;
                index
            }
            _ => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.index.insert(key, index);
        self.link_front(index);
    }

    fn evict_tail(&mut self) {
        let tail = self.tail;
        let Some((key, _)) = self.slots.get(tail).and_then(|slot| slot.item.as_ref()) else { return };
        let key = Arc::clone(key);
        self.index.remove(&key);
        self.unlink(tail);
        self.release(tail);
    }

    /// Drops the slot's entry (its token and claims) and makes it reusable.
    fn release(&mut self, slot: usize) {
        if let Some(released) = self.slots.get_mut(slot) {
            released.item = None;
            self.free.push(slot);
        }
    }

    fn unlink(&mut self, slot: usize) {
        let Some((prev, next)) = self.slots.get(slot).map(|s| (s.prev, s.next)) else { return };
        match self.slots.get_mut(prev) {
            Some(before) => before.next = next,
            None => self.head = next,
        }
        match self.slots.get_mut(next) {
            Some(after) => after.prev = prev,
            None => self.tail = prev,
        }
        if let Some(s) = self.slots.get_mut(slot) {
            s.prev = NIL;
            s.next = NIL;
        }
    }

    fn link_front(&mut self, slot: usize) {
        let old_head = self.head;
        if let Some(s) = self.slots.get_mut(slot) {
            s.prev = NIL;
            s.next = old_head;
        }
        match self.slots.get_mut(old_head) {
            Some(head) => head.prev = slot,
            None => self.tail = slot,
        }
        self.head = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(issuer: &str) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            issuer: issuer.into(),
            subject: None,
            audiences: vec![],
            presenter: None,
            claims: serde_json::Map::new(),
            expires_at: None,
        })
    }

    fn issuer_of(cache: &TokenCache, token: &str) -> Option<String> {
        cache.lookup(token, |entry| Some(entry.token.issuer.clone()))
    }

    #[test]
    fn least_recently_used_is_evicted() {
        let cache = TokenCache::new(2);
        cache.insert("a", &verified("A"), None, 0);
        cache.insert("b", &verified("B"), None, 0);
        assert_eq!(issuer_of(&cache, "a").as_deref(), Some("A"));
        cache.insert("c", &verified("C"), None, 0);
        assert_eq!(issuer_of(&cache, "b"), None);
        assert_eq!(issuer_of(&cache, "a").as_deref(), Some("A"));
        assert_eq!(issuer_of(&cache, "c").as_deref(), Some("C"));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.len, stats.capacity), (3, 1, 2, 2));
    }

    #[test]
    fn rules_accumulate_and_removal_frees_the_slot() {
        let cache = TokenCache::new(3);
        cache.insert("a", &verified("A"), None, 2);
        cache.insert("a", &verified("A"), None, 0);
        cache.insert("a", &verified("A"), None, 2);
        assert_eq!(cache.lookup("a", |entry| Some(entry.rules.clone())), Some(vec![2, 0]));
        cache.remove("a");
        cache.remove("a");
        assert_eq!(issuer_of(&cache, "a"), None);
        for (i, key) in ["p", "q", "r", "s", "t"].into_iter().enumerate() {
            cache.insert(key, &verified(key), None, i);
        }
        assert_eq!(cache.stats().len, 3);
        assert!(cache.lru.lock().unwrap().slots.len() <= 3);
        assert_eq!(issuer_of(&cache, "r").as_deref(), Some("r"));
        assert_eq!(issuer_of(&cache, "q"), None);
    }

    #[test]
    fn a_declined_entry_is_a_miss() {
        let cache = TokenCache::new(1);
        cache.insert("a", &verified("A"), None, 0);
        assert_eq!(cache.lookup("a", |_| None::<()>), None);
        assert_eq!(cache.stats().misses, 1);
    }

    #[test]
    fn capacity_zero_disables_caching() {
        let cache = TokenCache::new(0);
        cache.insert("a", &verified("A"), None, 0);
        assert_eq!(issuer_of(&cache, "a"), None);
        assert_eq!(cache.stats(), CacheStats::default());
    }
}
