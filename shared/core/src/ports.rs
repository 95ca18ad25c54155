//! Ports other than the item store: one small trait per capability.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::Email;
use crate::event::EventEnvelope;

/// Publishes domain events to the bus.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes all of them, or says which ones failed (the rest went through).
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError>;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublishError {
    #[error("{} of the events were not published: {}", failed.len(), failed.iter().map(|(id, why)| format!("{id}: {why}")).collect::<Vec<_>>().join("; "))]
    Partial { failed: Vec<(ulid::Ulid, String)> },
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

/// An email to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEmail {
    pub to: Vec<Email>,
    pub reply_to: Option<Email>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Extra headers, such as `List-Unsubscribe`.
    pub headers: Vec<(String, String)>,
}

/// Sends email. Callers make it idempotent (the idempotency store); a mailer sends once per call.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Returns the provider's message id.
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError>;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MailError {
    #[error("the mail provider refused the message: {0}")]
    Rejected(String),
    #[error("the mail provider is unavailable: {0}")]
    Transient(String),
}

/// The time, injectable so sweeps and SLA tests control it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(at))
    }
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = at;
    }
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().expect("clock lock");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}
