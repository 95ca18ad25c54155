//! Delighted webhooks (delighted.com/docs/api/webhooks): `survey_response.created` when a person
//! gives a score, `survey_response.updated` whenever the score or comment changes.
//!
//! Signing: `X-Delighted-Webhook-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, keyed
//! with the Delighted account's private API key (stored as this source's secret). Delighted
//! sends no delivery timestamp, so replays are stopped by deduplication on `event_id` and by
//! the review's version guard (`updated_at`): a replayed or late version never changes a newer one.

use serde::Deserialize;

use super::{Delivery, Headers, IngestError, LooseId, SurveyResponse, key_part, unix_time};
use crate::domain::{Comment, CsatValue, Email, NpsScore, Rating};
use crate::ids::TicketId;
use crate::signature::{Proof, SignatureError};

pub const SIGNATURE_HEADER: &str = "X-Delighted-Webhook-Signature";

/// The person property that passes a helpdesk ticket id through Delighted.
pub const TICKET_PROPERTY: &str = "ticket_id";

pub(super) fn proof<'a>(
    headers: &'a dyn Headers,
    body: &'a [u8],
) -> Result<Proof<'a>, SignatureError> {
    super::prefixed_sha256(
        headers,
        SIGNATURE_HEADER,
        "sha256=<hex HMAC-SHA256 of the body>",
        body,
        |d| hex::decode(d).ok(),
    )
}

/// The header value Delighted would send (for tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(crate::signature::hmac_sha256(secret, body))
    )
}

#[derive(Deserialize)]
struct Event {
    event_type: String,
    event_id: String,
    /// Read once the type is known: other events carry other data.
    #[serde(default)]
    event_data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ResponseData {
    id: LooseId,
    #[serde(default)]
    person: Option<Person>,
    survey_type: String,
    score: Option<i64>,
    #[serde(default)]
    comment: Option<String>,
    created_at: LooseId,
    #[serde(default)]
    updated_at: Option<LooseId>,
    #[serde(default)]
    person_properties: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct Person {
    #[serde(default)]
    email: Option<String>,
}

pub(super) fn parse(body: &[u8]) -> Result<Delivery, IngestError> {
    let event: Event =
        serde_json::from_slice(body).map_err(|e| IngestError::BadBody(e.to_string()))?;
    if !matches!(
        event.event_type.as_str(),
        "survey_response.created" | "survey_response.updated"
    ) {
        return Ok(Delivery::Ignored(format!(
            "delighted event {}",
            event.event_type
        )));
    }
    let delivery_id = key_part("event_id", &event.event_id)?;
    let data: ResponseData = serde_json::from_value(
        event
            .event_data
            .ok_or_else(|| IngestError::missing("event_data"))?,
    )
    .map_err(|e| IngestError::invalid("event_data", e))?;
    let score = data
        .score
        .ok_or_else(|| IngestError::missing("event_data.score"))?;
    let rating = rating(&data.survey_type, score)?;
    let first_answered_at = unix_time("event_data.created_at", &data.created_at)?;
    let answered_at = match &data.updated_at {
        Some(t) => unix_time("event_data.updated_at", t)?,
        None => first_answered_at,
    };
    let respondent_email = data
        .person
        .and_then(|p| p.email)
        .map(|e| {
            Email::parse(&e).map_err(|err| IngestError::invalid("event_data.person.email", err))
        })
        .transpose()?;
    let ticket_id = data
        .person_properties
        .as_ref()
        .and_then(|p| p.get(TICKET_PROPERTY))
        .and_then(loose_text)
        .map(|t| {
            TicketId::parse(&t).map_err(|e| IngestError::invalid("person_properties.ticket_id", e))
        })
        .transpose()?;
    Ok(Delivery::Response(SurveyResponse {
        delivery_id,
        response_id: key_part("event_data.id", &data.id.into_string())?,
        rating,
        comment: Comment::parse(data.comment.as_deref().unwrap_or(""))
            .map_err(|e| IngestError::invalid("event_data.comment", e))?,
        respondent_email,
        ticket_id,
        first_answered_at,
        answered_at,
        sequence: 0,
    }))
}

/// NPS is 0-10; Delighted's CSAT is 1-5 (1-2 negative, 3 neutral, 4-5 positive).
fn rating(survey_type: &str, score: i64) -> Result<Rating, IngestError> {
    let out_of_range = || {
        IngestError::invalid(
            "event_data.score",
            format!("{score} is out of range for {survey_type}"),
        )
    };
    match survey_type {
        "nps" => u8::try_from(score)
            .ok()
            .and_then(|s| NpsScore::new(s).ok())
            .map(Rating::Nps)
            .ok_or_else(out_of_range),
        "csat" => match score {
            1 | 2 => Ok(Rating::Csat(CsatValue::Negative)),
            3 => Ok(Rating::Csat(CsatValue::Neutral)),
            4 | 5 => Ok(Rating::Csat(CsatValue::Positive)),
            _ => Err(out_of_range()),
        },
        other => Err(IngestError::invalid(
            "event_data.survey_type",
            format!(
                "'{}' is not supported; closedloop takes nps and csat",
                other.chars().take(20).collect::<String>()
            ),
        )),
    }
}

fn loose_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delighted's documented example body.
    fn updated() -> serde_json::Value {
        serde_json::json!({
            "event_type": "survey_response.updated",
            "event_id": "b8d057c59327541d7ec2104c0a9a255ad1997fb00831b9c6bbf09561e6d5cbd0",
            "event_data": {
                "id": "5435",
                "person": {"id": "5975", "email": "charlie_gravis@example.com", "name": "Charlie Gravis", "created_at": 1732186784},
                "survey_type": "nps", "score": 9, "comment": "Your service is fast and flawless!",
                "permalink": "https://app.delighted.com/r/5pFDpmlyC8GUc5oxU6USto5VonSKAqOa",
                "created_at": 1732186844, "updated_at": 1732187444,
                "person_properties": null, "notes": [], "tags": [], "additional_answers": []
            }
        })
    }

    fn response_of(body: &serde_json::Value) -> SurveyResponse {
        match parse(body.to_string().as_bytes()).unwrap() {
            Delivery::Response(r) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    #[test]
    fn the_documented_update_becomes_an_nps_response() {
        let r = response_of(&updated());
        assert_eq!(r.rating, Rating::Nps(NpsScore::new(9).unwrap()));
        assert_eq!(r.response_id, "5435");
        assert_eq!(
            r.respondent_email.unwrap().as_str(),
            "charlie_gravis@example.com"
        );
        assert_eq!(r.answered_at.timestamp(), 1732187444);
        assert_eq!(r.first_answered_at.timestamp(), 1732186844);
        assert_eq!(
            r.comment.unwrap().as_str(),
            "Your service is fast and flawless!"
        );
    }

    #[test]
    fn csat_ticket_property_unsubscribe_and_bad_scores() {
        let mut body = updated();
        body["event_data"]["survey_type"] = "csat".into();
        body["event_data"]["score"] = 2.into();
        body["event_data"]["person_properties"] = serde_json::json!({"ticket_id": 1001});
        let r = response_of(&body);
        assert_eq!(r.rating, Rating::Csat(CsatValue::Negative));
        assert_eq!(r.ticket_id.unwrap().as_str(), "1001");
        body["event_data"]["score"] = 6.into();
        assert!(
            parse(body.to_string().as_bytes())
                .unwrap_err()
                .to_string()
                .contains("event_data.score")
        );
        body["event_data"].as_object_mut().unwrap().remove("score");
        assert!(
            parse(body.to_string().as_bytes())
                .unwrap_err()
                .to_string()
                .contains("event_data.score")
        );
        let unsubscribe = serde_json::json!({"event_type": "unsubscribe.created", "event_id": "e1", "event_data": {}});
        assert!(matches!(
            parse(unsubscribe.to_string().as_bytes()).unwrap(),
            Delivery::Ignored(_)
        ));
    }

    #[test]
    fn the_signature_is_hex_hmac_of_the_body_with_a_sha256_prefix() {
        let body = updated().to_string();
        let secrets = [b"delighted-api-key".to_vec()];
        let good = sign(&secrets[0], body.as_bytes());
        let headers = [(SIGNATURE_HEADER, good.as_str())];
        proof(&headers, body.as_bytes())
            .unwrap()
            .verify(&secrets)
            .unwrap();
        let tampered = body.replace("\"score\":9", "\"score\":0");
        assert_eq!(
            proof(&headers, tampered.as_bytes())
                .unwrap()
                .verify(&secrets),
            Err(SignatureError::Mismatch)
        );
        let bare = good.trim_start_matches("sha256=").to_string();
        let headers = [(SIGNATURE_HEADER, bare.as_str())];
        assert!(matches!(
            proof(&headers, body.as_bytes()),
            Err(SignatureError::MalformedHeader { .. })
        ));
    }
}
