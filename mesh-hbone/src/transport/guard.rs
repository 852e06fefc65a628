//! Watches the HTTP/2 frames of a connection as they pass between h2 and TLS, for what h2 does not bound or
//! expose (on both ends; the send budget at servers only):
//!
//! - **Control frame floods.** SETTINGS, PING, PRIORITY, WINDOW_UPDATE, GOAWAY and frames of unknown types
//!   cost the server work but carry nothing. Each draws one token from a bucket of frames, refilled at
//!   [`FloodLimit::per_second`], and its size (header included) from a bucket of bytes, refilled at
//!   [`FloodLimit::bytes_per_second`]: a few large frames (1 MiB SETTINGS, as the maximum frame size allows)
//!   cost as much to decrypt and parse as many small ones. A SETTINGS frame of more than
//!   [`FloodLimit::max_settings`] settings (6 bytes each) is refused outright, from its header, before its
//!   payload is read. Any of these trips the guard: the server sends GOAWAY ENHANCE_YOUR_CALM and closes.
//!   (HEADERS, CONTINUATION, RST_STREAM and DATA floods are h2's own limits.)
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
    CONTINUATION, Cursor, DATA, END_STREAM, Event, GOAWAY, HEADER_LEN, Head, Masked, PING, PRIORITY, RST_STREAM,
    SETTINGS, WINDOW_UPDATE,
};

/// What control frames a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FloodLimit {
    /// Frames per second, sustained.
    pub(crate) per_second: u32,
    /// Frames in a burst: the frame bucket's size.
    pub(crate) burst: u32,
    /// Bytes per second (frame headers included), sustained.
    pub(crate) bytes_per_second: u32,
    /// Bytes in a burst: the byte bucket's size, and so the largest control frame accepted.
    pub(crate) byte_burst: u32,
    /// Most settings in one SETTINGS frame.
    pub(crate) max_settings: u32,
}

impl FloodLimit {
    /// The defaults of [`ServerLimits`](super::ServerLimits), also used by clients.
    pub(crate) const DEFAULT: FloodLimit = FloodLimit {
        per_second: 5_000,
        burst: 10_000,
        bytes_per_second: 256 * 1024,
        byte_burst: 1024 * 1024,
        max_settings: MAX_SETTINGS,
    };
}

/// The settings RFC 9113 and its extensions define (1 to 6; 8, ENABLE_CONNECT_PROTOCOL; 9,
/// NO_RFC7540_PRIORITIES), four times over: room for repeats and for the unknown settings some stacks send to
/// keep peers tolerant of them.
pub(crate) const MAX_SETTINGS: u32 = 32;

/// The size of a SETTINGS entry.
const SETTING_LEN: u32 = 6;

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    per_second: f64,
    size: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_second: u32, size: u32) -> Self {
        let size = f64::from(size.max(1));
        Bucket { per_second: f64::from(per_second), size, tokens: size, at: Instant::now() }
    }

    /// Takes `n` tokens; `false` when there are not as many (more than the bucket's size never are).
    fn take(&mut self, n: f64) -> bool {
        if self.tokens < n {
            let now = Instant::now();
            let refill = now.duration_since(self.at).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + refill).min(self.size);
            self.at = now;
        }
        if self.tokens < n {
            return false;
        }
        self.tokens -= n;
        true
    }
}

/// A connection's control frame allowance.
#[derive(Debug)]
struct Allowance {
    frames: Bucket,
    bytes: Bucket,
    max_settings: u32,
}

impl Allowance {
    fn new(limit: FloodLimit) -> Self {
        Allowance {
            frames: Bucket::new(limit.per_second, limit.burst),
            bytes: Bucket::new(limit.bytes_per_second, limit.byte_burst),
            max_settings: limit.max_settings,
        }
    }

    /// Admits a control frame, from its header; otherwise says why not.
    fn admit(&mut self, head: &Head) -> Result<(), &'static str> {
        if head.kind == SETTINGS && head.len > self.max_settings.saturating_mul(SETTING_LEN) {
            return Err("oversized SETTINGS");
        }
        if !self.frames.take(1.0) {
            return Err(kind_name(head.kind));
        }
        if !self.bytes.take(f64::from(head.len) + HEADER_LEN as f64) {
            return Err("control frame bytes");
        }
        Ok(())
    }
}

/// Set once the peer flooded the connection.
#[derive(Debug, Default)]
pub(crate) struct Tripped {
    notify: Notify,
    why: std::sync::OnceLock<&'static str>,
}

impl Tripped {
    /// Completes once the guard tripped; says which limit the frames broke (a frame type for the frame count).
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
        GOAWAY => "GOAWAY",
        _ => "unknown-type",
    }
}

/// The connection's IO as h2 sees it.
pub(crate) struct Guard<IO> {
    io: IO,
    read: Cursor,
    write: Cursor,
    mask: [u8; 8],
    allowance: Allowance,
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
            allowance: Allowance::new(limit),
            tripped: Arc::clone(&tripped),
            ledger,
        };
        (guard, tripped)
    }
}

fn on_read(allowance: &mut Allowance, tripped: &Tripped, ledger: Option<&Ledger>, event: Event) {
    let Event::Head(head) = event else { return };
    match head.kind {
        PRIORITY | SETTINGS | PING | WINDOW_UPDATE | GOAWAY => {}
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
    if let Err(why) = allowance.admit(&head) {
        tripped.trip(why);
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
        let (allowance, tripped, ledger) = (&mut this.allowance, &*this.tripped, this.ledger.as_deref());
        let mut events = |e| on_read(allowance, tripped, ledger, e);
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
        let mut fast = Bucket::new(1_000, 10);
        assert!((0..10).all(|_| fast.take(1.0)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(fast.take(1.0), "20 ms at 1,000 a second brings tokens back");
        let mut slow = Bucket::new(1, 3);
        assert!((0..3).all(|_| slow.take(1.0)));
        assert!(!slow.take(1.0), "a dry bucket refuses");
        let mut bytes = Bucket::new(1_000_000, 100);
        assert!(!bytes.take(101.0), "more than the bucket holds, however long it waited");
        assert!(bytes.take(100.0));
    }

    fn head(kind: u8, len: u32) -> Head {
        Head { len, kind, flags: 0, stream: 0 }
    }

    #[test]
    fn control_frames_are_admitted_by_count_bytes_and_settings() {
        let limit = FloodLimit { per_second: 1, burst: 100, bytes_per_second: 1, byte_burst: 1_000, max_settings: 8 };
        let mut allowance = Allowance::new(limit);
        assert_eq!(allowance.admit(&head(SETTINGS, 49)), Err("oversized SETTINGS"), "more than 8 settings");
        assert_eq!(allowance.admit(&head(SETTINGS, 48)), Ok(()));
        // 57 bytes taken of 1,000: 943 left, then 17 per PING.
        assert!((0..55).all(|_| allowance.admit(&head(PING, 8)).is_ok()));
        assert_eq!(allowance.admit(&head(PING, 8)), Err("control frame bytes"));
        let mut allowance = Allowance::new(FloodLimit { burst: 3, ..limit });
        assert!((0..3).all(|_| allowance.admit(&head(WINDOW_UPDATE, 4)).is_ok()));
        assert_eq!(allowance.admit(&head(WINDOW_UPDATE, 4)), Err("WINDOW_UPDATE"));
        let mut allowance = Allowance::new(limit);
        assert_eq!(allowance.admit(&head(0xfa, 992)), Err("control frame bytes"), "larger than the burst");
    }
}
