//! The webhook adapters' fuzz harness (`fuzz/fuzz_targets/webhooks.rs`, and the corpus replay
//! test on stable). Lives inside `ingest` to reach the adapters' private parsers.
//!
//! Input: one byte naming the source (`g`, `z`, `d`, `t`, `a`; any other byte picks one by its
//! value), then optional header lines `Name: value` ended by an empty line, then the body.

use chrono::{DateTime, Utc};

use super::{Delivery, Headers, IngestError, Source, delighted, typeform, zendesk};
use crate::signature::{self, SignatureError};

/// The secret the corpus samples are signed with.
pub const SECRET: &[u8] = b"fuzz-webhook-secret";

/// The clock the harness runs at; the corpus' signed samples carry timestamps near it.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_428_030, 0).expect("a valid time") // 2026-11-23T10:00:30Z
}

struct HeaderList<'a>(Vec<(&'a str, &'a str)>);

impl Headers for HeaderList<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

fn source_of(selector: u8) -> Source {
    match selector {
        b'g' => Source::Generic,
        b'z' => Source::Zendesk,
        b'd' => Source::Delighted,
        b't' => Source::Typeform,
        b'a' => Source::AskNicely,
        other => Source::ALL[usize::from(other) % Source::ALL.len()],
    }
}

/// Splits `head\n\nbody`; without a blank line everything is the body.
fn split_request(rest: &[u8]) -> (&[u8], &[u8]) {
    match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (&[], rest),
    }
}

/// One delivery through the source's proof reader, the signature check and the parser. Hostile
/// input must come back as a client error, never a panic; what is accepted must be well-formed.
pub fn webhook(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let source = source_of(selector);
    let (head, body) = split_request(rest);
    let head = String::from_utf8_lossy(head);
    let headers = HeaderList(
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim(), value.trim()))
            .collect(),
    );
    let now = now();

    match super::proof(source, &headers, body, now) {
        Ok(proof) => {
            let verified = proof.verify(&[SECRET.to_vec()]);
            // A proof never verifies against no secrets at all.
            assert_eq!(proof.verify(&[]), Err(SignatureError::Mismatch));
            if verified.is_ok() {
                // What verifies under one secret does not verify under another.
                assert!(proof.verify(&[b"another-secret".to_vec()]).is_err());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // The Stripe-style reader used for outgoing webhooks and the generic source agree.
    let generic_header = headers.header(super::SIGNATURE_HEADER);
    let direct = signature::verify_timestamped(
        generic_header,
        super::SIGNATURE_HEADER,
        &[SECRET.to_vec()],
        body,
        now,
    );
    if source == Source::Generic {
        let via_proof =
            super::proof(source, &headers, body, now).and_then(|p| p.verify(&[SECRET.to_vec()]));
        assert_eq!(
            direct.is_ok(),
            via_proof.is_ok(),
            "{direct:?} vs {via_proof:?}"
        );
    }
    // Re-signing the body with the secret always verifies (round trip of each vendor's format).
    resign_round_trip(source, body, now);

    // The body is parsed whatever the signature said: the parsers face hostile bytes directly.
    match parse(source, body) {
        Ok(delivery) => check_delivery(&delivery),
        Err(e) => {
            assert!(e.is_client_error(), "parsing failed as a server error: {e}");
            let _ = e.to_string();
        }
    }
}

fn parse(source: Source, body: &[u8]) -> Result<Delivery, IngestError> {
    match source {
        Source::Generic => super::generic::parse(body),
        Source::Zendesk => super::zendesk::parse(body),
        Source::Delighted => super::delighted::parse(body),
        Source::Typeform => super::typeform::parse(body),
        Source::AskNicely => super::asknicely::parse(body),
    }
}

fn resign_round_trip(source: Source, body: &[u8], now: DateTime<Utc>) {
    let ts = now.timestamp();
    let zendesk_ts = "2026-11-23T10:00:00Z";
    let header = match source {
        Source::Generic => signature::sign_timestamped(SECRET, ts, body),
        Source::Zendesk => zendesk::sign(SECRET, zendesk_ts, body),
        Source::Delighted => delighted::sign(SECRET, body),
        Source::Typeform => typeform::sign(SECRET, body),
        Source::AskNicely => String::from_utf8_lossy(SECRET).into_owned(),
    };
    let name = match source {
        Source::Generic => super::SIGNATURE_HEADER,
        Source::Zendesk => zendesk::SIGNATURE_HEADER,
        Source::Delighted => delighted::SIGNATURE_HEADER,
        Source::Typeform => typeform::SIGNATURE_HEADER,
        Source::AskNicely => super::asknicely::SECRET_HEADER,
    };
    let headers = HeaderList(vec![
        (name, header.as_str()),
        (zendesk::TIMESTAMP_HEADER, zendesk_ts),
    ]);
    let proof = super::proof(source, &headers, body, now).expect("our own signature reads back");
    proof
        .verify(&[b"rotated-out".to_vec(), SECRET.to_vec()])
        .expect("our own signature verifies");
}

/// What an adapter accepts is what the rest of ingest relies on.
fn check_delivery(delivery: &Delivery) {
    let key_part_ok = |s: &str| {
        !s.is_empty() && s.len() <= 128 && !s.contains('#') && !s.chars().any(char::is_control)
    };
    match delivery {
        Delivery::Ticket(t) => {
            assert!(key_part_ok(&t.delivery_id), "{:?}", t.delivery_id);
            if let Some(m) = &t.message {
                assert!(m.body.chars().count() <= 20_000);
            }
        }
        Delivery::Response(r) => {
            // AskNicely's delivery id is `<question id>-<count>`, so it may exceed one part.
            assert!(!r.delivery_id.is_empty() && !r.delivery_id.contains('#'));
            assert!(key_part_ok(&r.response_id), "{:?}", r.response_id);
            if let Some(c) = &r.comment {
                assert!(c.as_str().chars().count() <= crate::domain::Comment::MAX_CHARS);
            }
            if let crate::domain::Rating::Nps(score) = r.rating {
                assert!(score.value() <= 10);
            }
        }
        Delivery::Ignored(what) => assert!(!what.is_empty()),
    }
}
