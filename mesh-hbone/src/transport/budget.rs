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
    /// Relays waiting for room in this budget, each registered once per round of wake-ups.
    waiters: Mutex<Waiters>,
    waiting: AtomicBool,
}

#[derive(Debug, Default)]
struct Waiters {
    wakers: Vec<Waker>,
    /// Counts the rounds of wake-ups: a relay registered in the current round is not registered again.
    round: u64,
}

impl SendBudget {
    pub(crate) fn new(limit: u64) -> Self {
        SendBudget {
            limit: limit.max(1),
            used: AtomicU64::new(0),
            waiters: Mutex::new(Waiters::default()),
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
            let wakers = {
                let mut waiters = lock(&self.waiters);
                self.waiting.store(false, Ordering::Release);
                waiters.round += 1;
                std::mem::take(&mut waiters.wakers)
            };
            wakers.into_iter().for_each(Waker::wake);
        }
    }

    /// Registers `cx` to be woken when bytes are given back, unless `registered` says it already is;
    /// `true` if there is room after all.
    fn wait(&self, cx: &Context<'_>, registered: &mut Option<u64>) -> bool {
        {
            let mut waiters = lock(&self.waiters);
            if *registered != Some(waiters.round) {
                waiters.wakers.push(cx.waker().clone());
                *registered = Some(waiters.round);
            }
            self.waiting.store(true, Ordering::Release);
        }
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
    /// Streams with a waker set.
    waiting: usize,
}

impl Accounts {
    fn remove(&mut self, stream: u32) {
        if let Some(Entry { waker: Some(_), .. }) = self.streams.remove(&stream) {
            self.waiting -= 1;
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// Reserved or buffered, not yet written.
    outstanding: u64,
    /// END_STREAM or RST_STREAM went out, or a reset came in: nothing more will be written for it.
    finished: bool,
    /// The relay's stream handle is gone.
    released: bool,
    /// The relay waiting for room in the connection's budget.
    waker: Option<Waker>,
    /// The round of the total budget's wake-ups the relay is registered in.
    total_round: Option<u64>,
}

impl Ledger {
    pub(crate) fn new(total: Arc<SendBudget>, limit: u64) -> Self {
        Ledger { total, limit: limit.max(1), inner: Mutex::new(Accounts::default()) }
    }

    /// Reserves up to `want` bytes for `stream`: `Ready(n)` with `0 < n <= want` once both budgets have room.
    pub(crate) fn poll_reserve(&self, cx: &Context<'_>, stream: u32, want: u64) -> Poll<u64> {
        let mut guard = lock(&self.inner);
        let accounts = &mut *guard;
        let left = self.limit.saturating_sub(accounts.used);
        let entry = accounts.streams.entry(stream).or_default();
        if left == 0 {
            match &entry.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                Some(_) => entry.waker = Some(cx.waker().clone()),
                None => {
                    entry.waker = Some(cx.waker().clone());
                    accounts.waiting += 1;
                }
            }
            return Poll::Pending;
        }
        let mut granted = self.total.take(want.min(left));
        if granted == 0 {
            if !self.total.wait(cx, &mut entry.total_round) {
                return Poll::Pending;
            }
            granted = self.total.take(want.min(left));
            if granted == 0 {
                return Poll::Pending;
            }
        }
        accounts.used += granted;
        entry.outstanding += granted;
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
                accounts.remove(stream);
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
            accounts.remove(stream);
        }
        self.give_back(&mut accounts, paid);
    }

    fn give_back(&self, accounts: &mut Accounts, n: u64) {
        if n == 0 {
            return;
        }
        accounts.used -= n;
        self.total.give_back(n);
        if accounts.waiting > 0 && accounts.used < self.limit {
            accounts.waiting = 0;
            for entry in accounts.streams.values_mut() {
                if let Some(waker) = entry.waker.take() {
                    waker.wake();
                }
            }
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
    fn a_waiting_relay_is_registered_once_however_often_it_is_polled() {
        let total = Arc::new(SendBudget::new(10));
        let ledger = Arc::new(Ledger::new(Arc::clone(&total), 100));
        assert_eq!(ledger.poll_reserve(&cx(), 1, 10), Poll::Ready(10));
        for _ in 0..1000 {
            assert_eq!(ledger.poll_reserve(&cx(), 3, 10), Poll::Pending);
        }
        assert_eq!(lock(&total.waiters).wakers.len(), 1, "the total budget's waiters");
        ledger.written(1, 10);
        assert_eq!(lock(&total.waiters).wakers.len(), 0, "woken");
        let tight = Arc::new(Ledger::new(Arc::clone(&total), 5));
        assert_eq!(tight.poll_reserve(&cx(), 1, 10), Poll::Ready(5));
        for _ in 0..1000 {
            assert_eq!(tight.poll_reserve(&cx(), 1, 10), Poll::Pending);
        }
        assert_eq!(lock(&tight.inner).waiting, 1, "the connection budget's waiters");
        tight.finished(1);
        assert_eq!(lock(&tight.inner).waiting, 0);
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
