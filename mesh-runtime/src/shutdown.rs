//! The drain signal: SIGTERM or SIGINT (Ctrl-C) starts it; listeners stop accepting, connections in flight
//! get until the drain deadline.

use tokio::sync::watch;

/// A shutdown signal, cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Starts the shutdown of every [`Shutdown`] it made.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// A trigger and its signal.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    /// Starts shutting down.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Waits for SIGTERM or SIGINT, then starts shutting down.
    pub async fn on_signal(self) -> Self {
        wait_for_signal().await;
        self.trigger();
        self
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C), for a proxy that takes steps of its own before triggering the
/// shutdown (readiness first, then the listeners).
pub async fn signal() {
    wait_for_signal().await;
}

impl Shutdown {
    /// Resolves once shutdown has started.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|down| *down).await;
    }

    /// Whether shutdown has started.
    pub fn is_down(&self) -> bool {
        *self.rx.borrow()
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
