//! JWT authentication cost per algorithm, next to the bare ring signature check it is built on.
//!
//! For each algorithm, one group `jwt/<alg>` with:
//! - `ring_verify`: ring verifying the same signature over the same signing input with the same key;
//! - `authenticate_cold`: `Authenticator::authenticate` with the cache disabled (header extraction, base64, JSON,
//!   claims, key selection and the signature check);
//! - `authenticate_without_signature_check`: the same, against a JWKS with no key of the token's `kid`, so
//!   everything but the signature check (the overhead this crate adds to ring);
//! - `authenticate_cached`: the same token again with the cache on.
#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]
#![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use mesh_identity::jwt::{Authenticator, Jwks, JwtRule, Outcome};
use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde_json::json;

const RSA_PKCS8: &[u8] = include_bytes!("../tests/data/jwt/rsa2048-issuer.pk8.der");
const ISSUER: &str = "https://issuer.example.com";
const NOW: u64 = 1_700_000_000;

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A bare ring signature check: (signing input, signature) -> valid.
type RingVerify = Box<dyn Fn(&[u8], &[u8]) -> bool>;

/// What one algorithm's benchmarks need: a token, its pieces, the public JWK and a bare ring check of it.
struct Case {
    alg: &'static str,
    token: String,
    signing_input: String,
    signature: Vec<u8>,
    jwk: serde_json::Value,
    ring_verify: RingVerify,
}

fn signing_input(alg: &str) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": alg});
    let payload = json!({
        "iss": ISSUER, "sub": "bench-user", "aud": ["api"], "exp": NOW + 3600, "iat": NOW,
        "scope": "read write", "email": "bench@example.com",
    });
    format!("{}.{}", b64(header.to_string()), b64(payload.to_string()))
}

fn case(alg: &'static str) -> Case {
    let rng = SystemRandom::new();
    let input = signing_input(alg);
    let (signature, jwk, ring_verify): (Vec<u8>, _, RingVerify) = match alg {
        "RS256" | "PS256" => {
            let pair = RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap();
            let (encoding, params): (&'static dyn signature::RsaEncoding, &'static signature::RsaParameters) =
                if alg == "RS256" {
                    (&signature::RSA_PKCS1_SHA256, &signature::RSA_PKCS1_2048_8192_SHA256)
                } else {
                    (&signature::RSA_PSS_SHA256, &signature::RSA_PSS_2048_8192_SHA256)
                };
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(encoding, &rng, input.as_bytes(), &mut sig).unwrap();
            let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
            let jwk = json!({"kty": "RSA", "kid": alg, "n": b64(&public.n), "e": b64(&public.e)});
            let verify = move |msg: &[u8], sig: &[u8]| public.verify(params, msg, sig).is_ok();
            (sig, jwk, Box::new(verify))
        }
        "ES256" | "ES384" => {
            let (signing, verifying, crv, size) = if alg == "ES256" {
                (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &signature::ECDSA_P256_SHA256_FIXED, "P-256", 32)
            } else {
                (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &signature::ECDSA_P384_SHA384_FIXED, "P-384", 48)
            };
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
            let sig = pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec();
            let point = pair.public_key().as_ref().to_vec();
            let jwk =
                json!({"kty": "EC", "kid": alg, "crv": crv, "x": b64(&point[1..=size]), "y": b64(&point[1 + size..])});
            let verify =
                move |msg: &[u8], sig: &[u8]| UnparsedPublicKey::new(verifying, &point).verify(msg, sig).is_ok();
            (sig, jwk, Box::new(verify))
        }
        _ => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            let sig = pair.sign(input.as_bytes()).as_ref().to_vec();
            let public = pair.public_key().as_ref().to_vec();
            let jwk = json!({"kty": "OKP", "kid": alg, "crv": "Ed25519", "x": b64(&public)});
            let verify = move |msg: &[u8], sig: &[u8]| {
                UnparsedPublicKey::new(&signature::ED25519, &public).verify(msg, sig).is_ok()
            };
            (sig, jwk, Box::new(verify))
        }
    };
    let token = format!("{input}.{}", b64(&signature));
    Case { alg, token, signing_input: input, signature, jwk, ring_verify }
}

fn authenticator(case: &Case, cache_capacity: usize) -> Authenticator {
    let jwks = Jwks::from_json(&json!({ "keys": [case.jwk] }).to_string()).unwrap();
    let rule = JwtRule { audiences: vec!["api".into()], ..JwtRule::new(ISSUER, Some(Arc::new(jwks))) };
    Authenticator::with_cache_capacity(vec![rule], cache_capacity)
}

fn bench_algorithms(c: &mut Criterion) {
    for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA"] {
        let case = case(alg);
        assert!((case.ring_verify)(case.signing_input.as_bytes(), &case.signature));
        let header = format!("Bearer {}", case.token);
        let headers = [("host", "api.example.com"), ("authorization", header.as_str()), ("accept", "*/*")];

        let mut group = c.benchmark_group(format!("jwt/{}", case.alg));
        group.bench_function("ring_verify", |b| {
            b.iter(|| (case.ring_verify)(black_box(case.signing_input.as_bytes()), black_box(&case.signature)))
        });

        let cold = authenticator(&case, 0);
        assert!(matches!(cold.authenticate(headers, "/", Some(NOW)), Outcome::Verified { .. }));
        group.bench_function("authenticate_cold", |b| {
            b.iter(|| cold.authenticate(black_box(headers), black_box("/v1/items?page=2"), Some(NOW)))
        });

        // Everything but the signature check: the JWKS has no key with the token's kid.
        let no_key = {
            let mut jwk = case.jwk.clone();
            jwk["kid"] = json!("another-key");
            let jwks = Jwks::from_json(&json!({ "keys": [jwk] }).to_string()).unwrap();
            let rule = JwtRule { audiences: vec!["api".into()], ..JwtRule::new(ISSUER, Some(Arc::new(jwks))) };
            Authenticator::with_cache_capacity(vec![rule], 0)
        };
        assert!(matches!(no_key.authenticate(headers, "/", Some(NOW)), Outcome::Rejected(_)));
        group.bench_function("authenticate_without_signature_check", |b| {
            b.iter(|| no_key.authenticate(black_box(headers), black_box("/v1/items?page=2"), Some(NOW)))
        });

        let cached = authenticator(&case, 100);
        for _ in 0..2 {
            assert!(matches!(cached.authenticate(headers, "/", Some(NOW)), Outcome::Verified { .. }));
        }
        assert_eq!(cached.cache_stats().hits, 1);
        group.bench_function("authenticate_cached", |b| {
            b.iter(|| cached.authenticate(black_box(headers), black_box("/v1/items?page=2"), Some(NOW)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_algorithms);
criterion_main!(benches);
