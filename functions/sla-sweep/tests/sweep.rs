//! The SLA sweep reads only due open cases and breaches each exactly once.

use chrono::{DateTime, Duration, Utc};
use closedloop_core::cases::{self, CaseChange};
use closedloop_core::domain::{Case, CaseOrigin, CaseStatus, TenantSettings};
use closedloop_core::event::EventEnvelope;
use closedloop_core::ids::{CaseId, SurveyRequestId, TenantId, TicketId};
use closedloop_core::outbox::envelope_from_image;
use closedloop_core::ports::ManualClock;
use closedloop_core::store::{ItemStore, Query};
use closedloop_core::{keys, tenancy};
use closedloop_embedded::JournalStore;

fn case(tenant: &TenantId, deadline: DateTime<Utc>) -> Case {
    Case {
        id: CaseId::new(),
        tenant_id: tenant.clone(),
        survey_request_id: Some(SurveyRequestId::new()),
        ticket_id: Some(TicketId::parse("7").unwrap()),
        review: None,
        contact_id: None,
        account_id: None,
        assignee: None,
        status: CaseStatus::Open,
        opened_at: deadline - Duration::hours(8),
        origin: CaseOrigin::Rule,
        opened_by_rule: None,
        sla_deadline: Some(deadline),
        sla_breached: false,
        breached_at: None,
        closed_at: None,
        resolution: None,
        resolution_id: None,
        closed_by: None,
        sla_met: None,
        seconds_to_close: None,
        business_seconds_to_close: None,
    }
}

async fn open_case(store: &dyn ItemStore, tenant: &TenantId, deadline: DateTime<Utc>) -> CaseId {
    let case = case(tenant, deadline);
    store.put(cases::case_item(&case, 1), None).await.unwrap();
    case.id
}

async fn tenant(store: &dyn ItemStore, name: &str) -> TenantId {
    let tenant = TenantId::parse(name).unwrap();
    tenancy::provision_tenant(
        store,
        tenant.clone(),
        name,
        TenantSettings::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    tenant
}

async fn breaches(store: &dyn ItemStore, tenant: &TenantId) -> Vec<EventEnvelope> {
    store
        .query(Query::partition(keys::outbox_partition(tenant)))
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|i| envelope_from_image(i).ok())
        .filter(|e| e.event_type.as_str() == "case.sla_breached")
        .collect()
}

#[tokio::test]
async fn due_cases_are_breached_once_and_future_ones_are_not_read() {
    let store = JournalStore::open_in_memory().unwrap();
    let acme = tenant(&store, "acme").await;
    let now = Utc::now();
    let mut due = Vec::new();
    for minutes in [-30, -5] {
        due.push(open_case(&store, &acme, now + Duration::minutes(minutes)).await);
    }
    for hours in [1, 2, 3] {
        open_case(&store, &acme, now + Duration::hours(hours)).await;
    }
    let clock = ManualClock::new(now);
    let report = sla_sweep::handle(&store, &clock).await.unwrap();
    assert_eq!((report.items_read, report.changed), (2, 2));
    let again = sla_sweep::handle(&store, &clock).await.unwrap();
    assert_eq!((again.items_read, again.changed), (0, 0));
    let events = breaches(&store, &acme).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].data["case"]["sla_breached"], true);

    // The case itself says so, and its history shows when.
    let (stored, history) = cases::get_with_history(&store, &acme, due[0])
        .await
        .unwrap()
        .unwrap();
    assert!(stored.sla_breached);
    assert_eq!(stored.breached_at, Some(now));
    assert_eq!(
        stored.status,
        CaseStatus::Open,
        "a breach does not close it"
    );
    assert!(matches!(
        history.as_slice(),
        [e] if matches!(e.change, CaseChange::SlaBreached { .. })
    ));

    clock.advance(Duration::minutes(90));
    assert_eq!(sla_sweep::handle(&store, &clock).await.unwrap().changed, 1);
}

#[tokio::test]
async fn a_case_closed_before_the_sweep_is_not_breached_and_tenants_stay_apart() {
    let store = JournalStore::open_in_memory().unwrap();
    let acme = tenant(&store, "acme").await;
    let globex = tenant(&store, "globex").await;
    let now = Utc::now();
    let closing = open_case(&store, &acme, now - Duration::minutes(1)).await;
    open_case(&store, &globex, now - Duration::minutes(1)).await;
    cases::close_case(&store, &acme, closing, "issue-fixed", "admin", now)
        .await
        .unwrap();
    let report = sla_sweep::handle(&store, &ManualClock::new(now))
        .await
        .unwrap();
    assert_eq!((report.items_read, report.changed), (1, 1));
    assert!(breaches(&store, &acme).await.is_empty());
    let globex_breaches = breaches(&store, &globex).await;
    assert_eq!(globex_breaches.len(), 1);
    assert_eq!(globex_breaches[0].tenant_id, globex);
}

#[tokio::test]
async fn a_second_sweep_holding_a_stale_copy_of_the_index_breaches_nothing_again() {
    let store = JournalStore::open_in_memory().unwrap();
    let acme = tenant(&store, "acme").await;
    let now = Utc::now();
    open_case(&store, &acme, now - Duration::minutes(1)).await;
    // Another sweep read the index a moment before this one breached the case.
    let stale = store
        .query(closedloop_core::store::Query::on_index(
            closedloop_core::store::Index::Gsi1,
            keys::open_cases_index(&acme),
        ))
        .await
        .unwrap()
        .items;
    assert_eq!(stale.len(), 1);
    let report = sla_sweep::handle(&store, &ManualClock::new(now))
        .await
        .unwrap();
    assert_eq!(report.changed, 1);
    assert!(!cases::breach_item(&store, &stale[0], now).await.unwrap());
    assert_eq!(breaches(&store, &acme).await.len(), 1);
}

#[tokio::test]
async fn a_case_stored_before_revisions_existed_is_breached_and_closed() {
    let store = JournalStore::open_in_memory().unwrap();
    let acme = tenant(&store, "acme").await;
    let now = Utc::now();
    let case = case(&acme, now - Duration::minutes(1));
    // As the earlier `open_case` wrote it: no revision, no by-opening index.
    let mut item = cases::case_item(&case, 1);
    for old in ["revision", "GSI2PK", "GSI2SK"] {
        item.remove(old);
    }
    store.put(item, None).await.unwrap();
    let report = sla_sweep::handle(&store, &ManualClock::new(now))
        .await
        .unwrap();
    assert_eq!(report.changed, 1);
    let closed = cases::close_case(&store, &acme, case.id, "issue-fixed", "admin", now)
        .await
        .unwrap();
    assert_eq!(closed.sla_met, Some(false));
}
