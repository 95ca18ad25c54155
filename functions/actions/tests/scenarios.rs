//! The `actions` function on real parts: the embedded journal store, the outbox-directory
//! mailer, the generic connector and webhook sender over HTTP to a local server that plays the
//! helpdesk. One scenario per action kind, then redeliveries, retries and dead letters.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use closedloop_connectors::{HttpWebhookSender, StoreConnectorDirectory, http_client};
use closedloop_core::actions::{self, ActionOutcome, Executor, RetryPolicy};
use closedloop_core::automation::{self, ActionRequest};
use closedloop_core::domain::{
    Agent, Contact, CsatValue, CustomerAccount, Email, Rating, Review, TenantSettings,
    TicketSnapshot,
};
use closedloop_core::event::{EventEnvelope, EventType, bus_event};
use closedloop_core::helpdesk::{self, ConnectorKind};
use closedloop_core::ids::{
    AccountId, AgentId, ContactId, RuleId, SurveyRequestId, TenantId, TicketId,
};
use closedloop_core::outbox::envelope_from_image;
use closedloop_core::ports::SystemClock;
use closedloop_core::records::{read_record, record_item};
use closedloop_core::rules::Action;
use closedloop_core::store::{ItemStore, Query};
use closedloop_core::{keys, tenancy};
use closedloop_embedded::JournalStore;
use closedloop_embedded::outbox_mailer::OutboxMailer;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONNECTOR_SECRET: &str = "connector-secret-0123456789";

struct World {
    store: Arc<dyn ItemStore>,
    mailer: OutboxMailer,
    connectors: StoreConnectorDirectory,
    webhooks: HttpWebhookSender,
    helpdesk: MockServer,
    tenant: TenantId,
    retry: RetryPolicy,
    mail_dir: PathBuf,
}

/// Fast retries: milliseconds, three calls at most.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(3),
        budget: Duration::from_secs(10),
    }
}

fn agent(id: &str, name: &str, email: &str, on: bool) -> Agent {
    Agent {
        id: AgentId::parse(id).unwrap(),
        name: name.into(),
        email: Email::parse(email).unwrap(),
        email_notifications: on,
        working_hours: None,
    }
}

fn ticket(id: &str, agent_id: &str) -> TicketSnapshot {
    let agents = [
        agent("a-alice", "Alice Meyer", "alice@acme.example", true),
        agent("a-mark", "Mark Chen", "mark@acme.example", false),
    ];
    TicketSnapshot {
        id: TicketId::parse(id).unwrap(),
        subject: "Printer jams".into(),
        status: "closed".into(),
        agent: agents.into_iter().find(|a| a.id.as_str() == agent_id),
        contact: Contact {
            id: ContactId::parse("c-bob").unwrap(),
            name: "Bob Stone".into(),
            email: Email::parse("bob@northwind.example").unwrap(),
            account: Some(CustomerAccount {
                id: AccountId::parse("acc-1").unwrap(),
                name: "Northwind".into(),
            }),
        },
        channel: Some("email".into()),
        url: Some(format!("https://helpdesk.example/tickets/{id}")),
        tags: vec![],
        ticket_type: Some("question".into()),
        inbox: None,
        inbox_group: None,
        integration: None,
        created_at: None,
        last_customer_message_at: None,
        answered: Some(true),
        updated_at: Utc::now(),
    }
}

async fn world() -> World {
    let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    let tenant = TenantId::parse("acme").unwrap();
    let now = Utc::now();
    tenancy::provision_tenant(
        store.as_ref(),
        tenant.clone(),
        "Acme",
        TenantSettings::default(),
        now,
    )
    .await
    .unwrap();
    for a in [
        agent("a-alice", "Alice Meyer", "alice@acme.example", true),
        agent("a-mark", "Mark Chen", "mark@acme.example", false),
    ] {
        store
            .put(
                record_item(&keys::agent(&tenant, a.id.as_str()), "agent", &a),
                None,
            )
            .await
            .unwrap();
    }
    for (id, agent) in [("1001", "a-alice"), ("1003", "a-mark")] {
        let t = ticket(id, agent);
        store
            .put(
                record_item(&keys::ticket(&tenant, &t.id), "ticket", &t),
                None,
            )
            .await
            .unwrap();
    }
    let helpdesk = MockServer::start().await;
    helpdesk::put_config(
        store.as_ref(),
        &tenant,
        ConnectorKind::GenericWebhook,
        &format!("{}/helpdesk", helpdesk.uri()),
        Default::default(),
        Some(CONNECTOR_SECRET),
        now,
    )
    .await
    .unwrap();
    let mail_dir = std::env::temp_dir().join(format!("closedloop-actions-{}", ulid::Ulid::new()));
    let http = http_client(Duration::from_secs(2));
    World {
        mailer: OutboxMailer::new(&mail_dir, "feedback@acme.example").unwrap(),
        connectors: StoreConnectorDirectory::new(store.clone(), http.clone()),
        webhooks: HttpWebhookSender::new(http),
        store,
        helpdesk,
        tenant,
        retry: fast_retries(),
        mail_dir,
    }
}

impl World {
    fn executor(&self) -> Executor<'_> {
        Executor {
            store: self.store.as_ref(),
            mailer: &self.mailer,
            connectors: &self.connectors,
            webhooks: &self.webhooks,
            clock: &SystemClock,
            retry: self.retry,
        }
    }

    /// Runs an `action.requested` event through the function's handler, as Lambda delivers it.
    async fn run(&self, event: &EventEnvelope) -> ActionOutcome {
        ::actions::handle(&self.executor(), &bus_event(event))
            .await
            .unwrap()
    }

    fn emails(&self) -> Vec<String> {
        let mut files: Vec<_> = std::fs::read_dir(&self.mail_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// Every event in the tenant's outbox.
    async fn outbox(&self) -> Vec<EventEnvelope> {
        let page = self
            .store
            .query(Query::partition(keys::outbox_partition(&self.tenant)))
            .await
            .unwrap();
        page.items
            .iter()
            .map(|i| envelope_from_image(i).unwrap())
            .collect()
    }

    async fn outbox_of(&self, event_type: EventType) -> Vec<EventEnvelope> {
        self.outbox()
            .await
            .into_iter()
            .filter(|e| e.event_type == event_type)
            .collect()
    }

    async fn audit(&self, ticket: &str) -> Vec<Value> {
        automation::audit_trail(
            self.store.as_ref(),
            &self.tenant,
            &TicketId::parse(ticket).unwrap(),
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e["kind"] == "action_executed")
        .collect()
    }

    /// A stored rating-link review of ticket 1001, and the `review.received` that names it.
    async fn review_received(&self, csat: CsatValue) -> (SurveyRequestId, EventEnvelope) {
        let id = SurveyRequestId::new();
        let review = Review {
            tenant_id: self.tenant.clone(),
            survey_request_id: Some(id),
            ticket_id: Some(TicketId::parse("1001").unwrap()),
            rating: Rating::Csat(csat),
            comment: closedloop_core::domain::Comment::parse("Still jams").unwrap(),
            agent_id: Some(AgentId::parse("a-alice").unwrap()),
            contact_id: Some(ContactId::parse("c-bob").unwrap()),
            account_id: Some(AccountId::parse("acc-1").unwrap()),
            recorded_at: Utc::now(),
            updated_at: Utc::now(),
            provider: None,
            tags: vec![],
            status: None,
        };
        self.store
            .put(
                record_item(&keys::review(&self.tenant, id), "review", &review),
                None,
            )
            .await
            .unwrap();
        let event = EventEnvelope::new_root(
            self.tenant.clone(),
            EventType::ReviewReceived,
            Utc::now(),
            json!({ "review": review }),
        );
        (id, event)
    }

    fn ticket_closed(&self, ticket_id: &str, agent: &str) -> EventEnvelope {
        EventEnvelope::new_root(
            self.tenant.clone(),
            EventType::TicketClosed,
            Utc::now(),
            json!({"ticket": ticket(ticket_id, agent), "source": "generic", "delivery_id": "d-1"}),
        )
    }
}

/// The `action.requested` a matching rule publishes for its action `action`.
fn requested(cause: &EventEnvelope, rule: RuleId, action: Value) -> EventEnvelope {
    let request = ActionRequest {
        rule_id: rule,
        rule_name: "Follow up on bad reviews".into(),
        action_index: 0,
        action: serde_json::from_value::<Action>(action).unwrap(),
        cause: cause.clone(),
    };
    cause.caused(
        EventType::ActionRequested,
        Utc::now(),
        Some(rule),
        serde_json::to_value(&request).unwrap(),
    )
}

/// The helpdesk expects exactly one call with exactly this body (beside the common fields).
async fn helpdesk_expects(world: &World, event: &EventEnvelope, fields: Value) {
    let request: ActionRequest = serde_json::from_value(event.data.clone()).unwrap();
    let mut body = json!({"tenant_id": "acme",
        "idempotency_key": actions::delivery_key(&request)});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    Mock::given(method("POST"))
        .and(path("/helpdesk"))
        .and(body_json(body))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(1)
        .mount(&world.helpdesk)
        .await;
}

fn done(outcome: &ActionOutcome) -> &str {
    match outcome {
        ActionOutcome::Done { detail } => detail,
        other => panic!("expected done, got {other:?}"),
    }
}

/// Runs one helpdesk action caused by ticket 1001's review and checks its single call.
async fn helpdesk_scenario(action: Value, call: Value) -> (World, String) {
    let world = world().await;
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    let event = requested(&cause, RuleId::new(), action);
    helpdesk_expects(&world, &event, call).await;
    let detail = done(&world.run(&event).await).to_string();
    let audit = world.audit("1001").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["outcome"], "done");
    assert_eq!(audit[0]["detail"], detail.as_str());
    (world, detail)
}

// ── One scenario per action kind ─────────────────────────────────────────────────────────────

#[tokio::test]
async fn send_email_reaches_the_addresses_and_the_tickets_agent_with_the_rendered_message() {
    let world = world().await;
    let cause = world.ticket_closed("1001", "a-alice");
    let event = requested(
        &cause,
        RuleId::new(),
        json!({"type": "send_email", "to": ["lead@acme.example"], "to_ticket_agent": true,
            "subject": "Closed: {{ ticket.subject }}",
            "body": "{{ customer.name }}'s ticket {{ ticket.url }} is closed ({{ agent.name }})."}),
    );
    done(&world.run(&event).await);
    let mails = world.emails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("lead@acme.example") && mails[0].contains("alice@acme.example"));
    assert!(
        mails[0].contains("Subject: Closed: Printer jams"),
        "{}",
        mails[0]
    );
    assert!(
        mails[0].contains(
            "Bob Stone's ticket https://helpdesk.example/tickets/1001 is closed (Alice Meyer)."
        ),
        "{}",
        mails[0]
    );
}

#[tokio::test]
async fn email_ticket_agents_skips_an_agent_whose_notifications_are_off_and_the_audit_says_so() {
    let world = world().await;
    let cause = world.ticket_closed("1003", "a-mark");
    let event = requested(
        &cause,
        RuleId::new(),
        json!({"type": "email_ticket_agents", "subject": "Closed", "body": "Closed."}),
    );
    let outcome = world.run(&event).await;
    assert!(
        matches!(outcome, ActionOutcome::Suppressed { .. }),
        "{outcome:?}"
    );
    assert!(world.emails().is_empty(), "Mark gets no email");
    let audit = world.audit("1003").await;
    assert_eq!(audit[0]["outcome"], "suppressed");
    assert_eq!(audit[0]["suppressed"][0]["agent_id"], "a-mark");
    assert_eq!(
        audit[0]["suppressed"][0]["reason"],
        "the agent's email notifications are off"
    );
}

#[tokio::test]
async fn add_internal_note_posts_the_rendered_note() {
    helpdesk_scenario(
        json!({"type": "add_internal_note",
            "body": "{{ customer.name }} rated {{ rating.label }}: {{ comment }}"}),
        json!({"operation": "add_internal_note", "ticket_id": "1001",
            "body": "Bob Stone rated bad: Still jams"}),
    )
    .await;
}

#[tokio::test]
async fn change_ticket_type_posts_the_type() {
    helpdesk_scenario(
        json!({"type": "change_ticket_type", "ticket_type": "incident"}),
        json!({"operation": "change_ticket_type", "ticket_id": "1001", "ticket_type": "incident"}),
    )
    .await;
}

#[tokio::test]
async fn create_ticket_posts_a_follow_up_for_the_customer_and_names_the_new_ticket() {
    let world = world().await;
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    let event = requested(
        &cause,
        RuleId::new(),
        json!({"type": "create_ticket", "subject": "Follow up: {{ ticket.subject }}",
            "body": "{{ customer.name }} said: {{ comment }}"}),
    );
    let request: ActionRequest = serde_json::from_value(event.data.clone()).unwrap();
    Mock::given(method("POST"))
        .and(body_json(
            json!({"operation": "create_ticket", "tenant_id": "acme",
            "idempotency_key": actions::delivery_key(&request),
            "subject": "Follow up: Printer jams", "body": "Bob Stone said: Still jams",
            "requester": {"name": "Bob Stone", "email": "bob@northwind.example"},
            "related_ticket_id": "1001"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket_id": "2001"})))
        .expect(1)
        .mount(&world.helpdesk)
        .await;
    assert_eq!(done(&world.run(&event).await), "ticket 2001 created");
}

#[tokio::test]
async fn reopen_ticket_posts_the_reopen_and_expects_its_echo() {
    let (world, _) = helpdesk_scenario(
        json!({"type": "reopen_ticket"}),
        json!({"operation": "reopen_ticket", "ticket_id": "1001"}),
    )
    .await;
    let expected = world
        .store
        .query(Query::partition(keys::ticket_partition(
            &world.tenant,
            &TicketId::parse("1001").unwrap(),
        )))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|i| {
            i.get("SK")
                .and_then(|v| v.as_str())
                .unwrap()
                .starts_with("EXPECT#")
        })
        .count();
    assert_eq!(
        expected, 1,
        "the webhook that reports our reopen is expected"
    );
}

#[tokio::test]
async fn set_ticket_status_posts_the_status() {
    helpdesk_scenario(
        json!({"type": "set_ticket_status", "status": "pending"}),
        json!({"operation": "set_ticket_status", "ticket_id": "1001", "status": "pending"}),
    )
    .await;
}

#[tokio::test]
async fn assign_agent_posts_the_agent() {
    helpdesk_scenario(
        json!({"type": "assign_agent", "agent_id": "a-mark"}),
        json!({"operation": "assign_agent", "ticket_id": "1001", "agent_id": "a-mark"}),
    )
    .await;
}

#[tokio::test]
async fn add_ticket_tag_posts_the_tag() {
    helpdesk_scenario(
        json!({"type": "add_ticket_tag", "tag": "unhappy"}),
        json!({"operation": "add_tag", "ticket_id": "1001", "tag": "unhappy"}),
    )
    .await;
}

#[tokio::test]
async fn send_customer_message_posts_a_public_reply() {
    helpdesk_scenario(
        json!({"type": "send_customer_message",
            "body": "Hi {{ customer.name }}, sorry the printer still jams. We are on it."}),
        json!({"operation": "public_reply", "ticket_id": "1001",
            "body": "Hi Bob Stone, sorry the printer still jams. We are on it."}),
    )
    .await;
}

#[tokio::test]
async fn add_review_tag_tags_the_review_once_and_emits_review_tag_added_in_the_chain() {
    let world = world().await;
    let (survey, cause) = world.review_received(CsatValue::Negative).await;
    let rule = RuleId::new();
    let event = requested(
        &cause,
        rule,
        json!({"type": "add_review_tag", "tag": "printer"}),
    );
    done(&world.run(&event).await);
    let item = world
        .store
        .get(&keys::review(&world.tenant, survey))
        .await
        .unwrap()
        .unwrap();
    let review: Review = read_record(&item).unwrap();
    assert_eq!(review.tags, vec!["printer"]);
    assert_eq!(
        review.rating,
        Rating::Csat(CsatValue::Negative),
        "the rest is kept"
    );
    let tagged = world.outbox_of(EventType::ReviewTagAdded).await;
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].data["tag"], "printer");
    assert_eq!(tagged[0].data["review"]["tags"], json!(["printer"]));
    assert_eq!(tagged[0].performed_by, Some(rule));
    assert_eq!(tagged[0].depth, cause.depth + 1);
    assert_eq!(tagged[0].chain_rules, vec![rule]);
    assert_eq!(tagged[0].correlation_id, cause.correlation_id);

    // Another rule tagging it the same way changes nothing and says so.
    let again = requested(
        &cause,
        RuleId::new(),
        json!({"type": "add_review_tag", "tag": "Printer"}),
    );
    let outcome = world.run(&again).await;
    assert!(matches!(outcome, ActionOutcome::NoOp { .. }), "{outcome:?}");
    assert_eq!(world.outbox_of(EventType::ReviewTagAdded).await.len(), 1);
}

#[tokio::test]
async fn set_review_status_sets_it_and_emits_review_status_changed() {
    let world = world().await;
    let (survey, cause) = world.review_received(CsatValue::Positive).await;
    let event = requested(
        &cause,
        RuleId::new(),
        json!({"type": "set_review_status", "status": "done"}),
    );
    done(&world.run(&event).await);
    let review: Review = read_record(
        &world
            .store
            .get(&keys::review(&world.tenant, survey))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(review.status.as_deref(), Some("done"));
    let changed = world.outbox_of(EventType::ReviewStatusChanged).await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].data["review"]["status"], "done");
    assert_eq!(changed[0].data["previous_status"], Value::Null);
}

#[tokio::test]
async fn open_case_opens_one_case_per_review_assigned_as_the_rule_says() {
    let world = world().await;
    let (survey, cause) = world.review_received(CsatValue::Negative).await;
    let event = requested(
        &cause,
        RuleId::new(),
        json!({"type": "open_case", "assignee": {"kind": "ticket_agent"}}),
    );
    let detail = done(&world.run(&event).await).to_string();
    let opened = world.outbox_of(EventType::CaseOpened).await;
    assert_eq!(opened.len(), 1);
    let case = &opened[0].data["case"];
    assert_eq!(case["assignee"], "a-alice");
    assert_eq!(case["status"], "open");
    assert_eq!(case["ticket_id"], "1001");
    assert_eq!(case["survey_request_id"], survey.to_string());
    assert!(detail.contains("assigned to a-alice"), "{detail}");
    let stored = world
        .store
        .get(&keys::case(
            &world.tenant,
            closedloop_core::ids::CaseId::parse(case["id"].as_str().unwrap()).unwrap(),
        ))
        .await
        .unwrap();
    assert!(stored.is_some());

    // A second rule opening a case for the same review: a no-op that names the open case.
    let second = requested(
        &cause,
        RuleId::new(),
        json!({"type": "open_case", "assignee": {"kind": "agent", "agent_id": "a-mark"}}),
    );
    let outcome = world.run(&second).await;
    let ActionOutcome::NoOp { detail } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(detail.contains(case["id"].as_str().unwrap()), "{detail}");
    assert_eq!(world.outbox_of(EventType::CaseOpened).await.len(), 1);
    let audit = world.audit("1001").await;
    assert!(audit.iter().any(|e| e["outcome"] == "no_op"), "{audit:?}");
}

#[tokio::test]
async fn open_case_sets_the_sla_deadline_and_links_the_contact_and_account() {
    let world = world().await;
    closedloop_core::cases::set_sla(
        world.store.as_ref(),
        &world.tenant,
        closedloop_core::cases::SlaPolicy {
            enabled: true,
            close_within_hours: 8,
        },
    )
    .await
    .unwrap();
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    let detail = done(
        &world
            .run(&requested(
                &cause,
                RuleId::new(),
                json!({"type": "open_case", "assignee": {"kind": "ticket_agent"}}),
            ))
            .await,
    )
    .to_string();
    let opened = world.outbox_of(EventType::CaseOpened).await;
    let case: closedloop_core::domain::Case =
        serde_json::from_value(opened[0].data["case"].clone()).unwrap();
    // No business hours set: the SLA counts around the clock.
    assert_eq!(
        case.sla_deadline.unwrap() - case.opened_at,
        chrono::Duration::hours(8)
    );
    assert!(detail.contains("due "), "{detail}");
    assert_eq!(case.contact_id.unwrap().as_str(), "c-bob");
    assert_eq!(case.account_id.unwrap().as_str(), "acc-1");
    // It is in the SLA sweep's index, under its deadline.
    let due = world
        .store
        .query(Query::on_index(
            closedloop_core::store::Index::Gsi1,
            keys::open_cases_index(&world.tenant),
        ))
        .await
        .unwrap();
    assert_eq!(due.items.len(), 1);
}

#[tokio::test]
async fn close_case_closes_the_reviews_open_case_with_its_resolution() {
    let world = world().await;
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    done(
        &world
            .run(&requested(
                &cause,
                RuleId::new(),
                json!({"type": "open_case"}),
            ))
            .await,
    );
    // A resolution that is no close option of the tenant closes nothing and says which are.
    let unknown = requested(
        &cause,
        RuleId::new(),
        json!({"type": "close_case", "resolution": "Printer replaced"}),
    );
    let ActionOutcome::Failed { error, .. } = world.run(&unknown).await else {
        panic!("an unknown resolution must fail")
    };
    assert!(
        error.contains("'Printer replaced' is not one of this tenant's close options (called-customer, issue-fixed, no-response)"),
        "{error}"
    );
    assert!(world.outbox_of(EventType::CaseClosed).await.is_empty());
    // The option's label, in any case, names it.
    let later = requested(
        &cause,
        RuleId::new(),
        json!({"type": "close_case", "resolution": "issue FIXED"}),
    );
    done(&world.run(&later).await);
    let closed = world.outbox_of(EventType::CaseClosed).await;
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].data["case"]["status"], "closed");
    assert_eq!(closed[0].data["case"]["resolution"], "Issue fixed");
    assert_eq!(closed[0].data["case"]["resolution_id"], "issue-fixed");
    assert_eq!(
        closed[0].data["case"]["closed_by"],
        format!("rule:{}", later.performed_by.unwrap())
    );
    // Without an SLA there is no verdict, but the time it took is kept.
    assert!(closed[0].data["case"].get("sla_met").is_none());
    assert!(closed[0].data["case"]["seconds_to_close"].is_i64());
    // Closing again finds no open case; a new one may be opened.
    let again = requested(
        &cause,
        RuleId::new(),
        json!({"type": "close_case", "resolution": "issue-fixed"}),
    );
    assert!(matches!(
        world.run(&again).await,
        ActionOutcome::NoOp { .. }
    ));
    done(
        &world
            .run(&requested(
                &cause,
                RuleId::new(),
                json!({"type": "open_case"}),
            ))
            .await,
    );
    assert_eq!(world.outbox_of(EventType::CaseOpened).await.len(), 2);
}

#[tokio::test]
async fn send_rating_request_asks_the_customer_again_in_the_rules_chain() {
    let world = world().await;
    let cause = world.ticket_closed("1001", "a-alice");
    let rule = RuleId::new();
    let event = requested(&cause, rule, json!({"type": "send_rating_request"}));
    let detail = done(&world.run(&event).await).to_string();
    let asked = world.outbox_of(EventType::SurveyReRequested).await;
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].performed_by, Some(rule));
    assert_eq!(
        asked[0].data["requested_by"],
        "rule: Follow up on bad reviews"
    );
    let survey = asked[0].data["survey_request_id"].as_str().unwrap();
    assert!(detail.contains(survey), "{detail}");
    let request = world
        .store
        .get(&keys::survey_request(
            &world.tenant,
            SurveyRequestId::parse(survey).unwrap(),
        ))
        .await
        .unwrap();
    assert!(request.is_some(), "the new rating request is scheduled");
}

#[tokio::test]
async fn post_webhook_posts_the_event_signed_with_the_rules_secret() {
    let world = world().await;
    let receiver = MockServer::start().await;
    let cause = world.ticket_closed("1001", "a-alice");
    // The secret lives in the stored rule; the request (an event in queues) carries none.
    let url = format!("{}/in", receiver.uri());
    let draft = closedloop_core::rules::parse_draft(
        json!({"name": "CRM", "trigger": "ticket_closed",
            "actions": [{"type": "post_webhook", "url": url, "secret": "rule-webhook-secret-0001"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let rule = closedloop_core::automation::create_rule(
        world.store.as_ref(),
        &world.tenant,
        draft,
        Utc::now(),
    )
    .await
    .unwrap();
    let event = requested(&cause, rule.id, json!({"type": "post_webhook", "url": url}));
    assert!(!event.data.to_string().contains("rule-webhook-secret-0001"));
    Mock::given(method("POST"))
        .and(path("/in"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&receiver)
        .await;
    assert_eq!(done(&world.run(&event).await), "webhook answered 202");
    let received = &receiver.received_requests().await.unwrap()[0];
    let body: Value = received.body_json().unwrap();
    assert_eq!(body["event"]["event_id"], cause.event_id.to_string());
    assert_eq!(body["type"], "closedloop.rule_action");
    let signature = received.headers["x-closedloop-signature"].to_str().unwrap();
    closedloop_core::signature::verify_timestamped(
        Some(signature),
        "X-Closedloop-Signature",
        &[b"rule-webhook-secret-0001".to_vec()],
        &received.body,
        Utc::now(),
    )
    .unwrap();
}

// ── Exactly once, retries, dead letters ──────────────────────────────────────────────────────

#[tokio::test]
async fn a_redelivered_request_sends_exactly_one_email_and_one_note() {
    let world = world().await;
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    let rule = RuleId::new();
    let email = requested(
        &cause,
        rule,
        json!({"type": "send_email", "to": ["lead@acme.example"], "subject": "Bad review",
            "body": "{{ comment }}"}),
    );
    let note = requested(
        &cause,
        rule,
        json!({"type": "add_internal_note", "body": "Bad review"}),
    );
    // The second action of the rule: its own claim.
    let mut note_request: ActionRequest = serde_json::from_value(note.data.clone()).unwrap();
    note_request.action_index = 1;
    let note = EventEnvelope {
        data: serde_json::to_value(&note_request).unwrap(),
        ..note
    };
    helpdesk_expects(
        &world,
        &note,
        json!({"operation": "add_internal_note", "ticket_id": "1001", "body": "Bad review"}),
    )
    .await;
    for _ in 0..3 {
        world.run(&email).await;
        world.run(&note).await;
    }
    assert_eq!(world.emails().len(), 1);
    assert_eq!(world.helpdesk.received_requests().await.unwrap().len(), 1);
    assert_eq!(world.audit("1001").await.len(), 2, "one audit entry each");
    assert_eq!(world.run(&email).await, ActionOutcome::AlreadyDone);
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_as_retry_after_says_then_the_call_succeeds() {
    let world = world().await;
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    let event = requested(&cause, RuleId::new(), json!({"type": "reopen_ticket"}));
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&world.helpdesk)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&world.helpdesk)
        .await;
    let started = Instant::now();
    done(&world.run(&event).await);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}, not the second the helpdesk asked for",
        started.elapsed()
    );
    assert_eq!(world.helpdesk.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_retry_after_longer_than_we_wait_goes_to_the_dead_letters_at_once() {
    let world = world().await;
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    let event = requested(
        &cause,
        RuleId::new(),
        json!({"type": "add_ticket_tag", "tag": "x"}),
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .mount(&world.helpdesk)
        .await;
    let outcome = world.run(&event).await;
    let ActionOutcome::Failed {
        error, attempts, ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(*attempts, 1);
    assert!(error.contains("3600"), "{error}");
}

#[tokio::test]
async fn three_server_errors_dead_letter_the_action_and_an_admin_retry_delivers_it_once() {
    let world = world().await;
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    let event = requested(
        &cause,
        RuleId::new(),
        json!({"type": "add_internal_note", "body": "Call Bob"}),
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("database down"))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&world.helpdesk)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&world.helpdesk)
        .await;

    let outcome = world.run(&event).await;
    let ActionOutcome::Failed {
        dead_letter_id,
        attempts,
        error,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(attempts, 3);
    assert!(error.contains("database down"), "{error}");
    // Visible: a dead letter, an audit entry, an action.failed event.
    let failed = actions::list_failed(world.store.as_ref(), &world.tenant, 10, None)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, dead_letter_id);
    assert!(failed[0].retryable);
    let audit = world.audit("1001").await;
    assert_eq!(audit[0]["outcome"], "failed");
    assert_eq!(audit[0]["attempts"], 3);
    assert_eq!(world.outbox_of(EventType::ActionFailed).await.len(), 1);
    // EventBridge redelivering the original does not try a fourth time.
    assert_eq!(world.run(&event).await, ActionOutcome::AlreadyDone);
    assert_eq!(world.helpdesk.received_requests().await.unwrap().len(), 3);

    // The admin retries: the dead letter goes, one new action.requested is queued.
    let new_id = actions::retry_failed(
        world.store.as_ref(),
        &world.tenant,
        &dead_letter_id.to_string(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert!(
        actions::list_failed(world.store.as_ref(), &world.tenant, 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    let again = world
        .outbox_of(EventType::ActionRequested)
        .await
        .into_iter()
        .find(|e| e.event_id == new_id)
        .expect("the retry is queued");
    // A second retry of the same dead letter is refused.
    assert!(
        actions::retry_failed(
            world.store.as_ref(),
            &world.tenant,
            &dead_letter_id.to_string(),
            Utc::now()
        )
        .await
        .is_err()
    );
    done(&world.run(&again).await);
    assert_eq!(world.run(&again).await, ActionOutcome::AlreadyDone);
    assert_eq!(world.helpdesk.received_requests().await.unwrap().len(), 4);
    let audit = world.audit("1001").await;
    let last = audit.last().unwrap();
    assert_eq!(last["outcome"], "done");
    assert_eq!(last["retry_of"], dead_letter_id.to_string());
}

#[tokio::test]
async fn revoked_credentials_fail_at_once_with_a_clear_error() {
    let world = world().await;
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    let event = requested(&cause, RuleId::new(), json!({"type": "reopen_ticket"}));
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"message": "API token revoked"}})),
        )
        .expect(1)
        .mount(&world.helpdesk)
        .await;
    let outcome = world.run(&event).await;
    let ActionOutcome::Failed {
        error, attempts, ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(*attempts, 1, "a 401 is not retried");
    assert_eq!(
        error,
        "the helpdesk refused our credentials: API token revoked"
    );
    let failed = actions::list_failed(world.store.as_ref(), &world.tenant, 10, None)
        .await
        .unwrap();
    assert!(!failed[0].retryable);
    assert!(!failed[0].redacted().to_string().contains(CONNECTOR_SECRET));
}

#[tokio::test]
async fn without_a_connected_helpdesk_a_helpdesk_action_fails_visibly() {
    let world = world().await;
    helpdesk::delete_config(world.store.as_ref(), &world.tenant)
        .await
        .unwrap();
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    let event = requested(
        &cause,
        RuleId::new(),
        json!({"type": "add_ticket_tag", "tag": "x"}),
    );
    let outcome = world.run(&event).await;
    let ActionOutcome::Failed { error, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("no helpdesk is connected"), "{error}");
    assert_eq!(world.audit("1001").await[0]["outcome"], "failed");
}

#[tokio::test]
async fn a_store_outage_fails_the_invocation_so_lambda_retries_it() {
    // A store that refuses every write as throttled: the claim cannot even be taken.
    struct Throttled(Arc<dyn ItemStore>);
    #[async_trait::async_trait]
    impl ItemStore for Throttled {
        async fn get(
            &self,
            key: &closedloop_core::store::Key,
        ) -> Result<Option<closedloop_core::store::Item>, closedloop_core::store::StoreError>
        {
            self.0.get(key).await
        }
        async fn put(
            &self,
            _: closedloop_core::store::Item,
            _: Option<closedloop_core::store::Condition>,
        ) -> Result<(), closedloop_core::store::StoreError> {
            Err(closedloop_core::store::StoreError::Transient(
                "throttled".into(),
            ))
        }
        async fn update(
            &self,
            _: &closedloop_core::store::Key,
            _: closedloop_core::store::Update,
            _: Option<closedloop_core::store::Condition>,
        ) -> Result<closedloop_core::store::Item, closedloop_core::store::StoreError> {
            Err(closedloop_core::store::StoreError::Transient(
                "throttled".into(),
            ))
        }
        async fn delete(
            &self,
            _: &closedloop_core::store::Key,
            _: Option<closedloop_core::store::Condition>,
        ) -> Result<(), closedloop_core::store::StoreError> {
            Err(closedloop_core::store::StoreError::Transient(
                "throttled".into(),
            ))
        }
        async fn query(
            &self,
            q: Query,
        ) -> Result<closedloop_core::store::Page, closedloop_core::store::StoreError> {
            self.0.query(q).await
        }
        async fn transact_write(
            &self,
            _: Vec<closedloop_core::store::WriteOp>,
        ) -> Result<(), closedloop_core::store::StoreError> {
            Err(closedloop_core::store::StoreError::Transient(
                "throttled".into(),
            ))
        }
    }
    let world = world().await;
    let (_, cause) = world.review_received(CsatValue::Negative).await;
    let event = requested(&cause, RuleId::new(), json!({"type": "reopen_ticket"}));
    let throttled = Throttled(world.store.clone());
    let executor = Executor {
        store: &throttled,
        ..world.executor()
    };
    let err = ::actions::handle(&executor, &bus_event(&event))
        .await
        .unwrap_err();
    let ::actions::ActionsError::Action(err) = err else {
        panic!("{err:?}")
    };
    assert!(err.is_transient(), "{err}");
    assert!(world.helpdesk.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rule_webhook_to_the_metadata_service_is_refused_without_a_call() {
    let world = world().await;
    let cause = world.ticket_closed("1001", "a-alice");
    let event = requested(
        &cause,
        RuleId::new(),
        json!({"type": "post_webhook", "url": "http://169.254.169.254/latest/meta-data",
            "secret": "rule-webhook-secret-0001"}),
    );
    let outcome = world.run(&event).await;
    let ActionOutcome::Failed {
        error, attempts, ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(*attempts, 1);
    assert!(error.contains("link-local"), "{error}");
}
