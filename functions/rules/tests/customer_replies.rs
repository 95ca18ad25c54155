//! A customer's message on a ticket whose review had a case, through the `rules` function: it
//! joins an open case's history, opens a new case once the last one is closed (exactly once,
//! however often the event is delivered), and does nothing on a ticket that never had a case.

use chrono::{DateTime, Duration, Utc};
use closedloop_core::cases::{self, CaseChange, Opening};
use closedloop_core::domain::{CaseOrigin, CaseStatus, TenantSettings};
use closedloop_core::event::{EventEnvelope, EventType, bus_event};
use closedloop_core::ids::{AgentId, CaseId, SurveyRequestId, TenantId, TicketId};
use closedloop_core::keys;
use closedloop_core::outbox::envelope_from_image;
use closedloop_core::ports::ManualClock;
use closedloop_core::store::{ItemStore, Query};
use closedloop_core::tenancy;
use closedloop_embedded::JournalStore;
use rules::RuleCache;
use serde_json::json;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

struct World {
    store: JournalStore,
    clock: ManualClock,
    cache: RuleCache,
    tenant: TenantId,
}

async fn world() -> World {
    let store = JournalStore::open_in_memory().unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    tenancy::provision_tenant(
        &store,
        tenant.clone(),
        "Acme",
        TenantSettings::default(),
        at("2026-01-12T09:00:00Z"),
    )
    .await
    .unwrap();
    World {
        store,
        clock: ManualClock::new(at("2026-01-12T09:00:00Z")),
        cache: RuleCache::default(),
        tenant,
    }
}

impl World {
    fn now(&self) -> DateTime<Utc> {
        closedloop_core::ports::Clock::now(&self.clock)
    }

    async fn open_case(&self, ticket: &str) -> CaseId {
        let survey = SurveyRequestId::new();
        let policy = cases::policy(&self.store, &self.tenant).await.unwrap();
        let (case, writes) = cases::open(
            &self.tenant,
            Opening {
                id: CaseId::new(),
                review: survey.to_string(),
                review_key: keys::review(&self.tenant, survey),
                survey_request_id: Some(survey),
                ticket_id: Some(TicketId::parse(ticket).unwrap()),
                contact_id: None,
                account_id: None,
                assignee: Some(AgentId::parse("a-alice").unwrap()),
                origin: CaseOrigin::Rule,
                opened_by_rule: None,
                cause_event: ulid::Ulid::new(),
                message: None,
            },
            &policy,
            self.now(),
        );
        self.store.transact_write(writes).await.unwrap();
        case.id
    }

    fn message(&self, ticket: &str) -> EventEnvelope {
        EventEnvelope::new_root(
            self.tenant.clone(),
            EventType::TicketCustomerMessage,
            self.now(),
            json!({"ticket": {"id": ticket, "agent": {"id": "a-mark"}},
                "message": {"body": "It broke again", "first": false}}),
        )
    }

    async fn deliver(&self, event: &EventEnvelope) {
        rules::handle(&self.store, &self.clock, &self.cache, &bus_event(event))
            .await
            .unwrap();
    }

    async fn opened_events(&self) -> Vec<EventEnvelope> {
        self.store
            .query(Query::partition(keys::outbox_partition(&self.tenant)))
            .await
            .unwrap()
            .items
            .iter()
            .filter_map(|i| envelope_from_image(i).ok())
            .filter(|e| e.event_type == EventType::CaseOpened)
            .collect()
    }
}

#[tokio::test]
async fn an_answer_after_the_close_opens_one_new_case_however_often_it_is_delivered() {
    let w = world().await;
    let first = w.open_case("1001").await;
    w.clock.advance(Duration::hours(1));
    cases::close_case(
        &w.store,
        &w.tenant,
        first,
        "issue-fixed",
        "a-alice",
        w.now(),
    )
    .await
    .unwrap();
    w.clock.advance(Duration::hours(1));
    let message = w.message("1001");
    for _ in 0..3 {
        w.deliver(&message).await;
    }
    let opened = w.opened_events().await;
    assert_eq!(opened.len(), 1, "one case, whatever the redeliveries");
    assert_eq!(opened[0].causation_id, message.event_id);
    let case = &opened[0].data["case"];
    assert_eq!(case["origin"], "customer_reply");
    // The last case's assignee keeps it, rather than the ticket's agent.
    assert_eq!(case["assignee"], "a-alice");
    let new_id = CaseId::parse(case["id"].as_str().unwrap()).unwrap();
    assert_ne!(new_id, first);
    let (stored, history) = cases::get_with_history(&w.store, &w.tenant, new_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, CaseStatus::Open);
    assert!(matches!(
        &history[0].change,
        CaseChange::Opened { message: Some(m), cause_event, .. }
            if m == "It broke again" && *cause_event == message.event_id
    ));
    // The ticket's audit trail says why it opened.
    let audit = closedloop_core::automation::audit_trail(
        &w.store,
        &w.tenant,
        &TicketId::parse("1001").unwrap(),
    )
    .await
    .unwrap();
    assert!(
        audit.iter().any(|e| e["kind"] == "case_opened"),
        "{audit:?}"
    );

    // Now open: the next message joins its history instead.
    w.clock.advance(Duration::minutes(5));
    let next = w.message("1001");
    w.deliver(&next).await;
    w.deliver(&next).await;
    assert_eq!(w.opened_events().await.len(), 1);
    let (_, history) = cases::get_with_history(&w.store, &w.tenant, new_id)
        .await
        .unwrap()
        .unwrap();
    let replies = history
        .iter()
        .filter(|e| matches!(e.change, CaseChange::CustomerReplied { .. }))
        .count();
    assert_eq!(replies, 1, "a redelivered message is noted once");
}

#[tokio::test]
async fn a_ticket_without_a_case_or_a_message_from_before_the_close_opens_nothing() {
    let w = world().await;
    w.deliver(&w.message("2002")).await;
    let case = w.open_case("1001").await;
    // A message written before the close, delivered after it.
    let early = w.message("1001");
    w.clock.advance(Duration::hours(1));
    cases::close_case(&w.store, &w.tenant, case, "no-response", "admin", w.now())
        .await
        .unwrap();
    w.deliver(&early).await;
    assert!(w.opened_events().await.is_empty());
}
