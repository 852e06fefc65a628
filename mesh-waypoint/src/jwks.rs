//! Fetching the JWKS behind each `jwksUri` of the RequestAuthentications in force, over HTTPS (the public web
//! roots, or the CAs of `--jwks-ca-file`), in the background: every `--jwks-refresh` (Istio's 20 minutes),
//! when a new URI appears in the configuration, after a failure (backing off), and when a token names a key id
//! the cached document lacks (at most once per `--jwks-min-refetch`). A document is handed to the mesh with
//! `Mesh::add_jwks`; until one is, tokens of its issuer are rejected (fail closed). The admin view shows, per
//! URI, the last fetch and the last error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use mesh_runtime::state::MeshState;
use mesh_runtime::{shutdown::Shutdown, unix_now};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tracing::{info, warn};

/// The largest JWKS document accepted.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between retries of a failing URI.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Why a JWKS could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// Not an http(s) URL with a host.
    #[error("not an https:// URL with a host")]
    BadUri,
    /// A plain http URL without `--jwks-allow-http`.
    #[error("plain http:// is refused (tokens could be forged by anyone on the path); use https or --jwks-allow-http")]
    PlainHttp,
    /// Connecting failed.
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    /// TLS failed (an untrusted certificate, say).
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    /// HTTP failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The server answered with an error.
    #[error("the server answered {0}")]
    Status(StatusCode),
    /// The whole fetch took too long.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The document is not a usable JWKS.
    #[error("{0}")]
    Document(String),
}

/// Why the TLS trust for fetching could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TrustError {
    /// The CA file could not be read or holds no certificate.
    #[error("--jwks-ca-file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What the admin view shows about one URI.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct UriStatus {
    /// When the last fetch was attempted (Unix seconds).
    pub(crate) last_attempt: Option<u64>,
    /// When a document was last fetched and accepted.
    pub(crate) last_success: Option<u64>,
    /// Keys in the document in force.
    pub(crate) keys: Option<usize>,
    /// Why the last attempt failed; tokens of the issuer are rejected while no document was ever fetched.
    pub(crate) last_error: Option<String>,
    /// Failures in a row.
    pub(crate) failures: u32,
    /// Fetches triggered by unknown key ids.
    pub(crate) kid_refetches: u64,
    /// Whether a fetch is under way.
    pub(crate) fetching: bool,
    /// The document in force, to leave the mesh (and its verified-token caches) alone when a refresh
    /// brings the same one.
    #[serde(skip)]
    pub(crate) document: Option<String>,
}

/// The options of fetching.
#[derive(Debug, Clone)]
pub(crate) struct FetchOptions {
    /// Every document is fetched again this often.
    pub(crate) refresh: Duration,
    /// The least time between two fetches of a URI triggered by unknown key ids; the first retry delay.
    pub(crate) min_refetch: Duration,
    /// Whether http:// is fetched.
    pub(crate) allow_http: bool,
    /// Addresses to connect to for `host:port` authorities, instead of resolving the host.
    pub(crate) resolve: Vec<(String, SocketAddr)>,
}

/// The fetcher: the status of every URI, and the signal that a token named an unknown key.
pub(crate) struct Jwks {
    status: Mutex<BTreeMap<String, UriStatus>>,
    kid_miss: Notify,
    tls: TlsConnector,
    options: FetchOptions,
}

/// The TLS client configuration: the CAs of `ca_file`, else the public web roots.
pub(crate) fn tls_config(ca_file: Option<&Path>) -> Result<ClientConfig, TrustError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let fail = |reason: String| TrustError::CaFile { path: path.display().to_string(), reason };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| fail(e.to_string()))?;
            if certs.is_empty() {
                return Err(fail("no CERTIFICATE in it".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| fail(e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::CaFile { path: "(built-in)".into(), reason: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("options", &self.options).finish_non_exhaustive()
    }
}

impl Jwks {
    /// A fetcher with this TLS configuration.
    pub(crate) fn new(tls: ClientConfig, options: FetchOptions) -> Self {
        Jwks { status: Mutex::default(), kid_miss: Notify::new(), tls: TlsConnector::from(Arc::new(tls)), options }
    }

    /// The status of every URI, for the admin view.
    pub(crate) fn status(&self) -> BTreeMap<String, UriStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A token named a key id no cached document has: fetch again (rate-limited).
    pub(crate) fn unknown_kid(&self) {
        self.kid_miss.notify_one();
    }

    fn update(&self, uri: &str, f: impl FnOnce(&mut UriStatus)) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        f(status.entry(uri.to_owned()).or_default());
    }

    /// Whether `uri` is due at `now`; `kid` when an unknown key id asks.
    fn due(&self, uri: &str, now: u64, kid: bool) -> bool {
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(s) = status.get(uri) else { return true };
        if s.fetching {
            return false;
        }
        let since = |t: Option<u64>| t.map_or(u64::MAX, |t| now.saturating_sub(t));
        if s.failures > 0 {
            let backoff =
                self.options.min_refetch.saturating_mul(1 << s.failures.min(6).saturating_sub(1)).min(MAX_RETRY);
            return since(s.last_attempt) >= backoff.as_secs().max(1);
        }
        if kid && since(s.last_attempt) >= self.options.min_refetch.as_secs().max(1) {
            return true;
        }
        since(s.last_success) >= self.options.refresh.as_secs()
    }

    /// Fetches what is due until shutdown: at start and at every configuration change, each second for what
    /// is due, and at once when a token names an unknown key id.
    pub(crate) async fn run(self: Arc<Self>, state: Arc<MeshState>, shutdown: Shutdown) {
        let mut changes = state.subscribe();
        let mut kid = false;
        loop {
            let uris: Vec<String> = state.snapshot().jwks_uris().into_iter().map(str::to_owned).collect();
            let now = unix_now();
            for uri in uris.into_iter().filter(|u| self.due(u, now, kid)) {
                self.update(&uri, |s| {
                    s.last_attempt = Some(now);
                    s.fetching = true;
                    if kid {
                        s.kid_refetches += 1;
                    }
                });
                let me = Arc::clone(&self);
                let state = Arc::clone(&state);
                tokio::spawn(async move { me.fetch_and_apply(&uri, &state).await });
            }
            kid = tokio::select! {
                () = shutdown.wait() => return,
                _ = changes.changed() => false,
                () = self.kid_miss.notified() => true,
                () = tokio::time::sleep(Duration::from_secs(1)) => false,
            };
        }
    }

    async fn fetch_and_apply(&self, uri: &str, state: &MeshState) {
        let result = match tokio::time::timeout(FETCH_TIMEOUT, self.fetch(uri)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(FETCH_TIMEOUT)),
        };
        let current =
            self.status.lock().unwrap_or_else(PoisonError::into_inner).get(uri).and_then(|s| s.document.clone());
        let applied = result.and_then(|text| {
            let keys = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("keys").and_then(|k| k.as_array()).map(Vec::len))
                .unwrap_or(0);
            if current.as_deref() == Some(text.as_str()) {
                return Ok((keys, text, false));
            }
            state
                .update(|mesh| mesh.add_jwks(uri, &text))
                .map(|()| (keys, text, true))
                .map_err(|e| FetchError::Document(e.to_string()))
        });
        match applied {
            Ok((keys, text, changed)) => {
                info!(%uri, keys, changed, "JWKS fetched");
                self.update(uri, |s| {
                    s.fetching = false;
                    s.last_success = Some(unix_now());
                    s.keys = Some(keys);
                    s.last_error = None;
                    s.failures = 0;
                    s.document = Some(text);
                });
            }
            Err(error) => {
                warn!(%uri, %error, "JWKS fetch failed; the document fetched before, if any, stays in force; without one, tokens of this issuer are rejected");
                self.update(uri, |s| {
                    s.fetching = false;
                    s.last_error = Some(error.to_string());
                    s.failures = s.failures.saturating_add(1);
                });
            }
        }
    }

    /// GETs `uri`; returns the body.
    async fn fetch(&self, uri: &str) -> Result<String, FetchError> {
        let parsed: Uri = uri.parse().map_err(|_| FetchError::BadUri)?;
        let host = parsed.host().ok_or(FetchError::BadUri)?.to_owned();
        let tls = match parsed.scheme_str() {
            Some("https") => true,
            Some("http") if self.options.allow_http => false,
            Some("http") => return Err(FetchError::PlainHttp),
            _ => return Err(FetchError::BadUri),
        };
        let port = parsed.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let address = format!("{host}:{port}");
        let pinned = self.options.resolve.iter().find(|(a, _)| a.eq_ignore_ascii_case(&address)).map(|(_, to)| *to);
        let tcp = match pinned {
            Some(to) => TcpStream::connect(to).await,
            None => TcpStream::connect((bare_host.as_str(), port)).await,
        }
        .map_err(|e| FetchError::Connect(address.clone(), e))?;
        let path = parsed.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let authority = parsed.authority().map_or(host.clone(), |a| a.as_str().to_owned());
        if tls {
            let name = ServerName::try_from(bare_host).map_err(|_| FetchError::BadUri)?;
            let stream = self.tls.connect(name, tcp).await.map_err(|e| FetchError::Tls(address, e))?;
            get(stream, &authority, &path).await
        } else {
            get(tcp, &authority, &path).await
        }
    }
}

/// One HTTP/1.1 GET on `stream`.
async fn get<S>(stream: S, authority: &str, path: &str) -> Result<String, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| FetchError::Http(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(http)?;
    if response.status() != StatusCode::OK {
        return Err(FetchError::Status(response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT)
        .collect()
        .await
        .map_err(|e| FetchError::Http(format!("reading the document: {e}")))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| FetchError::Document("the document is not UTF-8".into()))
}
