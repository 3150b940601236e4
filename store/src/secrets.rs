//! How secrets are kept so that a database dump hands out no working credential:
//! SIP digest HA1s (RFC 7616/8760, MD5 and SHA-256) for device authentication,
//! argon2id for console passwords, SHA-256 for API token secrets, and
//! XChaCha20-Poly1305 under a key from configuration for the few secrets that
//! must be shown again (a device's SIP password for provisioning).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use md5::Md5;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// Length of the key for [`SecretBox`].
pub const KEY_LEN: usize = 32;
const FORMAT: &str = "v1:";

/// Encrypts and decrypts recoverable secrets with the platform's secret key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    /// For keyed hashes, derived from the key so that it is never the key itself.
    mac_key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        let mut derive = Sha256::new();
        derive.update(b"pbx keyed hash v1\0");
        derive.update(key);
        SecretBox {
            cipher: XChaCha20Poly1305::new(key.into()),
            mac_key: derive.finalize().into(),
        }
    }

    /// HMAC-SHA256 of `data` under a key derived from the secret key, in hex:
    /// a fingerprint that, unlike a plain hash, cannot be used to test guesses
    /// of what was hashed without the key.
    pub fn keyed_hash(&self, data: &[u8]) -> String {
        hmac_sha256_hex(&self.mac_key, data)
    }

    /// Parses a key written as base64 (what `generate_key` writes).
    pub fn parse_key(text: &str) -> Result<[u8; KEY_LEN], String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| "not valid base64".to_owned())?;
        bytes
            .try_into()
            .map_err(|_| format!("must be {KEY_LEN} bytes, base64-encoded"))
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_key() -> String {
        let mut key = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for in-memory input.
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("{FORMAT}{}", URL_SAFE_NO_PAD.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, StoreError> {
        let body = stored.strip_prefix(FORMAT).ok_or(StoreError::Crypto)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| StoreError::Crypto)?;
        if raw.len() < 24 {
            return Err(StoreError::Crypto);
        }
        let (nonce, ciphertext) = raw.split_at(24);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| StoreError::Crypto)?;
        String::from_utf8(plain).map_err(|_| StoreError::Crypto)
    }
}

/// Digest HA1 = H(username ":" realm ":" password) for both algorithms a
/// device may use, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestHa1 {
    pub md5: String,
    pub sha256: String,
}

impl DigestHa1 {
    pub fn compute(user: &str, realm: &str, password: &str) -> Self {
        let input = format!("{user}:{realm}:{password}");
        DigestHa1 {
            md5: hex(&Md5::digest(input.as_bytes())),
            sha256: hex(&Sha256::digest(input.as_bytes())),
        }
    }
}

/// Lower-case hex of bytes.
/// HMAC-SHA256 of `data` under `key`, in lower-case hex.
pub fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    use hmac::Mac;
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(data);
    hex(&mac.finalize().into_bytes())
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// SHA-256 of a string, lower-case hex.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// A hash to verify against when the one asked for does not exist (an
/// unknown e-mail, a box without a PIN), so that the answer takes as long
/// as for a known one.
pub(crate) fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("an unguessable placeholder password"))
}

/// An argon2id hash of a console password, in PHC string format.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Only fails for parameters out of range, and the defaults are in range.
        .unwrap_or_default()
}

/// Checks a console password against its stored hash; any malformed hash is a mismatch.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random password a human can type: letters and digits without the ones
/// that are easily confused (0/O, 1/l/I).
pub fn generate_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `n` random bytes, base64url without padding (for token secrets).
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_matches_rfc_2617_example() {
        // RFC 2617 §3.5: Mufasa / testrealm@host.com / Circle Of Life.
        let ha1 = DigestHa1::compute("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(ha1.md5, "939e7578ed9e3c518a452acee763bce9");
        // The user of RFC 7616 §3.9.1; value from Python's hashlib.
        let ha1 = DigestHa1::compute("Mufasa", "http-auth@example.org", "Circle of Life");
        assert_eq!(
            ha1.sha256,
            "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"
        );
    }

    #[test]
    fn secret_box_round_trip_and_tamper() {
        let key = SecretBox::parse_key(&SecretBox::generate_key()).expect("fresh key parses");
        let sb = SecretBox::new(&key);
        let enc = sb.encrypt("s3cret");
        assert!(enc.starts_with("v1:"));
        assert!(!enc.contains("s3cret"));
        assert_eq!(sb.decrypt(&enc).expect("decrypts"), "s3cret");
        // Two encryptions of one secret differ (random nonce).
        assert_ne!(enc, sb.encrypt("s3cret"));
        let mut tampered = enc.clone();
        tampered.pop();
        tampered.push(if enc.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(sb.decrypt(&tampered), Err(StoreError::Crypto)));
        let other = SecretBox::new(&[7u8; KEY_LEN]);
        assert!(matches!(other.decrypt(&enc), Err(StoreError::Crypto)));
        assert!(matches!(sb.decrypt("garbage"), Err(StoreError::Crypto)));
    }

    #[test]
    fn password_hash_verifies_only_the_password() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn key_parsing_names_the_problem() {
        assert!(SecretBox::parse_key("!!").unwrap_err().contains("base64"));
        assert!(SecretBox::parse_key("AAAA")
            .unwrap_err()
            .contains("32 bytes"));
    }
}
