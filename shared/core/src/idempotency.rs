//! Idempotency records on the item store, following the Powertools for AWS Lambda protocol:
//! a record is `INPROGRESS` while a side effect runs and `COMPLETED` (with its result) after.
//! DynamoDB's TTL deletes lazily, so expiry is checked in code, in the write's condition.

use chrono::{DateTime, Duration, Utc};

use crate::ids::TenantId;
use crate::keys;
use crate::store::{
    Condition, ItemExt, ItemStore, StoreError, TTL_ATTRIBUTE, Update, Value, WriteOp,
};

const STATUS: &str = "status";
const IN_PROGRESS: &str = "INPROGRESS";
const COMPLETED: &str = "COMPLETED";
const IN_PROGRESS_EXPIRY: &str = "in_progress_expiry";
const DATA: &str = "data";

/// How long a finished effect is remembered, and how long a started one blocks retries.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyConfig {
    pub remember_for: Duration,
    pub in_progress_timeout: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            remember_for: Duration::days(7),
            in_progress_timeout: Duration::minutes(2),
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Begin {
    /// Go ahead; call `complete` or `release` afterwards.
    Started,
    /// Done before; here is what it returned.
    AlreadyCompleted(serde_json::Value),
    /// Another invocation is running it right now; retry later.
    InProgress,
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Claims `key` for one run of a side effect.
pub async fn begin(
    store: &dyn ItemStore,
    tenant: &TenantId,
    key: &str,
    now: DateTime<Utc>,
    config: IdempotencyConfig,
) -> Result<Begin, IdempotencyError> {
    let record_key = keys::idempotency(tenant, key);
    let mut item = record_key.to_item();
    item.insert(STATUS.into(), Value::s(IN_PROGRESS));
    item.insert(
        TTL_ATTRIBUTE.into(),
        Value::n((now + config.remember_for).timestamp()),
    );
    item.insert(
        IN_PROGRESS_EXPIRY.into(),
        Value::n((now + config.in_progress_timeout).timestamp_millis()),
    );
    // Free if absent, expired, or an in-progress claim whose holder has timed out.
    let claimable = Condition::item_absent()
        .or(Condition::Lt(
            TTL_ATTRIBUTE.into(),
            Value::n(now.timestamp()),
        ))
        .or(
            Condition::eq(STATUS, Value::s(IN_PROGRESS)).and(Condition::Lt(
                IN_PROGRESS_EXPIRY.into(),
                Value::n(now.timestamp_millis()),
            )),
        );
    match store.put(item, Some(claimable)).await {
        Ok(()) => Ok(Begin::Started),
        Err(StoreError::ConditionFailed { old }) => {
            let old = old.unwrap_or_default();
            if old.str_attr(STATUS) == Some(COMPLETED) {
                let data = old
                    .str_attr(DATA)
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(serde_json::Value::Null);
                Ok(Begin::AlreadyCompleted(data))
            } else {
                Ok(Begin::InProgress)
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Records that the effect happened, with its result.
pub async fn complete(
    store: &dyn ItemStore,
    tenant: &TenantId,
    key: &str,
    result: &serde_json::Value,
) -> Result<(), IdempotencyError> {
    store
        .update(
            &keys::idempotency(tenant, key),
            Update::new()
                .set(STATUS, Value::s(COMPLETED))
                .set(DATA, Value::S(result.to_string()))
                .remove(IN_PROGRESS_EXPIRY),
            Some(Condition::item_present()),
        )
        .await?;
    Ok(())
}

/// `complete` as one operation of a transaction, so the effect's own writes (an audit entry,
/// events, a changed record) and the completion land together or not at all.
pub fn complete_op(tenant: &TenantId, key: &str, result: &serde_json::Value) -> WriteOp {
    WriteOp::Update {
        key: keys::idempotency(tenant, key),
        update: Update::new()
            .set(STATUS, Value::s(COMPLETED))
            .set(DATA, Value::S(result.to_string()))
            .remove(IN_PROGRESS_EXPIRY),
        condition: Some(Condition::item_present()),
    }
}

/// Forgets a completed effect, so it may run again (an admin's retry of a failed action).
pub fn forget_op(tenant: &TenantId, key: &str) -> WriteOp {
    WriteOp::Delete {
        key: keys::idempotency(tenant, key),
        condition: None,
    }
}

/// Gives back every claim among `items` that is still in progress, and returns how many.
///
/// Only for a caller that knows no other process can be holding a claim (the local runner at
/// start, under its store's lock): there, a claim in progress was left by a run that died
/// mid-way, and would otherwise block its work until the in-progress timeout.
pub async fn release_abandoned(
    store: &dyn ItemStore,
    items: impl IntoIterator<Item = crate::store::Item>,
) -> Result<usize, IdempotencyError> {
    let mut released = 0;
    for item in items {
        let in_progress = item.str_attr(crate::store::SK) == Some("IDEMPOTENCY")
            && item.str_attr(STATUS) == Some(IN_PROGRESS);
        let Some(pk) = item.str_attr(crate::store::PK).filter(|_| in_progress) else {
            continue;
        };
        let key = crate::store::Key::new(pk, "IDEMPOTENCY");
        match store
            .delete(&key, Some(Condition::eq(STATUS, Value::s(IN_PROGRESS))))
            .await
        {
            Ok(()) => released += 1,
            Err(e) if e.is_condition_failure() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(released)
}

/// Gives the claim back after a failure, so a retry can run the effect.
pub async fn release(
    store: &dyn ItemStore,
    tenant: &TenantId,
    key: &str,
) -> Result<(), IdempotencyError> {
    store
        .delete(
            &keys::idempotency(tenant, key),
            Some(Condition::eq(STATUS, Value::s(IN_PROGRESS))),
        )
        .await
        .or_else(|e| {
            if e.is_condition_failure() {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    Ok(())
}
