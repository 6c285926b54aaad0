//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by
//! the base64 bytes after `whsec_`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET_PREFIX: &str = "whsec_";

/// A new `whsec_` secret of 32 random bytes.
pub fn generate_signing_secret() -> String {
    format!(
        "{SECRET_PREFIX}{}",
        STANDARD.encode(crate::keys::random_bytes::<32>())
    )
}

/// The key bytes of a `whsec_` secret, or `None` when it is not one.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    let key = STANDARD.decode(encoded).ok()?;
    (key.len() >= 24 && key.len() <= 64).then_some(key)
}

/// Checks a secret given to rotate to: `whsec_` and 24 to 64 base64 bytes.
pub fn validate_signing_secret(field: &str, secret: &str) -> Result<(), crate::ValidationError> {
    secret_key(secret).map(|_| ()).ok_or_else(|| {
        crate::ValidationError::new(
            field,
            "must be 'whsec_' followed by 24 to 64 base64-encoded bytes",
        )
    })
}

/// One `v1,<signature>` entry.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: one space-separated entry per valid secret.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .filter_map(secret_key)
        .map(|key| sign(&key, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks specification's reference libraries.
    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn header_has_one_entry_per_valid_secret() {
        let a = generate_signing_secret();
        let b = generate_signing_secret();
        let header = signature_header([a.as_str(), b.as_str(), "not-a-secret"], "msg", 1, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|e| e.starts_with("v1,")));
        assert!(validate_signing_secret("secret", &a).is_ok());
        assert_eq!(
            validate_signing_secret("secret", "whsec_abc")
                .unwrap_err()
                .field,
            "secret"
        );
    }
}
