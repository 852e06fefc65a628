//! Private keys: generation, and reading the PEM kinds Istio's CA files come in.
//!
//! *ring* loads only PKCS#8, so the traditional `EC PRIVATE KEY` (SEC 1) and `RSA PRIVATE KEY` (PKCS#1) forms
//! that `openssl` and Istio write are rewrapped as PKCS#8 first (RFC 5208 `PrivateKeyInfo` around the same
//! bytes).

use std::fmt;

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::CaError;

/// The algorithm of a key the CA generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256, Istio's default.
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
            KeyAlgorithm::EcdsaP384 => "ECDSA P-384",
            KeyAlgorithm::Ed25519 => "Ed25519",
        })
    }
}

/// A fresh key pair.
pub(crate) fn generate(algorithm: KeyAlgorithm) -> Result<KeyPair, CaError> {
    KeyPair::generate_for(algorithm.rcgen()).map_err(|e| CaError::KeyGeneration { algorithm, reason: e.to_string() })
}

/// A key pair from PEM: `PRIVATE KEY` (PKCS#8), `EC PRIVATE KEY` (SEC 1) or `RSA PRIVATE KEY` (PKCS#1).
pub(crate) fn from_pem(pem: &str, what: &'static str) -> Result<KeyPair, CaError> {
    let bad = |reason: String| CaError::BadKey { what, reason };
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let pkcs8 = match &key {
        PrivateKeyDer::Pkcs8(pkcs8) => pkcs8.clone_key(),
        PrivateKeyDer::Sec1(sec1) => sec1_to_pkcs8(sec1.secret_sec1_der()).ok_or_else(|| {
            bad("the EC PRIVATE KEY names no curve; convert it with `openssl pkcs8 -topk8 -nocrypt`".into())
        })?,
        PrivateKeyDer::Pkcs1(pkcs1) => pkcs1_to_pkcs8(pkcs1.secret_pkcs1_der()),
        _ => return Err(bad("unsupported private key format".into())),
    };
    KeyPair::try_from(&PrivateKeyDer::Pkcs8(pkcs8))
        .map_err(|e| bad(format!("{e} (supported: ECDSA P-256 and P-384, Ed25519, RSA of 2048 bits or more)")))
}

/// `id-ecPublicKey` (1.2.840.10045.2.1), DER-encoded with its tag.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `rsaEncryption` (1.2.840.113549.1.1.1) followed by NULL parameters.
const RSA_ALGORITHM_ID_CONTENT: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];

/// Wraps a SEC 1 `ECPrivateKey` in PKCS#8, taking the curve from its `parameters` field.
fn sec1_to_pkcs8(sec1: &[u8]) -> Option<PrivatePkcs8KeyDer<'static>> {
    let (tag, mut fields, _) = read_tlv(sec1)?;
    if tag != 0x30 {
        return None;
    }
    let curve = loop {
        let (tag, content, rest) = read_tlv(fields)?;
        if tag == 0xa0 {
            break content;
        }
        fields = rest;
    };
    let mut algorithm = EC_PUBLIC_KEY_OID.to_vec();
    algorithm.extend_from_slice(curve);
    Some(private_key_info(&algorithm, sec1))
}

/// Wraps a PKCS#1 `RSAPrivateKey` in PKCS#8.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> PrivatePkcs8KeyDer<'static> {
    private_key_info(RSA_ALGORITHM_ID_CONTENT, pkcs1)
}

/// `PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING privateKey }`.
fn private_key_info(algorithm_content: &[u8], key: &[u8]) -> PrivatePkcs8KeyDer<'static> {
    let mut body = vec![0x02, 0x01, 0x00];
    write_tlv(0x30, algorithm_content, &mut body);
    write_tlv(0x04, key, &mut body);
    let mut out = Vec::with_capacity(body.len() + 4);
    write_tlv(0x30, &body, &mut out);
    PrivatePkcs8KeyDer::from(out)
}

/// Splits one DER TLV (single-byte tag, definite length) off `input`: `(tag, content, rest)`.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let (bytes, rest) = input.split_at(n);
        input = rest;
        bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if input.len() < len {
        return None;
    }
    let (content, rest) = input.split_at(len);
    Some((tag, content, rest))
}

/// Appends a DER TLV with a definite length.
fn write_tlv(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_round_trips_long_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let mut out = Vec::new();
            write_tlv(0x04, &content, &mut out);
            let (tag, read, rest) = read_tlv(&out).expect("tlv");
            assert_eq!((tag, read.len(), rest.len()), (0x04, len, 0));
        }
    }

    #[test]
    fn truncated_tlv_is_rejected() {
        assert!(read_tlv(&[0x30, 0x05, 0x00]).is_none());
        assert!(read_tlv(&[0x30, 0x82, 0x01]).is_none());
        assert!(read_tlv(&[0x30]).is_none());
    }
}
