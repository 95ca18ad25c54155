//! The local runner: every closedloop function in one process on embedded defaults.

pub mod bus;
pub mod functions;
pub mod load;
pub mod report_link;
pub mod runner;
pub mod sandbox;
pub mod setup;
