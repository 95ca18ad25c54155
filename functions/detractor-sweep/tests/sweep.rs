//! The detractor sweep against the embedded store, a helpdesk that keeps account records as
//! text (foreign text plus closedloop's marked block) and a mailer that keeps what it sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use closedloop_core::accounts;
use closedloop_core::detractors::{self, SweepSummary};
use closedloop_core::domain::{
    Comment, Email, NpsScore, ProviderResponse, Rating, Review, TenantSettings, TicketSnapshot,
};
use closedloop_core::helpdesk::{
    self, AccountBlock, AccountBlockLimits, ConnectorDirectory, ConnectorError, HelpdeskConnector,
    NewTicket,
};
use closedloop_core::ids::{AccountId, AgentId, ContactId, TenantId, TicketId};
use closedloop_core::ports::{MailError, Mailer, OutgoingEmail};
use closedloop_core::records::record_item;
use closedloop_core::store::{ItemStore, Key, StoreError};
use closedloop_core::{contacts, keys, tenancy};
use closedloop_embedded::JournalStore;

const FOREIGN: &str = "Key account since 2019. Invoices go to ap@northwind.example.";
const START: &str = "[closedloop]";
const END: &str = "[/closedloop]";

/// A helpdesk whose account records are text: what staff wrote, plus closedloop's block
/// between markers, which only the two block operations touch.
#[derive(Default)]
struct Helpdesk {
    records: Mutex<HashMap<String, String>>,
    calls: Mutex<Vec<String>>,
    fail: Mutex<Option<ConnectorError>>,
}

impl Helpdesk {
    fn record(&self, account: &str) -> String {
        self.records
            .lock()
            .unwrap()
            .get(account)
            .cloned()
            .unwrap_or_default()
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn without_block(text: &str) -> String {
        match (text.find(START), text.find(END)) {
            (Some(a), Some(b)) => format!("{}{}", &text[..a], &text[b + END.len()..])
                .trim_end()
                .to_string(),
            _ => text.to_string(),
        }
    }
}

#[async_trait]
impl HelpdeskConnector for Helpdesk {
    fn vendor(&self) -> &str {
        "test_erp"
    }
    async fn add_internal_note(
        &self,
        _: &str,
        _: &TicketId,
        _: &str,
    ) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn change_ticket_type(
        &self,
        _: &str,
        _: &TicketId,
        _: &str,
    ) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn list_ticket_types(&self) -> Result<Vec<String>, ConnectorError> {
        unimplemented!()
    }
    async fn create_ticket(&self, _: &str, _: &NewTicket) -> Result<TicketId, ConnectorError> {
        unimplemented!()
    }
    async fn reopen_ticket(
        &self,
        _: &str,
        _: &TicketId,
    ) -> Result<closedloop_core::helpdesk::Reopened, ConnectorError> {
        unimplemented!()
    }
    async fn set_ticket_status(
        &self,
        _: &str,
        _: &TicketId,
        _: &str,
    ) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn assign_agent(&self, _: &str, _: &TicketId, _: &AgentId) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn add_tag(&self, _: &str, _: &TicketId, _: &str) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn public_reply(&self, _: &str, _: &TicketId, _: &str) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn fetch_ticket(&self, _: &TicketId) -> Result<TicketSnapshot, ConnectorError> {
        unimplemented!()
    }
    async fn upsert_account_block(
        &self,
        key: &str,
        account: &AccountId,
        block: &AccountBlock,
    ) -> Result<(), ConnectorError> {
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("upsert {} {key}", account.as_str()));
        let mut records = self.records.lock().unwrap();
        let record = records.entry(account.as_str().to_string()).or_default();
        let kept = Self::without_block(record);
        *record = format!("{kept}\n{START}{}\n{}{END}", block.subject, block.text);
        Ok(())
    }
    async fn remove_account_block(
        &self,
        key: &str,
        account: &AccountId,
    ) -> Result<(), ConnectorError> {
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("remove {} {key}", account.as_str()));
        let mut records = self.records.lock().unwrap();
        if let Some(record) = records.get_mut(account.as_str()) {
            *record = Self::without_block(record);
        }
        Ok(())
    }
}

struct Directory {
    tenant: TenantId,
    helpdesk: Arc<Helpdesk>,
}

#[async_trait]
impl ConnectorDirectory for Directory {
    async fn connector(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Arc<dyn HelpdeskConnector>>, StoreError> {
        Ok((tenant == &self.tenant).then(|| self.helpdesk.clone() as Arc<dyn HelpdeskConnector>))
    }
}

#[derive(Default)]
struct Outbox(Mutex<Vec<OutgoingEmail>>);

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let mut sent = self.0.lock().unwrap();
        sent.push(email.clone());
        Ok(format!("m{}", sent.len()))
    }
}

impl Outbox {
    fn sent(&self) -> Vec<OutgoingEmail> {
        self.0.lock().unwrap().clone()
    }
}

struct World {
    store: JournalStore,
    tenant: TenantId,
    helpdesk: Arc<Helpdesk>,
    directory: Directory,
    outbox: Outbox,
    answers: usize,
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const ACCOUNT: &str = "acc-northwind";

async fn world() -> World {
    let store = JournalStore::open_in_memory().unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let settings = TenantSettings {
        time_zone: closedloop_core::domain::TimeZone::parse("Europe/Warsaw").unwrap(),
        digest_recipients: vec![Email::parse("cs-lead@acme.example").unwrap()],
        ..TenantSettings::default()
    };
    tenancy::provision_tenant(
        &store,
        tenant.clone(),
        "Acme",
        settings,
        t("2026-11-01T00:00:00Z"),
    )
    .await
    .unwrap();
    let helpdesk = Arc::new(Helpdesk::default());
    helpdesk
        .records
        .lock()
        .unwrap()
        .insert(ACCOUNT.into(), FOREIGN.into());
    World {
        store,
        directory: Directory {
            tenant: tenant.clone(),
            helpdesk: helpdesk.clone(),
        },
        tenant,
        helpdesk,
        outbox: Outbox::default(),
        answers: 0,
    }
}

impl World {
    /// A survey provider's NPS answer from a contact of an account, stored as the webhook
    /// stores it (review, directory entry, latest answer).
    async fn answer(
        &mut self,
        account: &str,
        name: &str,
        email: &str,
        score: u8,
        comment: Option<&str>,
        at: &str,
    ) {
        self.answer_to(
            &self.tenant.clone(),
            account,
            name,
            email,
            score,
            comment,
            at,
        )
        .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer_to(
        &mut self,
        tenant: &TenantId,
        account: &str,
        name: &str,
        email: &str,
        score: u8,
        comment: Option<&str>,
        at: &str,
    ) {
        self.answers += 1;
        let at = t(at);
        let email = Email::parse(email).unwrap();
        let account = AccountId::parse(account).unwrap();
        let contact = ContactId::parse(&format!("c-{}", name.to_lowercase())).unwrap();
        let key = keys::provider_review(tenant, "delighted", &format!("r{}", self.answers));
        let review = Review {
            tenant_id: tenant.clone(),
            survey_request_id: None,
            ticket_id: None,
            rating: Rating::Nps(NpsScore::new(score).unwrap()),
            comment: comment.and_then(|c| Comment::parse(c).unwrap()),
            agent_id: None,
            contact_id: Some(contact.clone()),
            account_id: Some(account.clone()),
            recorded_at: at,
            updated_at: at,
            provider: Some(ProviderResponse {
                source: "delighted".into(),
                response_id: format!("r{}", self.answers),
                respondent_email: Some(email.clone()),
                answered_at: at,
            }),
            tags: vec![],
            status: None,
        };
        self.store
            .put(record_item(&key, "review", &review), None)
            .await
            .unwrap();
        let entry = closedloop_core::domain::Contact {
            id: contact.clone(),
            name: name.into(),
            email: email.clone(),
            account: Some(closedloop_core::domain::CustomerAccount {
                id: account.clone(),
                name: "Northwind".into(),
            }),
        };
        self.store
            .transact_write(vec![contacts::directory_put(tenant, &entry)])
            .await
            .unwrap();
        accounts::note_nps_answer(
            &self.store,
            tenant,
            &account,
            Some(&contact),
            NpsScore::new(score).unwrap(),
            at,
            &key.pk,
            at,
        )
        .await
        .unwrap();
    }

    async fn sweep(&self, at: &str) -> SweepSummary {
        detractors::sweep(&self.store, &self.directory, &self.outbox, t(at))
            .await
            .unwrap()
    }

    async fn flagged(&self, account: &str) -> bool {
        detractors::flagged_detractor(
            &self.store,
            &self.tenant,
            &AccountId::parse(account).unwrap(),
        )
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn bob_gives_a_3_and_is_flagged_then_cindy_gives_a_10_and_the_flag_goes() {
    let mut w = world().await;
    w.answer(
        ACCOUNT,
        "Bob",
        "bob@northwind.example",
        3,
        Some("The printer is still broken"),
        "2026-11-02T09:00:00Z",
    )
    .await;
    let first = w.sweep("2026-11-03T06:00:00Z").await;
    assert_eq!((first.flagged, first.accounts_read), (1, 1));
    let record = w.helpdesk.record(ACCOUNT);
    assert!(record.starts_with(FOREIGN), "foreign text kept: {record}");
    for wanted in [
        "Bob <bob@northwind.example>",
        "3/10",
        "The printer is still broken",
        "2026-11-02",
    ] {
        assert!(record.contains(wanted), "the flag names {wanted}: {record}");
    }
    assert!(w.flagged(ACCOUNT).await);
    let digest = &w.outbox.sent()[0];
    assert_eq!(digest.to[0].as_str(), "cs-lead@acme.example");
    assert!(digest.subject.contains("1 flagged"), "{}", digest.subject);
    assert!(
        digest
            .text
            .contains("Old message:\n(no closedloop message)")
    );

    // Two weeks later Cindy of the same account is a promoter: the next run removes the flag.
    w.answer(
        ACCOUNT,
        "Cindy",
        "cindy@northwind.example",
        10,
        None,
        "2026-11-16T10:00:00Z",
    )
    .await;
    let second = w.sweep("2026-11-17T06:00:00Z").await;
    assert_eq!(second.unflagged, 1);
    assert_eq!(
        w.helpdesk.record(ACCOUNT),
        FOREIGN,
        "only the foreign text is left"
    );
    assert!(!w.flagged(ACCOUNT).await);
    let digest = &w.outbox.sent()[1];
    assert!(digest.subject.contains("1 unflagged"), "{}", digest.subject);
    assert!(
        digest.text.contains("The printer is still broken"),
        "the digest shows the old message being removed"
    );

    // Bob's older answer arriving again changes nothing: it is not the latest.
    w.answer(
        ACCOUNT,
        "Bob",
        "bob@northwind.example",
        3,
        None,
        "2026-11-02T09:00:00Z",
    )
    .await;
    let third = w.sweep("2026-11-18T06:00:00Z").await;
    assert_eq!(third.accounts_read, 0);
    assert_eq!(w.helpdesk.record(ACCOUNT), FOREIGN);
    assert_eq!(w.outbox.sent().len(), 2);
}

#[tokio::test]
async fn answers_delivered_out_of_order_leave_the_latest_counting() {
    let mut w = world().await;
    // Cindy's newer 10 arrives first, Bob's older 3 after it.
    w.answer(
        ACCOUNT,
        "Cindy",
        "cindy@northwind.example",
        10,
        None,
        "2026-11-16T10:00:00Z",
    )
    .await;
    w.answer(
        ACCOUNT,
        "Bob",
        "bob@northwind.example",
        3,
        None,
        "2026-11-02T09:00:00Z",
    )
    .await;
    w.sweep("2026-11-17T06:00:00Z").await;
    assert_eq!(w.helpdesk.record(ACCOUNT), FOREIGN);
    assert!(w.helpdesk.calls().is_empty(), "nothing to flag or remove");
    assert!(!w.flagged(ACCOUNT).await);
    assert!(
        w.outbox.sent().is_empty(),
        "no digest without anything to report"
    );
}

#[tokio::test]
async fn an_over_long_message_is_an_error_in_every_digest_and_the_record_is_untouched() {
    let mut w = world().await;
    let essay = "Nothing works. ".repeat(80); // 1,200 characters
    w.answer(
        ACCOUNT,
        "Bob",
        "bob@northwind.example",
        2,
        Some(&essay),
        "2026-11-02T09:00:00Z",
    )
    .await;
    let run = w.sweep("2026-11-03T06:00:00Z").await;
    assert_eq!(run.in_error, 1);
    assert_eq!(
        w.helpdesk.record(ACCOUNT),
        FOREIGN,
        "nothing was cut to fit"
    );
    assert!(w.helpdesk.calls().is_empty());
    assert!(w.flagged(ACCOUNT).await, "still a detractor for the rules");
    let digest = &w.outbox.sent()[0];
    assert!(digest.subject.contains("1 in error"), "{}", digest.subject);
    assert!(
        digest.text.contains("test_erp takes at most 1024"),
        "{}",
        digest.text
    );
    assert!(
        digest.text.contains(essay.trim()),
        "the new message is shown whole"
    );

    // The same day again: nothing new, nothing sent.
    let again = w.sweep("2026-11-03T14:00:00Z").await;
    assert_eq!((again.accounts_read, again.digests_sent), (1, 0));
    assert_eq!(w.outbox.sent().len(), 1);
    // The next day it is listed again.
    w.sweep("2026-11-04T06:00:00Z").await;
    assert_eq!(w.outbox.sent().len(), 2);
    assert!(w.outbox.sent()[1].subject.contains("1 in error"));

    // Once the connector takes longer messages, the next run flags it and it leaves the index.
    helpdesk::put_config(
        &w.store,
        &w.tenant,
        helpdesk::ConnectorKind::GenericWebhook,
        "https://erp.acme.example/hook",
        Default::default(),
        Some("0123456789abcdef0123"),
        t("2026-11-04T07:00:00Z"),
    )
    .await
    .unwrap();
    helpdesk::set_account_block_limits(
        &w.store,
        &w.tenant,
        Some(AccountBlockLimits {
            subject_chars: 32,
            message_chars: 4000,
        }),
        t("2026-11-04T07:00:00Z"),
    )
    .await
    .unwrap();
    let fixed = w.sweep("2026-11-05T06:00:00Z").await;
    assert_eq!(fixed.flagged, 1);
    assert!(w.helpdesk.record(ACCOUNT).contains(essay.trim()));
    assert!(w.outbox.sent()[2].subject.contains("1 flagged"));
    assert_eq!(w.sweep("2026-11-06T06:00:00Z").await.accounts_read, 0);
}

#[tokio::test]
async fn running_twice_changes_nothing_the_second_time() {
    let mut w = world().await;
    for (i, score) in [2u8, 9, 5].into_iter().enumerate() {
        let account = format!("acc-{i}");
        w.answer(
            &account,
            "Ann",
            &format!("ann{i}@x.example"),
            score,
            None,
            "2026-11-02T09:00:00Z",
        )
        .await;
    }
    let first = w.sweep("2026-11-03T06:00:00Z").await;
    assert_eq!(
        (first.accounts_read, first.flagged, first.unchanged),
        (3, 2, 1)
    );
    let calls = w.helpdesk.calls();
    let records = w.helpdesk.records.lock().unwrap().clone();
    let second = w.sweep("2026-11-03T06:05:00Z").await;
    assert_eq!(second.accounts_read, 0);
    assert_eq!(w.helpdesk.calls(), calls, "no helpdesk call");
    assert_eq!(*w.helpdesk.records.lock().unwrap(), records);
    assert_eq!(w.outbox.sent().len(), 1, "one digest");
}

#[tokio::test]
async fn a_missed_run_is_caught_up_by_the_next() {
    let mut w = world().await;
    w.answer(
        ACCOUNT,
        "Bob",
        "bob@northwind.example",
        1,
        None,
        "2026-11-02T09:00:00Z",
    )
    .await;
    w.answer(
        "acc-contoso",
        "Dee",
        "dee@contoso.example",
        4,
        None,
        "2026-11-03T09:00:00Z",
    )
    .await;
    w.answer(
        "acc-contoso",
        "Eve",
        "eve@contoso.example",
        8,
        None,
        "2026-11-03T11:00:00Z",
    )
    .await;
    // The runs of the 3rd and 4th never happened; the 5th does all of it.
    let run = w.sweep("2026-11-05T06:00:00Z").await;
    assert_eq!((run.accounts_read, run.flagged, run.unchanged), (2, 1, 1));
    assert!(w.helpdesk.record(ACCOUNT).contains("1/10"));
    assert!(
        !w.helpdesk.record("acc-contoso").contains(START),
        "Eve's 8 is the latest"
    );
}

#[tokio::test]
async fn a_failing_helpdesk_leaves_the_account_in_error_until_a_later_run_succeeds() {
    let mut w = world().await;
    *w.helpdesk.fail.lock().unwrap() = Some(ConnectorError::Transient("503".into()));
    w.answer(
        ACCOUNT,
        "Bob",
        "bob@northwind.example",
        0,
        None,
        "2026-11-02T09:00:00Z",
    )
    .await;
    let run = w.sweep("2026-11-03T06:00:00Z").await;
    assert_eq!(run.in_error, 1);
    assert!(w.outbox.sent()[0].text.contains("the helpdesk call failed"));
    *w.helpdesk.fail.lock().unwrap() = None;
    let run = w.sweep("2026-11-04T06:00:00Z").await;
    assert_eq!(run.flagged, 1);
    assert!(w.helpdesk.record(ACCOUNT).contains("0/10"));
}

#[tokio::test]
async fn a_threshold_of_seven_flags_a_seven() {
    let mut w = world().await;
    let mut settings = tenancy::get_settings(&w.store, &w.tenant).await.unwrap();
    settings.detractor_max_score = 7;
    tenancy::put_settings(&w.store, &w.tenant, &settings)
        .await
        .unwrap();
    w.answer(
        ACCOUNT,
        "Bob",
        "bob@northwind.example",
        7,
        None,
        "2026-11-02T09:00:00Z",
    )
    .await;
    assert_eq!(w.sweep("2026-11-03T06:00:00Z").await.flagged, 1);
}

#[tokio::test]
async fn the_digest_escapes_what_customers_wrote() {
    let mut w = world().await;
    w.answer(
        ACCOUNT,
        "<b>Bob</b>",
        "bob@northwind.example",
        3,
        Some("<script>alert(1)</script> & more"),
        "2026-11-02T09:00:00Z",
    )
    .await;
    w.sweep("2026-11-03T06:00:00Z").await;
    let html = w.outbox.sent()[0].html.clone().unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("<b>Bob"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
}

#[tokio::test]
async fn another_tenants_accounts_are_neither_read_nor_flagged() {
    let mut w = world().await;
    let globex = TenantId::parse("globex").unwrap();
    tenancy::provision_tenant(
        &w.store,
        globex.clone(),
        "Globex",
        TenantSettings::default(),
        t("2026-11-01T00:00:00Z"),
    )
    .await
    .unwrap();
    w.answer_to(
        &globex,
        ACCOUNT,
        "Zed",
        "zed@globex.example",
        0,
        None,
        "2026-11-02T09:00:00Z",
    )
    .await;
    let run = w.sweep("2026-11-03T06:00:00Z").await;
    // Globex has no helpdesk in this directory: its account waits, acme's record is untouched.
    assert_eq!((run.tenants_without_helpdesk, run.accounts_read), (1, 0));
    assert_eq!(w.helpdesk.record(ACCOUNT), FOREIGN);
    let waiting =
        accounts::latest_nps_answer(&w.store, &globex, &AccountId::parse(ACCOUNT).unwrap())
            .await
            .unwrap()
            .unwrap();
    assert!(waiting.changed, "kept for when a helpdesk is connected");
    let key = Key::new(format!("T#acme#ACCOUNT#{ACCOUNT}"), "LATEST");
    assert!(w.store.get(&key).await.unwrap().is_none());
}
