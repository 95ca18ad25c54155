//! Embedded adapters for the local runner, demos and fast tests.
//!
//! - [`JournalStore`]: the `ItemStore` port held in memory and journaled to one file, with the
//!   same conditional-write, index and transaction semantics as the DynamoDB adapter (both pass
//!   `closedloop_core::conformance::store`), plus a local stand-in for the table's stream
//!   (new outbox items) and TTL purging.
//! - [`outbox_mailer::OutboxMailer`]: the `Mailer` port writing `.eml` files to a directory.

mod expression;
mod journal;
pub mod outbox_mailer;
mod state;
pub mod store;

pub use store::{Durability, JournalStore, OpenError, StoreOptions, StreamRecord};
