//! closedloop core: the domain, the ports, and the use cases. It knows no AWS, no HTTP client
//! and no storage engine; adapters implement its ports.

pub mod accounts;
pub mod actions;
pub mod automation;
pub mod calendar;
pub mod case_reports;
pub mod cases;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod contacts;
pub mod detractors;
pub mod domain;
pub mod due;
pub mod echoes;
pub mod event;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod helpdesk;
pub mod html;
pub mod idempotency;
pub mod ids;
pub mod ingest;
pub mod keys;
pub mod outbox;
pub mod ports;
pub mod ratings;
pub mod records;
pub mod relay;
pub mod reports;
pub mod rfc3339;
pub mod rules;
pub mod scanners;
pub mod signature;
pub mod sources;
pub mod store;
pub mod surveys;
pub mod sweeps;
pub mod templates;
pub mod tenancy;
pub mod tokens;
pub mod unsubscribe;
