//! Arbitrary input never panics `Authenticator::authenticate` or `Jwks::from_json`, and is never accepted.
#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] functions fail loudly")]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mesh_identity::jwt::{Authenticator, HeaderLocation, Jwks, JwtRule, Outcome};
use proptest::prelude::*;

/// RFC 8037's Ed25519 public key: nothing proptest generates is signed by it.
const JWKS: &str = r#"{"keys":[
    {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
    {"kty":"EC","crv":"P-256","kid":"ec","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
     "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

fn authenticator() -> Authenticator {
    let jwks = Arc::new(Jwks::from_json(JWKS).unwrap());
    Authenticator::new(vec![
        JwtRule::new("joe", Some(Arc::clone(&jwks))),
        JwtRule {
            from_headers: vec![HeaderLocation::new("x-jwt", "")],
            from_cookies: vec!["session".into()],
            ..JwtRule::new("other", Some(jwks))
        },
    ])
}

/// A JSON-ish section: sometimes valid JSON with plausible members, sometimes noise.
fn section() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\{(\"(alg|kid|iss|aud|exp|nbf|crit|jwk)\":(\"[A-Za-z0-9]{0,6}\"|[0-9]{1,12}|null|\\[\\]),?){0,5}\\}",
        Just(r#"{"alg":"EdDSA","kid":"ed"}"#.to_owned()),
        Just(r#"{"alg":"ES256"}"#.to_owned()),
        Just(r#"{"iss":"joe","exp":1}"#.to_owned()),
    ]
}

fn structured_token() -> impl Strategy<Value = String> {
    (section(), section(), proptest::collection::vec(any::<u8>(), 0..100)).prop_map(|(header, payload, sig)| {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(sig)
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_panic(value in any::<String>(), path in any::<String>(), now in any::<Option<u64>>()) {
        let auth = authenticator();
        let bearer = format!("Bearer {value}");
        let cookie = format!("session={value}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("x-jwt", value.as_str()),
            ("cookie", cookie.as_str()),
            (value.as_str(), value.as_str()),
        ];
        let outcome = auth.authenticate(headers, &path, now);
        prop_assert!(!matches!(outcome, Outcome::Verified { .. }), "{:?}", outcome);
        let outcome = auth.authenticate([], &format!("/?access_token={value}"), now);
        prop_assert!(!matches!(outcome, Outcome::Verified { .. }), "{:?}", outcome);
    }

    #[test]
    fn structured_tokens_are_rejected(token in structured_token(), now in any::<Option<u64>>()) {
        let auth = authenticator();
        let bearer = format!("Bearer {token}");
        let outcome = auth.authenticate([("authorization", bearer.as_str())], "/", now);
        prop_assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
    }

    #[test]
    fn arbitrary_jwks_never_panic(text in any::<String>(), key in section()) {
        let _ = Jwks::from_json(&text);
        let _ = Jwks::from_json(&format!(r#"{{"keys":[{key}]}}"#));
    }
}
