//! The in-process event bus: routes each event to the functions whose EventBridge patterns in
//! `template.yaml` match it, retries failed deliveries as the rule's RetryPolicy says, and
//! writes what still fails to the dead-letter directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use closedloop_core::event::{EventEnvelope, bus_event};
use closedloop_core::ports::{EventPublisher, PublishError};
use closedloop_eventpattern::template::{EventRoute, Routes};

use crate::functions::Functions;

/// Used when a template rule has no RetryPolicy (EventBridge's own default is 185).
const DEFAULT_RETRIES: u32 = 3;

pub struct LocalBus {
    routes: Vec<(String, EventRoute)>,
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
        let routes = routes
            .functions
            .iter()
            .flat_map(|f| f.events.iter().map(|e| (f.logical_id.clone(), e.clone())))
            .collect();
        let deliverer = Arc::new(Deliverer {
            functions,
            dead_letters,
            retry_base: Duration::from_millis(100),
        });
        Ok(LocalBus { routes, deliverer })
    }

    /// The functions an event goes to, by the template's patterns.
    pub fn targets(&self, event: &serde_json::Value) -> Vec<(String, EventRoute)> {
        self.routes
            .iter()
            .filter(|(_, route)| route.pattern.matches(event))
            .cloned()
            .collect()
    }
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
            let event = bus_event(envelope);
            for (function, route) in self.targets(&event) {
                let deliverer = self.deliverer.clone();
                let event = event.clone();
                deliveries.spawn(async move { deliverer.deliver(&function, &route, &event).await });
            }
        }
        while deliveries.join_next().await.is_some() {}
        Ok(())
    }
}
