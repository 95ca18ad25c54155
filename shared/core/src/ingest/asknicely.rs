//! AskNicely-style responses: AskNicely's webhook app sends a JSON payload and custom headers
//! of your choice, but no signature. The tenant configures a custom header
//! `X-Closedloop-Webhook-Secret: <secret>`; it is compared in constant time with the source's
//! secrets. There is no timestamp either: deduplication on `<question.id>-<count>` (`count`
//! grows by one with every webhook for a response) and the review's version guard stop replays.
//!
//! Mapping: `question.score` (0-10, NPS), `question.comment`, `question.responded` (unix
//! seconds), `person.email`; a contact custom field `ticket_id` on the person names the ticket.

use serde::Deserialize;

use super::{Delivery, Headers, IngestError, LooseId, SurveyResponse, key_part, unix_time};
use crate::domain::{Comment, Email, NpsScore, Rating};
use crate::ids::TicketId;
use crate::signature::{Proof, SignatureError};

pub const SECRET_HEADER: &str = "X-Closedloop-Webhook-Secret";

pub(super) fn proof(headers: &dyn Headers) -> Result<Proof<'_>, SignatureError> {
    headers
        .header(SECRET_HEADER)
        .map(|s| Proof::SharedSecret(s.trim().as_bytes()))
        .ok_or(SignatureError::Missing(SECRET_HEADER))
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    count: Option<LooseId>,
    #[serde(default)]
    person: Option<Person>,
    question: Question,
}

#[derive(Deserialize)]
struct Person {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    ticket_id: Option<LooseId>,
}

#[derive(Deserialize)]
struct Question {
    id: LooseId,
    score: LooseId,
    #[serde(default)]
    comment: Option<String>,
    responded: LooseId,
}

pub(super) fn parse(body: &[u8]) -> Result<Delivery, IngestError> {
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| IngestError::BadBody(e.to_string()))?;
    let question = payload.question;
    let response_id = key_part("question.id", &question.id.into_string())?;
    let count = match payload.count {
        None => 1,
        Some(c) => c
            .into_string()
            .parse::<u64>()
            .map_err(|_| IngestError::invalid("count", "must be a whole number"))?,
    };
    let score = NpsScore::parse(&question.score.into_string())
        .map_err(|e| IngestError::invalid("question.score", e))?;
    let answered_at = unix_time("question.responded", &question.responded)?;
    let person = payload.person;
    let respondent_email = person
        .as_ref()
        .and_then(|p| p.email.as_deref())
        .filter(|e| !e.is_empty())
        .map(|e| Email::parse(e).map_err(|err| IngestError::invalid("person.email", err)))
        .transpose()?;
    let ticket_id = person
        .and_then(|p| p.ticket_id)
        .map(LooseId::into_string)
        .filter(|t| !t.is_empty())
        .map(|t| TicketId::parse(&t).map_err(|e| IngestError::invalid("person.ticket_id", e)))
        .transpose()?;
    Ok(Delivery::Response(SurveyResponse {
        delivery_id: format!("{response_id}-{count}"),
        response_id,
        rating: Rating::Nps(score),
        comment: Comment::parse(question.comment.as_deref().unwrap_or(""))
            .map_err(|e| IngestError::invalid("question.comment", e))?,
        respondent_email,
        ticket_id,
        first_answered_at: answered_at,
        answered_at,
        sequence: count,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AskNicely's documented example payload (abridged).
    fn payload() -> serde_json::Value {
        serde_json::json!({
            "count": 1,
            "person": {"id": "163012", "name": "Firstname Lastname", "firstname": "Firstname",
                "lastname": "Lastname", "email": "tester@asknice.ly", "created": "1774990112",
                "segment": "general"},
            "question": {"id": "345094", "score": "10", "comment": "The gym was great, love it!",
                "sent": "1774990116", "opened": "1774990122", "responded": "1774990125",
                "segment": "general", "deliverymethod": "email"}
        })
    }

    #[test]
    fn the_documented_payload_becomes_a_response_keyed_by_question_and_count() {
        let Delivery::Response(r) = parse(payload().to_string().as_bytes()).unwrap() else {
            panic!("a response")
        };
        assert_eq!(r.rating, Rating::Nps(NpsScore::new(10).unwrap()));
        assert_eq!(r.delivery_id, "345094-1");
        assert_eq!(r.answered_at.timestamp(), 1774990125);
        let mut update = payload();
        update["count"] = 2.into();
        let Delivery::Response(u) = parse(update.to_string().as_bytes()).unwrap() else {
            panic!("a response")
        };
        assert_eq!(
            (u.delivery_id.as_str(), u.response_id.as_str(), u.sequence),
            ("345094-2", "345094", 2)
        );
    }

    #[test]
    fn a_missing_score_is_named() {
        let mut body = payload();
        body["question"].as_object_mut().unwrap().remove("score");
        let err = parse(body.to_string().as_bytes()).unwrap_err().to_string();
        assert!(err.contains("score"), "{err}");
    }

    #[test]
    fn the_secret_header_must_equal_a_configured_secret() {
        let secrets = [b"old-secret".to_vec(), b"new-secret".to_vec()];
        for good in ["old-secret", "new-secret"] {
            let headers = [(SECRET_HEADER, good)];
            proof(&headers).unwrap().verify(&secrets).unwrap();
        }
        let headers = [(SECRET_HEADER, "new-secreT")];
        assert_eq!(
            proof(&headers).unwrap().verify(&secrets),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            proof(&[("Content-Type", "application/json")]).unwrap_err(),
            SignatureError::Missing(SECRET_HEADER)
        );
    }
}
