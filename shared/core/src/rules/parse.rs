//! Reading a rule from JSON, with errors that name the offending path (`conditions.all[1].op`),
//! and writing it back in the same shape.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::model::{
    Action, CaseAssignee, Combinator, Condition, ConditionGroup, ConditionNode, Field, FieldKind,
    Op, Operand, Rule, Trigger,
};
use crate::ids::RuleId;

/// Why a rule was refused: the JSON path of the problem and what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RuleError {
    pub path: String,
    pub message: String,
}

impl RuleError {
    fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        RuleError {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_CONDITIONS_PER_GROUP: usize = 50;
pub const MAX_ACTIONS: usize = 20;
pub const MAX_TEXT_OPERAND_CHARS: usize = 500;
pub const MAX_TEMPLATE_CHARS: usize = 20_000;
/// Compiled size limit of a `matches` pattern, so a tenant cannot make evaluation expensive.
pub const MAX_REGEX_BYTES: usize = 64 * 1024;

/// What an admin writes: everything but the id, version and timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDraft {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub trigger: Trigger,
    pub conditions: ConditionGroup,
    pub actions: Vec<Action>,
    /// The version the writer last read (required for updates).
    pub version: Option<u64>,
}

fn default_enabled() -> bool {
    true
}

/// The JSON as written. `id`, `created_at` and `updated_at` are accepted (a rule read from the
/// API can be sent back as it is) and ignored on writes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    id: Option<RuleId>,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "default_enabled")]
    enabled: bool,
    trigger: Trigger,
    #[serde(default)]
    conditions: Option<RawNode>,
    // Read one by one below: serde loses the path inside internally tagged enums.
    actions: Vec<Json>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
}

/// A group (`all` or `any`) or a condition (`field`, `op`, `value`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    #[serde(default)]
    all: Option<Vec<RawNode>>,
    #[serde(default)]
    any: Option<Vec<RawNode>>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    value: Option<Json>,
}

fn raw(json: &[u8]) -> Result<RawRule, RuleError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let parsed: Result<RawRule, _> = serde_path_to_error::deserialize(&mut de);
    let rule = parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let path = if path == "." || path.is_empty() {
            "rule".to_string()
        } else {
            path
        };
        RuleError::at(path, inner.to_string())
    })?;
    de.end()
        .map_err(|e| RuleError::at("rule", format!("trailing characters: {e}")))?;
    Ok(rule)
}

/// Parses and validates a rule an admin sent. Nothing about it is stored until this succeeds.
pub fn parse_draft(json: &[u8]) -> Result<RuleDraft, RuleError> {
    let raw = raw(json)?;
    draft_from_raw(raw).map(|(draft, _)| draft)
}

fn draft_from_raw(raw: RawRule) -> Result<(RuleDraft, Stamps), RuleError> {
    let name = raw.name.trim().to_string();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(RuleError::at(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if raw.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(RuleError::at(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    let conditions = match raw.conditions {
        None => ConditionGroup::default(),
        Some(node) => match node_from_raw(node, "conditions", 0)? {
            ConditionNode::Group(g) => g,
            ConditionNode::Condition(_) => {
                return Err(RuleError::at(
                    "conditions",
                    "must be a group: {\"all\": [...]} or {\"any\": [...]}",
                ));
            }
        },
    };
    let actions = read_actions(raw.actions)?;
    validate_actions(&actions)?;
    Ok((
        RuleDraft {
            name,
            description: raw.description,
            enabled: raw.enabled,
            trigger: raw.trigger,
            conditions,
            actions,
            version: raw.version,
        },
        Stamps {
            id: raw.id,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        },
    ))
}

struct Stamps {
    id: Option<RuleId>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

fn node_from_raw(node: RawNode, path: &str, depth: usize) -> Result<ConditionNode, RuleError> {
    let shapes = [node.all.is_some(), node.any.is_some(), node.field.is_some()];
    if shapes.iter().filter(|s| **s).count() != 1 {
        return Err(RuleError::at(
            path,
            "must be either a group ({\"all\": [...]} or {\"any\": [...]}) or a condition ({\"field\", \"op\", \"value\"})",
        ));
    }
    if let Some((combinator, items)) = node
        .all
        .map(|i| (Combinator::All, i))
        .or(node.any.map(|i| (Combinator::Any, i)))
    {
        let key = if combinator == Combinator::All {
            "all"
        } else {
            "any"
        };
        if node.op.is_some() || node.value.is_some() {
            return Err(RuleError::at(
                path,
                "a group holds only its list of conditions",
            ));
        }
        if depth >= 2 {
            return Err(RuleError::at(
                path,
                "groups nest one level deep: a group inside a group holds only conditions",
            ));
        }
        if items.len() > MAX_CONDITIONS_PER_GROUP {
            return Err(RuleError::at(
                format!("{path}.{key}"),
                format!("a group holds at most {MAX_CONDITIONS_PER_GROUP} items"),
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            out.push(node_from_raw(
                item,
                &format!("{path}.{key}[{i}]"),
                depth + 1,
            )?);
        }
        return Ok(ConditionNode::Group(ConditionGroup {
            combinator,
            items: out,
        }));
    }
    let field_name = node.field.expect("checked above");
    let field = Field::parse(&field_name).ok_or_else(|| {
        RuleError::at(
            format!("{path}.field"),
            format!(
                "unknown field '{}'; known fields: {}",
                clip(&field_name),
                Field::ALL
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let op_name = node
        .op
        .ok_or_else(|| RuleError::at(format!("{path}.op"), "missing operator"))?;
    let allowed = Op::allowed(field.kind());
    let op = Op::parse(&op_name)
        .filter(|op| allowed.contains(op))
        .ok_or_else(|| {
            let known = if Op::parse(&op_name).is_some() {
                format!("'{op_name}' does not apply to {}", field.as_str())
            } else {
                format!("unknown operator '{}'", clip(&op_name))
            };
            RuleError::at(
                format!("{path}.op"),
                format!(
                    "{known}; {} takes {}",
                    field.as_str(),
                    allowed
                        .iter()
                        .map(|o| o.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    let value = operand(field, op, node.value, &format!("{path}.value"))?;
    Ok(ConditionNode::Condition(Condition { field, op, value }))
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

fn operand(field: Field, op: Op, value: Option<Json>, path: &str) -> Result<Operand, RuleError> {
    let kind = field.kind();
    let value = value.filter(|v| !v.is_null());
    let err = |m: String| RuleError::at(path, m);
    match op {
        Op::IsSet | Op::IsNotSet => match value {
            None => Ok(Operand::None),
            Some(_) => Err(err(format!("'{}' takes no value", op.as_str()))),
        },
        Op::Between => {
            let v = value.ok_or_else(|| err("missing value: [low, high]".into()))?;
            let pair = v
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| err("must be [low, high]".into()))?;
            let low = number(kind, &pair[0], &format!("{path}[0]"))?;
            let high = number(kind, &pair[1], &format!("{path}[1]"))?;
            if low > high {
                return Err(err(format!("low ({low}) is above high ({high})")));
            }
            Ok(Operand::Range(low, high))
        }
        Op::GreaterThan | Op::LessThan => {
            let v = value.ok_or_else(|| err("missing value: a number".into()))?;
            number(kind, &v, path).map(Operand::Number)
        }
        Op::IsAnyOf => {
            let v = value.ok_or_else(|| err("missing value: a list".into()))?;
            let list = v
                .as_array()
                .filter(|a| !a.is_empty() && a.len() <= 100)
                .ok_or_else(|| err("must be a list of 1 to 100 values".into()))?;
            if matches!(kind, FieldKind::Number { .. }) {
                let mut out = Vec::with_capacity(list.len());
                for (i, item) in list.iter().enumerate() {
                    out.push(number(kind, item, &format!("{path}[{i}]"))?);
                }
                Ok(Operand::Numbers(out))
            } else {
                let mut out = Vec::with_capacity(list.len());
                for (i, item) in list.iter().enumerate() {
                    out.push(text(kind, item, &format!("{path}[{i}]"))?);
                }
                Ok(Operand::Texts(out))
            }
        }
        Op::Matches => {
            let v = value.ok_or_else(|| err("missing value: a regular expression".into()))?;
            let pattern = text(FieldKind::Text, &v, path)?;
            compile_regex(&pattern).map_err(&err)?;
            Ok(Operand::Text(pattern))
        }
        Op::Is | Op::IsNot | Op::Contains | Op::NotContains => {
            let v = value.ok_or_else(|| err("missing value".into()))?;
            match kind {
                FieldKind::Bool => v
                    .as_bool()
                    .map(Operand::Bool)
                    .ok_or_else(|| err(format!("{} is true or false", field.as_str()))),
                FieldKind::Number { .. } => number(kind, &v, path).map(Operand::Number),
                _ => text(kind, &v, path).map(Operand::Text),
            }
        }
    }
}

fn number(kind: FieldKind, v: &Json, path: &str) -> Result<f64, RuleError> {
    let FieldKind::Number { min, max, whole } = kind else {
        return Err(RuleError::at(path, "this field takes no numbers"));
    };
    let n = v
        .as_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| RuleError::at(path, format!("must be a number, got {}", short(v))))?;
    if n < min || n > max || (whole && n.fract() != 0.0) {
        let what = if whole { "a whole number" } else { "a number" };
        return Err(RuleError::at(
            path,
            format!("must be {what} from {min} to {max}, got {n}"),
        ));
    }
    Ok(n)
}

fn text(kind: FieldKind, v: &Json, path: &str) -> Result<String, RuleError> {
    let s = v
        .as_str()
        .map(str::trim)
        .ok_or_else(|| RuleError::at(path, format!("must be text, got {}", short(v))))?;
    if s.is_empty() || s.chars().count() > MAX_TEXT_OPERAND_CHARS {
        return Err(RuleError::at(
            path,
            format!("must be 1 to {MAX_TEXT_OPERAND_CHARS} characters"),
        ));
    }
    if let FieldKind::Choice(choices) = kind
        && !choices.contains(&s.to_ascii_lowercase().as_str())
    {
        return Err(RuleError::at(
            path,
            format!("'{}' is not one of {}", clip(s), choices.join(", ")),
        ));
    }
    Ok(match kind {
        FieldKind::Choice(_) => s.to_ascii_lowercase(),
        _ => s.to_string(),
    })
}

fn short(v: &Json) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// Compiles a `matches` pattern, case-insensitively, within the size limit.
pub fn compile_regex(pattern: &str) -> Result<regex_lite::Regex, String> {
    regex_lite::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|e| format!("not a valid regular expression: {e}"))
}

fn read_actions(raw: Vec<Json>) -> Result<Vec<Action>, RuleError> {
    let mut actions = Vec::with_capacity(raw.len());
    for (i, mut json) in raw.into_iter().enumerate() {
        // What the API shows in place of a webhook's secret; sent back, it means "keep it".
        if let Some(map) = json.as_object_mut() {
            map.remove("secret_set");
        }
        // Addresses first, so a bad one is named by its position.
        if let Some(to) = json.get("to").and_then(Json::as_array) {
            for (j, address) in to.iter().enumerate() {
                if let Some(s) = address.as_str()
                    && let Err(e) = crate::domain::Email::parse(s)
                {
                    return Err(RuleError::at(
                        format!("actions[{i}].to[{j}]"),
                        e.to_string(),
                    ));
                }
            }
        }
        let action: Action = serde_json::from_value(json)
            .map_err(|e| RuleError::at(format!("actions[{i}]"), e.to_string()))?;
        actions.push(action);
    }
    Ok(actions)
}

fn validate_actions(actions: &[Action]) -> Result<(), RuleError> {
    if actions.is_empty() {
        return Err(RuleError::at("actions", "a rule needs at least one action"));
    }
    if actions.len() > MAX_ACTIONS {
        return Err(RuleError::at(
            "actions",
            format!("a rule runs at most {MAX_ACTIONS} actions"),
        ));
    }
    for (i, action) in actions.iter().enumerate() {
        let at = |field: &str| format!("actions[{i}].{field}");
        let template = |field: &str, source: &str| -> Result<(), RuleError> {
            if source.trim().is_empty() || source.chars().count() > MAX_TEMPLATE_CHARS {
                return Err(RuleError::at(
                    at(field),
                    format!("must be 1 to {MAX_TEMPLATE_CHARS} characters"),
                ));
            }
            crate::templates::check_syntax(field, source)
                .map_err(|e| RuleError::at(at(field), e.reason))
        };
        let word = |field: &str, value: &str| -> Result<(), RuleError> {
            let n = value.trim().chars().count();
            if n == 0 || n > 100 || value.chars().any(char::is_control) {
                return Err(RuleError::at(
                    at(field),
                    "must be 1 to 100 characters, without line breaks",
                ));
            }
            Ok(())
        };
        match action {
            Action::SendEmail {
                to,
                to_ticket_agent,
                subject,
                body,
            } => {
                if to.is_empty() && !to_ticket_agent {
                    return Err(RuleError::at(
                        at("to"),
                        "name at least one address, or set to_ticket_agent",
                    ));
                }
                if to.len() > 50 {
                    return Err(RuleError::at(at("to"), "at most 50 addresses"));
                }
                template("subject", subject)?;
                template("body", body)?;
            }
            Action::EmailTicketAgents { subject, body } => {
                template("subject", subject)?;
                template("body", body)?;
            }
            Action::AddInternalNote { body } | Action::SendCustomerMessage { body } => {
                template("body", body)?
            }
            Action::CreateTicket { subject, body } => {
                template("subject", subject)?;
                template("body", body)?;
            }
            Action::ChangeTicketType { ticket_type } => word("ticket_type", ticket_type)?,
            Action::SetTicketStatus { status } | Action::SetReviewStatus { status } => {
                word("status", status)?
            }
            Action::AssignAgent { agent_id } => word("agent_id", agent_id)?,
            Action::AddTicketTag { tag } | Action::AddReviewTag { tag } => word("tag", tag)?,
            Action::CloseCase { resolution } => word("resolution", resolution)?,
            Action::OpenCase { assignee } => match assignee {
                CaseAssignee::Agent { agent_id } => word("assignee.agent_id", agent_id)?,
                CaseAssignee::FromField { path } => {
                    if path.is_empty()
                        || path.len() > 200
                        || !path.split('.').all(|p| {
                            !p.is_empty()
                                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        })
                    {
                        return Err(RuleError::at(
                            at("assignee.path"),
                            "must be a dotted path into the event, such as ticket.agent.id",
                        ));
                    }
                }
                CaseAssignee::TicketAgent | CaseAssignee::Unassigned => {}
            },
            Action::ReopenTicket {} | Action::SendRatingRequest {} => {}
            Action::PostWebhook { url, secret } => {
                let ok = (url.starts_with("https://") || url.starts_with("http://"))
                    && url.len() <= 2000
                    && !url.chars().any(|c| c.is_whitespace() || c.is_control())
                    && url.split("://").nth(1).is_some_and(|rest| {
                        !rest.is_empty() && !rest.starts_with('/') && !rest.starts_with('@')
                    });
                if !ok {
                    return Err(RuleError::at(
                        at("url"),
                        "must be an http:// or https:// URL",
                    ));
                }
                if let Err(e) = crate::helpdesk::validate_url(url) {
                    return Err(RuleError::at(at("url"), e.to_string()));
                }
                // Empty: keep the stored one (checked when the rule is written).
                if !secret.is_empty() && (secret.len() < 16 || secret.len() > 256) {
                    return Err(RuleError::at(
                        at("secret"),
                        "must be 16 to 256 characters (it signs the request)",
                    ));
                }
            }
        }
    }
    Ok(())
}

impl RuleDraft {
    /// Webhook actions that give no secret take the one `stored` holds for the same URL.
    pub fn keep_secrets_of(&mut self, stored: &Rule) {
        for action in &mut self.actions {
            if let Action::PostWebhook { url, secret } = action
                && secret.is_empty()
                && let Some(old) = stored.actions.iter().find_map(|a| match a {
                    Action::PostWebhook { url: u, secret: s } if u == url => Some(s.clone()),
                    _ => None,
                })
            {
                *secret = old;
            }
        }
    }

    /// A webhook action still without a secret, as a refusal naming it.
    pub fn missing_secret(&self) -> Option<RuleError> {
        self.actions.iter().enumerate().find_map(|(i, a)| match a {
            Action::PostWebhook { secret, .. } if secret.is_empty() => Some(RuleError::at(
                format!("actions[{i}].secret"),
                "a webhook needs a secret of 16 to 256 characters (it signs the request)",
            )),
            _ => None,
        })
    }

    /// A new rule from this draft.
    pub fn into_rule(self, id: RuleId, now: DateTime<Utc>) -> Rule {
        Rule {
            id,
            name: self.name,
            description: self.description,
            enabled: self.enabled,
            trigger: self.trigger,
            conditions: self.conditions,
            actions: self.actions,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

/// The rule as the admin API shows it: `parse_draft`'s shape, webhook secrets replaced by
/// `"secret_set": true`.
pub fn rule_json(rule: &Rule) -> Json {
    let mut j = rule_record_json(rule);
    for (i, action) in rule.actions.iter().enumerate() {
        if matches!(action, Action::PostWebhook { .. }) {
            j["actions"][i]
                .as_object_mut()
                .expect("actions are objects")
                .remove("secret");
            j["actions"][i]["secret_set"] = json!(true);
        }
    }
    j
}

/// The rule as stored, secrets included.
fn rule_record_json(rule: &Rule) -> Json {
    json!({
        "id": rule.id,
        "name": rule.name,
        "description": rule.description,
        "enabled": rule.enabled,
        "trigger": rule.trigger,
        "conditions": group_json(&rule.conditions),
        "actions": rule.actions,
        "version": rule.version,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    })
}

pub fn group_json(group: &ConditionGroup) -> Json {
    let items: Vec<Json> = group
        .items
        .iter()
        .map(|item| match item {
            ConditionNode::Group(g) => group_json(g),
            ConditionNode::Condition(c) => condition_json(c),
        })
        .collect();
    match group.combinator {
        Combinator::All => json!({ "all": items }),
        Combinator::Any => json!({ "any": items }),
    }
}

pub fn condition_json(c: &Condition) -> Json {
    let mut out = json!({ "field": c.field.as_str(), "op": c.op.as_str() });
    let value = operand_json(&c.value);
    if !value.is_null() {
        out["value"] = value;
    }
    out
}

pub fn operand_json(value: &Operand) -> Json {
    match value {
        Operand::None => Json::Null,
        Operand::Text(s) => json!(s),
        Operand::Texts(v) => json!(v),
        Operand::Number(n) => number_json(*n),
        Operand::Numbers(v) => Json::Array(v.iter().map(|n| number_json(*n)).collect()),
        Operand::Range(a, b) => json!([number_json(*a), number_json(*b)]),
        Operand::Bool(b) => json!(b),
    }
}

fn number_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        rule_record_json(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Rule {
    /// Stored rules go through the same validation as new ones.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Straight from the stored JSON: paths matter only for what admins send.
        let raw = RawRule::deserialize(d)?;
        let (draft, stamps) = draft_from_raw(raw).map_err(serde::de::Error::custom)?;
        let id = stamps
            .id
            .ok_or_else(|| serde::de::Error::custom("a stored rule has an id"))?;
        let created_at = stamps.created_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        Ok(Rule {
            id,
            name: draft.name,
            description: draft.description,
            enabled: draft.enabled,
            trigger: draft.trigger,
            conditions: draft.conditions,
            actions: draft.actions,
            version: draft.version.unwrap_or(1),
            created_at,
            updated_at: stamps.updated_at.unwrap_or(created_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> RuleError {
        parse_draft(json.as_bytes()).unwrap_err()
    }

    const ACTIONS: &str = r#""actions":[{"type":"add_internal_note","body":"Negative review: {{ review.comment }}"}]"#;

    #[test]
    fn a_full_rule_round_trips_through_json() {
        let json = format!(
            r#"{{"name":"Negative","trigger":"review_received","conditions":{{"all":[
                {{"field":"rating.csat","op":"is","value":"Negative"}},
                {{"any":[{{"field":"review.comment","op":"contains","value":"refund"}},{{"field":"rating.nps","op":"between","value":[0,6]}}]}},
                {{"field":"agent","op":"is_set"}}]}},{ACTIONS}}}"#
        );
        let draft = parse_draft(json.as_bytes()).unwrap();
        let rule = draft.into_rule(RuleId::new(), Utc::now());
        let back: Rule = serde_json::from_value(rule_json(&rule)).unwrap();
        assert_eq!(back, rule);
        // Choices are stored lower-case, as the engine compares them.
        assert_eq!(
            rule_json(&rule)["conditions"]["all"][0]["value"],
            "negative"
        );
    }

    #[test]
    fn errors_name_the_offending_path() {
        let cases = [
            (
                format!(r#"{{"name":"x","trigger":"review_received","conditions":{{"all":[{{"field":"rating.csat","op":"is","value":"good"}}]}},{ACTIONS}}}"#),
                "conditions.all[0].value",
                "not one of positive, neutral, negative",
            ),
            (
                format!(r#"{{"name":"x","trigger":"review_received","conditions":{{"all":[{{"field":"rating.colour","op":"is","value":"x"}}]}},{ACTIONS}}}"#),
                "conditions.all[0].field",
                "unknown field 'rating.colour'",
            ),
            (
                format!(r#"{{"name":"x","trigger":"review_received","conditions":{{"any":[{{"field":"ticket.subject","op":"is"}},{{"field":"rating.nps","op":"contains","value":"5"}}]}},{ACTIONS}}}"#),
                "conditions.any[0].value",
                "missing value",
            ),
            (
                format!(r#"{{"name":"x","trigger":"review_received","conditions":{{"any":[{{"field":"rating.nps","op":"contains","value":"5"}}]}},{ACTIONS}}}"#),
                "conditions.any[0].op",
                "'contains' does not apply to rating.nps",
            ),
            (
                format!(r#"{{"name":"x","trigger":"review_received","conditions":{{"all":[{{"field":"rating.nps","op":"greater_than","value":11}}]}},{ACTIONS}}}"#),
                "conditions.all[0].value",
                "from 0 to 10, got 11",
            ),
            (
                format!(r#"{{"name":"x","trigger":"review_received","conditions":{{"all":[{{"field":"review.comment","op":"matches","value":"(unclosed"}}]}},{ACTIONS}}}"#),
                "conditions.all[0].value",
                "not a valid regular expression",
            ),
            (
                format!(r#"{{"name":"x","trigger":"review_received","conditions":{{"all":[{{"all":[{{"any":[]}}]}}]}},{ACTIONS}}}"#),
                "conditions.all[0].all[0]",
                "nest one level",
            ),
            (
                r#"{"name":"x","trigger":"review_received","actions":[]}"#.to_string(),
                "actions",
                "at least one action",
            ),
            (
                r#"{"name":"x","trigger":"review_received","actions":[{"type":"send_email","to":["not-an-address"],"subject":"s","body":"b"}]}"#.to_string(),
                "actions[0].to[0]",
                "not a valid email address",
            ),
            (
                r#"{"name":"x","trigger":"review_received","actions":[{"type":"send_email","to":["a@b.co"],"subject":"{{ oops","body":"b"}]}"#.to_string(),
                "actions[0].subject",
                "",
            ),
            (
                format!(r#"{{"name":"x","trigger":"sometimes",{ACTIONS}}}"#),
                "trigger",
                "unknown variant `sometimes`",
            ),
            (
                format!(r#"{{"name":"x","trigger":"review_received","colour":"red",{ACTIONS}}}"#),
                "colour",
                "unknown field `colour`",
            ),
            (
                format!(r#"{{"name":"  ","trigger":"review_received",{ACTIONS}}}"#),
                "name",
                "1 to 200",
            ),
        ];
        for (json, path, message) in cases {
            let e = err(&json);
            assert_eq!(e.path, path, "{json}\n→ {e}");
            assert!(e.message.contains(message), "{json}\n→ {e}");
        }
    }
}
