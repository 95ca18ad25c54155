//! Signed rating-link tokens.
//!
//! A token names the tenant, the survey request, the chosen value, its expiry and the id of the
//! key that signed it, so keys rotate while old links keep working until they expire.
//! Format: `base64url(payload) "." base64url(HMAC-SHA256(key, payload))` where payload is
//! `v1|kid|tenant|survey request|value|expires unix seconds`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::{SurveyRequestId, TenantId};

type HmacSha256 = Hmac<Sha256>;

/// What a rating link asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatingClaims {
    pub tenant: TenantId,
    pub survey_request: SurveyRequestId,
    /// The value the link records ("positive", "7"); empty for a link that only opens the page.
    pub value: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this link is damaged or incomplete")]
    Malformed,
    #[error("this link was not issued by us")]
    BadSignature,
    #[error("this link was signed with a key that is no longer valid")]
    UnknownKey,
    #[error("this link has expired")]
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("TOKEN_KEYS is empty: set it to kid:base64secret[,kid:base64secret]")]
    Empty,
    #[error("TOKEN_KEYS entry {0} is not kid:base64secret")]
    BadEntry(usize),
    #[error("TOKEN_KEYS key '{0}' must be at least 32 bytes of base64")]
    ShortKey(String),
    #[error("TOKEN_KEYS key id '{0}' must be 1-16 letters or digits")]
    BadKeyId(String),
}

/// Signing keys. The first is used to sign; all of them verify.
#[derive(Clone)]
pub struct TokenKeyring {
    current: String,
    keys: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for TokenKeyring {
    // Never print the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeyring")
            .field("current", &self.current)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TokenKeyring {
    /// Parses `kid:base64secret[,kid:base64secret...]`; the first key signs.
    pub fn parse(spec: &str) -> Result<Self, KeyringError> {
        let mut current = None;
        let mut keys = HashMap::new();
        for (i, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (kid, secret) = entry.split_once(':').ok_or(KeyringError::BadEntry(i + 1))?;
            if kid.is_empty() || kid.len() > 16 || !kid.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(KeyringError::BadKeyId(kid.to_string()));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(secret)
                .or_else(|_| B64.decode(secret))
                .map_err(|_| KeyringError::BadEntry(i + 1))?;
            if bytes.len() < 32 {
                return Err(KeyringError::ShortKey(kid.to_string()));
            }
            current.get_or_insert_with(|| kid.to_string());
            keys.insert(kid.to_string(), bytes);
        }
        Ok(TokenKeyring {
            current: current.ok_or(KeyringError::Empty)?,
            keys,
        })
    }

    /// A fresh random keyring spec (for first starts and tests).
    pub fn generate_spec(kid: &str) -> String {
        let secret: [u8; 32] = rand::random();
        format!(
            "{kid}:{}",
            base64::engine::general_purpose::STANDARD.encode(secret)
        )
    }

    pub fn sign(&self, claims: &RatingClaims) -> String {
        let payload = format!(
            "v1|{}|{}|{}|{}|{}",
            self.current,
            claims.tenant.as_str(),
            claims.survey_request,
            claims.value,
            claims.expires_at.timestamp()
        );
        let mac = self.mac(&self.current, payload.as_bytes());
        format!("{}.{}", B64.encode(payload), B64.encode(mac))
    }

    /// Checks signature (in constant time) and expiry.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<RatingClaims, TokenError> {
        if token.len() > 512 {
            return Err(TokenError::Malformed);
        }
        let (payload_b64, mac_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = B64.decode(payload_b64).map_err(|_| TokenError::Malformed)?;
        let given = B64.decode(mac_b64).map_err(|_| TokenError::Malformed)?;
        let payload = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
        let parts: Vec<&str> = payload.split('|').collect();
        let [version, kid, tenant, survey, value, expires] = parts[..] else {
            return Err(TokenError::Malformed);
        };
        if version != "v1" {
            return Err(TokenError::Malformed);
        }
        let key = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        // verify_slice compares in constant time.
        mac.verify_slice(&given)
            .map_err(|_| TokenError::BadSignature)?;
        let expires_at = expires
            .parse::<i64>()
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
            .ok_or(TokenError::Malformed)?;
        if now >= expires_at {
            return Err(TokenError::Expired);
        }
        Ok(RatingClaims {
            tenant: TenantId::parse(tenant).map_err(|_| TokenError::Malformed)?,
            survey_request: SurveyRequestId::parse(survey).map_err(|_| TokenError::Malformed)?,
            value: value.to_string(),
            expires_at,
        })
    }

    fn mac(&self, kid: &str, payload: &[u8]) -> Vec<u8> {
        let mut mac =
            HmacSha256::new_from_slice(&self.keys[kid]).expect("HMAC takes any key length");
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: DateTime<Utc>) -> RatingClaims {
        RatingClaims {
            tenant: TenantId::parse("acme").unwrap(),
            survey_request: SurveyRequestId::new(),
            value: "positive".into(),
            expires_at: now + chrono::Duration::days(30),
        }
    }

    #[test]
    fn a_signed_token_verifies_and_round_trips_its_claims() {
        let ring = TokenKeyring::parse(&TokenKeyring::generate_spec("k1")).unwrap();
        let now = Utc::now();
        let c = claims(now);
        let token = ring.sign(&c);
        let back = ring.verify(&token, now).unwrap();
        assert_eq!(back.tenant, c.tenant);
        assert_eq!(back.survey_request, c.survey_request);
        assert_eq!(back.value, "positive");
    }

    #[test]
    fn tampering_expiry_and_unknown_keys_are_refused() {
        let ring = TokenKeyring::parse(&TokenKeyring::generate_spec("k1")).unwrap();
        let now = Utc::now();
        let c = claims(now);
        let token = ring.sign(&c);
        // Change the value inside the payload but keep the signature.
        let (p, s) = token.split_once('.').unwrap();
        let payload = String::from_utf8(B64.decode(p).unwrap())
            .unwrap()
            .replace("positive", "negative");
        let forged = format!("{}.{s}", B64.encode(payload));
        assert_eq!(ring.verify(&forged, now), Err(TokenError::BadSignature));
        assert_eq!(ring.verify(&token, c.expires_at), Err(TokenError::Expired));
        assert_eq!(ring.verify("garbage", now), Err(TokenError::Malformed));
        let other = TokenKeyring::parse(&TokenKeyring::generate_spec("k2")).unwrap();
        assert_eq!(other.verify(&token, now), Err(TokenError::UnknownKey));
        let same_kid_other_secret =
            TokenKeyring::parse(&TokenKeyring::generate_spec("k1")).unwrap();
        assert_eq!(
            same_kid_other_secret.verify(&token, now),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn rotation_keeps_old_links_working() {
        let old = TokenKeyring::generate_spec("k1");
        let new = TokenKeyring::generate_spec("k2");
        let before = TokenKeyring::parse(&old).unwrap();
        let after = TokenKeyring::parse(&format!("{new},{old}")).unwrap();
        let now = Utc::now();
        let old_link = before.sign(&claims(now));
        assert!(after.verify(&old_link, now).is_ok());
        let new_link = after.sign(&claims(now));
        assert!(new_link != old_link);
        assert_eq!(before.verify(&new_link, now), Err(TokenError::UnknownKey));
    }

    proptest::proptest! {
        #[test]
        fn any_claims_round_trip_and_any_changed_byte_is_refused(
            tenant in "[a-z][a-z0-9-]{2,39}",
            value in "[^|]{0,40}",
            ulid in proptest::prelude::any::<u128>(),
            days in 1i64..400,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let ring = TokenKeyring::parse(&TokenKeyring::generate_spec("k1")).unwrap();
            let now = Utc.timestamp_opt(1_795_428_030, 0).unwrap();
            let claims = RatingClaims {
                tenant: TenantId::parse(&tenant).unwrap(),
                survey_request: SurveyRequestId::parse(&ulid::Ulid::from(ulid).to_string()).unwrap(),
                value,
                expires_at: now + chrono::Duration::days(days),
            };
            let token = ring.sign(&claims);
            proptest::prop_assert_eq!(ring.verify(&token, now), Ok(claims.clone()));
            let mut bytes = token.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            let tampered = String::from_utf8_lossy(&bytes);
            proptest::prop_assert!(ring.verify(&tampered, now).is_err());
        }
    }

    #[test]
    fn a_value_holding_the_separator_is_refused_not_misread() {
        let ring = TokenKeyring::parse(&TokenKeyring::generate_spec("k1")).unwrap();
        let now = Utc::now();
        let mut c = claims(now);
        c.value = "positive|acme".into();
        assert_eq!(ring.verify(&ring.sign(&c), now), Err(TokenError::Malformed));
    }

    #[test]
    fn keyring_specs_are_checked() {
        assert_eq!(TokenKeyring::parse("").unwrap_err(), KeyringError::Empty);
        assert!(matches!(
            TokenKeyring::parse("k1:c2hvcnQ=").unwrap_err(),
            KeyringError::ShortKey(_)
        ));
        assert!(matches!(
            TokenKeyring::parse("nocolon").unwrap_err(),
            KeyringError::BadEntry(1)
        ));
    }
}
