//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): what the hub puts
//! on every generic webhook so a receiver's existing library accepts it.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 under
//! the secret's bytes (the base64 after `whsec_`), sent as `webhook-signature:
//! v1,<base64>`. The id stays the same on every retry of one message (the receiver's
//! idempotency key); the timestamp and signature are fresh per attempt, so a receiver's
//! ±5 min tolerance never rejects a late retry. The secret never leaves this type except
//! through [`WebhookSecret::reveal`], used once when an admin creates a channel.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// How far a receiver lets a signature's timestamp stray from its clock (the
/// specification's recommendation).
pub const TOLERANCE_S: i64 = 5 * 60;

/// A webhook signing secret. `Debug` prints no byte of it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

/// Why a secret or a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The secret is not `whsec_` followed by base64.
    #[error("a webhook secret is `whsec_` followed by base64 ({0})")]
    Secret(&'static str),
    /// No `v1,` signature in the header matched.
    #[error("no v1 signature matches the body")]
    Mismatch,
    /// The timestamp is outside the tolerance.
    #[error("the webhook timestamp is {0} s away from now (more than {TOLERANCE_S} s)")]
    Stale(i64),
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret({} bytes)", self.0.len())
    }
}

impl WebhookSecret {
    /// Reads `whsec_<base64>`; refuses anything shorter than 16 bytes (the
    /// specification asks for 24 to 64).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SignatureError::Secret("missing prefix"))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SignatureError::Secret("not base64"))?;
        if bytes.len() < 16 {
            return Err(SignatureError::Secret("shorter than 16 bytes"));
        }
        Ok(Self(bytes))
    }

    /// A new secret of 24 random bytes (`chitti-hub notify new-secret`).
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = vec![0u8; 24];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The secret as an admin copies it into the receiver: shown once, at creation.
    pub fn reveal(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The `webhook-signature` header value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    /// What a receiver does: accepts when one of the space-separated `v1,` signatures in
    /// `header` is this body's and the timestamp is within [`TOLERANCE_S`] of `now`.
    pub fn verify(
        &self,
        id: &str,
        timestamp: i64,
        body: &[u8],
        header: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        let skew = (now - timestamp).abs();
        if skew > TOLERANCE_S {
            return Err(SignatureError::Stale(skew));
        }
        let content = signed_content(id, timestamp, body);
        let matches = header.split(' ').any(|candidate| {
            candidate
                .strip_prefix("v1,")
                .and_then(|b64| STANDARD.decode(b64).ok())
                // `verify_slice` compares in constant time.
                .is_some_and(|given| {
                    let mut mac = self.keyed();
                    mac.update(&content);
                    mac.verify_slice(&given).is_ok()
                })
        });
        matches.then_some(()).ok_or(SignatureError::Mismatch)
    }

    /// [`WebhookSecret::verify`] of a whole request: its `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature` headers, read through `header`
    /// (by lowercase name). A missing or malformed header is a mismatch.
    pub fn verify_request(
        &self,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let id = header("webhook-id").ok_or(SignatureError::Mismatch)?;
        let timestamp = header("webhook-timestamp")
            .and_then(|t| t.trim().parse().ok())
            .ok_or(SignatureError::Mismatch)?;
        let signature = header("webhook-signature").ok_or(SignatureError::Mismatch)?;
        self.verify(&id, timestamp, body, &signature, now)
    }

    fn keyed(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length; this cannot fail.
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut mac = self.keyed();
        mac.update(&signed_content(id, timestamp, body));
        mac.finalize().into_bytes().to_vec()
    }
}

fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;

    /// The example the specification and its reference libraries publish: reproducing it
    /// is what says a receiver's library will accept our signatures.
    #[test]
    fn the_published_test_vector_signs_and_verifies() {
        let secret = WebhookSecret::parse(VECTOR_SECRET).unwrap();
        let signature = secret.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let header = format!("v1,bm9wZQ== {signature}");
        secret
            .verify(
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                VECTOR_BODY,
                &header,
                VECTOR_TIMESTAMP + 10,
            )
            .unwrap();
        assert_eq!(secret.reveal(), VECTOR_SECRET);
    }

    #[test]
    fn a_changed_body_id_or_old_timestamp_is_refused() {
        let secret = WebhookSecret::parse(VECTOR_SECRET).unwrap();
        let header = secret.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        let now = VECTOR_TIMESTAMP;
        let body = br#"{"test": 2432232315}"#;
        assert_eq!(
            secret.verify(VECTOR_ID, VECTOR_TIMESTAMP, body, &header, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            secret.verify("msg_other", VECTOR_TIMESTAMP, VECTOR_BODY, &header, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            secret.verify(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY, &header, now + 301),
            Err(SignatureError::Stale(301))
        );
    }

    #[test]
    fn malformed_secrets_are_named_and_never_printed() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SignatureError::Secret("missing prefix"))
        );
        assert_eq!(
            WebhookSecret::parse("whsec_%%%"),
            Err(SignatureError::Secret("not base64"))
        );
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ="),
            Err(SignatureError::Secret("shorter than 16 bytes"))
        );
        let secret = WebhookSecret::parse(VECTOR_SECRET).unwrap();
        assert_eq!(format!("{secret:?}"), "WebhookSecret(24 bytes)");
    }

    #[test]
    fn a_request_verifies_from_its_three_headers_and_a_missing_one_is_a_mismatch() {
        let secret = WebhookSecret::parse(VECTOR_SECRET).unwrap();
        let signature = secret.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        let headers = |skip: &'static str| {
            let signature = signature.clone();
            move |name: &str| {
                (name != skip).then(|| match name {
                    "webhook-id" => VECTOR_ID.to_string(),
                    "webhook-timestamp" => VECTOR_TIMESTAMP.to_string(),
                    _ => signature.clone(),
                })
            }
        };
        let now = VECTOR_TIMESTAMP + 10;
        assert_eq!(secret.verify_request(headers(""), VECTOR_BODY, now), Ok(()));
        for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            assert_eq!(
                secret.verify_request(headers(missing), VECTOR_BODY, now),
                Err(SignatureError::Mismatch),
                "{missing}"
            );
        }
        // A fresh secret of `generate` signs and verifies too, and is not the vector's.
        let fresh = WebhookSecret::generate().unwrap();
        assert_ne!(fresh.reveal(), VECTOR_SECRET);
        assert!(WebhookSecret::parse(&fresh.reveal()).is_ok());
    }
}
