//! Copying a tunnel's bytes both ways, with bounded buffers and half-close.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// Bytes buffered per direction.
pub(crate) const COPY_BUFFER: usize = 64 * 1024;

/// Copies until both directions are done; an EOF on one side becomes a write shutdown (HTTP/2 END_STREAM or
/// TCP FIN) on the other. Returns the bytes moved each way.
pub(crate) async fn bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, COPY_BUFFER, COPY_BUFFER).await
}
