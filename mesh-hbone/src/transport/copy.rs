//! Relaying a tunnel to another stream (the upstream connection at a server, the workload's connection at a
//! client), both ways in one task, with half-close.
//!
//! No buffer of ours sits between the two: a DATA frame received is written to the other stream as it is, and
//! bytes read from the other stream become a DATA frame without being copied again. Reads from the other
//! stream wait for send capacity and never take more than h2 has assigned, so what is buffered stays within
//! the peer's flow-control window (and, at a server, within the connection's send budget). Read sizes adapt:
//! they start at 16 KiB, double while reads fill them, up to 256 KiB, and halve when reads come back small.
//!
//! When the other stream fails, the tunnel is reset with CONNECT_ERROR (RFC 9113 section 8.5), so the far end
//! reads an error rather than a clean end; a reset of the tunnel is returned as an error too.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use h2::Reason;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use super::stream::HboneStream;

/// The first read size.
pub(crate) const MIN_READ: usize = 16 * 1024;
/// The largest read size.
pub(crate) const MAX_READ: usize = 256 * 1024;

/// Relays `tunnel` and `other` until both directions are done: an end of stream on one side becomes a write
/// shutdown (HTTP/2 END_STREAM or TCP FIN) on the other, and the other direction carries on. Returns the bytes
/// moved from the tunnel to `other`, and from `other` to the tunnel.
///
/// An error in either direction ends the relay. An error of `other` (read, write or shutdown) resets the
/// tunnel with CONNECT_ERROR before it is returned; an error of the tunnel (a reset by the peer, which reads as
/// [`TunnelReset`](super::TunnelReset), or the connection failing) is returned as it is, and `other` is left
/// to the caller (dropping it closes it).
pub async fn relay<S>(tunnel: &mut HboneStream, other: &mut S) -> io::Result<(u64, u64)>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut outward = Outward { bytes: 0, done: false };
    let mut inward = Inward { buf: BytesMut::new(), size: MIN_READ, reserved: 0, bytes: 0, eof: false, done: false };
    let result = poll_fn(|cx| {
        let out = outward.poll(cx, tunnel, other)?;
        let inw = inward.poll(cx, tunnel, other)?;
        match (out, inw) {
            (Poll::Ready(out), Poll::Ready(inw)) => Poll::Ready(Ok((out, inw))),
            // Waiting, perhaps only on `other`: a close by the tunnel's handle must still end the relay.
            _ => match tunnel.watch_closed(cx) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(tunnel_err(error))),
            },
        }
    })
    .await;
    tunnel.unreserve(std::mem::take(&mut inward.reserved));
    match result {
        Ok(moved) => Ok(moved),
        Err(Failed::Tunnel(error)) => Err(error),
        Err(Failed::Other(error)) => {
            tunnel.abort(Reason::CONNECT_ERROR);
            Err(error)
        }
    }
}

/// Which side of a relay failed.
enum Failed {
    Tunnel(io::Error),
    Other(io::Error),
}

fn tunnel_err(error: io::Error) -> Failed {
    Failed::Tunnel(error)
}

fn other_err(error: io::Error) -> Failed {
    Failed::Other(error)
}

/// Tunnel to `other`.
struct Outward {
    bytes: u64,
    done: bool,
}

impl Outward {
    fn poll<S>(&mut self, cx: &mut Context<'_>, tunnel: &mut HboneStream, other: &mut S) -> Poll<Result<u64, Failed>>
    where
        S: AsyncWrite + Unpin + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(self.bytes));
        }
        loop {
            if !tunnel.pending.is_empty() {
                let n = ready!(Pin::new(&mut *other).poll_write(cx, &tunnel.pending)).map_err(other_err)?;
                if n == 0 {
                    return Poll::Ready(Err(Failed::Other(io::ErrorKind::WriteZero.into())));
                }
                tunnel.pending.advance(n);
                self.bytes += n as u64;
                continue;
            }
            match tunnel.poll_fill(cx) {
                Poll::Pending => {
                    // Nothing more for now: push out what `other` may hold before waiting.
                    ready!(Pin::new(&mut *other).poll_flush(cx)).map_err(other_err)?;
                    return Poll::Pending;
                }
                Poll::Ready(result) => result.map_err(tunnel_err)?,
            }
            if tunnel.pending.is_empty() {
                ready!(Pin::new(&mut *other).poll_shutdown(cx)).map_err(other_err)?;
                self.done = true;
                return Poll::Ready(Ok(self.bytes));
            }
        }
    }
}

/// `other` to the tunnel.
struct Inward {
    /// Read into; each read is split off and sent as it is.
    buf: BytesMut,
    /// The next read's size.
    size: usize,
    /// Send budget held for the next read.
    reserved: usize,
    bytes: u64,
    /// `other` reached its end.
    eof: bool,
    done: bool,
}

impl Inward {
    fn poll<S>(&mut self, cx: &mut Context<'_>, tunnel: &mut HboneStream, other: &mut S) -> Poll<Result<u64, Failed>>
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(self.bytes));
        }
        loop {
            if self.eof {
                tunnel.unreserve(std::mem::take(&mut self.reserved));
                ready!(Pin::new(&mut *tunnel).poll_shutdown(cx)).map_err(tunnel_err)?;
                self.done = true;
                return Poll::Ready(Ok(self.bytes));
            }
            let capacity = ready!(tunnel.poll_send_capacity(cx, self.size)).map_err(tunnel_err)?;
            let wanted = capacity.min(self.size);
            if self.reserved == 0 {
                self.reserved = ready!(tunnel.poll_reserve(cx, wanted));
            }
            let limit = wanted.min(self.reserved);
            if self.buf.capacity() < limit {
                self.buf.reserve(limit);
            }
            let n = match poll_read_buf(Pin::new(&mut *other), cx, &mut (&mut self.buf).limit(limit)) {
                Poll::Ready(read) => read.map_err(other_err)?,
                Poll::Pending => {
                    // Nothing to read: an idle tunnel holds no read buffer while it waits (the next read
                    // allocates one, as every read after a split does anyway).
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            };
            if n == 0 {
                self.eof = true;
                continue;
            }
            // The part of the reservation this read left unused goes back; what was read is sent, and paid
            // back as it is written to the connection.
            tunnel.unreserve(std::mem::take(&mut self.reserved) - n);
            tunnel.send(cx, self.buf.split().freeze()).map_err(tunnel_err)?;
            self.bytes += n as u64;
            self.size = next_size(self.size, n, limit);
        }
    }
}

/// The next read size after reading `n` bytes of at most `limit` with size `size`.
fn next_size(size: usize, n: usize, limit: usize) -> usize {
    if n == limit {
        // A full read: grow, unless capacity rather than the size cut it short.
        if limit == size { (size * 2).min(MAX_READ) } else { size }
    } else if n < size / 4 {
        (size / 2).max(MIN_READ)
    } else {
        size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_sizes_adapt_within_bounds() {
        assert_eq!(next_size(MIN_READ, MIN_READ, MIN_READ), 2 * MIN_READ, "a full read doubles");
        assert_eq!(next_size(MAX_READ, MAX_READ, MAX_READ), MAX_READ, "never above the largest");
        assert_eq!(next_size(4 * MIN_READ, 100, 4 * MIN_READ), 2 * MIN_READ, "a small read halves");
        assert_eq!(next_size(MIN_READ, 1, MIN_READ), MIN_READ, "never below the smallest");
        assert_eq!(next_size(4 * MIN_READ, 1024, 1024), 4 * MIN_READ, "a read cut short by capacity does not grow");
        assert_eq!(next_size(4 * MIN_READ, 3 * MIN_READ, 4 * MIN_READ), 4 * MIN_READ);
    }
}
