//! HTTP backends standing in for Pods: each answers every request with its name, the method and path, and
//! whether a token reached it.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::DemoError;

/// Serves `name` on `addr` (a Pod's address and container port) until the process ends.
pub async fn serve(addr: SocketAddr, name: &'static str) -> Result<(), DemoError> {
    let listener =
        TcpListener::bind(addr).await.map_err(|e| DemoError::new(format!("backend {name} at {addr}: {e}")))?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| async move {
                    let token =
                        if request.headers().contains_key(hyper::header::AUTHORIZATION) { "with" } else { "without" };
                    let body = format!("{name}: {} {} ({token} the token)\n", request.method(), request.uri().path());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    Ok(())
}
