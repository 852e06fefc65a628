//! Watches the HTTP/2 frames of a connection as they pass between h2 and TLS, for what h2 does not bound or
//! expose (on both ends; the send budget at servers only):
//!
//! - **Control frame floods.** SETTINGS, PING, PRIORITY, WINDOW_UPDATE and frames of unknown types cost the
//!   server work but carry nothing; each draws one token from a bucket that refills at
//!   [`FloodLimit::per_second`]. An empty bucket trips the guard: the server sends GOAWAY ENHANCE_YOUR_CALM
//!   and closes. (HEADERS, CONTINUATION, RST_STREAM and DATA floods are h2's own limits.)
//! - **Unpredictable PINGs.** h2 pings with a fixed payload, which a peer can acknowledge without reading
//!   anything. The payload of each PING the server sends is XORed with a per-connection random mask on the
//!   way out, and each PING ACK's payload with the same mask on the way in: h2 sees its own payload again
//!   only if the peer echoed what was actually sent, and ignores any other ACK, so its keepalive times out.
//! - **Send buffer accounting** (servers). DATA payload bytes written, END_STREAM and RST_STREAM going out and
//!   RST_STREAM coming in are reported to the connection's [`Ledger`].
//!
//! Only frame headers are parsed; payloads pass untouched and uncopied, except the 8 bytes of a PING.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
#[cfg(test)]
use std::time::Duration;
use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::budget::Ledger;
use super::frames::{
    CONTINUATION, Cursor, DATA, END_STREAM, Event, Masked, PING, PRIORITY, RST_STREAM, SETTINGS, WINDOW_UPDATE,
};

/// How many control frames a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FloodLimit {
    /// Sustained rate.
    pub(crate) per_second: u32,
    /// Burst: the bucket's size.
    pub(crate) burst: u32,
}

impl FloodLimit {
    /// The defaults of [`ServerLimits`](super::ServerLimits), also used by clients.
    pub(crate) const DEFAULT: FloodLimit = FloodLimit { per_second: 5_000, burst: 10_000 };
}
/// A token bucket of control frames.
#[derive(Debug)]
struct Bucket {
    limit: FloodLimit,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(limit: FloodLimit) -> Self {
        Bucket { limit, tokens: f64::from(limit.burst.max(1)), at: Instant::now() }
    }

    /// Takes a token; `false` when there is none.
    fn take(&mut self) -> bool {
        if self.tokens < 1.0 {
            let now = Instant::now();
            let refill = now.duration_since(self.at).as_secs_f64() * f64::from(self.limit.per_second);
            self.tokens = (self.tokens + refill).min(f64::from(self.limit.burst.max(1)));
            self.at = now;
        }
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Set once the peer flooded the connection.
#[derive(Debug, Default)]
pub(crate) struct Tripped {
    notify: Notify,
    why: std::sync::OnceLock<&'static str>,
}

impl Tripped {
    /// Completes once the guard tripped; says which frames flooded.
    pub(crate) async fn wait(&self) -> &'static str {
        loop {
            if let Some(why) = self.why.get() {
                return why;
            }
            self.notify.notified().await;
        }
    }

    fn trip(&self, why: &'static str) {
        if self.why.set(why).is_ok() {
            self.notify.notify_one();
        }
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        PRIORITY => "PRIORITY",
        SETTINGS => "SETTINGS",
        PING => "PING",
        WINDOW_UPDATE => "WINDOW_UPDATE",
        _ => "unknown-type",
    }
}

/// The connection's IO as h2 sees it.
pub(crate) struct Guard<IO> {
    io: IO,
    read: Cursor,
    write: Cursor,
    mask: [u8; 8],
    bucket: Bucket,
    tripped: Arc<Tripped>,
    ledger: Option<Arc<Ledger>>,
}

impl<IO> Guard<IO> {
    /// Guards the server side of `io`, past the TLS handshake (the client preface comes first).
    pub(crate) fn server(io: IO, limit: FloodLimit, mask: [u8; 8], ledger: Arc<Ledger>) -> (Self, Arc<Tripped>) {
        Self::new(io, true, limit, mask, Some(ledger))
    }

    /// Guards the client side of `io`, past the TLS handshake (the client preface goes out first).
    pub(crate) fn client(io: IO, limit: FloodLimit, mask: [u8; 8]) -> (Self, Arc<Tripped>) {
        Self::new(io, false, limit, mask, None)
    }

    fn new(
        io: IO,
        server: bool,
        limit: FloodLimit,
        mask: [u8; 8],
        ledger: Option<Arc<Ledger>>,
    ) -> (Self, Arc<Tripped>) {
        let tripped = Arc::new(Tripped::default());
        let guard = Guard {
            io,
            read: Cursor::new(server, Masked::Acks),
            write: Cursor::new(!server, Masked::Pings),
            mask,
            bucket: Bucket::new(limit),
            tripped: Arc::clone(&tripped),
            ledger,
        };
        (guard, tripped)
    }
}

fn on_read(bucket: &mut Bucket, tripped: &Tripped, ledger: Option<&Ledger>, event: Event) {
    let Event::Head(head) = event else { return };
    match head.kind {
        PRIORITY | SETTINGS | PING | WINDOW_UPDATE => {}
        RST_STREAM => {
            // h2 drops what it buffered for the stream.
            if let Some(ledger) = ledger {
                ledger.finished(head.stream);
            }
            return;
        }
        k if k <= CONTINUATION => return,
        _ => {}
    }
    if !bucket.take() {
        tripped.trip(kind_name(head.kind));
    }
}

fn on_write(ledger: Option<&Ledger>, event: Event) {
    let Some(ledger) = ledger else { return };
    match event {
        Event::Payload(head, n) if head.kind == DATA => ledger.written(head.stream, u64::from(n)),
        Event::End(head) if head.kind == DATA && head.flags & END_STREAM != 0 => ledger.finished(head.stream),
        Event::Head(head) if head.kind == RST_STREAM => ledger.finished(head.stream),
        _ => {}
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guard<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tripped.why.get().is_some() {
            // The connection is being closed for the flood: nothing more is read.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let mask = this.mask;
        let filled = &mut buf.filled_mut()[before..];
        let (bucket, tripped, ledger) = (&mut this.bucket, &*this.tripped, this.ledger.as_deref());
        let mut events = |e| on_read(bucket, tripped, ledger, e);
        let cursor = &mut this.read;
        let mut i = 0;
        while i < filled.len() {
            i += cursor.pass(&filled[i..], true, &mut events);
            if let Some((offset, left)) = cursor.in_masked() {
                let run = left.min(filled.len() - i);
                cursor.pass(&filled[i..i + run], false, &mut events);
                for (k, byte) in filled[i..i + run].iter_mut().enumerate() {
                    *byte ^= mask[offset + k];
                }
                i += run;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> Guard<IO> {
    /// Writes the masked PING payload bytes at the front of `buf`.
    fn poll_write_masked(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        (offset, left): (usize, usize),
    ) -> Poll<io::Result<usize>> {
        let run = buf.len().min(left);
        let mut masked = [0u8; 8];
        for (k, byte) in buf[..run].iter().enumerate() {
            masked[k] = byte ^ self.mask[offset + k];
        }
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, &masked[..run]))?;
        let ledger = self.ledger.as_deref();
        self.write.pass(&buf[..n], false, &mut |e| on_write(ledger, e));
        Poll::Ready(Ok(n))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guard<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(masked) = this.write.in_masked() {
            return this.poll_write_masked(cx, buf, masked);
        }
        let clear = this.write.unmasked_prefix(buf);
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, &buf[..clear]))?;
        let ledger = this.ledger.as_deref();
        this.write.pass(&buf[..n], false, &mut |e| on_write(ledger, e));
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else { return Poll::Ready(Ok(0)) };
        let bufs = &bufs[first..];
        if this.write.in_masked().is_some() {
            return Pin::new(this).poll_write(cx, &bufs[0]);
        }
        // Pass the slices before the first one a PING payload starts in (all of them, usually) in one vectored
        // write; when the first slice holds one, it goes alone, up to it.
        let mut ahead = this.write;
        let mut take = 0;
        for buf in bufs {
            let clear = ahead.pass(buf, true, &mut |_| {});
            if clear < buf.len() {
                if take == 0 {
                    return Pin::new(this).poll_write(cx, &bufs[0]);
                }
                break;
            }
            take += 1;
        }
        let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &bufs[..take]))?;
        let ledger = this.ledger.as_deref();
        let mut left = n;
        for buf in &bufs[..take] {
            let k = left.min(buf.len());
            this.write.pass(&buf[..k], false, &mut |e| on_write(ledger, e));
            left -= k;
            if left == 0 {
                break;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A per-connection random PING mask.
pub(crate) fn random_mask() -> io::Result<[u8; 8]> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut mask = [0u8; 8];
    SystemRandom::new().fill(&mut mask).map_err(|_| io::Error::other("the system random generator failed"))?;
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_runs_dry_and_refills() {
        let mut fast = Bucket::new(FloodLimit { per_second: 1_000, burst: 10 });
        assert!((0..10).all(|_| fast.take()));
        std::thread::sleep(Duration::from_millis(20));
        assert!(fast.take(), "20 ms at 1,000 a second brings tokens back");
        let mut slow = Bucket::new(FloodLimit { per_second: 1, burst: 3 });
        assert!((0..3).all(|_| slow.take()));
        assert!(!slow.take(), "a dry bucket refuses");
    }
}
