//! The SLA sweep reads only due open cases and breaches each exactly once.

use chrono::{Duration, Utc};
use closedloop_core::domain::{Case, CaseStatus, TenantSettings};
use closedloop_core::ids::{CaseId, SurveyRequestId, TenantId, TicketId};
use closedloop_core::ports::ManualClock;
use closedloop_core::records::record_item;
use closedloop_core::store::{Index, ItemStore, Key, Query, Value};
use closedloop_core::{keys, tenancy};
use closedloop_embedded::JournalStore;

async fn open_case(store: &dyn ItemStore, tenant: &TenantId, deadline: chrono::DateTime<Utc>) {
    let case = Case {
        id: CaseId::new(),
        tenant_id: tenant.clone(),
        survey_request_id: Some(SurveyRequestId::new()),
        ticket_id: Some(TicketId::parse("7").unwrap()),
        review: None,
        assignee: None,
        status: CaseStatus::Open,
        opened_at: deadline - Duration::hours(8),
        opened_by_rule: None,
        sla_deadline: Some(deadline),
        sla_breached: false,
        closed_at: None,
        resolution: None,
    };
    let key = Key::new(
        format!("{}#CASE#{}", keys::tenant_prefix(tenant), case.id),
        "CASE",
    );
    let mut item = record_item(&key, "case", &case);
    item.insert(
        Index::Gsi1.pk_attribute().into(),
        Value::S(keys::open_cases_index(tenant)),
    );
    item.insert(
        Index::Gsi1.sk_attribute().into(),
        Value::S(format!("{}#{}", keys::sortable_time(deadline), case.id)),
    );
    store.put(item, None).await.unwrap();
}

#[tokio::test]
async fn due_cases_are_breached_once_and_future_ones_are_not_read() {
    let store = JournalStore::open_in_memory().unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let now = Utc::now();
    tenancy::provision_tenant(
        &store,
        tenant.clone(),
        "Acme",
        TenantSettings::default(),
        now,
    )
    .await
    .unwrap();
    for minutes in [-30, -5] {
        open_case(&store, &tenant, now + Duration::minutes(minutes)).await;
    }
    for hours in [1, 2, 3] {
        open_case(&store, &tenant, now + Duration::hours(hours)).await;
    }
    let clock = ManualClock::new(now);
    let report = sla_sweep::handle(&store, &clock).await.unwrap();
    assert_eq!((report.items_read, report.changed), (2, 2));
    let again = sla_sweep::handle(&store, &clock).await.unwrap();
    assert_eq!((again.items_read, again.changed), (0, 0));
    let events = store
        .query(Query::partition(keys::outbox_partition(&tenant)))
        .await
        .unwrap();
    let breaches = events
        .items
        .iter()
        .filter(|i| i.get("event_type") == Some(&Value::s("case.sla_breached")))
        .count();
    assert_eq!(breaches, 2);
    clock.advance(Duration::minutes(90));
    assert_eq!(sla_sweep::handle(&store, &clock).await.unwrap().changed, 1);
}
