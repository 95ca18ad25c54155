//! Embedded adapters for the local runner, demos and fast tests.
//!
//! - [`SqliteStore`]: the `ItemStore` port over one SQLite file, with the same conditional-write,
//!   index and transaction semantics as the DynamoDB adapter (both pass
//!   `closedloop_core::conformance::store`), plus a local stand-in for the table's stream
//!   (new outbox items) and TTL purging.
//! - [`outbox_mailer::OutboxMailer`]: the `Mailer` port writing `.eml` files to a directory.

mod expression;
pub mod outbox_mailer;
mod schema;
pub mod store;

pub use store::{Durability, OpenError, SqliteStore, StoreOptions, StreamRecord};
