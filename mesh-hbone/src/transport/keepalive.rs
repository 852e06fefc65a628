//! HTTP/2 PING keepalive: a PING every interval; one unanswered for the timeout ends the connection.

use std::time::Duration;

use tokio::sync::oneshot;

/// Pings until one fails or times out, then reports why on `dead` (or stops quietly once `dead` is dropped).
pub(crate) async fn run(
    mut ping_pong: h2::PingPong,
    interval: Duration,
    timeout: Duration,
    dead: oneshot::Sender<String>,
) {
    loop {
        tokio::time::sleep(interval).await;
        if dead.is_closed() {
            return;
        }
        match tokio::time::timeout(timeout, ping_pong.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                let _ = dead.send(format!("PING failed: {error}"));
                return;
            }
            Err(_) => {
                let _ = dead.send(format!("PING unanswered for {timeout:?}"));
                return;
            }
        }
    }
}
