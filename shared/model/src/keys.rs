//! Random secrets and API keys. Keys are shown once and stored only as SHA-256 hashes: they are
//! 32 random bytes, so a fast hash is enough (no password stretching needed).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    bytes
}

/// A new API key: `hlk_` and 32 random bytes, base64url.
pub fn generate_api_key() -> String {
    format!("hlk_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// What is stored of a key, and what a presented key is looked up by.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Compares two key hashes in constant time.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A generated account webhook secret (the one sent as a header).
pub fn generate_account_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A random string for ping challenges.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

/// Checks a value Hookline sends in a delivery header (a webhook token, the account secret):
/// 1 to `max` printable ASCII characters, spaces inside only when `spaces` allows them.
pub fn validate_header_text(
    field: &str,
    value: &str,
    max: usize,
    spaces: bool,
) -> Result<(), crate::ValidationError> {
    if value.is_empty() || value.len() > max {
        return Err(crate::ValidationError::new(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    let lowest = if spaces { 0x20 } else { 0x21 };
    if !value.bytes().all(|b| (lowest..0x7f).contains(&b)) {
        return Err(crate::ValidationError::new(
            field,
            if spaces {
                "must be printable ASCII"
            } else {
                "must be printable ASCII without spaces"
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_hash_is_its_sha256_in_lowercase_hex() {
        // Stored hashes look keys up: the format may never change.
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn keys_are_long_random_and_hash_stably() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert_ne!(a, b);
        assert!(a.starts_with("hlk_") && a.len() >= 4 + 43);
        assert_eq!(hash_api_key(&a), hash_api_key(&a));
        assert_ne!(hash_api_key(&a), hash_api_key(&b));
        assert!(!hash_api_key(&a).contains(&a[4..]));
        assert!(hashes_equal(&hash_api_key(&a), &hash_api_key(&a)));
        assert!(!hashes_equal(&hash_api_key(&a), &hash_api_key(&b)));
    }
}
