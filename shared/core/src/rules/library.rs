//! Ready-made rules a tenant can add as they are or adapt: `GET /admin/v1/rule-templates` lists
//! them, `POST /admin/v1/rule-templates/{id}` adds one (disabled until switched on, unless the
//! body says `"enabled": true`).

use serde_json::{Value as Json, json};

use super::parse::{RuleDraft, RuleError, parse_draft};

pub struct RuleTemplate {
    pub id: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// Parameters the tenant must give (`to`: the addresses to email).
    pub requires: &'static [&'static str],
    rule: fn() -> Json,
}

impl RuleTemplate {
    /// The template's rule as JSON (with `to` empty where the tenant names the addresses).
    pub fn rule(&self) -> Json {
        (self.rule)()
    }

    pub fn summary(&self) -> Json {
        json!({
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "requires": self.requires,
            "rule": self.rule(),
        })
    }

    /// The template's rule with the tenant's changes: top-level fields of `overrides` replace
    /// the template's, and `to` (a list of addresses) goes to every email action.
    pub fn instantiate(&self, overrides: &Json) -> Result<RuleDraft, RuleError> {
        let mut rule = self.rule();
        let empty = serde_json::Map::new();
        let overrides = match overrides {
            Json::Null => &empty,
            Json::Object(map) => map,
            _ => {
                return Err(RuleError {
                    path: "body".into(),
                    message: "must be a JSON object of the fields to change".into(),
                });
            }
        };
        for required in self.requires {
            if !overrides.contains_key(*required) {
                return Err(RuleError {
                    path: (*required).into(),
                    message: format!(
                        "this template needs `{required}`: {}",
                        match *required {
                            "to" => "the email addresses to alert, as a list",
                            _ => "see the template's description",
                        }
                    ),
                });
            }
        }
        for (key, value) in overrides {
            if key == "to" {
                if let Some(actions) = rule["actions"].as_array_mut() {
                    for action in actions.iter_mut().filter(|a| a["type"] == "send_email") {
                        action["to"] = value.clone();
                    }
                }
            } else {
                rule[key] = value.clone();
            }
        }
        let bytes = serde_json::to_vec(&rule).expect("JSON serialises");
        parse_draft(&bytes)
    }
}

pub fn templates() -> &'static [RuleTemplate] {
    &TEMPLATES
}

pub fn find(id: &str) -> Option<&'static RuleTemplate> {
    TEMPLATES.iter().find(|t| t.id == id)
}

static TEMPLATES: [RuleTemplate; 6] = [
    RuleTemplate {
        id: "alert-managers-on-negative-review",
        title: "Alert managers on a negative review",
        description: "Emails the addresses you give (and the ticket's agent) when a CSAT review is negative or an NPS answer is a detractor.",
        requires: &["to"],
        rule: || {
            json!({
                "name": "Alert managers on a negative review",
                "description": "A bad CSAT answer or an NPS detractor: the managers hear of it at once.",
                "enabled": false,
                "trigger": "review_received",
                "conditions": {"any": [
                    {"field": "rating.csat", "op": "is", "value": "negative"},
                    {"field": "rating.nps_band", "op": "is", "value": "detractor"}
                ]},
                "actions": [{
                    "type": "send_email",
                    "to": [],
                    "to_ticket_agent": true,
                    "subject": "Negative review from {{ customer.name }} on ticket {{ ticket.id }}",
                    "body": "{{ customer.name }} rated ticket {{ ticket.id }} ({{ ticket.subject }}) {{ rating.label }}.\n{% if comment %}\nThey wrote: {{ comment }}\n{% endif %}\nAgent: {{ agent.name }}\n{{ ticket.url }}\n"
                }]
            })
        },
    },
    RuleTemplate {
        id: "reopen-on-negative-review",
        title: "Reopen the ticket on a negative review",
        description: "Reopens the ticket and leaves an internal note with the rating and comment.",
        requires: &[],
        rule: || {
            json!({
                "name": "Reopen the ticket on a negative review",
                "description": "",
                "enabled": false,
                "trigger": "review_received",
                "conditions": {"all": [{"field": "rating.csat", "op": "is", "value": "negative"}]},
                "actions": [
                    {"type": "reopen_ticket"},
                    {"type": "add_internal_note", "body": "closedloop: {{ customer.name }} rated this ticket {{ rating.label }}.{% if comment %} Comment: {{ comment }}{% endif %}"}
                ]
            })
        },
    },
    RuleTemplate {
        id: "case-for-silent-detractor",
        title: "Open a case for a detractor with no comment",
        description: "A detractor who said nothing needs a call: opens a case for the ticket's agent.",
        requires: &[],
        rule: || {
            json!({
                "name": "Open a case for a detractor with no comment",
                "description": "",
                "enabled": false,
                "trigger": "nps_response_received",
                "conditions": {"all": [
                    {"field": "rating.nps_band", "op": "is", "value": "detractor"},
                    {"field": "review.has_comment", "op": "is", "value": false}
                ]},
                "actions": [{"type": "open_case", "assignee": {"kind": "ticket_agent"}}]
            })
        },
    },
    RuleTemplate {
        id: "thank-promoters",
        title: "Thank promoters",
        description: "Replies to promoters (NPS 9-10) through the helpdesk with a thank-you.",
        requires: &[],
        rule: || {
            json!({
                "name": "Thank promoters",
                "description": "",
                "enabled": false,
                "trigger": "nps_response_received",
                "conditions": {"all": [{"field": "rating.nps_band", "op": "is", "value": "promoter"}]},
                "actions": [{"type": "send_customer_message", "body": "Hi {{ customer.name }},\n\nthank you for your {{ rating.value }}! It means a lot to the team{% if agent.name %}, and to {{ agent.name }} in particular{% endif %}.\n"}]
            })
        },
    },
    RuleTemplate {
        id: "remind-unanswered-after-24h",
        title: "Remind about an unanswered ticket after 24 hours",
        description: "Checked every hour: emails the ticket's agent once when an open ticket has had no answer for a day.",
        requires: &[],
        rule: || {
            json!({
                "name": "Remind about an unanswered ticket after 24 hours",
                "description": "",
                "enabled": false,
                "trigger": "time_based",
                "conditions": {"all": [
                    {"field": "ticket.answered", "op": "is", "value": false},
                    {"field": "ticket.age_hours", "op": "greater_than", "value": 24}
                ]},
                "actions": [{
                    "type": "email_ticket_agents",
                    "subject": "Ticket {{ ticket.id }} has waited a day for an answer",
                    "body": "{{ customer.name }} opened ticket {{ ticket.id }} ({{ ticket.subject }}) more than 24 hours ago and has no answer yet.\n{{ ticket.url }}\n"
                }]
            })
        },
    },
    RuleTemplate {
        id: "detractor-alert-on-new-ticket",
        title: "Alert on new tickets from a detractor account",
        description: "When a customer account currently flagged as a detractor opens a ticket, emails the assigned technician and the addresses you give.",
        requires: &["to"],
        rule: || {
            json!({
                "name": "Detractor account opened a ticket",
                "description": "Handle with care: this account's latest NPS answer is a detractor.",
                "enabled": false,
                "trigger": "ticket_created",
                "conditions": {"all": [{"field": "account.flagged_detractor", "op": "is", "value": true}]},
                "actions": [{
                    "type": "send_email",
                    "to": [],
                    "to_ticket_agent": true,
                    "subject": "Detractor alert: new ticket {{ ticket.id }} from {{ customer.name }}",
                    "body": "{{ customer.name }}'s account is flagged as a detractor (latest NPS answer). They just opened ticket {{ ticket.id }}: {{ ticket.subject }}.\n{{ ticket.url }}\n"
                }]
            })
        },
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_a_valid_rule_once_its_parameters_are_given() {
        for t in templates() {
            let params = if t.requires.contains(&"to") {
                json!({"to": ["lead@acme.example"]})
            } else {
                json!({})
            };
            let draft = t
                .instantiate(&params)
                .unwrap_or_else(|e| panic!("{}: {e}", t.id));
            assert!(!draft.enabled, "{} starts disabled", t.id);
        }
    }

    #[test]
    fn a_template_that_needs_addresses_says_so() {
        let t = find("alert-managers-on-negative-review").unwrap();
        let e = t.instantiate(&json!({})).unwrap_err();
        assert_eq!(e.path, "to");
        let e = t.instantiate(&json!({"to": ["nope"]})).unwrap_err();
        assert_eq!(e.path, "actions[0].to[0]");
    }
}
