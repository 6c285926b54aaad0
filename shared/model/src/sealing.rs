//! Sealing secrets at rest: AES-256-GCM under a 32-byte key, so a table export or backup does
//! not reveal webhook secrets and tokens.
//!
//! A sealed value is text: `enc:v1:<key id>:<base64url of 12-byte nonce + ciphertext + tag>`.
//! The key id is derived from the key (a truncated SHA-256), so a ring of keys can say which
//! one sealed a value without storing the keys' names anywhere. The caller gives a context
//! (which record and field the value belongs to); it is authenticated with the value, so a
//! sealed value copied into another record does not open there.
//!
//! A stored value without the `enc:v1:` prefix is legacy plaintext (written before sealing
//! existed) and is returned as it is; it is sealed on its next write. A value with the prefix
//! never falls back to plaintext: an unknown key or a failed tag is an error.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use thiserror::Error;

/// What every sealed value starts with (format version 1).
pub const SEALED_PREFIX: &str = "enc:v1:";
/// The length of a key, in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a value could not be sealed or opened, or a key not read. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SealingError {
    #[error("a sealing key must be {KEY_LEN} bytes, base64-encoded")]
    BadKey,
    #[error("the value was sealed with key {0}, which is not in the key ring")]
    UnknownKey(String),
    #[error("a sealed value with key id {0} does not open: wrong key, or the value was altered")]
    DoesNotOpen(String),
    #[error("a stored value starts with {SEALED_PREFIX} but is not a well-formed sealed value")]
    Malformed,
    #[error("the operating system's random source is unavailable")]
    Random,
}

/// One 32-byte key and its id. Its `Debug` shows the id only.
#[derive(Clone)]
pub struct SealingKey {
    id: String,
    cipher: Aes256Gcm,
    /// A one-way function of the key that other keys are derived from (see
    /// [`KeyRing::derive_key`]), so the sealing key itself serves only to seal.
    derivation_base: [u8; 32],
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey").field("id", &self.id).finish()
    }
}

impl SealingKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealingError> {
        if bytes.len() != KEY_LEN {
            return Err(SealingError::BadKey);
        }
        Ok(Self {
            id: key_id(bytes),
            cipher: Aes256Gcm::new_from_slice(bytes).map_err(|_| SealingError::BadKey)?,
            derivation_base: Sha256::new()
                .chain_update(b"hookline derivation base\0")
                .chain_update(bytes)
                .finalize()
                .into(),
        })
    }

    /// A key written as base64 (standard or URL-safe, padding optional), surrounding
    /// whitespace ignored.
    pub fn from_base64(text: &str) -> Result<Self, SealingError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim_end_matches('='))
            })
            .map_err(|_| SealingError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    /// The key's id: the first 8 bytes of SHA-256 over a label and the key, in hex. It names
    /// the key in sealed values and messages without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }
}

fn key_id(bytes: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"hookline sealing key id\0")
        .chain_update(bytes)
        .finalize();
    hex::encode(&digest[..8])
}

/// 32 random bytes for a new key.
pub fn generate_key_bytes() -> Result<[u8; KEY_LEN], SealingError> {
    let mut bytes = [0u8; KEY_LEN];
    getrandom::fill(&mut bytes).map_err(|_| SealingError::Random)?;
    Ok(bytes)
}

/// The key id a sealed value names, or `None` for legacy plaintext.
pub fn sealed_key_id(stored: &str) -> Option<&str> {
    let rest = stored.strip_prefix(SEALED_PREFIX)?;
    Some(rest.split_once(':').map_or(rest, |(id, _)| id))
}

/// The current key (which seals) and older ones (which only open), so the key can be rotated
/// while values sealed under the old one are still stored.
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: SealingKey,
    older: Vec<SealingKey>,
}

impl KeyRing {
    pub fn new(current: SealingKey, older: Vec<SealingKey>) -> Self {
        let older = older
            .into_iter()
            .filter(|key| key.id != current.id)
            .collect();
        Self { current, older }
    }

    /// A 32-byte key for `purpose` (such as signing portal links), derived from the current
    /// key with HMAC-SHA256: the same on every process holding this ring, different per purpose,
    /// and revealing nothing of the sealing key.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.current.derivation_base)
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Every key id in the ring, the current one first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.current)
            .chain(&self.older)
            .map(|key| key.id.as_str())
    }

    /// Seals `plaintext` under the current key, bound to `context` (which record and field).
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, SealingError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealingError::Random)?;
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // Only fails for inputs of gigabytes; secrets are at most a few hundred bytes.
            .map_err(|_| SealingError::Malformed)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// Opens a stored value sealed for `context`; legacy plaintext (no `enc:v1:` prefix) is
    /// returned as it is.
    pub fn open<'a>(&self, stored: &'a str, context: &str) -> Result<Cow<'a, str>, SealingError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(Cow::Borrowed(stored));
        };
        let (id, encoded) = rest.split_once(':').ok_or(SealingError::Malformed)?;
        let key = std::iter::once(&self.current)
            .chain(&self.older)
            .find(|key| key.id == id)
            .ok_or_else(|| SealingError::UnknownKey(id.to_string()))?;
        let sealed = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SealingError::Malformed)?;
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(SealingError::Malformed);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let plaintext = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealingError::DoesNotOpen(id.to_string()))?;
        String::from_utf8(plaintext)
            .map(Cow::Owned)
            .map_err(|_| SealingError::Malformed)
    }

    /// True when `stored` is sealed under the current key; false for legacy plaintext and
    /// values sealed under an older key (they are sealed again on their next write).
    pub fn is_sealed_with_current(&self, stored: &str) -> bool {
        sealed_key_id(stored) == Some(self.current.id.as_str())
    }

    /// A value sealed under the current key that a store keeps so the next start can tell,
    /// before any request reads a secret, whether it was given the right keys.
    pub fn seal_key_check(&self) -> Result<String, SealingError> {
        self.seal(KEY_CHECK_TEXT, KEY_CHECK_CONTEXT)
    }

    /// Checks this ring against a stored key check: an error (naming key ids, never keys)
    /// when the ring does not hold the key the store's secrets were sealed with.
    pub fn verify_key_check(&self, stored: Option<&str>) -> Result<KeyCheck, String> {
        let Some(stored) = stored else {
            return Ok(KeyCheck::Absent);
        };
        self.open(stored, KEY_CHECK_CONTEXT).map_err(|e| {
            format!(
                "the main key does not match this store ({e}); the keys given have ids [{}]",
                self.key_ids().collect::<Vec<_>>().join(", ")
            )
        })?;
        Ok(if self.is_sealed_with_current(stored) {
            KeyCheck::Current
        } else {
            KeyCheck::Older
        })
    }
}

/// What the key check seals: any fixed text will do, the tag is what is checked.
const KEY_CHECK_TEXT: &str = "hookline key check";
const KEY_CHECK_CONTEXT: &str = "SEALING/KEY_CHECK";

/// What a start-up key check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// No check stored: a new store.
    Absent,
    /// The check opens with the ring's current key.
    Current,
    /// The check opens, but with an older key of the ring: secrets may still be sealed under it.
    Older,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::from_bytes(&generate_key_bytes().unwrap()).unwrap()
    }

    fn ring() -> KeyRing {
        KeyRing::new(key(), vec![])
    }

    #[test]
    fn derived_keys_agree_per_key_and_purpose_only() {
        let bytes = generate_key_bytes().unwrap();
        let one = KeyRing::new(SealingKey::from_bytes(&bytes).unwrap(), vec![]);
        // Another process holding the same key (another Lambda instance, a restart).
        let same = KeyRing::new(SealingKey::from_bytes(&bytes).unwrap(), vec![key()]);
        assert_eq!(
            one.derive_key("portal links"),
            same.derive_key("portal links")
        );
        assert_ne!(one.derive_key("portal links"), one.derive_key("other"));
        assert_ne!(
            one.derive_key("portal links"),
            ring().derive_key("portal links")
        );
        assert_ne!(
            one.derive_key("portal links"),
            bytes,
            "not the sealing key itself"
        );
    }

    #[test]
    fn round_trip_hides_the_plaintext_and_gives_it_back() {
        let ring = ring();
        let sealed = ring
            .seal("whsec_c2VjcmV0", "acct_1/wh_1/signingSecret")
            .unwrap();
        assert!(sealed.starts_with(&format!("enc:v1:{}:", ring.current_id())));
        assert!(!sealed.contains("whsec_c2VjcmV0"));
        assert_eq!(
            ring.open(&sealed, "acct_1/wh_1/signingSecret").unwrap(),
            "whsec_c2VjcmV0"
        );
        // A fresh nonce each time: the same secret never seals to the same text.
        assert_ne!(
            sealed,
            ring.seal("whsec_c2VjcmV0", "acct_1/wh_1/signingSecret")
                .unwrap()
        );
        assert!(ring.is_sealed_with_current(&sealed));
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let ring = ring();
        let sealed = ring.seal("token-123", "ctx").unwrap();
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert!(matches!(
            ring.open(&tampered, "ctx"),
            Err(SealingError::DoesNotOpen(_))
        ));
        assert_eq!(
            ring.open(&format!("{head}:!!"), "ctx"),
            Err(SealingError::Malformed)
        );
        assert_eq!(
            ring.open("enc:v1:nokeyid", "ctx"),
            Err(SealingError::Malformed)
        );
    }

    #[test]
    fn a_value_moved_to_another_record_does_not_open() {
        let ring = ring();
        let sealed = ring.seal("secret", "acct_victim/webhookSecret").unwrap();
        assert!(matches!(
            ring.open(&sealed, "acct_attacker/webhookSecret"),
            Err(SealingError::DoesNotOpen(_))
        ));
    }

    #[test]
    fn the_wrong_key_fails_clearly() {
        let sealed = ring().seal("secret", "ctx").unwrap();
        let other = ring();
        let error = other.open(&sealed, "ctx").unwrap_err();
        assert!(matches!(error, SealingError::UnknownKey(_)));
        assert!(!error.to_string().contains("secret"));

        // Same id, different key (as if the id collided): the tag check refuses it.
        let bytes = generate_key_bytes().unwrap();
        let genuine = KeyRing::new(SealingKey::from_bytes(&bytes).unwrap(), vec![]);
        let sealed = genuine.seal("secret", "ctx").unwrap();
        let mut impostor = SealingKey::from_bytes(&generate_key_bytes().unwrap()).unwrap();
        impostor.id = genuine.current_id().to_string();
        assert!(matches!(
            KeyRing::new(impostor, vec![]).open(&sealed, "ctx"),
            Err(SealingError::DoesNotOpen(_))
        ));
    }

    #[test]
    fn legacy_plaintext_passes_through() {
        let ring = ring();
        assert_eq!(
            ring.open("an-old-plain-secret", "ctx").unwrap(),
            "an-old-plain-secret"
        );
        assert!(!ring.is_sealed_with_current("an-old-plain-secret"));
        assert_eq!(sealed_key_id("an-old-plain-secret"), None);
    }

    #[test]
    fn rotation_keeps_old_values_open_and_seals_with_the_new_key() {
        let old = key();
        let before = KeyRing::new(old.clone(), vec![]);
        let sealed_before = before.seal("secret", "ctx").unwrap();

        let new = key();
        let after = KeyRing::new(new.clone(), vec![old.clone()]);
        assert_eq!(after.open(&sealed_before, "ctx").unwrap(), "secret");
        assert!(!after.is_sealed_with_current(&sealed_before));
        let sealed_after = after.seal("secret", "ctx").unwrap();
        assert_eq!(sealed_key_id(&sealed_after), Some(new.id()));
        assert_eq!(
            after.key_ids().collect::<Vec<_>>(),
            vec![new.id(), old.id()]
        );

        // Once the old key is dropped, what it sealed no longer opens.
        let dropped = KeyRing::new(new, vec![]);
        assert!(matches!(
            dropped.open(&sealed_before, "ctx"),
            Err(SealingError::UnknownKey(id)) if id == old.id()
        ));
    }

    #[test]
    fn keys_are_read_from_base64_of_exactly_32_bytes() {
        let bytes = [7u8; 32];
        let standard = SealingKey::from_base64(&format!("{}\n", STANDARD.encode(bytes))).unwrap();
        let url_safe = SealingKey::from_base64(&URL_SAFE_NO_PAD.encode(bytes)).unwrap();
        assert_eq!(standard.id(), url_safe.id());
        assert_eq!(standard.id().len(), 16);
        assert_eq!(
            SealingKey::from_base64(&STANDARD.encode([7u8; 16])).unwrap_err(),
            SealingError::BadKey
        );
        assert_eq!(
            SealingKey::from_base64("not base64 at all").unwrap_err(),
            SealingError::BadKey
        );
        assert!(!format!("{standard:?}").contains(&STANDARD.encode(bytes)));
    }
}
