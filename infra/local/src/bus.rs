//! The in-process event bus: routes each event to the functions whose EventBridge patterns in
//! `template.yaml` match it, retries failed deliveries as the rule's RetryPolicy says, and
//! writes what still fails to the dead-letter directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use closedloop_core::event::{EventEnvelope, bus_event, bus_event_head};
use closedloop_core::ports::{EventPublisher, PublishError};
use closedloop_eventpattern::template::{EventRoute, Routes};

use crate::functions::Functions;

/// Used when a template rule has no RetryPolicy (EventBridge's own default is 185).
const DEFAULT_RETRIES: u32 = 3;

pub struct LocalBus {
    routes: Vec<(String, EventRoute)>,
    /// Per route: whether its pattern looks inside `detail` (else the event's head decides).
    looks_at_detail: Vec<bool>,
    /// Per route: the only detail-types it can match, when its pattern lists them as plain
    /// strings (most rules name one event type): other events skip the route unmatched.
    detail_types: Vec<Option<Vec<String>>>,
    deliverer: Arc<Deliverer>,
}

/// The part of the bus that delivery tasks share.
struct Deliverer {
    functions: Arc<Functions>,
    dead_letters: PathBuf,
    retry_base: Duration,
}

impl LocalBus {
    pub fn new(
        routes: &Routes,
        functions: Arc<Functions>,
        dead_letters: PathBuf,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dead_letters)?;
        let routes: Vec<(String, EventRoute)> = routes
            .functions
            .iter()
            .flat_map(|f| f.events.iter().map(|e| (f.logical_id.clone(), e.clone())))
            .collect();
        let looks_at_detail = routes
            .iter()
            .map(|(_, route)| mentions_key(route.pattern.as_json(), "detail"))
            .collect();
        let detail_types = routes
            .iter()
            .map(|(_, route)| exact_strings(route.pattern.as_json(), "detail-type"))
            .collect();
        let deliverer = Arc::new(Deliverer {
            functions,
            dead_letters,
            retry_base: Duration::from_millis(100),
        });
        Ok(LocalBus {
            routes,
            looks_at_detail,
            detail_types,
            deliverer,
        })
    }
}

/// Whether a pattern tests `key` at its top level (directly or in an `$or` branch).
fn mentions_key(pattern: &serde_json::Value, key: &str) -> bool {
    let Some(fields) = pattern.as_object() else {
        return false;
    };
    fields.iter().any(|(name, value)| {
        name == key
            || (name == "$or"
                && value
                    .as_array()
                    .is_some_and(|branches| branches.iter().any(|b| mentions_key(b, key))))
    })
}

/// The values a pattern's top-level `key` must equal, when it lists only plain strings: every
/// top-level field must match (`$or` only adds conditions), and a plain string matches only
/// itself.
fn exact_strings(pattern: &serde_json::Value, key: &str) -> Option<Vec<String>> {
    pattern
        .get(key)?
        .as_array()?
        .iter()
        .map(|value| value.as_str().map(str::to_string))
        .collect()
}

impl Deliverer {
    async fn deliver(&self, function: &str, route: &EventRoute, event: &serde_json::Value) {
        let retries = route.max_retries.unwrap_or(DEFAULT_RETRIES);
        let mut last_error = String::new();
        for attempt in 0..=retries {
            if attempt > 0 {
                tokio::time::sleep(self.retry_base * 2u32.pow(attempt.min(6))).await;
            }
            match self.functions.invoke_event(function, event.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(function, attempt, error = %e, "delivery failed");
                    last_error = e;
                }
            }
        }
        self.dead_letter(function, &route.name, event, &last_error);
    }

    fn dead_letter(&self, function: &str, rule: &str, event: &serde_json::Value, reason: &str) {
        let path = self
            .dead_letters
            .join(format!("{}.json", ulid::Ulid::new()));
        let body = serde_json::json!({ "function": function, "rule": rule, "reason": reason, "event": event });
        match std::fs::write(&path, serde_json::to_vec_pretty(&body).unwrap_or_default()) {
            Ok(()) => tracing::error!(function, path = %path.display(), "delivery dead-lettered"),
            Err(e) => tracing::error!(function, error = %e, "could not write a dead letter"),
        }
    }
}

#[async_trait]
impl EventPublisher for LocalBus {
    /// Delivers to every matching target before returning, so the relay's checkpoint only moves
    /// past events that were handled (or dead-lettered): a crash redelivers, it never loses.
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        let mut deliveries = tokio::task::JoinSet::new();
        for envelope in events {
            // Most events match no rule that looks at their payload: decide on the head, and
            // build the whole event (a copy of the payload) only when needed. Routes for other
            // event types are skipped before either is built.
            let event_type = envelope.event_type.as_str();
            let mut head = None;
            let mut whole = None;
            for (((function, route), looks_at_detail), types) in self
                .routes
                .iter()
                .zip(&self.looks_at_detail)
                .zip(&self.detail_types)
            {
                if types
                    .as_ref()
                    .is_some_and(|types| !types.iter().any(|t| t == event_type))
                {
                    continue;
                }
                let matched = if *looks_at_detail {
                    route
                        .pattern
                        .matches(whole.get_or_insert_with(|| bus_event(envelope)))
                } else {
                    route
                        .pattern
                        .matches(head.get_or_insert_with(|| bus_event_head(envelope)))
                };
                if matched {
                    let event = whole.get_or_insert_with(|| bus_event(envelope)).clone();
                    let (deliverer, function, route) =
                        (self.deliverer.clone(), function.clone(), route.clone());
                    deliveries
                        .spawn(async move { deliverer.deliver(&function, &route, &event).await });
                }
            }
        }
        while deliveries.join_next().await.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_skipped_only_for_detail_types_its_pattern_cannot_match() {
        let pattern = |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap();
        assert_eq!(
            exact_strings(
                &pattern(r#"{"source": ["closedloop"], "detail-type": ["a.b", "c.d"]}"#),
                "detail-type"
            ),
            Some(vec!["a.b".to_string(), "c.d".to_string()])
        );
        for open in [
            r#"{"source": ["closedloop"]}"#,
            r#"{"detail-type": [{"prefix": "review."}]}"#,
            r#"{"detail-type": ["a.b", {"prefix": "c"}]}"#,
            r#"{"$or": [{"detail-type": ["a.b"]}, {"source": ["x"]}]}"#,
        ] {
            assert_eq!(exact_strings(&pattern(open), "detail-type"), None, "{open}");
        }
    }

    #[test]
    fn a_pattern_looks_at_detail_when_it_names_it_even_in_an_or_branch() {
        let pattern = |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap();
        assert!(!mentions_key(
            &pattern(r#"{"source": ["closedloop"], "detail-type": ["review.received"]}"#),
            "detail"
        ));
        assert!(mentions_key(
            &pattern(r#"{"detail": {"data": {"review": {"rating": ["negative"]}}}}"#),
            "detail"
        ));
        assert!(mentions_key(
            &pattern(r#"{"$or": [{"source": ["x"]}, {"detail": {"depth": [0]}}]}"#),
            "detail"
        ));
    }
}
