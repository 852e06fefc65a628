//! One HBONE tunnel as a byte stream: tokio `AsyncRead`/`AsyncWrite` over an HTTP/2 stream's halves.
//!
//! Reading hands out DATA frames and returns their bytes to the peer's flow-control window as they are taken.
//! Writing sends at most the send capacity h2 has assigned, asking for more when there is none (so at most one
//! write's worth is buffered). Shutdown sends END_STREAM: a half-close, the peer still sends. Dropping the
//! stream before both ends closed resets it (RST_STREAM CANCEL); [`HboneStream::abort`] resets it with
//! CONNECT_ERROR, as a proxy does when the TCP connection at its end fails (RFC 9113 section 8.5).
//!
//! A reset from the peer, whatever its code, is a read error ([`TunnelReset`]), never an end of stream: only
//! END_STREAM ends a tunnel cleanly, so partial data is never mistaken for a complete transfer.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::budget::StreamAccount;
use super::error::TunnelReset;
use super::tunnels::{Registration, Side, TunnelHandle};

/// Runs once when the stream is dropped (the pool uses it to free the stream's slot).
pub(crate) struct OnDrop(Option<Box<dyn FnOnce() + Send + Sync>>);

impl OnDrop {
    pub(crate) fn new(f: impl FnOnce() + Send + Sync + 'static) -> Self {
        OnDrop(Some(Box::new(f)))
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A bidirectional byte stream over one HTTP/2 CONNECT stream.
pub struct HboneStream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received bytes not yet read.
    pub(crate) pending: Bytes,
    read_closed: bool,
    write_closed: bool,
    /// At a server: the stream's share of the connection's send budget.
    account: Option<StreamAccount>,
    /// The tunnel's entry in its registry: its handle counts bytes and can close the stream.
    registration: Option<Registration>,
    /// Whether the stream was reset because its handle closed it.
    closed_by_owner: bool,
    _on_drop: Option<OnDrop>,
}

impl fmt::Debug for HboneStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HboneStream")
            .field("pending", &self.pending.len())
            .field("read_closed", &self.read_closed)
            .field("write_closed", &self.write_closed)
            .finish_non_exhaustive()
    }
}

impl HboneStream {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream, on_drop: Option<OnDrop>) -> Self {
        HboneStream {
            send,
            recv,
            pending: Bytes::new(),
            read_closed: false,
            write_closed: false,
            account: None,
            registration: None,
            closed_by_owner: false,
            _on_drop: on_drop,
        }
    }

    /// Lists the stream in a registry; its handle counts its bytes and can close it.
    pub(crate) fn with_registration(mut self, registration: Registration) -> Self {
        self.registration = Some(registration);
        self
    }

    /// The tunnel's handle: its peer, target, byte counts, and a way to close it. Every tunnel a server
    /// accepts or a client opens has one (an inner double-HBONE hop's outer stream does not).
    pub fn handle(&self) -> Option<&TunnelHandle> {
        self.registration.as_ref().map(|r| &r.handle)
    }

    /// Fails if the handle closed the tunnel, and wakes `cx`'s task when it does later: a relay calls it on
    /// every poll, so that closing ends it even while it waits on its other stream.
    pub(crate) fn watch_closed(&mut self, cx: &Context<'_>) -> io::Result<()> {
        self.check_closed(Some((cx, Side::Read)))
    }

    /// Fails if the handle closed the tunnel, resetting the stream the first time. With `cx`, also wakes the
    /// task when the handle closes it later (called where the stream is about to wait).
    fn check_closed(&mut self, cx: Option<(&Context<'_>, Side)>) -> io::Result<()> {
        let Some(registration) = &self.registration else { return Ok(()) };
        let closed = match cx {
            Some((cx, side)) => registration.handle.watch_close(cx, side),
            None => registration.handle.is_closed(),
        };
        if !closed {
            return Ok(());
        }
        if !self.closed_by_owner {
            self.closed_by_owner = true;
            self.send.send_reset(Reason::CANCEL);
            self.write_closed = true;
            self.pending = Bytes::new();
        }
        Err(io::Error::new(io::ErrorKind::ConnectionAborted, "HBONE tunnel closed by its owner"))
    }

    /// Counts what the stream sends against a connection's send budget.
    pub(crate) fn with_account(mut self, account: StreamAccount) -> Self {
        self.account = Some(account);
        self
    }

    /// Resets the stream with `reason` at once, discarding what is buffered either way; reads and writes fail
    /// from then on. A proxy aborts a tunnel with [`Reason::CONNECT_ERROR`] when the TCP connection at its end
    /// fails or is reset, so the far end learns the transfer is incomplete.
    pub fn abort(&mut self, reason: Reason) {
        self.send.send_reset(reason);
        self.write_closed = true;
        self.pending = Bytes::new();
    }

    /// Up to `wanted` bytes of room in the send budget (all of it where there is no budget).
    pub(crate) fn poll_reserve(&mut self, cx: &mut Context<'_>, wanted: usize) -> Poll<usize> {
        match &self.account {
            None => Poll::Ready(wanted),
            Some(account) => account.poll_reserve(cx, wanted as u64).map(|n| n as usize),
        }
    }

    /// [`Self::poll_reserve`] for a writer: fails if the handle closes the tunnel while it waits for room.
    fn poll_reserve_to_write(&mut self, cx: &mut Context<'_>, wanted: usize) -> Poll<io::Result<usize>> {
        match self.poll_reserve(cx, wanted) {
            Poll::Ready(n) => Poll::Ready(Ok(n)),
            Poll::Pending => {
                self.check_closed(Some((cx, Side::Write)))?;
                Poll::Pending
            }
        }
    }

    /// Gives back `n` reserved bytes that were not sent.
    pub(crate) fn unreserve(&mut self, n: usize) {
        if let (Some(account), true) = (&self.account, n > 0) {
            account.unused(n as u64);
        }
    }

    /// Makes `pending` hold received bytes, unless the peer has finished sending (then it stays empty).
    /// Each DATA frame's bytes go back to the peer's flow-control window as the frame is taken: at most one
    /// frame waits here beyond what h2 holds within the window.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_closed(None)?;
        while self.pending.is_empty() && !self.read_closed {
            let Poll::Ready(next) = self.recv.poll_data(cx) else {
                self.check_closed(Some((cx, Side::Read)))?;
                return Poll::Pending;
            };
            match next {
                None => self.read_closed = true,
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(registration) = &self.registration {
                        registration.handle.count_received(data.len());
                    }
                    self.pending = data;
                }
                // Any reset, CANCEL and NO_ERROR included, cut the stream short of its END_STREAM.
                Some(Err(error)) => return Poll::Ready(Err(h2_to_io(error))),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Send capacity for up to `wanted` more bytes: `Ready(n)` with `n > 0` once h2 has assigned some.
    pub(crate) fn poll_send_capacity(&mut self, cx: &mut Context<'_>, wanted: usize) -> Poll<io::Result<usize>> {
        self.check_closed(None)?;
        if self.write_closed {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "HBONE stream already shut down")));
        }
        loop {
            let capacity = self.send.capacity();
            if capacity > 0 {
                return Poll::Ready(Ok(capacity));
            }
            self.send.reserve_capacity(wanted);
            let Poll::Ready(assigned) = self.send.poll_capacity(cx) else {
                self.check_closed(Some((cx, Side::Write)))?;
                return Poll::Pending;
            };
            match assigned {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Poll::Ready(Err(self.send_closed(cx))),
            }
        }
    }

    /// Sends `data`, which must fit the capacity [`Self::poll_send_capacity`] gave.
    pub(crate) fn send(&mut self, cx: &mut Context<'_>, data: Bytes) -> io::Result<()> {
        let len = data.len();
        self.send.send_data(data, false).map_err(|_| self.send_closed(cx))?;
        if let Some(registration) = &self.registration {
            registration.handle.count_sent(len);
        }
        Ok(())
    }

    /// The error for a send side that h2 closed: the peer's reset reason if there is one.
    fn send_closed(&mut self, cx: &mut Context<'_>) -> io::Error {
        match self.send.poll_reset(cx) {
            Poll::Ready(Ok(Reason::NO_ERROR | Reason::CANCEL | Reason::STREAM_CLOSED)) | Poll::Pending => {
                io::Error::new(io::ErrorKind::BrokenPipe, "HBONE stream closed by the peer")
            }
            Poll::Ready(Ok(reason)) => {
                io::Error::new(io::ErrorKind::ConnectionReset, format!("HBONE stream reset: {reason}"))
            }
            Poll::Ready(Err(error)) => h2_to_io(error),
        }
    }
}

fn h2_to_io(error: h2::Error) -> io::Error {
    if error.is_io() {
        return error.into_io().unwrap_or_else(|| io::Error::other("h2 I/O error"));
    }
    match error.reason() {
        Some(reason) => {
            let kind = if error.is_go_away() { "connection closed (GOAWAY)" } else { "stream reset" };
            io::Error::new(io::ErrorKind::ConnectionReset, TunnelReset { reason, by: kind })
        }
        None => io::Error::other(error),
    }
}

impl AsyncRead for HboneStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_fill(cx))?;
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HboneStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let capacity = ready!(this.poll_send_capacity(cx, buf.len()))?.min(buf.len());
        // At a server, what is written counts against the send budgets as a relay's reads do: a handler that
        // serves the tunnel itself cannot buffer more for a slow peer than the relay would.
        let n = ready!(this.poll_reserve_to_write(cx, capacity))?;
        if let Err(error) = this.send(cx, Bytes::copy_from_slice(&buf[..n])) {
            this.unreserve(n);
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2 writes DATA as the connection task gets to it; there is no buffer of ours to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Ok(()));
        }
        this.write_closed = true;
        match this.send.send_data(Bytes::new(), true) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(_) => match this.send.poll_reset(cx) {
                // The peer already ended the stream cleanly: nothing left to close.
                Poll::Ready(Ok(Reason::NO_ERROR)) => Poll::Ready(Ok(())),
                _ => Poll::Ready(Err(this.send_closed(cx))),
            },
        }
    }
}
