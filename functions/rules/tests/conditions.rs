//! Conditions as admins write them, against facts taken from a real event: `is` and `is not`
//! (or their nearest equivalents) for every field, the other operators, and a property test
//! that the indexed engine agrees with a plain reading of the rules.

use chrono::{DateTime, Utc};
use closedloop_core::event::{EventEnvelope, EventType};
use closedloop_core::ids::{RuleId, TenantId};
use closedloop_core::rules::model::{
    Combinator, Condition, ConditionGroup, ConditionNode, Field, FieldKind, Op, Operand,
};
use closedloop_core::rules::{
    Action, Fact, FactContext, Facts, Rule, RuleSet, Trigger, parse_draft,
};
use proptest::prelude::*;
use serde_json::json;

/// A Wednesday, 14:30 in Warsaw (13:30 UTC).
fn at() -> DateTime<Utc> {
    "2026-11-25T13:30:00Z".parse().unwrap()
}

/// A customer's NPS answer with a comment, on a chat ticket from a flagged account.
fn event() -> EventEnvelope {
    EventEnvelope::new_root(
        TenantId::parse("acme").unwrap(),
        EventType::ReviewReceived,
        at(),
        json!({
            "review": {
                "tenant_id": "acme", "ticket_id": "1001",
                "rating": {"kind": "nps", "value": 3},
                "comment": "The Refund took three weeks",
                "agent_id": "a-alice", "contact_id": "c-bob", "account_id": "acc-north",
                "recorded_at": "2026-11-25T13:00:00Z", "updated_at": "2026-11-25T13:00:00Z",
                "tags": ["Escalated"], "status": "open"
            },
            "ticket": {
                "id": "1001", "subject": "Printer on floor 2 jams", "status": "pending",
                "agent": {"id": "a-alice", "name": "Alice", "email": "alice@acme.example", "email_notifications": true},
                "contact": {"id": "c-bob", "name": "Bob Stone", "email": "bob@northwind.example",
                    "account": {"id": "acc-north", "name": "Northwind"}},
                "channel": "chat", "tags": ["hardware", "VIP"], "ticket_type": "incident",
                "inbox": "Support EU", "inbox_group": "Tier 1", "integration": "zendesk",
                "created_at": "2026-11-24T13:30:00Z",
                "last_customer_message_at": "2026-11-25T11:30:00Z",
                "answered": false,
                "updated_at": "2026-11-25T13:00:00Z"
            },
            "message": {"body": "Still broken, please call me", "from": "bob.stone@northwind.example"},
            "tag": "urgent"
        }),
    )
}

fn facts() -> Facts {
    let ctx = FactContext {
        ticket: None,
        time_zone: Some(chrono_tz::Europe::Warsaw),
        detractor_max_score: 6,
        account_flagged_detractor: Some(true),
        within_business_hours: Some(true),
        agents_in_working_hours: Some(vec!["a-alice".into()]),
    };
    Facts::from_event(&event(), at(), &ctx)
}

/// Does a rule with just this condition match the event?
fn matches(condition: serde_json::Value) -> bool {
    let json = json!({
        "name": "probe", "trigger": "review_received",
        "conditions": {"all": [condition.clone()]},
        "actions": [{"type": "add_internal_note", "body": "x"}]
    });
    let draft =
        parse_draft(json.to_string().as_bytes()).unwrap_or_else(|e| panic!("{condition}: {e}"));
    let set = RuleSet::compile([draft.into_rule(RuleId::new(), at())]);
    let matched = !set
        .evaluate(Trigger::ReviewReceived, &facts())
        .matched
        .is_empty();
    // The indexed engine must agree with a rule the index cannot use (an `any` group).
    let json = json!({
        "name": "probe", "trigger": "review_received",
        "conditions": {"any": [condition.clone()]},
        "actions": [{"type": "add_internal_note", "body": "x"}]
    });
    let draft = parse_draft(json.to_string().as_bytes()).unwrap();
    let set = RuleSet::compile([draft.into_rule(RuleId::new(), at())]);
    assert_eq!(
        matched,
        !set.evaluate(Trigger::ReviewReceived, &facts())
            .matched
            .is_empty(),
        "{condition}"
    );
    matched
}

fn c(field: &str, op: &str, value: serde_json::Value) -> serde_json::Value {
    if value.is_null() {
        json!({"field": field, "op": op})
    } else {
        json!({"field": field, "op": op, "value": value})
    }
}

/// For every field: the value the event has, and one it does not.
#[test]
fn is_and_is_not_hold_for_every_field() {
    let cases: &[(&str, serde_json::Value, serde_json::Value)] = &[
        ("rating.nps", json!(3), json!(9)),
        ("rating.nps_band", json!("detractor"), json!("promoter")),
        ("review.has_comment", json!(true), json!(false)),
        (
            "review.comment",
            json!("the refund took three weeks"),
            json!("great"),
        ),
        ("review.status", json!("OPEN"), json!("done")),
        ("ticket.channel", json!("chat"), json!("email")),
        ("ticket.type", json!("incident"), json!("question")),
        ("ticket.status", json!("pending"), json!("closed")),
        ("ticket.inbox", json!("support eu"), json!("Sales")),
        ("ticket.inbox_group", json!("Tier 1"), json!("Tier 2")),
        ("ticket.integration", json!("zendesk"), json!("freshdesk")),
        (
            "ticket.subject",
            json!("Printer on floor 2 jams"),
            json!("Printer"),
        ),
        ("event.tag", json!("urgent"), json!("later")),
        ("customer.name", json!("bob stone"), json!("Bob")),
        (
            "sender.email",
            json!("bob.stone@northwind.example"),
            json!("bob@northwind.example"),
        ),
        (
            "message.body",
            json!("Still broken, please call me"),
            json!("thanks"),
        ),
        ("agent", json!("a-alice"), json!("a-mark")),
        ("account", json!("acc-north"), json!("acc-contoso")),
        ("account.flagged_detractor", json!(true), json!(false)),
        ("time.weekday", json!("wednesday"), json!("tuesday")),
        ("time.hour", json!(14), json!(13)),
        ("time.business_hours", json!(true), json!(false)),
        (
            "time.agent_working_hours",
            json!("a-alice"),
            json!("a-mark"),
        ),
        ("ticket.age_hours", json!(24), json!(23)),
        ("ticket.hours_since_customer_reply", json!(2), json!(3)),
        ("ticket.answered", json!(false), json!(true)),
    ];
    let mut covered: Vec<&str> = cases.iter().map(|c| c.0).collect();
    for (field, has, hasnt) in cases {
        assert!(matches(c(field, "is", has.clone())), "{field} is {has}");
        assert!(
            !matches(c(field, "is", hasnt.clone())),
            "{field} is {hasnt}"
        );
        assert!(
            !matches(c(field, "is_not", has.clone())),
            "{field} is_not {has}"
        );
        assert!(
            matches(c(field, "is_not", hasnt.clone())),
            "{field} is_not {hasnt}"
        );
    }
    // Tag fields have no `is`: contains / not_contains instead.
    for (field, has, hasnt) in [
        ("review.tags", "escalated", "billing"),
        ("ticket.tags", "vip", "billing"),
    ] {
        assert!(
            matches(c(field, "contains", json!(has))),
            "{field} contains {has}"
        );
        assert!(!matches(c(field, "contains", json!(hasnt))));
        assert!(!matches(c(field, "not_contains", json!(has))));
        assert!(matches(c(field, "not_contains", json!(hasnt))));
        covered.push(field);
    }
    // rating.csat: this event is NPS, so the CSAT field is not set.
    assert!(!matches(c("rating.csat", "is", json!("negative"))));
    assert!(matches(c("rating.csat", "is_not", json!("negative"))));
    assert!(matches(c("rating.csat", "is_not_set", json!(null))));
    covered.push("rating.csat");
    covered.sort();
    let mut all: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
    all.sort();
    assert_eq!(covered, all, "every field has a case");
}

#[test]
fn the_other_operators_read_as_written() {
    // Text.
    assert!(matches(c("review.comment", "contains", json!("REFUND"))));
    assert!(!matches(c(
        "review.comment",
        "not_contains",
        json!("refund")
    )));
    assert!(matches(c(
        "ticket.subject",
        "is_any_of",
        json!(["Scanner", "printer on floor 2 jams"])
    )));
    assert!(matches(c(
        "ticket.subject",
        "matches",
        json!("^printer .* \\d jams$")
    )));
    assert!(!matches(c("ticket.subject", "matches", json!("^scanner"))));
    assert!(matches(c("review.comment", "is_set", json!(null))));
    assert!(!matches(c("review.comment", "is_not_set", json!(null))));
    // Numbers.
    assert!(matches(c("rating.nps", "less_than", json!(7))));
    assert!(!matches(c("rating.nps", "greater_than", json!(3))));
    assert!(matches(c("rating.nps", "between", json!([0, 3]))));
    assert!(!matches(c("rating.nps", "between", json!([4, 6]))));
    assert!(matches(c("rating.nps", "is_any_of", json!([1, 2, 3]))));
    assert!(matches(c("ticket.age_hours", "greater_than", json!(23.5))));
    assert!(matches(c(
        "ticket.hours_since_customer_reply",
        "between",
        json!([1.5, 2.5])
    )));
    // Choices and ids.
    assert!(matches(c(
        "rating.nps_band",
        "is_any_of",
        json!(["passive", "detractor"])
    )));
    assert!(matches(c(
        "agent",
        "is_any_of",
        json!(["a-mark", "A-Alice"])
    )));
    assert!(matches(c(
        "time.weekday",
        "is_any_of",
        json!(["monday", "wednesday"])
    )));
    // Tags.
    assert!(matches(c(
        "ticket.tags",
        "is_any_of",
        json!(["billing", "hardware"])
    )));
    assert!(!matches(c("review.tags", "is_any_of", json!(["billing"]))));
    assert!(matches(c("review.tags", "is_set", json!(null))));
}

#[test]
fn the_detractor_band_follows_the_tenant_threshold() {
    let mut e = event();
    e.data["review"]["rating"]["value"] = json!(7);
    let band = |max| {
        let ctx = FactContext {
            detractor_max_score: max,
            ..FactContext::default()
        };
        Facts::from_event(&e, at(), &ctx)
            .get(Field::RatingNpsBand)
            .cloned()
    };
    assert_eq!(band(6), Some(Fact::text("passive")));
    assert_eq!(band(7), Some(Fact::text("detractor")));
}

#[test]
fn the_audit_names_the_first_condition_that_failed_and_what_the_event_had() {
    let json = json!({
        "name": "Detractor on chat", "trigger": "review_received",
        "conditions": {"all": [
            {"field": "rating.nps_band", "op": "is", "value": "detractor"},
            {"field": "ticket.channel", "op": "is", "value": "email"},
            {"field": "rating.nps", "op": "less_than", "value": 2}
        ]},
        "actions": [{"type": "add_internal_note", "body": "x"}]
    });
    let rule = parse_draft(json.to_string().as_bytes())
        .unwrap()
        .into_rule(RuleId::new(), at());
    let set = RuleSet::compile([rule]);
    let facts = facts();
    let evaluation = set.evaluate(Trigger::ReviewReceived, &facts);
    let outcomes = set.explain(Trigger::ReviewReceived, &facts, &evaluation);
    assert_eq!(outcomes.len(), 1);
    let failed = outcomes[0].failed.as_ref().expect("it did not match");
    assert_eq!(failed["path"], "conditions.all[1]");
    assert_eq!(failed["actual"], "chat");
    assert_eq!(failed["value"], "email");
}

// ── Property: the indexed engine equals a plain reading of the rules ─────────────────────────

const STATUSES: &[&str] = &["open", "pending", "closed"];
const TAGS: &[&str] = &["vip", "billing", "bug"];
const AGENTS: &[&str] = &["a1", "a2", "a3"];
const CSAT: &[&str] = &["positive", "neutral", "negative"];
const BANDS: &[&str] = &["detractor", "passive", "promoter"];

/// The fields the property draws from, each with a small domain so rules often match.
fn field_domain(field: Field) -> &'static [&'static str] {
    match field {
        Field::RatingCsat => CSAT,
        Field::RatingNpsBand => BANDS,
        Field::TicketStatus => STATUSES,
        Field::TicketTags => TAGS,
        Field::Agent => AGENTS,
        _ => &[],
    }
}

const FIELDS: &[Field] = &[
    Field::RatingCsat,
    Field::RatingNps,
    Field::RatingNpsBand,
    Field::ReviewHasComment,
    Field::TicketStatus,
    Field::TicketTags,
    Field::Agent,
    Field::Hour,
    Field::TicketAgeHours,
];

fn number_domain(field: Field) -> std::ops::RangeInclusive<u32> {
    match field {
        Field::RatingNps => 0..=10,
        Field::Hour => 0..=23,
        _ => 0..=48,
    }
}

fn condition_strategy() -> impl Strategy<Value = Condition> {
    (
        prop::sample::select(FIELDS),
        any::<prop::sample::Index>(),
        any::<[u32; 4]>(),
    )
        .prop_map(|(field, pick, raw)| {
            let ops = Op::allowed(field.kind());
            let ops: Vec<Op> = ops.iter().copied().filter(|o| *o != Op::Matches).collect();
            let op = ops[pick.index(ops.len())];
            let text = |n: u32| {
                let d = field_domain(field);
                d[n as usize % d.len()].to_string()
            };
            let number = |n: u32| {
                let r = number_domain(field);
                (r.start() + n % (r.end() - r.start() + 1)) as f64
            };
            let value = match (field.kind(), op) {
                (_, Op::IsSet | Op::IsNotSet) => Operand::None,
                (FieldKind::Bool, _) => Operand::Bool(raw[0] % 2 == 0),
                (FieldKind::Number { .. }, Op::Between) => {
                    let (a, b) = (number(raw[0]), number(raw[1]));
                    Operand::Range(a.min(b), a.max(b))
                }
                (FieldKind::Number { .. }, Op::IsAnyOf) => {
                    Operand::Numbers(vec![number(raw[0]), number(raw[1])])
                }
                (FieldKind::Number { .. }, _) => Operand::Number(number(raw[0])),
                (_, Op::IsAnyOf) => Operand::Texts(vec![text(raw[0]), text(raw[1])]),
                _ => Operand::Text(text(raw[0])),
            };
            Condition { field, op, value }
        })
}

fn group_strategy() -> impl Strategy<Value = ConditionGroup> {
    let leaf = condition_strategy().prop_map(ConditionNode::Condition);
    let inner = (
        prop::bool::ANY,
        prop::collection::vec(condition_strategy(), 0..3),
    )
        .prop_map(|(all, items)| {
            ConditionNode::Group(ConditionGroup {
                combinator: if all {
                    Combinator::All
                } else {
                    Combinator::Any
                },
                items: items.into_iter().map(ConditionNode::Condition).collect(),
            })
        });
    (
        prop::bool::weighted(0.7),
        prop::collection::vec(prop_oneof![3 => leaf, 1 => inner], 0..4),
    )
        .prop_map(|(all, items)| ConditionGroup {
            combinator: if all {
                Combinator::All
            } else {
                Combinator::Any
            },
            items,
        })
}

const TRIGGERS: &[Trigger] = &[Trigger::ReviewReceived, Trigger::TicketCreated];

fn rule_strategy() -> impl Strategy<Value = Rule> {
    (
        prop::sample::select(TRIGGERS),
        group_strategy(),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(trigger, conditions, enabled)| Rule {
            id: RuleId::new(),
            name: "generated".into(),
            description: String::new(),
            enabled,
            trigger,
            conditions,
            actions: vec![Action::ReopenTicket {}],
            version: 1,
            created_at: at(),
            updated_at: at(),
        })
}

fn facts_strategy() -> impl Strategy<Value = Facts> {
    prop::collection::vec((prop::bool::weighted(0.8), any::<[u32; 3]>()), FIELDS.len()).prop_map(
        |raw| {
            let mut facts = Facts::default();
            for (field, (present, n)) in FIELDS.iter().zip(raw) {
                if !present {
                    continue;
                }
                let fact = match field.kind() {
                    FieldKind::Bool => Fact::Bool(n[0] % 2 == 0),
                    FieldKind::Number { .. } => {
                        let r = number_domain(*field);
                        Fact::Number((r.start() + n[0] % (r.end() - r.start() + 1)) as f64)
                    }
                    FieldKind::Tags => {
                        let picked: Vec<&str> = TAGS
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| n[1] >> i & 1 == 1)
                            .map(|(_, t)| *t)
                            .collect();
                        Fact::list(picked)
                    }
                    _ => {
                        let d = field_domain(*field);
                        // Mixed case: comparisons ignore it.
                        let v = d[n[0] as usize % d.len()];
                        Fact::text(&if n[2] % 2 == 0 {
                            v.to_uppercase()
                        } else {
                            v.to_string()
                        })
                    }
                };
                facts.set(*field, Some(fact));
            }
            facts
        },
    )
}

/// The reference: each condition read straight from its definition.
fn reference_condition(c: &Condition, facts: &Facts) -> bool {
    let fact = facts.get(c.field);
    let lower = |s: &String| s.to_lowercase();
    let eq_text = |v: &String| matches!(fact, Some(Fact::Text { original, .. }) if original.to_lowercase() == lower(v));
    let has_tag = |v: &String| matches!(fact, Some(Fact::List(items)) if items.iter().any(|i| *i == lower(v)));
    let num = match fact {
        Some(Fact::Number(n)) => Some(*n),
        _ => None,
    };
    let is_tags = c.field.kind() == FieldKind::Tags;
    match (&c.op, &c.value) {
        (Op::IsSet, _) => match fact {
            None => false,
            Some(Fact::List(items)) => !items.is_empty(),
            Some(_) => true,
        },
        (Op::IsNotSet, _) => !reference_condition(
            &Condition {
                op: Op::IsSet,
                ..c.clone()
            },
            facts,
        ),
        (Op::Is, Operand::Bool(b)) => fact == Some(&Fact::Bool(*b)),
        (Op::IsNot, Operand::Bool(b)) => fact != Some(&Fact::Bool(*b)),
        (Op::Is, Operand::Number(n)) => num == Some(*n),
        (Op::IsNot, Operand::Number(n)) => num != Some(*n),
        (Op::Is, Operand::Text(v)) => eq_text(v),
        (Op::IsNot, Operand::Text(v)) => !eq_text(v),
        (Op::Contains, Operand::Text(v)) if is_tags => has_tag(v),
        (Op::NotContains, Operand::Text(v)) if is_tags => !has_tag(v),
        (Op::Contains, Operand::Text(v)) => {
            matches!(fact, Some(Fact::Text { original, .. }) if original.to_lowercase().contains(&lower(v)))
        }
        (Op::NotContains, Operand::Text(v)) => {
            !matches!(fact, Some(Fact::Text { original, .. }) if original.to_lowercase().contains(&lower(v)))
        }
        (Op::IsAnyOf, Operand::Texts(vs)) if is_tags => vs.iter().any(has_tag),
        (Op::IsAnyOf, Operand::Texts(vs)) => vs.iter().any(eq_text),
        (Op::IsAnyOf, Operand::Numbers(ns)) => num.is_some_and(|n| ns.contains(&n)),
        (Op::GreaterThan, Operand::Number(v)) => num.is_some_and(|n| n > *v),
        (Op::LessThan, Operand::Number(v)) => num.is_some_and(|n| n < *v),
        (Op::Between, Operand::Range(a, b)) => num.is_some_and(|n| *a <= n && n <= *b),
        (op, v) => panic!("the generator made {op:?} {v:?}"),
    }
}

fn reference_group(g: &ConditionGroup, facts: &Facts) -> bool {
    let item = |n: &ConditionNode| match n {
        ConditionNode::Condition(c) => reference_condition(c, facts),
        ConditionNode::Group(g) => reference_group(g, facts),
    };
    match g.combinator {
        Combinator::All => g.items.iter().all(item),
        Combinator::Any => g.items.is_empty() || g.items.iter().any(item),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_indexed_engine_agrees_with_the_reference(
        rules in prop::collection::vec(rule_strategy(), 1..40),
        facts in facts_strategy(),
    ) {
        let set = RuleSet::compile(rules.clone());
        for trigger in TRIGGERS {
            let evaluation = set.evaluate(*trigger, &facts);
            let mut engine: Vec<RuleId> = evaluation.matched.iter().map(|p| set.rule(*p).id).collect();
            let mut reference: Vec<RuleId> = rules
                .iter()
                .filter(|r| r.enabled && r.trigger == *trigger && reference_group(&r.conditions, &facts))
                .map(|r| r.id)
                .collect();
            engine.sort();
            reference.sort();
            prop_assert_eq!(&engine, &reference);
            // Every rule that did not match is explained by a condition that really fails.
            for outcome in set.explain(*trigger, &facts, &evaluation) {
                prop_assert_eq!(outcome.matched, reference.contains(&outcome.rule_id));
                if let Some(failed) = &outcome.failed
                    && failed.get("field").is_some()
                {
                    let rule = rules.iter().find(|r| r.id == outcome.rule_id).unwrap();
                    let path = failed["path"].as_str().unwrap();
                    let condition = condition_at(&rule.conditions, path).expect("the path names a condition");
                    prop_assert!(!reference_condition(condition, &facts), "{} holds", path);
                }
            }
        }
    }
}

/// The condition at `conditions.all[1].any[0]`.
fn condition_at<'a>(group: &'a ConditionGroup, path: &str) -> Option<&'a Condition> {
    let mut node: Option<&ConditionNode> = None;
    let mut current = group;
    for part in path.split('.').skip(1) {
        let open = part.find('[')?;
        let index: usize = part[open + 1..part.len() - 1].parse().ok()?;
        let next = current.items.get(index)?;
        node = Some(next);
        if let ConditionNode::Group(g) = next {
            current = g;
        }
    }
    match node? {
        ConditionNode::Condition(c) => Some(c),
        ConditionNode::Group(_) => None,
    }
}
