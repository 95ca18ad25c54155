//! Automation rules: the model admins write ([`model`]), reading it with errors that name the
//! offending path ([`parse`]), the facts an event offers ([`facts`]), the indexed engine
//! ([`engine`]), and ready-made rules ([`library`]). Storing rules, auditing decisions and
//! requesting actions live in [`crate::automation`].

pub mod engine;
pub mod facts;
pub mod library;
pub mod model;
pub mod parse;

pub use engine::{Evaluation, RuleOutcome, RuleSet};
pub use facts::{Fact, FactContext, Facts};
pub use model::{Action, Condition, ConditionGroup, Field, Op, Rule, Trigger};
pub use parse::{RuleDraft, RuleError, parse_draft, rule_json};
