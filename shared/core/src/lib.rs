//! closedloop core: the domain, the ports, and the use cases. It knows no AWS, no HTTP client
//! and no SQLite; adapters implement its ports.

pub mod domain;
pub mod event;
pub mod ids;
pub mod ports;
pub mod store;
