//! Signed tokens for the browser: portal links and the sessions they become.
//!
//! `v1.<base64url claims JSON>.<base64url HMAC-SHA256 over "v1.<claims>">`, checked with the
//! key alone (no store read). The kind is signed too, so a link is never a session and a
//! portal session is never a console session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A portal link: exchanged once for a portal session.
    #[serde(rename = "link")]
    Link,
    /// A customer's portal session (one account).
    #[serde(rename = "portal")]
    Portal,
    /// The platform's console session (admin).
    #[serde(rename = "console")]
    Console,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "k")]
    pub kind: Kind,
    /// The account (empty for the console).
    #[serde(rename = "a")]
    pub account_id: String,
    /// Expiry, Unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
    /// Random, so two sessions differ and each has its own CSRF token.
    #[serde(rename = "n")]
    pub nonce: String,
}

impl Claims {
    pub fn new(kind: Kind, account_id: &str, expires_at: DateTime<Utc>) -> Self {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the operating system's random source works");
        Self {
            kind,
            account_id: account_id.to_string(),
            expires: expires_at.timestamp(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
        }
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.expires, 0).unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl Signer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, label: &str, data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.update(b"\0");
        mac.update(data);
        mac
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let body =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise to JSON"));
        let signed = format!("v1.{body}");
        let tag = self.mac("token", signed.as_bytes()).finalize().into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The claims of a token this key signed, of `kind`, not expired at `now`.
    pub fn verify(&self, token: &str, kind: Kind, now: DateTime<Utc>) -> Option<Claims> {
        if token.len() > 2048 {
            return None;
        }
        let (signed, tag) = token.rsplit_once('.')?;
        let body = signed.strip_prefix("v1.")?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        // Constant time: `verify_slice` compares without an early exit.
        self.mac("token", signed.as_bytes())
            .verify_slice(&tag)
            .ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (claims.kind == kind && claims.expires > now.timestamp()).then_some(claims)
    }

    /// The CSRF token of a session: what its pages must send in a header with every request.
    pub fn csrf_token(&self, claims: &Claims) -> String {
        let tag = self
            .mac("csrf", claims.nonce.as_bytes())
            .finalize()
            .into_bytes();
        URL_SAFE_NO_PAD.encode(tag)
    }

    pub fn csrf_matches(&self, claims: &Claims, presented: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(presented.trim()) else {
            return false;
        };
        self.mac("csrf", claims.nonce.as_bytes())
            .verify_slice(&tag)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_token_verifies_only_unchanged_unexpired_and_of_its_kind() {
        let signer = Signer::new([7; 32]);
        let now = Utc::now();
        let claims = Claims::new(Kind::Link, "acct_1", now + Duration::hours(1));
        let token = signer.sign(&claims);
        assert_eq!(signer.verify(&token, Kind::Link, now), Some(claims.clone()));
        assert_eq!(signer.verify(&token, Kind::Portal, now), None);
        assert_eq!(
            signer.verify(&token, Kind::Link, now + Duration::hours(2)),
            None
        );
        assert_eq!(Signer::new([8; 32]).verify(&token, Kind::Link, now), None);
        // Another account's claims under the same tag.
        let (_, tag) = token.rsplit_once('.').unwrap();
        let forged = Claims {
            account_id: "acct_2".into(),
            ..claims.clone()
        };
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            signer.verify(&format!("v1.{forged_body}.{tag}"), Kind::Link, now),
            None
        );
        assert_eq!(signer.verify("v1..", Kind::Link, now), None);
        assert_eq!(signer.verify("garbage", Kind::Link, now), None);
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let signer = Signer::new([7; 32]);
        let expires = Utc::now() + Duration::hours(1);
        let one = Claims::new(Kind::Portal, "acct_1", expires);
        let other = Claims::new(Kind::Portal, "acct_1", expires);
        let csrf = signer.csrf_token(&one);
        assert!(signer.csrf_matches(&one, &csrf));
        assert!(!signer.csrf_matches(&other, &csrf));
        assert!(!signer.csrf_matches(&one, ""));
    }
}
