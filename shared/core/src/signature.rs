//! Webhook signatures, Stripe-style: header `t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `"<t>.<raw body>"`. Several `v1=` entries may be present; a tenant may hold two secrets at
//! once while rotating. Timestamps outside the tolerance are refused (replay protection).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Digest;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from now.
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed: send the {0} header")]
    Missing(&'static str),
    #[error("the signature header is malformed: expected t=<unix seconds>,v1=<hex hmac>")]
    Malformed,
    #[error(
        "the signature timestamp is more than 5 minutes from our clock; check the sender's clock, or this is a replay"
    )]
    StaleTimestamp,
    #[error("the signature does not match the body; check the webhook secret")]
    Mismatch,
    /// A vendor's header is present but not in the vendor's documented shape.
    #[error("the {header} header is malformed: expected {expected}")]
    MalformedHeader {
        header: &'static str,
        expected: &'static str,
    },
}

pub fn hmac_sha256(secret: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 of the concatenated `parts`, without building the message in memory.
pub fn hmac_sha256_parts(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// What a request offers as proof that it comes from the tenant's sender, read from its headers
/// before any secret is loaded (so a missing or stale signature is answered the same way for
/// every tenant).
#[derive(Debug)]
pub enum Proof<'a> {
    /// An HMAC-SHA256 over `prefix` + `body`; any candidate may match.
    Hmac {
        prefix: Vec<u8>,
        body: &'a [u8],
        candidates: Vec<Vec<u8>>,
    },
    /// A shared secret sent as is (a custom header).
    SharedSecret(&'a [u8]),
}

impl Proof<'_> {
    /// Checks the proof against every valid secret, without stopping early, so timing says
    /// nothing about which secret or candidate matched.
    pub fn verify(&self, secrets: &[Vec<u8>]) -> Result<(), SignatureError> {
        let mut matched = false;
        match self {
            Proof::Hmac {
                prefix,
                body,
                candidates,
            } => {
                for secret in secrets {
                    let expected = hmac_sha256_parts(secret, &[prefix, body]);
                    for candidate in candidates {
                        matched |= constant_time_eq(&expected, candidate);
                    }
                }
            }
            Proof::SharedSecret(given) => {
                // Compare digests, so the comparison takes as long whatever the lengths.
                let given = sha2::Sha256::digest(given);
                for secret in secrets {
                    matched |= constant_time_eq(&sha2::Sha256::digest(secret), &given);
                }
            }
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Refuses a signed timestamp (unix seconds) more than the tolerance away from `now`.
pub fn check_timestamp(timestamp: i64, now: DateTime<Utc>) -> Result<(), SignatureError> {
    if (now.timestamp() - timestamp).abs() > TIMESTAMP_TOLERANCE_SECONDS {
        return Err(SignatureError::StaleTimestamp);
    }
    Ok(())
}

/// Reads a Stripe-style `t=..,v1=..` header into a proof over `"<t>.<body>"`.
pub fn timestamped_proof<'a>(
    header: Option<&'a str>,
    header_name: &'static str,
    body: &'a [u8],
    now: DateTime<Utc>,
) -> Result<Proof<'a>, SignatureError> {
    let header = header.ok_or(SignatureError::Missing(header_name))?;
    let mut timestamp: Option<&str> = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", sig)) => {
                candidates.push(hex::decode(sig).map_err(|_| SignatureError::Malformed)?)
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    let seconds = timestamp
        .parse::<i64>()
        .map_err(|_| SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    check_timestamp(seconds, now)?;
    Ok(Proof::Hmac {
        prefix: format!("{timestamp}.").into_bytes(),
        body,
        candidates,
    })
}

/// Constant-time equality for secrets, tokens and MACs.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Produces a signature header value (for senders, tests and the generic outgoing webhook).
pub fn sign_timestamped(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(hmac_sha256(secret, &message))
    )
}

/// Verifies a timestamped signature header against any of the valid secrets.
pub fn verify_timestamped(
    header: Option<&str>,
    header_name: &'static str,
    secrets: &[Vec<u8>],
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing(header_name))?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?)
            }
            Some(("v1", sig)) => {
                candidates.push(hex::decode(sig).map_err(|_| SignatureError::Malformed)?)
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now.timestamp() - timestamp).abs() > TIMESTAMP_TOLERANCE_SECONDS {
        return Err(SignatureError::StaleTimestamp);
    }
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    // Check every pair without stopping early, so timing says nothing about which matched.
    let mut matched = false;
    for secret in secrets {
        let expected = hmac_sha256(secret, &message);
        for candidate in &candidates {
            matched |= constant_time_eq(&expected, candidate);
        }
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "X-Closedloop-Signature";

    #[test]
    fn a_signed_body_verifies_with_either_rotation_secret() {
        let now = Utc::now();
        let old = b"old-secret".to_vec();
        let new = b"new-secret".to_vec();
        let header = sign_timestamped(&old, now.timestamp(), b"{}");
        let secrets = [new.clone(), old.clone()];
        assert_eq!(
            verify_timestamped(Some(&header), H, &secrets, b"{}", now),
            Ok(())
        );
        assert_eq!(
            verify_timestamped(Some(&header), H, &[new], b"{}", now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampered_stale_missing_and_malformed_signatures_are_refused() {
        let now = Utc::now();
        let s = vec![b"s".to_vec()];
        let header = sign_timestamped(&s[0], now.timestamp(), b"{\"a\":1}");
        assert_eq!(
            verify_timestamped(Some(&header), H, &s, b"{\"a\":2}", now),
            Err(SignatureError::Mismatch)
        );
        let old = sign_timestamped(&s[0], now.timestamp() - 301, b"{}");
        assert_eq!(
            verify_timestamped(Some(&old), H, &s, b"{}", now),
            Err(SignatureError::StaleTimestamp)
        );
        let future = sign_timestamped(&s[0], now.timestamp() + 301, b"{}");
        assert_eq!(
            verify_timestamped(Some(&future), H, &s, b"{}", now),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            verify_timestamped(None, H, &s, b"{}", now),
            Err(SignatureError::Missing(H))
        );
        assert_eq!(
            verify_timestamped(Some("v1=zz"), H, &s, b"{}", now),
            Err(SignatureError::Malformed)
        );
    }
}
