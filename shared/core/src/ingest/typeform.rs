//! Typeform-style form responses (typeform.com/developers/webhooks): one `form_response` per
//! submission.
//!
//! Signing: `Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body>`, keyed with the
//! secret set on the Typeform webhook. Typeform sends no delivery timestamp; deduplication on
//! `event_id` and the review's version guard stop replays.
//!
//! Mapping: the score is the first answer to a question of type `nps` (NPS), else to a
//! 1-5 star question of type `rating` (CSAT, as Delighted's: 4-5 positive, 3 neutral, 1-2
//! negative); the comment is the first
//! `long_text` (else `short_text`) answer; the respondent is hidden field `email` (else the
//! first `email` answer); hidden field `ticket_id` names the helpdesk ticket.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Delivery, Headers, IngestError, SurveyResponse, key_part};
use crate::domain::{Comment, CsatValue, Email, NpsScore, Rating};
use crate::ids::TicketId;
use crate::signature::{Proof, SignatureError};

pub const SIGNATURE_HEADER: &str = "Typeform-Signature";

pub(super) fn proof<'a>(
    headers: &'a dyn Headers,
    body: &'a [u8],
) -> Result<Proof<'a>, SignatureError> {
    super::prefixed_sha256(
        headers,
        SIGNATURE_HEADER,
        "sha256=<base64 HMAC-SHA256 of the body>",
        body,
        |d| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, d).ok(),
    )
}

/// The header value Typeform would send (for tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            crate::signature::hmac_sha256(secret, body)
        )
    )
}

#[derive(Deserialize)]
struct Event {
    event_id: String,
    event_type: String,
    #[serde(default)]
    form_response: Option<FormResponse>,
}

#[derive(Deserialize)]
struct FormResponse {
    token: String,
    submitted_at: DateTime<Utc>,
    #[serde(default)]
    hidden: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    answers: Vec<Answer>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    number: Option<i64>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    email: Option<String>,
    field: Field,
}

#[derive(Deserialize)]
struct Field {
    #[serde(rename = "type")]
    kind: String,
}

pub(super) fn parse(body: &[u8]) -> Result<Delivery, IngestError> {
    let event: Event =
        serde_json::from_slice(body).map_err(|e| IngestError::BadBody(e.to_string()))?;
    if event.event_type != "form_response" {
        return Ok(Delivery::Ignored(format!(
            "typeform event {}",
            event.event_type
        )));
    }
    let delivery_id = key_part("event_id", &event.event_id)?;
    let response = event
        .form_response
        .ok_or_else(|| IngestError::missing("form_response"))?;
    let of_kind = |kind: &str| response.answers.iter().find(|a| a.field.kind == kind);
    let rating = match (
        of_kind("nps").and_then(|a| a.number),
        of_kind("rating").and_then(|a| a.number),
    ) {
        (Some(score), _) => u8::try_from(score)
            .ok()
            .and_then(|s| NpsScore::new(s).ok())
            .map(Rating::Nps)
            .ok_or_else(|| {
                IngestError::invalid(
                    "form_response.answers",
                    format!("NPS score {score} is not 0-10"),
                )
            })?,
        (None, Some(stars)) => Rating::Csat(match stars {
            1 | 2 => CsatValue::Negative,
            3 => CsatValue::Neutral,
            4 | 5 => CsatValue::Positive,
            other => {
                return Err(IngestError::invalid(
                    "form_response.answers",
                    format!("a rating of {other} is not 1-5 stars"),
                ));
            }
        }),
        (None, None) => {
            return Err(IngestError::invalid(
                "form_response.answers",
                "no answer to an NPS question (field type `nps`) or a 1-5 star question (`rating`)",
            ));
        }
    };
    let comment = of_kind("long_text")
        .or_else(|| of_kind("short_text"))
        .and_then(|a| a.text.as_deref());
    let hidden = |name: &str| {
        response
            .hidden
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    let email = hidden("email").or_else(|| of_kind("email").and_then(|a| a.email.as_deref()));
    let respondent_email = email
        .map(|e| Email::parse(e).map_err(|err| IngestError::invalid("form_response email", err)))
        .transpose()?;
    let ticket_id = hidden("ticket_id")
        .map(|t| {
            TicketId::parse(t)
                .map_err(|e| IngestError::invalid("form_response.hidden.ticket_id", e))
        })
        .transpose()?;
    Ok(Delivery::Response(SurveyResponse {
        delivery_id,
        response_id: key_part("form_response.token", &response.token)?,
        rating,
        comment: Comment::parse(comment.unwrap_or(""))
            .map_err(|e| IngestError::invalid("comment", e))?,
        respondent_email,
        ticket_id,
        first_answered_at: response.submitted_at,
        answered_at: response.submitted_at,
        sequence: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Typeform's example payload, with an NPS question and hidden fields.
    fn submission() -> serde_json::Value {
        serde_json::json!({
            "event_id": "01EK4R5PFZZP6C8H14RTP4YW6C",
            "event_type": "form_response",
            "form_response": {
                "form_id": "g8hcyeXS",
                "token": "x71for1wr6irs2rx71fotn12b3izh25v",
                "landed_at": "2026-11-23T10:01:00Z",
                "submitted_at": "2026-11-23T10:02:00Z",
                "hidden": {"email": "bob@example.com", "ticket_id": "1001"},
                "definition": {"id": "g8hcyeXS", "title": "Feedback", "fields": []},
                "answers": [
                    {"type": "number", "number": 3, "field": {"id": "nps1", "type": "nps", "ref": "nps"}},
                    {"type": "text", "text": "Too slow", "field": {"id": "t1", "type": "long_text", "ref": "why"}}
                ]
            }
        })
    }

    #[test]
    fn the_nps_answer_comment_and_hidden_fields_are_read() {
        let Delivery::Response(r) = parse(submission().to_string().as_bytes()).unwrap() else {
            panic!("a response")
        };
        assert_eq!(r.rating, Rating::Nps(NpsScore::new(3).unwrap()));
        assert_eq!(r.comment.unwrap().as_str(), "Too slow");
        assert_eq!(r.respondent_email.unwrap().as_str(), "bob@example.com");
        assert_eq!(r.ticket_id.unwrap().as_str(), "1001");
        assert_eq!(r.response_id, "x71for1wr6irs2rx71fotn12b3izh25v");
        assert_eq!(r.delivery_id, "01EK4R5PFZZP6C8H14RTP4YW6C");
    }

    #[test]
    fn a_star_rating_is_a_csat_answer() {
        for (stars, expected) in [
            (5, CsatValue::Positive),
            (3, CsatValue::Neutral),
            (1, CsatValue::Negative),
        ] {
            let mut body = submission();
            body["form_response"]["answers"][0] = serde_json::json!(
                {"type": "number", "number": stars, "field": {"id": "r1", "type": "rating", "ref": "stars"}});
            let Delivery::Response(r) = parse(body.to_string().as_bytes()).unwrap() else {
                panic!("a response")
            };
            assert_eq!(r.rating, Rating::Csat(expected), "{stars} stars");
        }
        let mut body = submission();
        body["form_response"]["answers"][0] = serde_json::json!(
            {"type": "number", "number": 7, "field": {"id": "r1", "type": "rating", "ref": "stars"}});
        assert!(parse(body.to_string().as_bytes()).is_err(), "7 stars of 5");
    }

    #[test]
    fn a_form_without_an_nps_answer_is_refused_by_name() {
        let mut body = submission();
        body["form_response"]["answers"]
            .as_array_mut()
            .unwrap()
            .remove(0);
        let err = parse(body.to_string().as_bytes()).unwrap_err().to_string();
        assert!(err.contains("nps"), "{err}");
    }

    #[test]
    fn the_signature_is_base64_hmac_of_the_body() {
        let body = submission().to_string();
        let secrets = [b"tf-secret".to_vec()];
        let header = sign(&secrets[0], body.as_bytes());
        let headers = [(SIGNATURE_HEADER, header.as_str())];
        proof(&headers, body.as_bytes())
            .unwrap()
            .verify(&secrets)
            .unwrap();
        assert_eq!(
            proof(&headers, body.as_bytes())
                .unwrap()
                .verify(&[b"other".to_vec()]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            proof(&[("Content-Type", "application/json")], body.as_bytes()).unwrap_err(),
            SignatureError::Missing(SIGNATURE_HEADER)
        );
    }
}
