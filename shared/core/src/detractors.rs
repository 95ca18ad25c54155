//! The daily detractor sweep: flags a customer account on its helpdesk record while its latest
//! NPS answer is a detractor, removes the flag once it is not, and mails staff a digest.
//!
//! The flag state lives on the account's latest-answer item (`T#<t>#ACCOUNT#<a>` / `LATEST`,
//! attribute `flag`), beside the latest answer `accounts::note_nps_answer` keeps. An account
//! stays in the sparse "changed" index (GSI2 `T#<t>#ACCOUNTS_CHANGED`) from a newer answer until
//! a sweep has applied it to the record and reported it, and as long as it is in error, so a run
//! reads only those accounts, a missed run is caught up by the next, and a crash anywhere
//! repeats only what is idempotent (connector calls carry a key derived from the change, the
//! digest is claimed once per content).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::accounts::{self, LatestAnswer};
use crate::domain::{Email, NpsBand, Review, SurveyRequest, TenantSettings};
use crate::helpdesk::{
    self, AccountBlock, AccountBlockLimits, ConnectorDirectory, ConnectorError, HelpdeskConnector,
};
use crate::html::escape;
use crate::idempotency::{self, Begin, IdempotencyConfig};
use crate::ids::{AccountId, TenantId};
use crate::keys;
use crate::ports::{MailError, Mailer, OutgoingEmail};
use crate::records::read_record;
use crate::store::{
    Condition, Index, Item, ItemExt, ItemStore, Key, Query, StoreError, Update, Value,
};
use crate::tenancy::{self, TenancyError};

const FLAG: &str = "flag";
const FLAG_VERSION: &str = "flag_version";
const PAGE_SIZE: usize = 500;

/// closedloop's message on an account record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagMessage {
    pub subject: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagState {
    /// closedloop's detractor message is on the record.
    Flagged,
    /// Nothing of closedloop's is on the record.
    Unflagged,
    /// The record could not be brought in line (the message does not fit, or the helpdesk
    /// refused): it is as it was, and the account is in every digest until that is fixed.
    Error,
}

/// An account's flag, as the sweep last left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountFlag {
    pub state: FlagState,
    /// The sweep's verdict on the latest answer it processed (the rules' `account.flagged_detractor`).
    pub detractor: bool,
    /// `latest_answered_at` of that answer.
    pub answer_at: String,
    /// What of closedloop's is on the helpdesk record now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_record: Option<FlagMessage>,
    /// In error: the message that should be on the record (none: the flag should go).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<FlagMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
    /// What the last digest showed as on the record: the next digest's "old message".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<FlagMessage>,
    /// The tenant-local day (`YYYY-MM-DD`) a digest last listed this account's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reported_on: Option<String>,
}

/// The stored flag of an account item, if a sweep has seen it.
pub fn read_flag(item: &Item) -> Option<AccountFlag> {
    serde_json::from_str(item.str_attr(FLAG)?).ok()
}

/// The sweep's verdict for the rules: `Some(true)` while the account is flagged as a detractor
/// (or should be, and is in error), `Some(false)` otherwise, `None` for an unknown account.
pub async fn flagged_detractor(
    store: &dyn ItemStore,
    tenant: &TenantId,
    account: &AccountId,
) -> Result<bool, StoreError> {
    Ok(store
        .get(&keys::account_latest(tenant, account))
        .await?
        .as_ref()
        .and_then(read_flag)
        .is_some_and(|f| f.detractor))
}

/// What one run did, over all tenants.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct SweepSummary {
    pub tenants: usize,
    /// Tenants skipped because no helpdesk is connected (their accounts wait in the index).
    pub tenants_without_helpdesk: usize,
    /// Account items read from the changed index.
    pub accounts_read: usize,
    /// Every item read: the index pages, settings, connector configurations, the reviews and
    /// contacts named in new messages, idempotency records.
    pub items_read: usize,
    pub flagged: usize,
    pub updated: usize,
    pub unflagged: usize,
    pub in_error: usize,
    /// Accounts whose record needed nothing.
    pub unchanged: usize,
    pub digests_sent: usize,
    /// Digests that could not be sent (the accounts stay in the index and go in the next).
    pub digest_failures: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
}

impl From<idempotency::IdempotencyError> for SweepError {
    fn from(e: idempotency::IdempotencyError) -> Self {
        match e {
            idempotency::IdempotencyError::Store(s) => SweepError::Store(s),
        }
    }
}

/// Runs the sweep for every tenant.
pub async fn sweep(
    store: &dyn ItemStore,
    connectors: &dyn ConnectorDirectory,
    mailer: &dyn Mailer,
    now: DateTime<Utc>,
) -> Result<SweepSummary, SweepError> {
    let mut summary = SweepSummary::default();
    for tenant in tenancy::list_tenants(store).await? {
        summary.tenants += 1;
        match connectors.connector(&tenant).await? {
            Some(connector) => {
                sweep_tenant(
                    store,
                    connector.as_ref(),
                    mailer,
                    &tenant,
                    now,
                    &mut summary,
                )
                .await?
            }
            None => {
                // Nothing can be flagged; the changes wait in the index for a connector.
                summary.tenants_without_helpdesk += 1;
                tracing::info!(tenant = %tenant.as_str(), "detractor sweep: no helpdesk connected");
            }
        }
    }
    Ok(summary)
}

/// One account as this run leaves it.
struct Processed {
    key: Key,
    account: AccountId,
    latest: LatestAnswer,
    flag: AccountFlag,
    /// `flag_version` after this run's write.
    version: Option<String>,
}

/// Sweeps one tenant with its connector.
pub async fn sweep_tenant(
    store: &dyn ItemStore,
    connector: &dyn HelpdeskConnector,
    mailer: &dyn Mailer,
    tenant: &TenantId,
    now: DateTime<Utc>,
    summary: &mut SweepSummary,
) -> Result<(), SweepError> {
    let settings = tenancy::get_settings(store, tenant).await?;
    let limits = helpdesk::get_config(store, tenant)
        .await?
        .and_then(|c| c.account_block_limits)
        .unwrap_or_else(|| connector.account_block_limits());
    summary.items_read += 2;
    let today = local_day(&settings, now);

    let mut processed = Vec::new();
    let mut query =
        Query::on_index(Index::Gsi2, keys::accounts_changed_index(tenant)).limit(PAGE_SIZE);
    loop {
        let page = store.query(query.clone()).await?;
        summary.accounts_read += page.items.len();
        summary.items_read += page.items.len();
        for item in &page.items {
            if let Some(p) = process_account(
                store, connector, &settings, limits, tenant, item, now, summary,
            )
            .await?
            {
                processed.push(p);
            }
        }
        match page.last_evaluated {
            Some(last) => query = query.start_after(Some(last)),
            None => break,
        }
    }

    // The digest: every change since the last one, and every account in error (once a day
    // when nothing else is new, so a second run on the same day sends nothing).
    let listed: Vec<(DigestEntry, &Processed)> = processed
        .iter()
        .filter_map(|p| digest_entry(p).map(|e| (e, p)))
        .collect();
    let due = listed.iter().any(|(e, p)| {
        e.kind != EntryKind::InError || p.flag.error_reported_on.as_deref() != Some(&today)
    });
    let entries: Vec<DigestEntry> = listed.into_iter().map(|(e, _)| e).collect();
    let mut reported = true;
    if due && !settings.digest_recipients.is_empty() {
        match send_digest(
            store, mailer, &settings, tenant, &today, &entries, now, summary,
        )
        .await
        {
            Ok(()) => summary.digests_sent += 1,
            Err(DigestError::Store(e)) => return Err(e.into()),
            Err(DigestError::Mail(e)) => {
                // The accounts stay in the index unreported: the next run sends them again.
                tracing::warn!(tenant = %tenant.as_str(), error = %e, "detractor digest not sent");
                summary.digest_failures += 1;
                reported = false;
            }
        }
    }
    if reported {
        for p in &processed {
            mark_reported(store, p, due.then_some(today.as_str())).await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn process_account(
    store: &dyn ItemStore,
    connector: &dyn HelpdeskConnector,
    settings: &TenantSettings,
    limits: AccountBlockLimits,
    tenant: &TenantId,
    item: &Item,
    now: DateTime<Utc>,
    summary: &mut SweepSummary,
) -> Result<Option<Processed>, SweepError> {
    let (Some(key), Some(latest)) = (item.key(), accounts::read_latest(item)) else {
        return Ok(None);
    };
    let Some(account) = key
        .pk
        .strip_prefix(&format!("{}#ACCOUNT#", keys::tenant_prefix(tenant)))
        .and_then(|a| AccountId::parse(a).ok())
    else {
        return Ok(None);
    };
    let previous = read_flag(item);
    let version = item.str_attr(FLAG_VERSION).map(str::to_string);
    let on_record = previous.as_ref().and_then(|f| f.on_record.clone());
    let detractor = latest.score.band(settings.detractor_max_score) == NpsBand::Detractor;

    let mut flag = AccountFlag {
        state: FlagState::Unflagged,
        detractor,
        answer_at: latest.answered_at.clone(),
        on_record: on_record.clone(),
        pending: None,
        error: None,
        checked_at: now,
        reported: previous.as_ref().and_then(|f| f.reported.clone()),
        error_reported_on: previous.as_ref().and_then(|f| f.error_reported_on.clone()),
    };
    let block_key = |what: &str, text: &str| {
        let digest = Sha256::digest(text.as_bytes());
        format!(
            "detractor-{what}#{}#{}#{}",
            account.as_str(),
            latest.answered_at,
            hex::encode(&digest[..8])
        )
    };
    if detractor {
        let message = render_message(store, settings, tenant, &latest, summary).await?;
        if let Err(reason) = fits(&message, limits, connector.vendor()) {
            flag.state = FlagState::Error;
            flag.pending = Some(message);
            flag.error = Some(reason);
        } else if on_record.as_ref() == Some(&message) {
            flag.state = FlagState::Flagged;
        } else {
            let block = AccountBlock {
                detractor: true,
                subject: message.subject.clone(),
                latest_score: Some(latest.score.value()),
                answered_at: keys::parse_sortable_time(&latest.answered_at),
                text: message.text.clone(),
            };
            let idem = block_key("flag", &format!("{}\n{}", message.subject, message.text));
            match connector
                .upsert_account_block(&idem, &account, &block)
                .await
            {
                Ok(()) => {
                    flag.state = FlagState::Flagged;
                    flag.on_record = Some(message);
                }
                Err(e) => {
                    flag.state = FlagState::Error;
                    flag.pending = Some(message);
                    flag.error = Some(connector_failure(&e));
                }
            }
        }
    } else if on_record.is_some() {
        match connector
            .remove_account_block(&block_key("unflag", ""), &account)
            .await
        {
            Ok(()) => flag.on_record = None,
            Err(e) => {
                flag.state = FlagState::Error;
                flag.error = Some(connector_failure(&e));
            }
        }
    }
    match (flag.state, &previous) {
        (FlagState::Error, _) => summary.in_error += 1,
        (_, _) if flag.on_record == on_record => summary.unchanged += 1,
        (FlagState::Flagged, _) if on_record.is_none() => summary.flagged += 1,
        (FlagState::Flagged, _) => summary.updated += 1,
        (FlagState::Unflagged, _) => summary.unflagged += 1,
    }

    let same = previous.as_ref().is_some_and(|p| {
        p.state == flag.state
            && p.detractor == flag.detractor
            && p.answer_at == flag.answer_at
            && p.on_record == flag.on_record
            && p.pending == flag.pending
            && p.error == flag.error
    });
    let mut new_version = version.clone();
    if !same {
        let next = ulid::Ulid::new().to_string();
        let guard = match &version {
            Some(v) => Condition::eq(FLAG_VERSION, Value::s(v.clone())),
            None => Condition::NotExists(FLAG_VERSION.into()),
        };
        let written = store
            .update(
                &key,
                Update::new()
                    .set(
                        FLAG,
                        Value::S(serde_json::to_string(&flag).expect("flags serialise")),
                    )
                    .set(FLAG_VERSION, Value::s(next.clone())),
                Some(guard.and(Condition::item_present())),
            )
            .await;
        match written {
            Ok(_) => new_version = Some(next),
            // Another sweep got there first; it reports the account.
            Err(e) if e.is_condition_failure() => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(Processed {
        key,
        account,
        latest,
        flag,
        version: new_version,
    }))
}

fn connector_failure(e: &ConnectorError) -> String {
    format!("the helpdesk call failed: {e}")
}

/// Nothing is cut to fit: a message over the limits is an error staff must see.
fn fits(message: &FlagMessage, limits: AccountBlockLimits, vendor: &str) -> Result<(), String> {
    let subject = message.subject.chars().count();
    let text = message.text.chars().count();
    if subject > limits.subject_chars {
        return Err(format!(
            "the subject is {subject} characters; {vendor} takes at most {}",
            limits.subject_chars
        ));
    }
    if text > limits.message_chars {
        return Err(format!(
            "the message is {text} characters; {vendor} takes at most {} (shorten it, or raise the \
             connector's account_block_limits)",
            limits.message_chars
        ));
    }
    Ok(())
}

/// The tenant-local calendar day of `now`.
fn local_day(settings: &TenantSettings, now: DateTime<Utc>) -> String {
    now.with_timezone(&settings.time_zone.tz())
        .format("%Y-%m-%d")
        .to_string()
}

/// The flag's subject and body: the contact, the score, the comment and the date of the
/// account's latest answer. Reads the review (and who gave it) that the answer came from.
async fn render_message(
    store: &dyn ItemStore,
    settings: &TenantSettings,
    tenant: &TenantId,
    latest: &LatestAnswer,
    summary: &mut SweepSummary,
) -> Result<FlagMessage, StoreError> {
    let mut contact: Option<(String, Option<Email>)> = None;
    let mut comment = None;
    let review_key = if latest.review.starts_with("T#") {
        Some(Key::new(latest.review.clone(), "REVIEW"))
    } else {
        crate::ids::SurveyRequestId::parse(&latest.review)
            .ok()
            .map(|id| keys::review(tenant, id))
    };
    if let Some(key) = review_key {
        summary.items_read += 1;
        if let Some(item) = store.get(&key).await?
            && let Ok(review) = read_record::<Review>(&item)
        {
            comment = review.comment.as_ref().map(|c| c.as_str().to_string());
            if let Some(id) = review.survey_request_id {
                summary.items_read += 1;
                if let Some(item) = store.get(&keys::survey_request(tenant, id)).await?
                    && let Ok(request) = read_record::<SurveyRequest>(&item)
                {
                    let c = request.ticket.contact;
                    contact = Some((c.name, Some(c.email)));
                }
            } else if let Some(email) = review
                .provider
                .as_ref()
                .and_then(|p| p.respondent_email.clone())
            {
                summary.items_read += 1;
                contact = Some(
                    match crate::contacts::find_by_email(store, tenant, &email).await? {
                        Some(entry) => (entry.name, Some(email)),
                        None => (email.as_str().to_string(), Some(email)),
                    },
                );
            }
        }
    }
    let who = match contact {
        Some((name, Some(email))) if name != email.as_str() => format!("{name} <{email}>"),
        Some((name, _)) => name,
        None => latest
            .contact_id
            .clone()
            .unwrap_or_else(|| "an unknown contact".into()),
    };
    let date = keys::parse_sortable_time(&latest.answered_at)
        .map(|t| local_day(settings, t))
        .unwrap_or_else(|| latest.answered_at.clone());
    let score = latest.score.value();
    let comment_line = match comment {
        Some(c) => format!("Comment: {c}"),
        None => "Comment: (none)".to_string(),
    };
    Ok(FlagMessage {
        subject: format!("NPS detractor ({score}/10)"),
        text: format!(
            "Latest NPS answer of this account is a detractor.\nContact: {who}\nScore: {score}/10\nDate: {date}\n{comment_line}\n(closedloop removes this message once a newer answer is not a detractor.)"
        ),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Flagged,
    Updated,
    Unflagged,
    InError,
}

/// One account in the digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DigestEntry {
    pub kind: EntryKind,
    pub account: AccountId,
    pub score: u8,
    pub answered_at: String,
    /// The message on the record as the last digest showed it.
    pub old: Option<FlagMessage>,
    /// The message now (in error: the one that could not be written; none: to be removed).
    pub new: Option<FlagMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn digest_entry(p: &Processed) -> Option<DigestEntry> {
    let f = &p.flag;
    let (kind, new) = match (f.state, &f.reported, &f.on_record) {
        (FlagState::Error, _, _) => (EntryKind::InError, f.pending.clone()),
        (_, None, Some(now)) => (EntryKind::Flagged, Some(now.clone())),
        (_, Some(old), Some(now)) if old != now => (EntryKind::Updated, Some(now.clone())),
        (_, Some(_), None) => (EntryKind::Unflagged, None),
        _ => return None,
    };
    Some(DigestEntry {
        kind,
        account: p.account.clone(),
        score: p.latest.score.value(),
        answered_at: p.latest.answered_at.clone(),
        old: f.reported.clone(),
        new,
        error: f.error.clone(),
    })
}

#[derive(Debug, thiserror::Error)]
enum DigestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mail(#[from] MailError),
}

impl From<idempotency::IdempotencyError> for DigestError {
    fn from(e: idempotency::IdempotencyError) -> Self {
        match e {
            idempotency::IdempotencyError::Store(s) => DigestError::Store(s),
        }
    }
}

/// Sends the digest once per content: a retry after a crash between the send and the marks
/// finds the claim completed and sends nothing.
#[allow(clippy::too_many_arguments)]
async fn send_digest(
    store: &dyn ItemStore,
    mailer: &dyn Mailer,
    settings: &TenantSettings,
    tenant: &TenantId,
    today: &str,
    entries: &[DigestEntry],
    now: DateTime<Utc>,
    summary: &mut SweepSummary,
) -> Result<(), DigestError> {
    let content = serde_json::to_string(entries).expect("entries serialise");
    let hash = hex::encode(&Sha256::digest(content.as_bytes())[..12]);
    let claim = format!("detractor-digest#{today}#{hash}");
    summary.items_read += 1;
    match idempotency::begin(store, tenant, &claim, now, IdempotencyConfig::default()).await? {
        Begin::Started => {}
        Begin::AlreadyCompleted(_) | Begin::InProgress => return Ok(()),
    }
    let email = render_digest(settings, today, entries);
    match mailer.send(&email).await {
        Ok(id) => {
            idempotency::complete(
                store,
                tenant,
                &claim,
                &serde_json::json!({ "message_id": id }),
            )
            .await?;
            Ok(())
        }
        Err(e) => {
            let _ = idempotency::release(store, tenant, &claim).await;
            Err(e.into())
        }
    }
}

/// The digest email: text and HTML, every customer-entered string escaped in the HTML.
pub fn render_digest(
    settings: &TenantSettings,
    today: &str,
    entries: &[DigestEntry],
) -> OutgoingEmail {
    let count = |k: EntryKind| entries.iter().filter(|e| e.kind == k).count();
    let (flagged, updated, unflagged, errors) = (
        count(EntryKind::Flagged),
        count(EntryKind::Updated),
        count(EntryKind::Unflagged),
        count(EntryKind::InError),
    );
    let subject = format!(
        "Detractor flags {today}: {flagged} flagged, {updated} updated, {unflagged} unflagged, {errors} in error"
    );
    let sections = [
        (EntryKind::InError, "In error (the record was not changed)"),
        (EntryKind::Flagged, "Flagged"),
        (EntryKind::Updated, "Updated"),
        (EntryKind::Unflagged, "Unflagged"),
    ];
    let show = |m: &Option<FlagMessage>| match m {
        Some(m) => format!("{}\n{}", m.subject, m.text),
        None => "(no closedloop message)".into(),
    };
    let mut text = format!("{subject}\n");
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h1 style=\"font-size:18px\">{}</h1>",
        escape(&subject)
    );
    for (kind, title) in sections {
        let list: Vec<&DigestEntry> = entries.iter().filter(|e| e.kind == kind).collect();
        if list.is_empty() {
            continue;
        }
        text.push_str(&format!("\n== {title} ({}) ==\n", list.len()));
        html.push_str(&format!(
            "<h2 style=\"font-size:16px\">{} ({})</h2>",
            escape(title),
            list.len()
        ));
        for e in list {
            text.push_str(&format!(
                "\nAccount {} - NPS {} answered {}\n",
                e.account.as_str(),
                e.score,
                e.answered_at
            ));
            if let Some(err) = &e.error {
                text.push_str(&format!("Error: {err}\n"));
            }
            text.push_str(&format!(
                "Old message:\n{}\nNew message:\n{}\n",
                show(&e.old),
                show(&e.new)
            ));
            html.push_str(&format!(
                "<div style=\"border:1px solid #ddd;padding:8px;margin:8px 0\"><p><b>Account {}</b> &middot; NPS {} &middot; answered {}</p>",
                escape(e.account.as_str()),
                e.score,
                escape(&e.answered_at)
            ));
            if let Some(err) = &e.error {
                html.push_str(&format!("<p style=\"color:#b91c1c\">{}</p>", escape(err)));
            }
            html.push_str(&format!(
                "<table><tr><th align=\"left\">Old message</th><th align=\"left\">New message</th></tr><tr><td valign=\"top\"><pre style=\"white-space:pre-wrap\">{}</pre></td><td valign=\"top\"><pre style=\"white-space:pre-wrap\">{}</pre></td></tr></table></div>",
                escape(&show(&e.old)),
                escape(&show(&e.new))
            ));
        }
    }
    html.push_str("</body></html>");
    OutgoingEmail {
        to: settings.digest_recipients.clone(),
        reply_to: None,
        subject,
        text,
        html: Some(html),
        headers: Vec::new(),
    }
}

/// After the digest: an account whose record is in line leaves the index (unless a newer
/// answer arrived meanwhile) with what the digest showed; one in error stays, noting the day
/// its error was listed.
async fn mark_reported(
    store: &dyn ItemStore,
    p: &Processed,
    listed_on: Option<&str>,
) -> Result<(), StoreError> {
    let mut flag = p.flag.clone();
    let mut update = Update::new();
    let mut condition = match &p.version {
        Some(v) => Condition::eq(FLAG_VERSION, Value::s(v.clone())),
        None => Condition::NotExists(FLAG_VERSION.into()),
    };
    if flag.state == FlagState::Error {
        let Some(day) = listed_on else {
            return Ok(());
        };
        if flag.error_reported_on.as_deref() == Some(day) {
            return Ok(());
        }
        flag.error_reported_on = Some(day.to_string());
    } else {
        flag.reported = flag.on_record.clone();
        flag.error_reported_on = None;
        update = update
            .remove(Index::Gsi2.pk_attribute())
            .remove(Index::Gsi2.sk_attribute());
        condition = condition.and(Condition::eq(
            accounts::ANSWERED_AT,
            Value::s(flag.answer_at.clone()),
        ));
    }
    let next = ulid::Ulid::new().to_string();
    let update = update
        .set(
            FLAG,
            Value::S(serde_json::to_string(&flag).expect("flags serialise")),
        )
        .set(FLAG_VERSION, Value::s(next));
    match store.update(&p.key, update, Some(condition)).await {
        Ok(_) => Ok(()),
        // A newer answer (or another sweep) came in between: the account stays for the next run.
        Err(e) if e.is_condition_failure() => Ok(()),
        Err(e) => Err(e),
    }
}
