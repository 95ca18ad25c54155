//! Fuzz harnesses: the bodies of the `cargo fuzz` targets in `fuzz/` (nightly), kept here so
//! the stable test below replays every committed corpus file through the same code.
//! `docs/fuzzing.md` describes the targets and how to run them.
//!
//! Each harness takes arbitrary bytes and must never panic; the assertions inside are the
//! properties a caller relies on (a refusal names its path, what parses round-trips, ...).

use chrono::{DateTime, Utc};

use crate::ids::{SurveyRequestId, TenantId};
use crate::rules::{self, RuleSet, Trigger};
use crate::tokens::{RatingClaims, TokenError, TokenKeyring};

pub use crate::ingest::fuzz::webhook;

/// The fixed keyring the token harness verifies against (the corpus holds tokens it signed).
pub const TOKEN_KEYS: &str = "k2:ZnV6ei10b2tlbi1rZXktdHdvLWZ1enotdG9rZW4ta2V5LXR3bw==,k1:ZnV6ei10b2tlbi1rZXktb25lLWZ1enotdG9rZW4ta2V5LW9uZSE=";

fn keyring() -> TokenKeyring {
    TokenKeyring::parse(TOKEN_KEYS).expect("the fuzz keyring parses")
}

/// The clock of the token harness: the corpus' tokens expire after it.
pub fn token_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_428_030, 0).expect("a valid time")
}

/// Rating-link tokens: arbitrary text verified against the keyring, keyring specs parsed, and
/// claims built from the bytes signed, verified and tampered with.
pub fn token(data: &[u8]) {
    let ring = keyring();
    let now = token_now();
    let text = String::from_utf8_lossy(data);

    if let Ok(claims) = ring.verify(&text, now) {
        // Only what we signed verifies: signing the claims back gives a token that verifies to
        // the same claims, and the link had not expired.
        assert!(claims.expires_at > now);
        assert_eq!(ring.verify(&ring.sign(&claims), now), Ok(claims));
    }

    if let Ok(spec_ring) = TokenKeyring::parse(&text) {
        let claims = sample_claims("", now);
        assert_eq!(spec_ring.verify(&spec_ring.sign(&claims), now), Ok(claims));
    }

    // Claims from the bytes: value from the text, expiry and ids from the first bytes.
    let seed = data
        .iter()
        .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(*b));
    let value: String = text.chars().take(40).collect();
    let mut claims = sample_claims(&value, now);
    claims.survey_request = survey_request(u128::from(seed) << 64 | u128::from(seed));
    let token = ring.sign(&claims);
    match ring.verify(&token, now) {
        Ok(back) => {
            assert_eq!(back, claims);
            assert_eq!(
                ring.verify(&token, claims.expires_at),
                Err(TokenError::Expired)
            );
        }
        // `|` separates the payload's parts: a value holding one is refused, never misread.
        Err(e) => assert!(
            value.contains('|') && e == TokenError::Malformed || token.len() > 512,
            "{e:?} for {value:?}"
        ),
    }
    {
        // Any changed byte is refused.
        let mut tampered = token.clone().into_bytes();
        let at = (seed as usize) % tampered.len();
        tampered[at] ^= 1 + (seed >> 8) as u8 % 127;
        let tampered = String::from_utf8_lossy(&tampered);
        assert!(ring.verify(&tampered, now).is_err(), "{tampered} verified");
    }
}

fn survey_request(n: u128) -> SurveyRequestId {
    SurveyRequestId::parse(&ulid::Ulid::from(n).to_string()).expect("a ULID")
}

fn sample_claims(value: &str, now: DateTime<Utc>) -> RatingClaims {
    RatingClaims {
        tenant: TenantId::parse("acme").expect("a tenant id"),
        survey_request: survey_request(1),
        value: value.to_string(),
        expires_at: now + chrono::Duration::days(30),
    }
}

/// Admin API keys: what parses is exactly `cl.<tenant>.<key id>.<secret>`.
pub fn api_key(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(parts) = crate::tenancy::parse_api_key(&text) {
        assert_eq!(
            format!(
                "cl.{}.{}.{}",
                parts.tenant.as_str(),
                parts.key_id,
                parts.secret
            ),
            text.trim()
        );
        assert!(!parts.key_id.is_empty() && parts.key_id.len() <= 40);
    }
}

/// The rule validator: arbitrary JSON is a rule or a refusal that names a path. A rule that
/// parses survives the trip through its stored JSON unchanged and evaluates without panicking.
pub fn rule(data: &[u8]) {
    match rules::parse_draft(data) {
        Err(e) => {
            assert!(!e.path.is_empty(), "refusal without a path: {e}");
            assert!(!e.message.is_empty(), "refusal without a message: {e}");
        }
        Ok(draft) => {
            let trigger = draft.trigger;
            let rule = draft.into_rule(
                crate::ids::RuleId::new(),
                DateTime::from_timestamp(1_795_428_030, 0).expect("a valid time"),
            );
            let stored = serde_json::to_vec(&rule).expect("rules serialise");
            let back: rules::Rule = serde_json::from_slice(&stored)
                .unwrap_or_else(|e| panic!("a stored rule does not read back: {e}"));
            assert_eq!(back, rule);
            let shown = rules::rule_json(&rule);
            let again = rules::parse_draft(shown.to_string().as_bytes());
            // The API's shape is accepted back, except where it hides a webhook's secret.
            if !shown.to_string().contains("secret_set") {
                assert!(again.is_ok(), "{shown} → {again:?}");
            }
            let set = RuleSet::compile([rule]);
            let _ = set.evaluate(trigger, &rules::Facts::default());
            for t in Trigger::ALL {
                let _ = set.evaluate(t, &rules::Facts::default());
            }
        }
    }
    // Stored rules read through the same validation.
    let _ = serde_json::from_slice::<rules::Rule>(data);
    // Rule templates take arbitrary overrides.
    if let Ok(overrides) = serde_json::from_slice::<serde_json::Value>(data) {
        for template in rules::library::templates() {
            if let Err(e) = template.instantiate(&overrides) {
                assert!(!e.path.is_empty(), "refusal without a path: {e}");
            }
        }
    }
}

/// A context with the names templates use, plus hostile values.
fn template_context() -> serde_json::Value {
    let mut ctx = crate::templates::sample_context(crate::domain::SurveyKind::Nps);
    ctx["review"] = serde_json::json!({"comment": "<script>alert(1)</script>", "rating": 3});
    ctx["nested"] = serde_json::json!({"list": [1, 2, 3], "deep": {"a": {"b": {"c": "d"}}}});
    ctx
}

/// A value only the environment or the filesystem could supply, so output holding it would
/// mean a template read one of them.
pub const TEMPLATE_CANARY_VAR: &str = "CLOSEDLOOP_FUZZ_CANARY";

/// The template renderer: arbitrary template source against a realistic context. It must
/// return (the fuel stops loops), keep its output bounded, and never reach the environment.
pub fn template(data: &[u8]) {
    let source = String::from_utf8_lossy(data);
    let ctx = template_context();
    let _ = crate::templates::check_syntax("body.txt", &source);
    for name in ["note.txt", "body.html"] {
        match crate::templates::render_text(name, &source, &ctx) {
            Ok(out) => check_rendered(&source, &out),
            Err(e) => assert!(!e.reason.is_empty()),
        }
    }
    let parts: Vec<&str> = source.splitn(3, '\u{0}').collect();
    if let [subject, text, html] = parts[..]
        && let Ok(email) = crate::templates::render_email(subject, text, html, &ctx)
    {
        assert!(!email.subject.contains(['\r', '\n']));
        for out in [&email.subject, &email.text, &email.html] {
            check_rendered(&source, out);
        }
    }
}

fn check_rendered(source: &str, out: &str) {
    assert!(
        out.len() <= crate::templates::MAX_RENDERED_BYTES,
        "{} bytes rendered",
        out.len()
    );
    if let Ok(canary) = std::env::var(TEMPLATE_CANARY_VAR)
        && !canary.is_empty()
        && !source.contains(&canary)
    {
        assert!(!out.contains(&canary), "a template read the environment");
    }
}

#[cfg(test)]
mod tests {
    //! Replays the committed corpus (`fuzz/corpus/<target>/`) through the harnesses, so the
    //! stable suite exercises every input the fuzzer kept, and every crash turned regression.

    use std::path::PathBuf;

    /// `fuzz/corpus/<target>/` (what the fuzzer kept, minimised) and
    /// `fuzz/regressions/<target>/` (inputs that once crashed, kept whatever their coverage).
    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let corpus = fuzz.join("corpus").join(target);
        let mut files: Vec<_> = [corpus.clone(), fuzz.join("regressions").join(target)]
            .iter()
            .filter(|dir| dir.is_dir())
            .flat_map(|dir| {
                std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            })
            .map(|entry| entry.expect("a corpus entry").path())
            .filter(|p| p.is_file())
            .map(|p| {
                let bytes = std::fs::read(&p).expect("a readable corpus file");
                (p, bytes)
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus in {}", corpus.display());
        files
    }

    fn replay(target: &str, harness: fn(&[u8])) {
        for (path, bytes) in corpus(target) {
            if std::panic::catch_unwind(|| harness(&bytes)).is_err() {
                panic!("{} fails its harness", path.display());
            }
        }
    }

    #[test]
    fn the_token_corpus_replays() {
        replay("tokens", super::token);
    }

    #[test]
    fn the_api_key_corpus_replays() {
        replay("api_keys", super::api_key);
    }

    #[test]
    fn the_webhook_corpus_replays() {
        replay("webhooks", super::webhook);
    }

    #[test]
    fn the_rule_corpus_replays() {
        replay("rules", super::rule);
    }

    #[test]
    fn the_template_corpus_replays() {
        replay("templates", super::template);
    }
}
