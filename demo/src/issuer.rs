//! The test token issuer: an ES256 key that signs the demo's tokens, and its JWKS served over HTTPS on
//! loopback with a certificate from a CA of its own (the waypoint trusts it through `--jwks-ca-file`).

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::DemoError;

/// The issuer's key.
pub struct Issuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    kid: &'static str,
    /// The `iss` of its tokens.
    pub issuer: String,
}

impl Issuer {
    /// A new key for `issuer`.
    pub fn new(issuer: &str) -> Result<Self, DemoError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| DemoError::new("cannot generate the issuer's key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| DemoError::new("cannot load the issuer's key"))?;
        Ok(Issuer { key, rng, kid: "demo-1", issuer: issuer.to_owned() })
    }

    /// The JWKS with the public key.
    pub fn jwks(&self) -> String {
        // The uncompressed point: 0x04, x (32 bytes), y (32 bytes).
        let point = self.key.public_key().as_ref();
        let (x, y) = (point.get(1..33).unwrap_or_default(), point.get(33..65).unwrap_or_default());
        json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid, "x": B64.encode(x), "y": B64.encode(y)}]})
            .to_string()
    }

    /// A signed token with `claims` (`iss` added).
    pub fn token(&self, mut claims: Value) -> Result<String, DemoError> {
        claims["iss"] = json!(self.issuer);
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let signature =
            self.key.sign(&self.rng, signing_input.as_bytes()).map_err(|_| DemoError::new("cannot sign a token"))?;
        Ok(format!("{signing_input}.{}", B64.encode(signature.as_ref())))
    }
}

/// A TLS server certificate for `host`, from a CA made for it. Returns the CA's PEM and the server config.
pub fn tls_for(host: &str) -> Result<(String, Arc<rustls::ServerConfig>), DemoError> {
    let fail = |e: rcgen::Error| DemoError::new(format!("issuer certificate: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "mesh demo issuer CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(fail)?;
    let leaf_key = rcgen::KeyPair::generate().map_err(fail)?;
    let leaf =
        rcgen::CertificateParams::new(vec![host.to_owned()]).map_err(fail)?.signed_by(&leaf_key, &ca).map_err(fail)?;
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key))
        .map_err(|e| DemoError::new(format!("issuer TLS: {e}")))?;
    Ok((ca.pem(), Arc::new(config)))
}

/// Serves `jwks` at `path` over HTTPS on `addr` until the task is dropped. Counts the fetches.
pub async fn serve(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    path: String,
    jwks: String,
) -> Result<(), DemoError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| DemoError::new(format!("issuer {addr}: {e}")))?;
    let acceptor = TlsAcceptor::from(tls);
    let body = Bytes::from(jwks);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body, path) = (acceptor.clone(), body.clone(), path.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let found = request.uri().path() == path;
                    let body = body.clone();
                    async move {
                        let mut response = hyper::Response::new(Full::new(if found {
                            body
                        } else {
                            Bytes::from_static(b"not found")
                        }));
                        if !found {
                            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
                        }
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    Ok(())
}
