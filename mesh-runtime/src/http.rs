//! A small HTTP/1.1 server for the operational endpoints: admin (15000), Prometheus metrics (15020) and
//! readiness (15021). Each route is a function of the query string returning a [`Reply`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;

/// A response.
#[derive(Debug, Clone)]
pub struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
}

impl Reply {
    /// `200` with a JSON body.
    pub fn json(value: &impl Serialize) -> Self {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Reply { status: StatusCode::OK, content_type: "application/json", body: body.into() },
            Err(e) => Reply::status(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        }
    }

    /// `200` with a plain-text body.
    pub fn text(body: impl Into<String>) -> Self {
        Reply { status: StatusCode::OK, content_type: "text/plain; charset=utf-8", body: body.into().into() }
    }

    /// `200` with a body of the given content type.
    pub fn with_type(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Reply { status: StatusCode::OK, content_type, body: body.into() }
    }

    /// A status with a plain-text body.
    pub fn status(status: StatusCode, body: impl Into<String>) -> Self {
        Reply { status, ..Reply::text(body) }
    }
}

type Route = Box<dyn Fn(&str) -> Reply + Send + Sync>;

/// GET routes by path.
#[derive(Default)]
pub struct Routes {
    routes: BTreeMap<&'static str, (&'static str, Route)>,
}

impl Routes {
    /// No routes.
    pub fn new() -> Self {
        Routes::default()
    }

    /// Serves `path` with `route` (given the query string), described by `help` on the index page.
    pub fn get(
        mut self,
        path: &'static str,
        help: &'static str,
        route: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> Self {
        self.routes.insert(path, (help, Box::new(route)));
        self
    }

    fn answer(&self, method: &Method, path: &str, query: &str) -> Reply {
        if method != Method::GET && method != Method::HEAD {
            return Reply::status(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        match self.routes.get(path) {
            Some((_, route)) => route(query),
            None if path == "/" => {
                let mut index = String::new();
                for (path, (help, _)) in &self.routes {
                    index.push_str(&format!("{path:<24} {help}\n"));
                }
                Reply::text(index)
            }
            None => Reply::status(StatusCode::NOT_FOUND, format!("no such page: {path} (see /)\n")),
        }
    }
}

/// What one client of the operational endpoints may hold: they are reachable from the whole node, so a slow
/// or crowding client must not pin the proxy's memory or descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's headers (10 s).
    pub header_read_timeout: Duration,
    /// Connections served at once (64); past that new ones are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { header_read_timeout: Duration::from_secs(10), max_connections: 64 }
    }
}

/// Serves `routes` on `listener` until shutdown, with the default [`Limits`].
pub async fn serve(listener: TcpListener, routes: Routes, shutdown: Shutdown) {
    serve_with(listener, routes, shutdown, Limits::default()).await;
}

/// Serves `routes` on `listener` until shutdown, within `limits`.
pub async fn serve_with(listener: TcpListener, routes: Routes, shutdown: Shutdown, limits: Limits) {
    let routes = Arc::new(routes);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    crate::listen::accept_until(listener, &shutdown, |stream, _| {
        let routes = Arc::clone(&routes);
        let slot = Arc::clone(&slots).try_acquire_owned();
        async move {
            // Over the cap: dropping the stream closes it.
            let Ok(_slot) = slot else { return };
            let service = service_fn(move |request: Request<Incoming>| {
                let reply = routes.answer(request.method(), request.uri().path(), request.uri().query().unwrap_or(""));
                async move { Ok::<_, Infallible>(respond(reply)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    if let Ok(value) = header::HeaderValue::from_str(reply.content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// A query parameter's value (`a=b&c=d`), undecoded.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_answer_by_path_and_list_themselves() {
        let routes = Routes::new().get("/ready", "readiness", |_| Reply::text("ok"));
        assert_eq!(routes.answer(&Method::GET, "/ready", "").body, Bytes::from("ok"));
        assert_eq!(routes.answer(&Method::GET, "/nope", "").status, StatusCode::NOT_FOUND);
        assert_eq!(routes.answer(&Method::POST, "/ready", "").status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(String::from_utf8_lossy(&routes.answer(&Method::GET, "/", "").body).contains("/ready"));
        assert_eq!(query_param("a=1&format=json", "format"), Some("json"));
    }

    #[tokio::test]
    async fn a_silent_client_is_cut_off_and_crowds_are_capped() -> Result<(), Box<dyn std::error::Error>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (_trigger, down) = crate::shutdown::channel();
        let limits = Limits { header_read_timeout: Duration::from_millis(300), max_connections: 2 };
        tokio::spawn(serve_with(listener, Routes::new().get("/ready", "", |_| Reply::text("ok")), down, limits));
        let read_all = |mut s: tokio::net::TcpStream| async move {
            let mut out = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
            (read.is_ok(), out)
        };
        // Two silent clients hold both slots; a third is closed at once without an answer.
        let silent = [tokio::net::TcpStream::connect(addr).await?, tokio::net::TcpStream::connect(addr).await?];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = tokio::net::TcpStream::connect(addr).await?;
        let _ = third.write_all(b"GET /ready HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let (ended, answer) = read_all(third).await;
        assert!(ended && answer.is_empty(), "over the cap: closed unanswered, got {answer:?}");
        // The silent ones are cut off after the header timeout, which frees the slots.
        let started = std::time::Instant::now();
        for s in silent {
            let (ended, _) = read_all(s).await;
            assert!(ended, "a client that sends no headers is cut off");
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        let mut fourth = tokio::net::TcpStream::connect(addr).await?;
        fourth.write_all(b"GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
        let (_, answer) = read_all(fourth).await;
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{answer:?}");
        Ok(())
    }
}
