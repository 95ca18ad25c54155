//! The `rules` function on the embedded store: every trigger fires its rules and no others,
//! redeliveries request nothing twice, the audit trail explains each decision, chains stop,
//! the hourly time-based rules fire once per ticket, and a simulation agrees with what the live
//! engine did.

use chrono::{DateTime, Duration, Utc};
use closedloop_core::automation::{self, ActionRequest};
use closedloop_core::domain::TenantSettings;
use closedloop_core::event::{EventEnvelope, EventType, bus_event};
use closedloop_core::ids::{RuleId, TenantId, TicketId};
use closedloop_core::keys;
use closedloop_core::outbox::envelope_from_image;
use closedloop_core::ports::ManualClock;
use closedloop_core::records::record_item;
use closedloop_core::rules::{Rule, parse_draft};
use closedloop_core::store::{ItemStore, Query};
use closedloop_core::tenancy;
use closedloop_embedded::JournalStore;
use rules::{Handled, RuleCache};
use serde_json::{Value, json};

struct World {
    store: JournalStore,
    clock: ManualClock,
    cache: RuleCache,
    tenant: TenantId,
}

fn start() -> DateTime<Utc> {
    "2026-11-25T10:00:00Z".parse().unwrap()
}

async fn world() -> World {
    let store = JournalStore::open_in_memory().unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    tenancy::provision_tenant(
        &store,
        tenant.clone(),
        "Acme",
        TenantSettings::default(),
        start(),
    )
    .await
    .unwrap();
    World {
        store,
        clock: ManualClock::new(start()),
        cache: RuleCache::default(),
        tenant,
    }
}

impl World {
    async fn rule(&self, json: Value) -> Rule {
        let draft = parse_draft(json.to_string().as_bytes()).unwrap();
        automation::create_rule(&self.store, &self.tenant, draft, self.clock.now_utc())
            .await
            .unwrap()
    }

    async fn deliver(&self, event: &EventEnvelope) -> automation::Decision {
        match rules::handle(&self.store, &self.clock, &self.cache, &bus_event(event))
            .await
            .unwrap()
        {
            Handled::Event(d) => d,
            other => panic!("{other:?}"),
        }
    }

    async fn tick(&self) -> usize {
        let tick =
            json!({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}});
        match rules::handle(&self.store, &self.clock, &self.cache, &tick)
            .await
            .unwrap()
        {
            Handled::Tick { fired } => fired,
            other => panic!("{other:?}"),
        }
    }

    /// Every `action.requested` in the outbox, as (rule, action index, cause event id).
    async fn requested(&self) -> Vec<(RuleId, usize, ulid::Ulid)> {
        let page = self
            .store
            .query(Query::partition(keys::outbox_partition(&self.tenant)))
            .await
            .unwrap();
        let mut out: Vec<_> = page
            .items
            .iter()
            .filter_map(|i| envelope_from_image(i).ok())
            .filter(|e| e.event_type == EventType::ActionRequested)
            .map(|e| {
                let r: ActionRequest = serde_json::from_value(e.data).unwrap();
                (r.rule_id, r.action_index, r.cause.event_id)
            })
            .collect();
        out.sort();
        out
    }

    async fn audit(&self, ticket: &str) -> Vec<Value> {
        automation::audit_trail(&self.store, &self.tenant, &TicketId::parse(ticket).unwrap())
            .await
            .unwrap()
    }
}

trait Now {
    fn now_utc(&self) -> DateTime<Utc>;
}
impl Now for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        closedloop_core::ports::Clock::now(self)
    }
}

fn ticket(id: &str, status: &str) -> Value {
    json!({
        "id": id, "subject": "Printer jams", "status": status,
        "agent": {"id": "a-alice", "name": "Alice", "email": "alice@acme.example", "email_notifications": true},
        "contact": {"id": "c-bob", "name": "Bob", "email": "bob@northwind.example",
            "account": {"id": "acc-north", "name": "Northwind"}},
        "channel": "email",
        "updated_at": "2026-11-25T09:00:00Z"
    })
}

fn review(kind: &str, value: Value) -> Value {
    json!({
        "tenant_id": "acme", "survey_request_id": "01JD2Q8Y3S7W0M5V6T9B2K4N1C", "ticket_id": "1001",
        "rating": {"kind": kind, "value": value}, "agent_id": "a-alice", "contact_id": "c-bob",
        "account_id": "acc-north",
        "recorded_at": "2026-11-25T09:00:00Z", "updated_at": "2026-11-25T09:00:00Z"
    })
}

fn event(tenant: &TenantId, event_type: EventType, data: Value) -> EventEnvelope {
    EventEnvelope::new_root(tenant.clone(), event_type, start(), data)
}

fn note_rule(name: &str, trigger: &str) -> Value {
    json!({"name": name, "trigger": trigger,
        "actions": [{"type": "add_internal_note", "body": "{{ rule }} fired"}]})
}

#[tokio::test]
async fn every_trigger_fires_its_own_rules_and_no_others() {
    let w = world().await;
    let mut by_trigger = std::collections::HashMap::new();
    for trigger in closedloop_core::rules::Trigger::ALL {
        let rule = w.rule(note_rule(trigger.as_str(), trigger.as_str())).await;
        by_trigger.insert(trigger.as_str(), rule.id);
    }
    let t = &w.tenant;
    let case = json!({"id": "01JD2Q8Y3S7W0M5V6T9B2K4N1D", "tenant_id": "acme",
        "survey_request_id": "01JD2Q8Y3S7W0M5V6T9B2K4N1C", "ticket_id": "1001",
        "status": "open", "opened_at": "2026-11-25T09:00:00Z"});
    let cases: Vec<(EventEnvelope, Vec<&str>)> = vec![
        (
            event(
                t,
                EventType::TicketCreated,
                json!({"ticket": ticket("1001", "new")}),
            ),
            vec!["ticket_created"],
        ),
        (
            event(
                t,
                EventType::TicketClosed,
                json!({"ticket": ticket("1001", "closed")}),
            ),
            vec!["ticket_closed"],
        ),
        (
            event(
                t,
                EventType::TicketCustomerMessage,
                json!({"ticket": ticket("1001", "open"),
                "message": {"body": "hello", "first": true}}),
            ),
            vec!["customer_first_message", "customer_message"],
        ),
        (
            event(
                t,
                EventType::TicketCustomerMessage,
                json!({"ticket": ticket("1001", "open"),
                "message": {"body": "again", "first": false}}),
            ),
            vec!["customer_message"],
        ),
        (
            event(
                t,
                EventType::TicketTagAdded,
                json!({"ticket": ticket("1001", "open"), "tag": "vip"}),
            ),
            vec!["ticket_tag_added"],
        ),
        (
            event(
                t,
                EventType::TicketStatusChanged,
                json!({"ticket": ticket("1001", "pending")}),
            ),
            vec!["ticket_status_set"],
        ),
        (
            event(
                t,
                EventType::TicketReturnCreated,
                json!({"ticket": ticket("1001", "open")}),
            ),
            vec!["return_created"],
        ),
        (
            event(
                t,
                EventType::ReviewReceived,
                json!({"review": review("csat", json!("negative"))}),
            ),
            vec!["review_received"],
        ),
        (
            event(
                t,
                EventType::ReviewReceived,
                json!({"review": review("nps", json!(3))}),
            ),
            vec!["review_received", "nps_response_received"],
        ),
        (
            event(
                t,
                EventType::ReviewTagAdded,
                json!({"review": review("csat", json!("positive")), "tag": "praise"}),
            ),
            vec!["review_tag_added"],
        ),
        (
            event(
                t,
                EventType::ReviewStatusChanged,
                json!({"review": review("csat", json!("positive"))}),
            ),
            vec!["review_status_changed"],
        ),
        (
            event(t, EventType::CaseOpened, json!({"case": case})),
            vec!["case_opened"],
        ),
        (
            event(t, EventType::CaseClosed, json!({"case": case})),
            vec!["case_closed"],
        ),
        (
            event(
                t,
                EventType::CaseSlaBreached,
                json!({"case": case, "ticket": {"id": "1001"}}),
            ),
            vec!["case_sla_breached"],
        ),
        // Not a trigger of any rule.
        (
            event(t, EventType::SurveySent, json!({"ticket_id": "1001"})),
            vec![],
        ),
    ];
    for (e, expected) in cases {
        let decision = w.deliver(&e).await;
        let mut got = decision.requested.clone();
        let mut want: Vec<RuleId> = expected.iter().map(|t| by_trigger[t]).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{} {}", e.event_type, e.data);
    }
}

#[tokio::test]
async fn a_redelivered_event_requests_each_action_once() {
    let w = world().await;
    let rule = w
        .rule(json!({"name": "Negative", "trigger": "review_received",
            "conditions": {"all": [{"field": "rating.csat", "op": "is", "value": "negative"}]},
            "actions": [
                {"type": "send_email", "to": ["lead@acme.example"], "subject": "Bad review", "body": "{{ comment }}"},
                {"type": "add_internal_note", "body": "Bad review"}
            ]}))
        .await;
    let e = event(
        &w.tenant,
        EventType::ReviewReceived,
        json!({"review": review("csat", json!("negative"))}),
    );
    let first = w.deliver(&e).await;
    let again = w.deliver(&e).await;
    assert_eq!(first.requested, vec![rule.id]);
    assert!(
        again.requested.is_empty(),
        "the redelivery requests nothing"
    );
    assert_eq!(
        w.requested().await,
        vec![(rule.id, 0, e.event_id), (rule.id, 1, e.event_id)]
    );
}

#[tokio::test]
async fn the_audit_trail_says_which_rules_matched_and_why_the_others_did_not() {
    let w = world().await;
    let negative = w
        .rule(json!({"name": "Negative", "trigger": "review_received",
            "conditions": {"all": [{"field": "rating.csat", "op": "is", "value": "negative"}]},
            "actions": [{"type": "reopen_ticket"}]}))
        .await;
    let email_only = w
        .rule(
            json!({"name": "Email tickets", "trigger": "review_received",
            "conditions": {"all": [{"field": "ticket.channel", "op": "is", "value": "chat"}]},
            "actions": [{"type": "reopen_ticket"}]}),
        )
        .await;
    // The review names its ticket; the rules read the stored snapshot for ticket fields.
    w.store
        .put(
            record_item(
                &keys::ticket(&w.tenant, &TicketId::parse("1001").unwrap()),
                "ticket",
                &ticket("1001", "closed"),
            ),
            None,
        )
        .await
        .unwrap();
    let e = event(
        &w.tenant,
        EventType::ReviewReceived,
        json!({"review": review("csat", json!("negative"))}),
    );
    w.deliver(&e).await;
    let audit = w.audit("1001").await;
    let evaluated = audit
        .iter()
        .find(|a| a["kind"] == "rules_evaluated")
        .expect("an evaluation entry");
    let outcome = |id: RuleId| {
        evaluated["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule_id"] == id.to_string())
            .cloned()
            .unwrap()
    };
    assert_eq!(outcome(negative.id)["outcome"], "matched");
    let failed = outcome(email_only.id);
    assert_eq!(failed["outcome"], "not_matched");
    assert_eq!(failed["failed"]["field"], "ticket.channel");
    assert_eq!(failed["failed"]["actual"], "email");
    assert_eq!(evaluated["facts"]["ticket.subject"], "Printer jams");
}

#[tokio::test]
async fn a_rule_never_refires_on_its_own_chain_and_chains_stop_at_depth_ten() {
    let w = world().await;
    let tagger = w
        .rule(json!({"name": "Tag VIPs", "trigger": "ticket_tag_added",
            "actions": [{"type": "add_ticket_tag", "tag": "vip"}]}))
        .await;
    let other = w.rule(note_rule("Note tags", "ticket_tag_added")).await;
    let root = event(
        &w.tenant,
        EventType::TicketTagAdded,
        json!({"ticket": ticket("1001", "open"), "tag": "x"}),
    );
    assert_eq!(w.deliver(&root).await.requested.len(), 2);
    // The tag the rule added comes back: the tagger is skipped, the other rule still runs.
    let echo = root.caused(
        EventType::TicketTagAdded,
        start(),
        Some(tagger.id),
        json!({"ticket": ticket("1001", "open"), "tag": "vip"}),
    );
    let decision = w.deliver(&echo).await;
    assert_eq!(decision.requested, vec![other.id]);
    assert!(
        decision
            .verdicts
            .contains(&(tagger.id, automation::Verdict::SkippedOwnChain))
    );

    // A chain ten deep runs no rule at all, and the audit says why.
    let mut deep = echo.clone();
    deep.depth = closedloop_core::event::MAX_EVENT_DEPTH;
    deep.chain_rules.clear();
    deep.event_id = ulid::Ulid::new();
    let decision = w.deliver(&deep).await;
    assert!(decision.requested.is_empty());
    assert!(
        w.audit("1001")
            .await
            .iter()
            .any(|a| a["kind"] == "chain_stopped" && a["event_id"] == deep.event_id.to_string())
    );
}

#[tokio::test]
async fn an_edited_rule_applies_to_the_next_event_at_once() {
    let w = world().await;
    let rule = w
        .rule(json!({"name": "Promoters", "trigger": "review_received",
            "conditions": {"all": [{"field": "rating.nps", "op": "greater_than", "value": 8}]},
            "actions": [{"type": "reopen_ticket"}]}))
        .await;
    let e1 = event(
        &w.tenant,
        EventType::ReviewReceived,
        json!({"review": review("nps", json!(7))}),
    );
    assert!(w.deliver(&e1).await.requested.is_empty());
    let edited = json!({"name": "Promoters", "trigger": "review_received", "version": rule.version,
        "conditions": {"all": [{"field": "rating.nps", "op": "greater_than", "value": 6}]},
        "actions": [{"type": "reopen_ticket"}]});
    automation::update_rule(
        &w.store,
        &w.tenant,
        rule.id,
        parse_draft(edited.to_string().as_bytes()).unwrap(),
        start(),
    )
    .await
    .unwrap();
    let e2 = event(
        &w.tenant,
        EventType::ReviewReceived,
        json!({"review": review("nps", json!(7))}),
    );
    assert_eq!(w.deliver(&e2).await.requested, vec![rule.id]);
    automation::set_enabled(&w.store, &w.tenant, rule.id, false, start())
        .await
        .unwrap();
    let e3 = event(
        &w.tenant,
        EventType::ReviewReceived,
        json!({"review": review("nps", json!(7))}),
    );
    assert!(
        w.deliver(&e3).await.requested.is_empty(),
        "a disabled rule does nothing"
    );
}

#[tokio::test]
async fn a_time_based_rule_fires_once_per_ticket_when_its_time_comes() {
    let w = world().await;
    let rule = w
        .rule(json!({"name": "Unanswered for a day", "trigger": "time_based",
            "conditions": {"all": [
                {"field": "ticket.answered", "op": "is", "value": false},
                {"field": "ticket.age_hours", "op": "greater_than", "value": 24}
            ]},
            "actions": [{"type": "email_ticket_agents", "subject": "Waiting", "body": "{{ ticket.id }}"}]}))
        .await;
    let put_ticket = |id: &str, created: DateTime<Utc>, answered: bool| {
        let mut t = ticket(id, "open");
        t["created_at"] = json!(created);
        t["answered"] = json!(answered);
        let snapshot: closedloop_core::domain::TicketSnapshot = serde_json::from_value(t).unwrap();
        let mut item = record_item(&keys::ticket(&w.tenant, &snapshot.id), "ticket", &snapshot);
        item.extend(automation::open_ticket_index_attributes(
            &w.tenant, &snapshot,
        ));
        item
    };
    for item in [
        put_ticket("old-unanswered", start() - Duration::hours(30), false),
        put_ticket("old-answered", start() - Duration::hours(30), true),
        put_ticket("new-unanswered", start() - Duration::hours(2), false),
    ] {
        w.store.put(item, None).await.unwrap();
    }
    // A closed ticket leaves the open-tickets index and is never looked at.
    let mut closed: closedloop_core::domain::TicketSnapshot =
        serde_json::from_value(ticket("closed-one", "closed")).unwrap();
    closed.created_at = Some(start() - Duration::hours(48));
    closed.answered = Some(false);
    let mut item = record_item(&keys::ticket(&w.tenant, &closed.id), "ticket", &closed);
    item.extend(automation::open_ticket_index_attributes(&w.tenant, &closed));
    w.store.put(item, None).await.unwrap();

    assert_eq!(w.tick().await, 1);
    assert_eq!(w.tick().await, 0, "at most once per ticket");
    w.clock.advance(Duration::hours(23));
    assert_eq!(w.tick().await, 1, "the newer ticket's turn has come");
    let requested = w.requested().await;
    assert_eq!(requested.len(), 2);
    assert!(requested.iter().all(|(r, _, _)| *r == rule.id));
}

#[tokio::test]
async fn a_simulation_matches_what_the_live_engine_did_on_the_same_events() {
    let w = world().await;
    let json = json!({"name": "Detractors with a comment", "trigger": "nps_response_received",
        "conditions": {"all": [
            {"field": "rating.nps_band", "op": "is", "value": "detractor"},
            {"field": "review.has_comment", "op": "is", "value": true}
        ]},
        "actions": [{"type": "open_case", "assignee": {"kind": "ticket_agent"}}]});
    let live = w.rule(json.clone()).await;
    let mut live_matches = Vec::new();
    for (i, (score, comment)) in [
        (3, Some("slow")),
        (9, Some("great")),
        (2, None),
        (6, Some("meh")),
        (10, None),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = review("nps", json!(score));
        if let Some(c) = comment {
            r["comment"] = json!(c);
        }
        let mut e = event(&w.tenant, EventType::ReviewReceived, json!({"review": r}));
        e.occurred_at = start() + Duration::minutes(i as i64);
        if !w.deliver(&e).await.requested.is_empty() {
            live_matches.push(e.event_id);
        }
    }
    assert_eq!(live_matches.len(), 2);
    let before = w
        .store
        .query(Query::partition(keys::outbox_partition(&w.tenant)))
        .await
        .unwrap()
        .items
        .len();
    // The same rule, unsaved (a draft being tried out), over the range.
    let draft = parse_draft(json.to_string().as_bytes())
        .unwrap()
        .into_rule(RuleId::new(), start());
    let sim = automation::simulate(
        &w.store,
        &w.tenant,
        &draft,
        start(),
        start() + Duration::hours(1),
    )
    .await
    .unwrap();
    let simulated: Vec<ulid::Ulid> = sim.matched.iter().map(|m| m.event_id).collect();
    assert_eq!(simulated, live_matches);
    assert_eq!(sim.events_replayed, 5);
    assert_eq!(sim.matched[0].actions, vec!["open_case"]);
    let after = w
        .store
        .query(Query::partition(keys::outbox_partition(&w.tenant)))
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(before, after, "a simulation has no side effects");
    // The saved rule gives the same answer.
    let saved = automation::simulate(
        &w.store,
        &w.tenant,
        &live,
        start(),
        start() + Duration::hours(1),
    )
    .await
    .unwrap();
    assert_eq!(saved.matched.len(), 2);
}

#[tokio::test]
async fn a_webhook_secret_never_travels_in_the_action_request() {
    let w = world().await;
    w.rule(json!({"name": "CRM", "trigger": "ticket_created",
        "actions": [{"type": "post_webhook", "url": "https://crm.acme.example/in", "secret": "do-not-leak-0123456789"}]}))
        .await;
    let e = event(
        &w.tenant,
        EventType::TicketCreated,
        json!({"ticket": ticket("1001", "new")}),
    );
    assert_eq!(w.deliver(&e).await.requested.len(), 1);
    let outbox = w
        .store
        .query(Query::partition(keys::outbox_partition(&w.tenant)))
        .await
        .unwrap();
    assert_eq!(outbox.items.len(), 1);
    assert!(!format!("{:?}", outbox.items).contains("do-not-leak"));
}
