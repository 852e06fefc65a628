//! End-to-end tests of `mesh_identity::jwt` with real signatures: RFC example tokens, tokens signed at test time
//! with freshly generated ECDSA and Ed25519 keys and committed RSA keys (see `tests/data/jwt/README.md`), and
//! attack tokens that must all be rejected.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test helpers outside #[test] functions fail loudly")]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mesh_identity::jwt::{
    Authenticator, HeaderLocation, JwkError, Jwks, JwksError, JwtError, JwtRule, MAX_TOKEN_LEN, Outcome,
};
use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaEncoding, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.example.com";
const NOW: u64 = 1_700_000_000;

const RSA_ISSUER_PK8: &[u8] = include_bytes!("data/jwt/rsa2048-issuer.pk8.der");
const RSA_ATTACKER_PK8: &[u8] = include_bytes!("data/jwt/rsa2048-attacker.pk8.der");
const RSA_ISSUER_PUB_PEM: &str = include_str!("data/jwt/rsa2048-issuer.pub.pem");

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key and the public JWK that goes with it.
enum Signer {
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct TestKey {
    alg: &'static str,
    signer: Signer,
    /// The public JWK, without `kid`/`alg`/`use`.
    jwk: Value,
}

impl TestKey {
    fn rsa(alg: &'static str, pkcs8: &[u8]) -> Self {
        let encoding: &'static dyn RsaEncoding = match alg {
            "RS256" => &signature::RSA_PKCS1_SHA256,
            "RS384" => &signature::RSA_PKCS1_SHA384,
            "RS512" => &signature::RSA_PKCS1_SHA512,
            "PS256" => &signature::RSA_PSS_SHA256,
            "PS384" => &signature::RSA_PSS_SHA384,
            "PS512" => &signature::RSA_PSS_SHA512,
            _ => unreachable!("{alg}"),
        };
        let pair = RsaKeyPair::from_pkcs8(pkcs8).unwrap();
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        let jwk = json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)});
        TestKey { alg, signer: Signer::Rsa(pair, encoding), jwk }
    }

    fn ec(alg: &'static str) -> Self {
        let rng = SystemRandom::new();
        let (signing, crv, size) = match alg {
            "ES256" => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
            "ES384" => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
            _ => unreachable!("{alg}"),
        };
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        assert_eq!(point[0], 4);
        let jwk = json!({"kty": "EC", "crv": crv, "x": b64(&point[1..=size]), "y": b64(&point[1 + size..])});
        TestKey { alg, signer: Signer::Ec(pair), jwk }
    }

    fn ed25519() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
        TestKey { alg: "EdDSA", signer: Signer::Ed(pair), jwk }
    }

    fn by_alg(alg: &'static str) -> Self {
        match alg {
            "ES256" | "ES384" => Self::ec(alg),
            "EdDSA" => Self::ed25519(),
            _ => Self::rsa(alg, RSA_ISSUER_PK8),
        }
    }

    /// A JWK Set holding just this key's public JWK.
    fn jwks(&self) -> Arc<Jwks> {
        jwks(std::slice::from_ref(&self.jwk))
    }

    /// The public JWK with extra members (e.g. `kid`).
    fn jwk_with(&self, extra: Value) -> Value {
        let mut jwk = self.jwk.clone();
        for (name, value) in extra.as_object().unwrap() {
            jwk[name] = value.clone();
        }
        jwk
    }

    fn sign_input(&self, signing_input: &str) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(pair, encoding) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, signing_input.as_bytes(), &mut sig).unwrap();
                sig
            }
            Signer::Ec(pair) => pair.sign(&rng, signing_input.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Ed(pair) => pair.sign(signing_input.as_bytes()).as_ref().to_vec(),
        }
    }

    /// A compact JWS of `payload` under `header` (which should name `self.alg`).
    fn sign_with_header(&self, header: &Value, payload: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(payload.to_string()));
        let sig = self.sign_input(&input);
        format!("{input}.{}", b64(sig))
    }

    /// A compact JWS of `payload` with header `{"alg": <alg>, "kid": <kid>}`.
    fn sign(&self, kid: Option<&str>, payload: &Value) -> String {
        let header = match kid {
            Some(kid) => json!({"alg": self.alg, "typ": "JWT", "kid": kid}),
            None => json!({"alg": self.alg, "typ": "JWT"}),
        };
        self.sign_with_header(&header, payload)
    }
}

fn jwks(keys: &[Value]) -> Arc<Jwks> {
    Arc::new(Jwks::from_json(&json!({ "keys": keys }).to_string()).unwrap())
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": ["api", "web"], "azp": "cli", "exp": NOW + 3600, "nbf": NOW - 10})
}

fn rule(jwks: Arc<Jwks>) -> JwtRule {
    JwtRule::new(ISSUER, Some(jwks))
}

fn bearer(auth: &Authenticator, token: &str) -> Outcome {
    auth.authenticate([("authorization", format!("Bearer {token}").as_str())], "/", Some(NOW))
}

fn rejected(outcome: Outcome) -> JwtError {
    match outcome {
        Outcome::Rejected(error) => error,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn verified(outcome: Outcome) -> (Arc<mesh_identity::jwt::VerifiedToken>, usize) {
    match outcome {
        Outcome::Verified { token, rule } => (token, rule),
        other => panic!("expected a verified token, got {other:?}"),
    }
}

/// One key of each supported algorithm, with a trusted `kid`, and an authenticator trusting all of them.
fn every_algorithm() -> (Vec<TestKey>, Authenticator) {
    let keys: Vec<TestKey> = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
        .into_iter()
        .map(TestKey::by_alg)
        .collect();
    let jwks =
        jwks(&keys.iter().map(|k| k.jwk_with(json!({"kid": k.alg, "alg": k.alg, "use": "sig"}))).collect::<Vec<_>>());
    (keys, Authenticator::new(vec![rule(jwks)]))
}

mod vectors {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/data/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn fixture_authenticator(fixture: &Value) -> Authenticator {
        let jwks = Jwks::from_json(&fixture["jwks"].to_string()).unwrap();
        Authenticator::new(vec![JwtRule::new("joe", Some(Arc::new(jwks)))])
    }

    #[test]
    fn rfc7515_a2_rs256_and_a3_es256_verify() {
        for name in ["rfc7515-a2-rs256.json", "rfc7515-a3-es256.json"] {
            let fixture = fixture(name);
            let auth = fixture_authenticator(&fixture);
            let token = fixture["token"].as_str().unwrap();
            let exp = fixture["exp"].as_u64().unwrap();
            let headers = [("Authorization", format!("Bearer {token}"))];
            let headers = headers.iter().map(|(n, v)| (*n, v.as_str()));

            let (verified, rule) = verified(auth.authenticate(headers.clone(), "/", Some(exp - 3600)));
            assert_eq!(rule, 0);
            assert_eq!(verified.issuer, "joe");
            assert_eq!(verified.expires_at, Some(exp));
            assert_eq!(verified.claims["http://example.com/is_root"], json!(true));
            assert_eq!(verified.principal(), None, "{name}: no sub, no principal");

            assert_eq!(rejected(auth.authenticate(headers.clone(), "/", Some(exp + 61))), JwtError::Expired);
            assert_eq!(rejected(auth.authenticate(headers.clone(), "/", None)), JwtError::TimeNotSupplied);

            // One flipped bit anywhere in the signature.
            let (input, sig) = token.rsplit_once('.').unwrap();
            let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            sig[7] ^= 0x10;
            let tampered = format!("{input}.{}", b64(sig));
            let auth = fixture_authenticator(&fixture);
            let outcome = auth.authenticate([("authorization", format!("Bearer {tampered}").as_str())], "/", Some(exp));
            assert_eq!(rejected(outcome), JwtError::VerificationFails, "{name}");
        }
    }

    #[test]
    fn rfc8037_ed25519_example_is_signed_but_not_a_jwt() {
        let fixture = fixture("rfc8037-a4-ed25519.json");
        let jwks = Jwks::from_json(&fixture["jwks"].to_string()).unwrap();
        let auth = Authenticator::new(vec![JwtRule::new("joe", Some(Arc::new(jwks)))]);
        assert_eq!(rejected(bearer(&auth, fixture["token"].as_str().unwrap())), JwtError::PayloadBadJson);
    }

    #[test]
    fn rsa_keys_shorter_than_2048_bits_are_refused() {
        let text =
            std::fs::read_to_string(format!("{}/tests/data/jwt/rsa1024-public.jwks.json", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        match Jwks::from_json(&text) {
            Err(JwksError::NoValidKeys { skipped }) => {
                assert_eq!(skipped.len(), 1);
                assert_eq!(skipped[0].kid.as_deref(), Some("rsa1024"));
                assert_eq!(skipped[0].reason, JwkError::RsaKeySize { bits: 1024 });
            }
            other => panic!("expected the 1024-bit key to be refused, got {other:?}"),
        }
    }
}

mod algorithms {
    use super::*;

    #[test]
    fn every_supported_algorithm_verifies() {
        let (keys, auth) = every_algorithm();
        for key in &keys {
            let token = key.sign(Some(key.alg), &claims());
            let (verified, rule) = verified(bearer(&auth, &token));
            assert_eq!(rule, 0, "{}", key.alg);
            assert_eq!(verified.issuer, ISSUER);
            assert_eq!(verified.subject.as_deref(), Some("alice"));
            assert_eq!(verified.principal().as_deref(), Some("https://issuer.example.com/alice"));
            assert_eq!(verified.audiences, ["api", "web"]);
            assert_eq!(verified.presenter.as_deref(), Some("cli"));
            assert_eq!(verified.expires_at, Some(NOW + 3600));
            assert_eq!(verified.claims["sub"], "alice");
        }
    }

    #[test]
    fn a_token_without_kid_tries_every_suitable_key() {
        let first = TestKey::ec("ES256");
        let second = TestKey::ec("ES256");
        let auth = Authenticator::new(vec![rule(jwks(&[
            first.jwk_with(json!({"kid": "one"})),
            second.jwk_with(json!({"kid": "two"})),
        ]))]);
        verified(bearer(&auth, &second.sign(None, &claims())));
        verified(bearer(&auth, &second.sign(Some("two"), &claims())));
        // With a kid, only the key of that kid is tried.
        assert_eq!(rejected(bearer(&auth, &second.sign(Some("one"), &claims()))), JwtError::VerificationFails);
        assert_eq!(rejected(bearer(&auth, &second.sign(Some("three"), &claims()))), JwtError::KidAlgMismatch);
    }

    #[test]
    fn keys_not_meant_for_the_token_are_not_used() {
        let key = TestKey::ec("ES256");
        let token = key.sign(Some("k"), &claims());
        // `use: enc` keys are left out of the set; with nothing else usable the set is refused.
        let enc = json!({"keys": [key.jwk_with(json!({"kid": "k", "use": "enc"}))]}).to_string();
        assert!(matches!(Jwks::from_json(&enc), Err(JwksError::NoValidKeys { .. })));
        // A key whose `alg` differs from the token's is not a candidate.
        let other = TestKey::ec("ES384");
        let auth = Authenticator::new(vec![rule(jwks(&[
            other.jwk_with(json!({"kid": "k"})),
            key.jwk_with(json!({"kid": "x", "use": "enc"})),
        ]))]);
        assert_eq!(rejected(bearer(&auth, &token)), JwtError::KidAlgMismatch);
        // An RSA key is never a candidate for an ES256 token, whatever its kid.
        let rsa = TestKey::rsa("RS256", RSA_ISSUER_PK8);
        let auth = Authenticator::new(vec![rule(jwks(&[rsa.jwk_with(json!({"kid": "k"}))]))]);
        assert_eq!(rejected(bearer(&auth, &token)), JwtError::KidAlgMismatch);
    }

    #[test]
    fn pkcs1_signature_presented_as_pss_fails() {
        let rs = TestKey::rsa("RS256", RSA_ISSUER_PK8);
        let auth = Authenticator::new(vec![rule(rs.jwks())]);
        let token = rs.sign(None, &claims());
        let (_, payload_and_sig) = token.split_once('.').unwrap();
        let relabelled = format!("{}.{payload_and_sig}", b64(r#"{"alg":"PS256"}"#));
        assert_eq!(rejected(bearer(&auth, &relabelled)), JwtError::VerificationFails);
    }
}

mod attacks {
    use super::*;

    fn trusted() -> (TestKey, Authenticator) {
        let key = TestKey::rsa("RS256", RSA_ISSUER_PK8);
        let auth = Authenticator::new(vec![JwtRule {
            audiences: vec!["api".into()],
            ..rule(jwks(&[key.jwk_with(json!({"kid": "trusted"}))]))
        }]);
        (key, auth)
    }

    fn unsigned(header: &Value, payload: &Value, sig: &str) -> String {
        format!("{}.{}.{sig}", b64(header.to_string()), b64(payload.to_string()))
    }

    #[test]
    fn alg_none() {
        let (_, auth) = trusted();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = json!({"alg": alg, "kid": "trusted"});
            assert_eq!(rejected(bearer(&auth, &unsigned(&header, &claims(), ""))), JwtError::BadFormat);
            assert_eq!(
                rejected(bearer(&auth, &unsigned(&header, &claims(), "c2ln"))),
                JwtError::AlgRefused(alg.into())
            );
        }
    }

    #[test]
    fn rsa_public_key_as_hmac_secret() {
        let (_, auth) = trusted();
        let input = format!("{}.{}", b64(r#"{"alg":"HS256","kid":"trusted"}"#), b64(claims().to_string()));
        let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, RSA_ISSUER_PUB_PEM.as_bytes());
        let token = format!("{input}.{}", b64(ring::hmac::sign(&secret, input.as_bytes())));
        assert_eq!(rejected(bearer(&auth, &token)), JwtError::AlgRefused("HS256".into()));

        // Even when the JWKS holds that PEM as an `oct` key next to the RSA key.
        let key = TestKey::rsa("RS256", RSA_ISSUER_PK8);
        let oct = json!({"kty": "oct", "kid": "trusted", "k": b64(RSA_ISSUER_PUB_PEM)});
        let jwks =
            Jwks::from_json(&json!({"keys": [key.jwk_with(json!({"kid": "trusted"})), oct]}).to_string()).unwrap();
        assert_eq!(jwks.len(), 1);
        assert_eq!(jwks.skipped()[0].reason, JwkError::Symmetric);
        let auth = Authenticator::new(vec![rule(Arc::new(jwks))]);
        assert_eq!(rejected(bearer(&auth, &token)), JwtError::AlgRefused("HS256".into()));
    }

    #[test]
    fn attacker_key_with_a_trusted_kid() {
        let (_, auth) = trusted();
        let attacker = TestKey::rsa("RS256", RSA_ATTACKER_PK8);
        let token = attacker.sign(Some("trusted"), &claims());
        assert_eq!(rejected(bearer(&auth, &token)), JwtError::VerificationFails);
        // Carrying the attacker's key in the header does not help.
        let header = json!({"alg": "RS256", "kid": "trusted", "jwk": attacker.jwk});
        let token = attacker.sign_with_header(&header, &claims());
        assert_eq!(rejected(bearer(&auth, &token)), JwtError::HeaderEmbeddedKey("jwk"));
        for member in ["jku", "x5u"] {
            let header = json!({"alg": "RS256", "kid": "trusted", member: "https://attacker.example/keys"});
            let token = attacker.sign_with_header(&header, &claims());
            assert_eq!(rejected(bearer(&auth, &token)), JwtError::HeaderEmbeddedKey(member));
        }
        let header = json!({"alg": "RS256", "x5c": ["MIIB"]});
        assert_eq!(
            rejected(bearer(&auth, &attacker.sign_with_header(&header, &claims()))),
            JwtError::HeaderEmbeddedKey("x5c")
        );
    }

    #[test]
    fn tampered_payload() {
        let (key, auth) = trusted();
        let token = key.sign(Some("trusted"), &claims());
        verified(bearer(&auth, &token));
        let (header, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut forged = claims();
        forged["sub"] = json!("admin");
        let tampered = format!("{header}.{}.{sig}", b64(forged.to_string()));
        assert_eq!(rejected(bearer(&auth, &tampered)), JwtError::VerificationFails);
    }

    #[test]
    fn claims_outside_the_rule() {
        let (key, auth) = trusted();
        let with = |change: Value| {
            let mut payload = claims();
            for (name, value) in change.as_object().unwrap() {
                payload[name] = value.clone();
            }
            key.sign(Some("trusted"), &payload)
        };
        assert_eq!(rejected(bearer(&auth, &with(json!({"exp": NOW - 61})))), JwtError::Expired);
        verified(bearer(&auth, &with(json!({"exp": NOW - 60}))));
        assert_eq!(rejected(bearer(&auth, &with(json!({"nbf": NOW + 61})))), JwtError::NotYetValid);
        verified(bearer(&auth, &with(json!({"nbf": NOW + 60}))));
        assert_eq!(rejected(bearer(&auth, &with(json!({"iss": "https://evil.example"})))), JwtError::UnknownIssuer);
        assert_eq!(rejected(bearer(&auth, &with(json!({"iss": null})))), JwtError::ClaimNotString("iss"));
        assert_eq!(rejected(bearer(&auth, &with(json!({"aud": "other"})))), JwtError::AudienceNotAllowed);
        assert_eq!(rejected(bearer(&auth, &with(json!({"aud": []})))), JwtError::AudienceNotAllowed);
        verified(bearer(&auth, &with(json!({"aud": "https://api/"}))));
        assert_eq!(rejected(bearer(&auth, &with(json!({"exp": "tomorrow"})))), JwtError::ClaimNotNumericDate("exp"));
        // No exp and no nbf: valid at any time, even without a clock.
        let mut timeless = claims();
        timeless.as_object_mut().unwrap().retain(|name, _| name != "exp" && name != "nbf");
        let token = key.sign(Some("trusted"), &timeless);
        let outcome = auth.authenticate([("authorization", format!("Bearer {token}").as_str())], "/", None);
        assert_eq!(verified(outcome).0.expires_at, None);
    }

    #[test]
    fn malformed_encodings() {
        let (key, auth) = trusted();
        let token = key.sign(Some("trusted"), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let join = |h: &str, p: &str, s: &str| format!("{h}.{p}.{s}");
        let cases = [
            (join(&format!("{}==", parts[0]), parts[1], parts[2]), JwtError::HeaderBadBase64),
            (join(&parts[0].replace('e', "+"), parts[1], parts[2]), JwtError::HeaderBadBase64),
            (join(parts[0], &format!("{}=", parts[1]), parts[2]), JwtError::PayloadBadBase64),
            (join(parts[0], &format!("{}*", parts[1]), parts[2]), JwtError::PayloadBadBase64),
            (join(parts[0], parts[1], &format!("{}=", parts[2])), JwtError::SignatureBadBase64),
            (join(parts[0], parts[1], &parts[2].replace('_', "/")), JwtError::SignatureBadBase64),
            (join(&b64("{alg: RS256}"), parts[1], parts[2]), JwtError::HeaderBadJson),
            (join(&b64(r#"{"alg":"RS256"}garbage"#), parts[1], parts[2]), JwtError::HeaderBadJson),
            (join(&b64(r#"{"alg":"RS256","alg":"RS256"}"#), parts[1], parts[2]), JwtError::HeaderBadJson),
            (join(&b64(r#"{"alg":"RS256","crit":["b64"],"b64":false}"#), parts[1], parts[2]), JwtError::HeaderCrit),
            (join(parts[0], &b64("[1,2]"), parts[2]), JwtError::PayloadBadJson),
            (format!("{token}.extra"), JwtError::BadFormat),
            (parts[..2].join("."), JwtError::BadFormat),
            ("Bearer".into(), JwtError::BadFormat),
        ];
        for (token, expected) in cases {
            assert_eq!(rejected(bearer(&auth, &token)), expected, "{token}");
        }
        // Non-zero trailing bits: a non-canonical encoding of the same signature.
        let sig = parts[2];
        let last = sig.chars().last().unwrap();
        let sibling = match last {
            'A' => 'B',
            'Q' => 'R',
            'g' => 'h',
            'w' => 'x',
            other => panic!("a 256-byte signature's last sextet carries 2 bits, got {other}"),
        };
        let non_canonical = format!("{}.{}.{}{sibling}", parts[0], parts[1], &sig[..sig.len() - 1]);
        assert_eq!(rejected(bearer(&auth, &non_canonical)), JwtError::SignatureBadBase64);
    }

    #[test]
    fn a_200_kb_token_is_refused_cheaply() {
        let (key, auth) = trusted();
        let mut payload = claims();
        payload["padding"] = json!("x".repeat(200 * 1024));
        let token = key.sign(Some("trusted"), &payload);
        assert!(token.len() > 200_000);
        let started = std::time::Instant::now();
        assert_eq!(rejected(bearer(&auth, &token)), JwtError::TooLarge { len: token.len(), limit: MAX_TOKEN_LEN });
        let junk = "a".repeat(200 * 1024);
        assert_eq!(rejected(bearer(&auth, &junk)), JwtError::TooLarge { len: junk.len(), limit: MAX_TOKEN_LEN });
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}

mod rules {
    use super::*;

    #[test]
    fn no_token_anywhere() {
        let (_, auth) = every_algorithm();
        let headers = [("cookie", "access_token=x.y.z"), ("x-token", "a.b.c"), ("authorization", "Basic dXNlcg==")];
        assert_eq!(auth.authenticate(headers, "/path?token=a.b.c", Some(NOW)), Outcome::NoToken);
        assert_eq!(auth.authenticate([], "/", None), Outcome::NoToken);
    }

    #[test]
    fn a_rule_without_its_jwks_fails_closed() {
        let key = TestKey::ec("ES256");
        let auth = Authenticator::new(vec![JwtRule::new(ISSUER, None)]);
        assert_eq!(rejected(bearer(&auth, &key.sign(None, &claims()))), JwtError::JwksMissing);
    }

    #[test]
    fn every_token_must_be_valid() {
        let key = TestKey::ec("ES256");
        let auth = Authenticator::new(vec![rule(key.jwks())]);
        let good = key.sign(None, &claims());
        let good_header = format!("Bearer {good}");
        let path = format!("/?access_token={good}");
        verified(auth.authenticate([("authorization", good_header.as_str())], &path, Some(NOW)));
        let outcome = auth.authenticate([("authorization", good_header.as_str())], "/?access_token=bad", Some(NOW));
        assert_eq!(rejected(outcome), JwtError::BadFormat);
        let headers = [("authorization", good_header.as_str()), ("authorization", "Bearer a.b.c")];
        assert_eq!(rejected(auth.authenticate(headers, "/", Some(NOW))), JwtError::HeaderBadBase64);
    }

    #[test]
    fn a_token_counts_only_for_the_issuers_that_declared_its_location() {
        let a = TestKey::ec("ES256");
        let b = TestKey::ed25519();
        let auth = Authenticator::new(vec![
            JwtRule {
                from_headers: vec![HeaderLocation::new("x-a-token", "")],
                ..JwtRule::new("issuer-a", Some(a.jwks()))
            },
            JwtRule {
                from_params: vec!["b_token".into()],
                from_cookies: vec!["b_session".into()],
                ..JwtRule::new("issuer-b", Some(b.jwks()))
            },
        ]);
        let a_token = a.sign(None, &json!({"iss": "issuer-a", "sub": "x"}));
        let b_token = b.sign(None, &json!({"iss": "issuer-b", "sub": "y"}));

        let (token, rule) = verified(auth.authenticate([("X-A-Token", a_token.as_str())], "/", None));
        assert_eq!((token.principal().as_deref(), rule), (Some("issuer-a/x"), 0));
        let (token, rule) = verified(auth.authenticate([], &format!("/p?b_token={b_token}"), None));
        assert_eq!((token.principal().as_deref(), rule), (Some("issuer-b/y"), 1));
        let cookie = format!("theme=dark; b_session={b_token}");
        let (_, rule) = verified(auth.authenticate([("Cookie", cookie.as_str())], "/", None));
        assert_eq!(rule, 1);
        // Both at once: both valid, the first found is reported.
        let outcome = auth.authenticate([("x-a-token", a_token.as_str())], &format!("/?b_token={b_token}"), None);
        assert_eq!(verified(outcome).1, 0);

        // B's token where only A looks for tokens, and the other way round.
        let outcome = auth.authenticate([("x-a-token", b_token.as_str())], "/", None);
        assert_eq!(rejected(outcome), JwtError::UnknownIssuer);
        let outcome = auth.authenticate([], &format!("/?b_token={a_token}"), None);
        assert_eq!(rejected(outcome), JwtError::UnknownIssuer);
        // Default locations are not looked at: neither rule relies on them.
        let bearer_b = format!("Bearer {b_token}");
        assert_eq!(auth.authenticate([("authorization", bearer_b.as_str())], "/", None), Outcome::NoToken);
    }

    #[test]
    fn the_first_rule_the_token_passes_wins() {
        let key = TestKey::ec("ES384");
        let keys = key.jwks();
        let auth = Authenticator::new(vec![
            JwtRule { audiences: vec!["one".into()], ..rule(Arc::clone(&keys)) },
            JwtRule { audiences: vec!["two".into()], ..rule(Arc::clone(&keys)) },
            rule(keys),
        ]);
        let with_aud = |aud: Value| {
            let mut payload = claims();
            payload["aud"] = aud;
            key.sign(None, &payload)
        };
        assert_eq!(verified(bearer(&auth, &with_aud(json!(["two", "one"])))).1, 0);
        assert_eq!(verified(bearer(&auth, &with_aud(json!("two")))).1, 1);
        assert_eq!(verified(bearer(&auth, &with_aud(json!("three")))).1, 2);

        let strict = Authenticator::new(vec![
            JwtRule { audiences: vec!["one".into()], ..rule(key.jwks()) },
            JwtRule { audiences: vec!["two".into()], ..rule(key.jwks()) },
        ]);
        // Passing none, the first rule's reason is given.
        assert_eq!(rejected(bearer(&strict, &with_aud(json!("three")))), JwtError::AudienceNotAllowed);
    }

    #[test]
    fn header_prefixes() {
        let key = TestKey::ed25519();
        let auth = Authenticator::new(vec![JwtRule {
            from_headers: vec![HeaderLocation::new("x-forwarded-authorization", "Token ")],
            ..rule(key.jwks())
        }]);
        let token = key.sign(None, &claims());
        let value = format!("Token {token}");
        verified(auth.authenticate([("X-Forwarded-Authorization", value.as_str())], "/", Some(NOW)));
        let value = format!("Bearer {token}");
        let outcome = auth.authenticate([("x-forwarded-authorization", value.as_str())], "/", Some(NOW));
        assert_eq!(outcome, Outcome::NoToken);
    }
}

mod cache {
    use super::*;

    #[test]
    fn a_repeated_token_is_answered_from_the_cache() {
        let (keys, auth) = every_algorithm();
        for key in &keys {
            let token = key.sign(Some(key.alg), &claims());
            let first = bearer(&auth, &token);
            for _ in 0..3 {
                assert_eq!(bearer(&auth, &token), first);
            }
        }
        let stats = auth.cache_stats();
        assert_eq!((stats.misses, stats.hits, stats.len), (9, 27, 9));
    }

    #[test]
    fn a_cached_token_still_expires() {
        let key = TestKey::ec("ES256");
        let auth = Authenticator::new(vec![rule(key.jwks())]);
        let token = key.sign(None, &claims());
        let header = format!("Bearer {token}");
        let at = |now| auth.authenticate([("authorization", header.as_str())], "/", now);
        verified(at(Some(NOW)));
        assert_eq!(auth.cache_stats().len, 1);
        assert_eq!(rejected(at(Some(NOW - 100))), JwtError::NotYetValid);
        assert_eq!(rejected(at(None)), JwtError::TimeNotSupplied);
        verified(at(Some(NOW + 3660)));
        assert_eq!(rejected(at(Some(NOW + 3661))), JwtError::Expired);
        assert_eq!(auth.cache_stats().len, 0);
        assert_eq!(rejected(at(Some(NOW + 3661))), JwtError::Expired);
    }

    #[test]
    fn a_cached_token_is_still_held_to_its_location_and_rule() {
        let key = TestKey::ec("ES256");
        let keys = key.jwks();
        let auth = Authenticator::new(vec![
            JwtRule { audiences: vec!["api".into()], ..rule(Arc::clone(&keys)) },
            JwtRule {
                from_headers: vec![HeaderLocation::new("x-other", "")],
                ..JwtRule::new("other-issuer", Some(keys))
            },
        ]);
        let token = key.sign(None, &claims());
        verified(bearer(&auth, &token));
        let outcome = auth.authenticate([("x-other", token.as_str())], "/", Some(NOW));
        assert_eq!(rejected(outcome), JwtError::UnknownIssuer);
    }

    #[test]
    fn a_disabled_cache_gives_the_same_answers() {
        let key = TestKey::ed25519();
        let auth = Authenticator::with_cache_capacity(vec![rule(key.jwks())], 0);
        let token = key.sign(None, &claims());
        assert_eq!(bearer(&auth, &token), bearer(&auth, &token));
        assert_eq!(auth.cache_stats().hits, 0);
    }

    #[test]
    fn the_cache_is_bounded() {
        let key = TestKey::ed25519();
        let auth = Authenticator::with_cache_capacity(vec![rule(key.jwks())], 4);
        for i in 0..20 {
            let mut payload = claims();
            payload["jti"] = json!(i.to_string());
            verified(bearer(&auth, &key.sign(None, &payload)));
        }
        assert_eq!(auth.cache_stats().len, 4);
    }

    #[test]
    fn shared_between_threads() {
        let key = TestKey::ec("ES256");
        let auth = Arc::new(Authenticator::with_cache_capacity(vec![rule(key.jwks())], 8));
        let tokens: Arc<Vec<String>> = Arc::new(
            (0..16)
                .map(|i| {
                    let mut payload = claims();
                    payload["jti"] = json!(i.to_string());
                    key.sign(None, &payload)
                })
                .collect(),
        );
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let auth = Arc::clone(&auth);
                let tokens = Arc::clone(&tokens);
                std::thread::spawn(move || {
                    for round in 0..50 {
                        let token = &tokens[(t * 7 + round) % tokens.len()];
                        verified(bearer(&auth, token));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = auth.cache_stats();
        assert_eq!(stats.hits + stats.misses, 200);
        assert!(stats.len <= 8);
    }
}
