//! `jwksUri` documents fetched by the waypoint: over HTTPS from a local issuer trusted with `--jwks-ca-file`,
//! again when a token names a key id the cached document lacks, and, when the issuer cannot be reached,
//! tokens of that issuer rejected (fail closed) with the reason in the admin view.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// An HTTPS issuer on `ip`: serves `document` at `/keys` with a certificate of its own CA; returns its URI,
/// the CA's PEM, and the count of fetches.
async fn https_issuer(ip: IpAddr, document: Arc<Mutex<String>>) -> (String, String, Arc<AtomicUsize>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "test issuer CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![ip.to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(leaf.der().to_vec())], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&fetches);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, document, counted) = (acceptor.clone(), Arc::clone(&document), Arc::clone(&counted));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = service_fn(move |request: Request<Incoming>| {
                    let (document, counted) = (Arc::clone(&document), Arc::clone(&counted));
                    async move {
                        let mut response = Response::new(Full::new(Bytes::new()));
                        if request.uri().path() == "/keys" {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let body = document.lock().unwrap().clone();
                            response = Response::new(Full::new(Bytes::from(body)));
                        } else {
                            *response.status_mut() = StatusCode::NOT_FOUND;
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    (format!("https://{addr}/keys"), ca_cert.pem(), fetches)
}

/// The JWKS comes from a local HTTPS issuer trusted with --jwks-ca-file; after the issuer adds a key, a
/// token signed with it is rejected until the unknown key id makes the waypoint fetch the document again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_over_https_is_fetched_and_fetched_again_for_an_unknown_key() {
    bounded(async {
        let net = Net(3);
        let pki = Pki::new();
        let (first, second) = (Idp::new("k1"), Idp::new("k2"));
        let document = Arc::new(Mutex::new(first.jwks()));
        let (uri, ca_pem, fetches) = https_issuer(net.issuer(), Arc::clone(&document)).await;
        let ca_file = pki.dir.path().join("issuer-ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let policies = policies_yaml(JwksFrom::Uri(&uri), true);
        let config = config_dir(net, &policies);
        let node = NodeProxy::start(net, &pki, &format!("{}---\n{policies}", cluster_yaml(net))).await;
        let extra = ["--jwks-ca-file", ca_file.to_str().unwrap(), "--jwks-min-refetch", "1s"];
        let waypoint = Waypoint::start(net, &pki, config.path(), node.port, &extra).await;
        let status = waypoint.wait_jwks(&uri, true).await;
        assert_eq!(status["keys"], 1, "{status}");
        let accounts = ClientProxy::new(&pki, "accounts", net.accounts(), &waypoint);
        let ledger = SocketAddr::new(net.ledger_vip(), LEDGER_PORT);
        let answer = accounts.http1(ledger, debit("POST", Some(&first.token(&["ledger.debit"], false)))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}\n{}", answer.body, waypoint.logs());
        let fetched = fetches.load(Ordering::SeqCst);

        // The issuer publishes a second key; a token signed with it names a kid the cache lacks.
        let both: serde_json::Value = serde_json::from_str(&first.jwks()).unwrap();
        let extra_key: serde_json::Value = serde_json::from_str(&second.jwks()).unwrap();
        let mut keys = both["keys"].as_array().unwrap().clone();
        keys.extend(extra_key["keys"].as_array().unwrap().iter().cloned());
        *document.lock().unwrap() = serde_json::json!({ "keys": keys }).to_string();
        let rotated = second.token(&["ledger.debit"], false);
        let answer = accounts.http1(ledger, debit("POST", Some(&rotated))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
        let mut status = StatusCode::UNAUTHORIZED;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            status = accounts.http1(ledger, debit("POST", Some(&rotated))).await.status;
            if status == StatusCode::OK {
                break;
            }
        }
        assert_eq!(status, StatusCode::OK, "the unknown kid triggers a fetch:\n{}", waypoint.logs());
        assert!(fetches.load(Ordering::SeqCst) > fetched);
        let view = waypoint.admin_json("/jwks").await;
        assert!(view[&uri]["kid_refetches"].as_u64().unwrap() >= 1, "{view}");
        assert_eq!(view[&uri]["keys"], 2, "{view}");
    })
    .await;
}

/// The issuer cannot be reached and nothing is cached: a good token is rejected (401), and the admin view
/// says why. A plain http:// jwksUri is refused without --jwks-allow-http.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_fails_closed() {
    bounded(async {
        let net = Net(4);
        let pki = Pki::new();
        let idp = Idp::new("k1");
        let uri = format!("https://{}:{}/keys", net.issuer(), free_port(net.issuer()));
        let policies = policies_yaml(JwksFrom::Uri(&uri), true);
        let config = config_dir(net, &policies);
        let node = NodeProxy::start(net, &pki, &format!("{}---\n{policies}", cluster_yaml(net))).await;
        let waypoint = Waypoint::start(net, &pki, config.path(), node.port, &[]).await;
        let status = waypoint.wait_jwks(&uri, false).await;
        assert!(status["last_error"].as_str().unwrap().contains("connecting to"), "{status}");
        assert!(status["last_success"].is_null());
        let accounts = ClientProxy::new(&pki, "accounts", net.accounts(), &waypoint);
        let ledger = SocketAddr::new(net.ledger_vip(), LEDGER_PORT);
        let answer = accounts.http1(ledger, debit("POST", Some(&idp.token(&["ledger.debit"], false)))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
        assert!(answer.body.starts_with("Jwks remote fetch is failed"), "{}", answer.body);
        assert!(node.seen().is_empty(), "nothing was forwarded");

        // Plain http is refused, whatever answers there.
        let plain = format!("http://{}:{}/keys", net.issuer(), free_port(net.issuer()));
        std::fs::write(config.path().join("policies.yaml"), policies_yaml(JwksFrom::Uri(&plain), true)).unwrap();
        let status = waypoint.wait_jwks(&plain, false).await;
        assert!(status["last_error"].as_str().unwrap().contains("plain http"), "{status}");
    })
    .await;
}
