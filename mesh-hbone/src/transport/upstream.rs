//! Where an accepted tunnel goes once the handler has decided: relayed to an upstream stream (the built-in
//! path), or taken over by the handler, which then speaks over the tunnel itself (a waypoint running an HTTP
//! server inside it).

use std::fmt;
use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::copy;
use super::stream::HboneStream;

/// What a [`Handler`](super::Handler) returns for an accepted CONNECT: any `AsyncRead + AsyncWrite` stream
/// (a `TcpStream` to the target, say), which the tunnel is relayed to, or a [`TakeOver`], which gets the
/// tunnel's stream itself.
///
/// Either way the server's limits stay in force: the tunnel's sends count against the send budgets, the
/// connection's keepalive and the tunnel's handle (which can close it) apply, and the stream ends when the
/// server stops.
pub trait Upstream: Send + 'static {
    /// Serves the tunnel, after the 200 was sent, until it ends.
    fn serve(self, tunnel: HboneStream) -> impl Future<Output = ()> + Send;
}

impl<S> Upstream for S
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn serve(mut self, mut tunnel: HboneStream) {
        let target = tunnel.handle().map(|h| h.target().to_string()).unwrap_or_default();
        match copy::relay(&mut tunnel, &mut self).await {
            Ok((sent, received)) => debug!(%target, sent, received, "HBONE tunnel closed"),
            Err(error) => debug!(%target, %error, "HBONE tunnel ended with an error"),
        }
    }
}

/// A handler's decision to serve the tunnel itself: the server sends the 200 and calls the function with the
/// tunnel's stream (whose [`HboneStream::handle`] is the tunnel's handle), on the tunnel's task. To end the
/// tunnel cleanly the function shuts the stream down; dropping it resets the tunnel.
///
/// ```
/// use mesh_hbone::Rejection;
/// use mesh_hbone::transport::{Handler, HboneStream, InboundRequest, TakeOver};
/// use tokio::io::AsyncWriteExt;
///
/// // A handler that answers every CONNECT with a greeting of its own.
/// let greet = |request: InboundRequest| async move {
///     let peer = request.peer.to_string();
///     Ok::<_, Rejection>(TakeOver(move |mut stream: HboneStream| async move {
///         let _ = stream.write_all(format!("hello, {peer}\n").as_bytes()).await;
///         let _ = stream.shutdown().await;
///     }))
/// };
/// fn is_a_handler(_: &impl Handler) {}
/// is_a_handler(&greet);
/// ```
pub struct TakeOver<F>(pub F);

impl<F> fmt::Debug for TakeOver<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TakeOver")
    }
}

impl<F, Fut> Upstream for TakeOver<F>
where
    F: FnOnce(HboneStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    async fn serve(self, tunnel: HboneStream) {
        (self.0)(tunnel).await;
    }
}
