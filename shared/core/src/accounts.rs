//! Customer accounts: each account's latest NPS answer, which the daily detractor sweep reads.

use chrono::{DateTime, Utc};

use crate::domain::NpsScore;
use crate::ids::{AccountId, ContactId, TenantId};
use crate::keys;
use crate::store::{Condition, Index, Item, ItemExt, ItemStore, StoreError, Update, Value};

pub(crate) const ANSWERED_AT: &str = "latest_answered_at";
const SCORE: &str = "latest_score";
const CONTACT: &str = "latest_contact_id";
const REVIEW: &str = "latest_review";

/// Transient store failures are retried this often before giving up.
const WRITE_ATTEMPTS: usize = 3;

/// What `note_nps_answer` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpsNote {
    /// The answer is now the account's latest, and the account is marked changed for the sweep.
    Latest,
    /// The account already holds an answer at least as recent: nothing changed.
    NotNewer,
}

/// An account's latest NPS answer as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestAnswer {
    pub score: NpsScore,
    pub answered_at: String,
    pub contact_id: Option<String>,
    pub review: String,
    /// True while the account waits in the sweep's "changed" index.
    pub changed: bool,
}

/// Records an NPS answer on its account if it is newer than the one held.
///
/// One conditional UpdateItem, no read: the write happens only if the account holds no answer
/// or an older one (`latest_answered_at < answered_at`), so an older answer delivered late
/// never overwrites a newer one, a redelivery of the same answer is a no-op, and concurrent
/// writers are ordered by the store itself. A newer answer also puts the account into the
/// sparse GSI2 partition `keys::accounts_changed_index`, which `detractors::sweep` reads
/// and clears.
///
/// How to call it: after the review's own transaction has committed, with the account and
/// contact of the review, `answered_at` = when the customer gave this score (a rating-link
/// review: its `updated_at`; a provider's response: the provider's answer time), `review_ref`
/// = the review's key or id (kept for the sweep's explanation), and `now` = the clock. It is
/// idempotent, so calling it again when a delivery or click is retried is safe and is how a
/// crash between the review write and this call heals.
#[allow(clippy::too_many_arguments)]
pub async fn note_nps_answer(
    store: &dyn ItemStore,
    tenant: &TenantId,
    account_id: &AccountId,
    contact_id: Option<&ContactId>,
    score: NpsScore,
    answered_at: DateTime<Utc>,
    review_ref: &str,
    now: DateTime<Utc>,
) -> Result<NpsNote, StoreError> {
    let answered = Value::S(keys::sortable_time(answered_at));
    let mut update = Update::new()
        .set("entity", Value::s("account"))
        .set(SCORE, Value::n(score.value().into()))
        .set(ANSWERED_AT, answered.clone())
        .set(REVIEW, Value::s(review_ref))
        .set(
            Index::Gsi2.pk_attribute(),
            Value::S(keys::accounts_changed_index(tenant)),
        )
        .set(
            Index::Gsi2.sk_attribute(),
            Value::S(format!("{}#{}", keys::sortable_time(now), account_id)),
        );
    update = match contact_id {
        Some(c) => update.set(CONTACT, Value::s(c.as_str())),
        None => update.remove(CONTACT),
    };
    let newer =
        Condition::NotExists(ANSWERED_AT.into()).or(Condition::Lt(ANSWERED_AT.into(), answered));
    let key = keys::account_latest(tenant, account_id);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store
            .update(&key, update.clone(), Some(newer.clone()))
            .await
        {
            Ok(_) => return Ok(NpsNote::Latest),
            Err(e) if e.is_condition_failure() => return Ok(NpsNote::NotNewer),
            Err(e) if e.is_transient() && attempt < WRITE_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The account's latest NPS answer, if it has one.
pub async fn latest_nps_answer(
    store: &dyn ItemStore,
    tenant: &TenantId,
    account_id: &AccountId,
) -> Result<Option<LatestAnswer>, StoreError> {
    Ok(store
        .get(&keys::account_latest(tenant, account_id))
        .await?
        .as_ref()
        .and_then(read_latest))
}

/// Reads the latest answer out of an account item (as the sweep's index query returns it).
pub fn read_latest(item: &Item) -> Option<LatestAnswer> {
    Some(LatestAnswer {
        score: NpsScore::new(u8::try_from(item.i64_attr(SCORE)?).ok()?).ok()?,
        answered_at: item.str_attr(ANSWERED_AT)?.to_string(),
        contact_id: item.str_attr(CONTACT).map(str::to_string),
        review: item.str_attr(REVIEW)?.to_string(),
        changed: item.contains_key(Index::Gsi2.pk_attribute()),
    })
}
