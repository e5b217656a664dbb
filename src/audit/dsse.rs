//! DSSE envelopes (the in-toto attestation signature wrapper) signed and verified with ECDSA
//! P-256 / SHA-256 keys in PEM: a PKCS#8 private key to sign (`openssl genpkey -algorithm EC
//! -pkeyopt ec_paramgen_curve:P-256`), its SubjectPublicKeyInfo public key to verify.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The DER of a PEM file's block labelled `label`.
fn pem(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or_else(|| format!("it is not a PEM `{label}`"))?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).map_err(|e| format!("its PEM body is not base64: {e}"))
}

/// DSSE's pre-authentication encoding: what is signed.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// `sha256:` and the hex of a public key's SubjectPublicKeyInfo DER: the envelope's `keyid`.
fn key_id(spki: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(spki)))
}

/// The SubjectPublicKeyInfo DER of a P-256 public key point (65 bytes, uncompressed).
fn spki_of(point: &[u8]) -> Vec<u8> {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING point }
    let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").expect("constant");
    der.extend_from_slice(point);
    der
}

/// The `keyid` of a PEM public key (`sha256:` of its SubjectPublicKeyInfo DER).
pub fn key_id_of(public_pem: &str) -> Result<String, String> {
    Ok(key_id(&pem(public_pem, "PUBLIC KEY")?))
}

/// `payload` in an envelope signed with the PKCS#8 PEM private key `key_pem`.
pub fn sign(payload: &[u8], key_pem: &str) -> Result<Value, String> {
    let der = pem(key_pem, "PRIVATE KEY")?;
    let rng = ring::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng)
        .map_err(|e| format!("it is not an ECDSA P-256 PKCS#8 key ({e})"))?;
    let sig = pair.sign(&rng, &pae(PAYLOAD_TYPE, payload)).map_err(|e| format!("cannot sign: {e}"))?;
    Ok(json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": STANDARD.encode(payload),
        "signatures": [{ "keyid": key_id(&spki_of(pair.public_key().as_ref())), "sig": STANDARD.encode(sig.as_ref()) }],
    }))
}

/// The payload of `envelope` when one of its signatures verifies with the PEM public key
/// `public_pem`; else why not.
pub fn verify(envelope: &Value, public_pem: &str) -> Result<Vec<u8>, String> {
    let spki = pem(public_pem, "PUBLIC KEY")?;
    let header = spki_of(&[]);
    let point = spki
        .strip_prefix(header.as_slice())
        .filter(|p| p.len() == 65)
        .ok_or("the public key is not an ECDSA P-256 key (SubjectPublicKeyInfo, uncompressed point)")?;
    let payload_type = envelope["payloadType"].as_str().ok_or("the envelope has no payloadType")?;
    if payload_type != PAYLOAD_TYPE {
        return Err(format!("the envelope's payloadType is {payload_type}, not {PAYLOAD_TYPE}"));
    }
    let payload = envelope["payload"]
        .as_str()
        .and_then(|p| STANDARD.decode(p).ok())
        .ok_or("the envelope's payload is not base64")?;
    let key = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point);
    let message = pae(payload_type, &payload);
    let signatures = envelope["signatures"].as_array().cloned().unwrap_or_default();
    let verified = signatures.iter().any(|s| {
        s["sig"].as_str().and_then(|b| STANDARD.decode(b).ok()).is_some_and(|sig| key.verify(&message, &sig).is_ok())
    });
    if verified {
        Ok(payload)
    } else {
        Err(format!("none of its {} signature(s) verifies with the key {}", signatures.len(), key_id(&spki)))
    }
}
