//! EventBridge routing shared by the Lambda functions and the local runner.
//!
//! * [`pattern`]: event patterns (`{"source": ["closedloop.core"], ...}`) and matching.
//! * [`schedule`]: `rate(...)`, `cron(...)` and `at(...)` schedule expressions.
//! * [`template`]: the routes (HTTP, EventBridge, schedules, DynamoDB streams) declared in a SAM
//!   `template.yaml`, so the local runner wires functions the way production does.

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod pattern;
pub mod schedule;
pub mod template;

pub use pattern::{EventPattern, PatternError};
pub use schedule::{ScheduleError, ScheduleExpression};
pub use template::{
    EventRoute, FunctionRoutes, HttpRoute, Routes, ScheduleRoute, StreamRoute, TemplateError,
};
