//! What a server holds in HTTP/2 send buffers for its peers, counted per connection and in total.
//!
//! A relay reserves bytes here before it reads from its upstream, and the reservation is paid back as the
//! connection writes the DATA out (seen by [`super::guard`]), or when the stream ends without writing them (a
//! reset, which discards what h2 still held). A peer that stops reading therefore stops its tunnels' upstream
//! reads once its connection's budget, or the server's, is spent: backpressure reaches the upstream instead of
//! memory filling up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// The server-wide budget, shared by all connections.
#[derive(Debug)]
pub(crate) struct SendBudget {
    limit: u64,
    used: AtomicU64,
    /// Relays waiting for room in this budget.
    waiters: Mutex<Vec<Waker>>,
    waiting: AtomicBool,
}

impl SendBudget {
    pub(crate) fn new(limit: u64) -> Self {
        SendBudget {
            limit: limit.max(1),
            used: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            waiting: false.into(),
        }
    }

    /// Bytes reserved or buffered across all connections.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Takes up to `want` bytes, none if the budget is spent.
    fn take(&self, want: u64) -> u64 {
        let mut granted = 0;
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            granted = want.min(self.limit.saturating_sub(used));
            (granted > 0).then_some(used + granted)
        });
        granted
    }

    fn give_back(&self, n: u64) {
        if n == 0 {
            return;
        }
        let before = self.used.fetch_sub(n, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) && before - n < self.limit {
            self.waiting.store(false, Ordering::Release);
            let waiters = std::mem::take(&mut *lock(&self.waiters));
            waiters.into_iter().for_each(Waker::wake);
        }
    }

    /// Registers `cx` to be woken when bytes are given back; `true` if there is room after all.
    fn wait(&self, cx: &Context<'_>) -> bool {
        lock(&self.waiters).push(cx.waker().clone());
        self.waiting.store(true, Ordering::Release);
        self.used.load(Ordering::Acquire) < self.limit
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is a few arithmetic steps that cannot leave them half done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One connection's account: its budget and what each of its streams owes.
#[derive(Debug)]
pub(crate) struct Ledger {
    total: Arc<SendBudget>,
    limit: u64,
    inner: Mutex<Accounts>,
}

#[derive(Debug, Default)]
struct Accounts {
    used: u64,
    streams: HashMap<u32, Entry>,
    waiters: Vec<Waker>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Reserved or buffered, not yet written.
    outstanding: u64,
    /// END_STREAM or RST_STREAM went out, or a reset came in: nothing more will be written for it.
    finished: bool,
    /// The relay's stream handle is gone.
    released: bool,
}

impl Ledger {
    pub(crate) fn new(total: Arc<SendBudget>, limit: u64) -> Self {
        Ledger { total, limit: limit.max(1), inner: Mutex::new(Accounts::default()) }
    }

    /// Reserves up to `want` bytes for `stream`: `Ready(n)` with `0 < n <= want` once both budgets have room.
    pub(crate) fn poll_reserve(&self, cx: &Context<'_>, stream: u32, want: u64) -> Poll<u64> {
        let mut accounts = lock(&self.inner);
        let left = self.limit.saturating_sub(accounts.used);
        if left == 0 {
            accounts.waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        let mut granted = self.total.take(want.min(left));
        if granted == 0 {
            if !self.total.wait(cx) {
                return Poll::Pending;
            }
            granted = self.total.take(want.min(left));
            if granted == 0 {
                return Poll::Pending;
            }
        }
        accounts.used += granted;
        accounts.streams.entry(stream).or_default().outstanding += granted;
        Poll::Ready(granted)
    }

    /// Gives back the part of a reservation for `stream` that was not sent.
    pub(crate) fn unused(&self, stream: u32, n: u64) {
        self.pay(stream, n, false);
    }

    /// `n` DATA payload bytes of `stream` were written to the connection.
    pub(crate) fn written(&self, stream: u32, n: u64) {
        self.pay(stream, n, false);
    }

    /// Nothing more of `stream` will be written: what it still owes is given back.
    pub(crate) fn finished(&self, stream: u32) {
        self.pay(stream, u64::MAX, true);
    }

    /// The relay's handle of `stream` is gone; its account closes once the stream is finished too.
    pub(crate) fn release(&self, stream: u32) {
        let mut accounts = lock(&self.inner);
        if let Some(entry) = accounts.streams.get_mut(&stream) {
            if entry.finished || entry.outstanding == 0 {
                let owed = entry.outstanding;
                accounts.streams.remove(&stream);
                self.give_back(&mut accounts, owed);
            } else {
                entry.released = true;
            }
        }
    }

    fn pay(&self, stream: u32, n: u64, finish: bool) {
        let mut accounts = lock(&self.inner);
        let Some(entry) = accounts.streams.get_mut(&stream) else { return };
        let paid = n.min(entry.outstanding);
        entry.outstanding -= paid;
        if finish {
            entry.finished = true;
        }
        if entry.finished && entry.released {
            accounts.streams.remove(&stream);
        }
        self.give_back(&mut accounts, paid);
    }

    fn give_back(&self, accounts: &mut Accounts, n: u64) {
        if n == 0 {
            return;
        }
        accounts.used -= n;
        self.total.give_back(n);
        if accounts.used < self.limit && !accounts.waiters.is_empty() {
            accounts.waiters.drain(..).for_each(Waker::wake);
        }
    }

    /// Bytes this connection has reserved or buffered.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        lock(&self.inner).used
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // The connection is gone, and with it everything h2 buffered.
        let used = std::mem::take(&mut lock(&self.inner).used);
        self.total.give_back(used);
    }
}

/// A relay's handle on its stream's account.
#[derive(Debug)]
pub(crate) struct StreamAccount {
    ledger: Arc<Ledger>,
    stream: u32,
}

impl StreamAccount {
    pub(crate) fn new(ledger: Arc<Ledger>, stream: u32) -> Self {
        StreamAccount { ledger, stream }
    }

    pub(crate) fn poll_reserve(&self, cx: &Context<'_>, want: u64) -> Poll<u64> {
        self.ledger.poll_reserve(cx, self.stream, want)
    }

    pub(crate) fn unused(&self, n: u64) {
        self.ledger.unused(self.stream, n);
    }
}

impl Drop for StreamAccount {
    fn drop(&mut self) {
        self.ledger.release(self.stream);
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn reservations_stop_at_the_connection_budget_and_come_back_as_written() {
        let total = Arc::new(SendBudget::new(1 << 20));
        let ledger = Arc::new(Ledger::new(Arc::clone(&total), 100));
        let a = StreamAccount::new(Arc::clone(&ledger), 1);
        assert_eq!(a.poll_reserve(&cx(), 60), Poll::Ready(60));
        assert_eq!(a.poll_reserve(&cx(), 60), Poll::Ready(40), "only what is left");
        assert_eq!(a.poll_reserve(&cx(), 1), Poll::Pending);
        ledger.written(1, 30);
        assert_eq!((ledger.used(), total.used()), (70, 70));
        assert_eq!(a.poll_reserve(&cx(), 50), Poll::Ready(30));
        a.unused(10);
        assert_eq!(ledger.used(), 90);
    }

    #[test]
    fn the_total_budget_spans_connections() {
        let total = Arc::new(SendBudget::new(100));
        let first = Arc::new(Ledger::new(Arc::clone(&total), 80));
        let second = Arc::new(Ledger::new(Arc::clone(&total), 80));
        assert_eq!(first.poll_reserve(&cx(), 1, 80), Poll::Ready(80));
        assert_eq!(second.poll_reserve(&cx(), 1, 80), Poll::Ready(20));
        assert_eq!(second.poll_reserve(&cx(), 1, 80), Poll::Pending);
        drop(first);
        assert_eq!(total.used(), 20, "a closed connection gives back all it held");
        assert_eq!(second.poll_reserve(&cx(), 1, 80), Poll::Ready(60));
    }

    #[test]
    fn a_finished_stream_gives_back_what_it_still_owes() {
        let total = Arc::new(SendBudget::new(1000));
        let ledger = Arc::new(Ledger::new(Arc::clone(&total), 1000));
        let account = StreamAccount::new(Arc::clone(&ledger), 3);
        assert_eq!(account.poll_reserve(&cx(), 500), Poll::Ready(500));
        // The relay ended gracefully: the handle goes while h2 still holds the bytes.
        drop(account);
        assert_eq!(ledger.used(), 500, "still buffered, still counted");
        ledger.written(3, 200);
        ledger.finished(3);
        assert_eq!((ledger.used(), total.used()), (0, 0));
        // Later frames of a closed account change nothing.
        ledger.written(3, 100);
        assert_eq!(ledger.used(), 0);
    }
}
