//! Feeds arbitrary bytes to the JWT parser and JWKS loader: they must never panic, and nothing unsigned may verify.
//!
//! Run with `cargo +nightly fuzz run jwt_parse` from `mesh-identity/`.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use mesh_identity::jwt::{Authenticator, HeaderLocation, Jwks, JwtRule, Outcome};

/// RFC 8037's Ed25519 key and RFC 7515's P-256 key: the fuzzer cannot sign with either.
const JWKS: &str = r#"{"keys":[
    {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
    {"kty":"EC","crv":"P-256","kid":"ec","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
     "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

/// Long after RFC 7515's example tokens (the only ones these keys ever signed) expired.
const NOW: u64 = 2_000_000_000;

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let jwks = Jwks::from_json(JWKS).map(Arc::new).ok();
        Authenticator::new(vec![
            JwtRule::new("joe", jwks.clone()),
            JwtRule {
                from_headers: vec![HeaderLocation::new("x-jwt", "")],
                from_cookies: vec!["session".into()],
                ..JwtRule::new("other", jwks)
            },
        ])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Jwks::from_json(text);
    let bearer = format!("Bearer {text}");
    let cookie = format!("session={text}");
    let headers = [("authorization", bearer.as_str()), ("x-jwt", text), ("cookie", cookie.as_str())];
    let path = format!("/?access_token={text}");
    let outcome = authenticator().authenticate(headers, &path, Some(NOW));
    assert!(!matches!(outcome, Outcome::Verified { .. }), "forged token accepted: {text:?}");
});
