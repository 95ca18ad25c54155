//! AWS adapters of the closedloop ports.

pub mod config;
pub mod events;
pub mod mail;
pub mod runtime;
pub mod store;
