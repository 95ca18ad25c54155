//! The single table's key layout. Every key starts with `T#<tenant>`, so no query built here
//! can reach another tenant's items. `docs/data-model.md` lists the access patterns.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::ids::{AccountId, SurveyRequestId, TenantId, TicketId};
use crate::store::Key;

/// Fixed-width UTC timestamps, so sort-key order is time order.
pub fn sortable_time(t: DateTime<Utc>) -> String {
    crate::rfc3339::format(&t, SecondsFormat::Millis)
}

/// Reads back a [`sortable_time`].
pub fn parse_sortable_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn tenant_prefix(tenant: &TenantId) -> String {
    tenant_key(tenant, &[])
}

/// `T#<tenant>` and then `parts`, in one allocation: a click builds half a dozen keys.
fn tenant_key(tenant: &TenantId, parts: &[&str]) -> String {
    let len = 2 + tenant.as_str().len() + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut key = String::with_capacity(len);
    key.push_str("T#");
    key.push_str(tenant.as_str());
    for part in parts {
        key.push_str(part);
    }
    key
}

/// `T#<tenant>#SURVEY#<id>`, the partition of a rating request and its review.
fn survey_partition(tenant: &TenantId, id: SurveyRequestId) -> String {
    let mut text = [0; ulid::ULID_LEN];
    tenant_key(tenant, &["#SURVEY#", id.ulid().array_to_str(&mut text)])
}

/// The tenant record, also listed in GSI1 under `TENANTS` for the sweeps.
pub fn tenant(tenant: &TenantId) -> Key {
    Key::new(tenant_prefix(tenant), "TENANT")
}
pub const TENANTS_INDEX_PK: &str = "TENANTS";

pub fn settings(tenant: &TenantId) -> Key {
    Key::new(tenant_prefix(tenant), "SETTINGS")
}

pub fn api_key(tenant: &TenantId, key_id: &str) -> Key {
    Key::new(tenant_prefix(tenant), format!("APIKEY#{key_id}"))
}

pub fn webhook_source(tenant: &TenantId, source: &str) -> Key {
    Key::new(tenant_prefix(tenant), format!("SOURCE#{source}"))
}

pub fn agent(tenant: &TenantId, agent: &str) -> Key {
    Key::new(tenant_prefix(tenant), format!("AGENT#{agent}"))
}

pub fn ticket(tenant: &TenantId, ticket: &TicketId) -> Key {
    Key::new(
        format!("{}#TICKET#{}", tenant_prefix(tenant), ticket.as_str()),
        "SNAPSHOT",
    )
}

/// One rating request per ticket: this marker is written once, conditionally.
pub fn ticket_survey(tenant: &TenantId, ticket: &TicketId) -> Key {
    Key::new(
        format!("{}#TICKET#{}", tenant_prefix(tenant), ticket.as_str()),
        "SURVEY",
    )
}

/// Written with a ticket's first customer message, so only that one fires
/// `customer_first_message`.
pub fn first_customer_message(tenant: &TenantId, ticket: &TicketId) -> Key {
    Key::new(
        format!("{}#TICKET#{}", tenant_prefix(tenant), ticket.as_str()),
        "FIRST_MESSAGE",
    )
}

pub fn survey_request(tenant: &TenantId, id: SurveyRequestId) -> Key {
    Key::new(survey_partition(tenant, id), "REQUEST")
}

/// A contact who asked for no more rating requests from this tenant, by lower-cased address.
pub fn unsubscribed(tenant: &TenantId, email: &str) -> Key {
    Key::new(
        format!(
            "{}#EMAIL#{}",
            tenant_prefix(tenant),
            email.to_ascii_lowercase()
        ),
        "UNSUBSCRIBED",
    )
}

/// GSI1 partition of scheduled rating requests, sorted by due time.
pub fn surveys_due_index(tenant: &TenantId) -> String {
    format!("{}#SURVEYS_DUE", tenant_prefix(tenant))
}

/// GSI1 partition of reviews still inside their change window, sorted by when they settle.
pub fn reviews_settling_index(tenant: &TenantId) -> String {
    tenant_key(tenant, &["#REVIEWS_SETTLING"])
}

pub fn review(tenant: &TenantId, id: SurveyRequestId) -> Key {
    Key::new(survey_partition(tenant, id), "REVIEW")
}

pub fn outbox_partition(tenant: &TenantId) -> String {
    tenant_key(tenant, &["#OUTBOX"])
}

pub fn webhook_delivery(tenant: &TenantId, source: &str, delivery_id: &str) -> Key {
    Key::new(
        format!("{}#DELIVERY#{source}#{delivery_id}", tenant_prefix(tenant)),
        "DELIVERY",
    )
}

pub fn idempotency(tenant: &TenantId, idempotency_key: &str) -> Key {
    Key::new(
        format!("{}#IDEMPOTENCY#{idempotency_key}", tenant_prefix(tenant)),
        "IDEMPOTENCY",
    )
}

pub fn rules_partition(tenant: &TenantId) -> String {
    format!("{}#RULES", tenant_prefix(tenant))
}

/// Counts the tenant's rule writes (the rule cache's freshness check).
pub fn rules_revision(tenant: &TenantId) -> Key {
    Key::new(rules_partition(tenant), "REVISION")
}

pub fn rule(tenant: &TenantId, rule: crate::ids::RuleId) -> Key {
    Key::new(rules_partition(tenant), format!("RULE#{rule}"))
}

/// Marks that a rule's decision on an event was recorded: a redelivered event requests no
/// action twice.
pub fn rule_evaluated(tenant: &TenantId, event_id: ulid::Ulid, rule: crate::ids::RuleId) -> Key {
    Key::new(
        format!("{}#EVALUATED#{event_id}", tenant_prefix(tenant)),
        format!("RULE#{rule}"),
    )
}

/// A time-based rule fires at most once per ticket: this marker is written once.
pub fn time_rule_fired(tenant: &TenantId, rule: crate::ids::RuleId, ticket: &TicketId) -> Key {
    Key::new(
        format!("{}#TICKET#{}", tenant_prefix(tenant), ticket.as_str()),
        format!("TIMED#{rule}"),
    )
}

/// The events the rules saw, with their facts, one partition per tenant and month (`2026-11`),
/// sorted by time: the simulation replays them.
pub fn event_history(tenant: &TenantId, month: &str) -> String {
    format!("{}#HISTORY#{month}", tenant_prefix(tenant))
}

/// GSI2 partition of the tenant's open tickets (the hourly time-based rules read it).
pub fn open_tickets_index(tenant: &TenantId) -> String {
    format!("{}#TICKETS_OPEN", tenant_prefix(tenant))
}

/// The audit trail of a review that names no ticket (a survey provider's unmatched response).
pub fn review_audit_partition(tenant: &TenantId, review: &str) -> String {
    format!("{}#AUDIT_REVIEW#{review}", tenant_prefix(tenant))
}

/// The audit trail of a ticket: rule evaluations and actions, in time order.
pub fn audit_partition(tenant: &TenantId, ticket: &TicketId) -> String {
    format!("{}#AUDIT#{}", tenant_prefix(tenant), ticket.as_str())
}

/// GSI1 partition of open cases, sorted by SLA deadline (closed cases leave it).
pub fn open_cases_index(tenant: &TenantId) -> String {
    format!("{}#CASES_OPEN", tenant_prefix(tenant))
}

/// A survey provider's response, reviewed under the provider's response id (there is no
/// survey request of ours behind it).
pub fn provider_review(tenant: &TenantId, source: &str, response_id: &str) -> Key {
    Key::new(
        format!("{}#RESPONSE#{source}#{response_id}", tenant_prefix(tenant)),
        "REVIEW",
    )
}

/// Who an email address belongs to, as the helpdesk last told us. `email` is lower-cased by
/// the caller (`contacts::lookup_key`), so the match ignores case.
pub fn contact_by_email(tenant: &TenantId, lowercase_email: &str) -> Key {
    Key::new(
        format!("{}#CONTACT#{lowercase_email}", tenant_prefix(tenant)),
        "CONTACT",
    )
}

/// A customer account's latest NPS answer.
pub fn account_latest(tenant: &TenantId, account: &AccountId) -> Key {
    Key::new(
        format!("{}#ACCOUNT#{}", tenant_prefix(tenant), account.as_str()),
        "LATEST",
    )
}

/// GSI2 partition of customer accounts whose latest NPS answer changed since the last sweep.
pub fn accounts_changed_index(tenant: &TenantId) -> String {
    format!("{}#ACCOUNTS_CHANGED", tenant_prefix(tenant))
}

/// The tenant's helpdesk connector (kind, URL, secret).
pub fn connector(tenant: &TenantId) -> Key {
    Key::new(tenant_prefix(tenant), "CONNECTOR")
}

/// A change closedloop made in the helpdesk, expected back as a webhook (echo detection), in
/// the ticket's partition: `EXPECT#<cause event>-<rule>-<action>` (the action's delivery key).
pub fn expected_echo(tenant: &TenantId, ticket: &TicketId, action: &str) -> Key {
    Key::new(
        format!("{}#TICKET#{}", tenant_prefix(tenant), ticket.as_str()),
        format!("{EXPECTED_ECHO_PREFIX}{action}"),
    )
}
pub const EXPECTED_ECHO_PREFIX: &str = "EXPECT#";

/// A ticket's partition (snapshot, survey marker, expected echoes, ...).
pub fn ticket_partition(tenant: &TenantId, ticket: &TicketId) -> String {
    format!("{}#TICKET#{}", tenant_prefix(tenant), ticket.as_str())
}

/// Actions that failed for good, newest last by their ULID sort key.
pub fn failed_actions_partition(tenant: &TenantId) -> String {
    format!("{}#FAILED_ACTIONS", tenant_prefix(tenant))
}

pub fn failed_action(tenant: &TenantId, id: ulid::Ulid) -> Key {
    Key::new(failed_actions_partition(tenant), id.to_string())
}

pub fn case(tenant: &TenantId, id: crate::ids::CaseId) -> Key {
    Key::new(case_partition(tenant, id), "CASE")
}

/// A case's partition: the case (`CASE`) and its history (`HISTORY#<time>#<ulid>`), so one
/// query reads both.
pub fn case_partition(tenant: &TenantId, id: crate::ids::CaseId) -> String {
    format!("{}#CASE#{id}", tenant_prefix(tenant))
}

pub const CASE_HISTORY_PREFIX: &str = "HISTORY#";

/// One entry of a case's history; `unique` (a ULID, or the causing event's id) keeps entries
/// of the same millisecond apart and makes a redelivered one rewrite itself.
pub fn case_history(
    tenant: &TenantId,
    id: crate::ids::CaseId,
    at: DateTime<Utc>,
    unique: &str,
) -> Key {
    Key::new(
        case_partition(tenant, id),
        format!("{CASE_HISTORY_PREFIX}{}#{unique}", sortable_time(at)),
    )
}

/// GSI2 partition of every case of the tenant, sorted by opening time (`<opened>#<ulid>`): the
/// case list and the reports read one date range of it.
pub fn cases_by_opening_index(tenant: &TenantId) -> String {
    format!("{}#CASES", tenant_prefix(tenant))
}

/// The tenant's SLA policy and close options.
pub fn case_settings(tenant: &TenantId) -> Key {
    Key::new(tenant_prefix(tenant), "CASE_SETTINGS")
}

/// The last case opened on a ticket: a customer's later message finds it here.
pub fn ticket_latest_case(tenant: &TenantId, ticket: &TicketId) -> Key {
    Key::new(ticket_partition(tenant, ticket), "LATEST_CASE")
}

/// At most one open case per review: this marker, beside the review, names it.
pub fn review_open_case(review: &Key) -> Key {
    Key::new(review.pk.clone(), "OPEN_CASE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_time_orders_like_time() {
        let a: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        let b: DateTime<Utc> = "2026-01-02T03:04:05.120Z".parse().unwrap();
        let c: DateTime<Utc> = "2026-10-02T00:00:00Z".parse().unwrap();
        let (sa, sb, sc) = (sortable_time(a), sortable_time(b), sortable_time(c));
        assert_eq!(sa, "2026-01-02T03:04:05.000Z");
        assert!(sa < sb && sb < sc);
    }

    #[test]
    fn the_keys_a_click_builds_read_as_they_always_did() {
        let t = TenantId::parse("acme-msp").unwrap();
        let id = SurveyRequestId::new();
        assert_eq!(survey_request(&t, id).pk, format!("T#acme-msp#SURVEY#{id}"));
        assert_eq!(
            review(&t, id),
            Key::new(format!("T#acme-msp#SURVEY#{id}"), "REVIEW")
        );
        assert_eq!(outbox_partition(&t), "T#acme-msp#OUTBOX");
        assert_eq!(reviews_settling_index(&t), "T#acme-msp#REVIEWS_SETTLING");
        assert_eq!(tenant_prefix(&t), "T#acme-msp");
    }

    #[test]
    fn every_key_starts_with_its_tenant() {
        let t = TenantId::parse("acme").unwrap();
        let tk = TicketId::parse("42").unwrap();
        for key in [
            tenant(&t),
            settings(&t),
            ticket(&t, &tk),
            survey_request(&t, SurveyRequestId::new()),
            webhook_delivery(&t, "generic", "d1"),
            idempotency(&t, "x"),
            provider_review(&t, "delighted", "5435"),
            contact_by_email(&t, "bob@example.com"),
            account_latest(&t, &AccountId::parse("acc-1").unwrap()),
            connector(&t),
            expected_echo(&t, &tk, "x"),
            failed_action(&t, ulid::Ulid::new()),
            case(&t, crate::ids::CaseId::new()),
        ] {
            assert!(key.pk.starts_with("T#acme"), "{key:?}");
            // "T#acme" must not be a prefix of another tenant's partition.
            assert!(
                key.pk == "T#acme" || key.pk.starts_with("T#acme#"),
                "{key:?}"
            );
        }
    }
}
