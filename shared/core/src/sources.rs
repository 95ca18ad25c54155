//! Webhook sources' secrets: at most two active per source, so a tenant can rotate without
//! downtime (add the new one, switch the sender, revoke the old one).
//!
//! Secrets live on the source item (`T#<t>` / `SOURCE#<source>`, attribute `secrets`, a list of
//! `{id, secret, created_at}`), because the sender's HMAC needs the secret itself. A secret is
//! shown once, when created; listings show ids only. Writes are guarded by the item's
//! `revision`, so two concurrent changes cannot both pass the two-secret limit.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::TenantId;
use crate::keys;
use crate::store::{Condition, Item, ItemExt, ItemStore, StoreError, Value};

/// Active secrets a source may hold at once.
pub const MAX_ACTIVE_SECRETS: usize = 2;
const REVISION: &str = "revision";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "source '{0}' already has {MAX_ACTIVE_SECRETS} active secrets; revoke one before adding another"
    )]
    TooMany(String),
    #[error("source '{name}' has no secret with id '{id}'")]
    NotFound { name: String, id: String },
    #[error("a secret must be 16 to 512 printable characters without spaces")]
    BadSecret,
    #[error("the source's secrets changed meanwhile; retry")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One secret as listed: never the value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretInfo {
    pub id: String,
    pub created_at: String,
}

/// A newly created secret: the value, shown this once.
#[derive(Clone, Serialize)]
pub struct CreatedSecret {
    pub id: String,
    pub secret: String,
    pub created_at: String,
}

impl std::fmt::Debug for CreatedSecret {
    // Never print the value, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedSecret")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

struct Entry {
    id: String,
    secret: String,
    created_at: String,
}

/// Reads the secrets of a source item. The first shape stored plain strings; they are listed
/// as `initial-<n>` and rewritten with ids on the next change.
fn entries(item: &Item) -> Vec<Entry> {
    let Some(Value::L(list)) = item.get("secrets") else {
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter_map(|(n, v)| match v {
            Value::S(secret) => Some(Entry {
                id: format!("initial-{n}"),
                secret: secret.clone(),
                created_at: String::new(),
            }),
            Value::M(m) => Some(Entry {
                id: m.get("id")?.as_str()?.to_string(),
                secret: m.get("secret")?.as_str()?.to_string(),
                created_at: m
                    .get("created_at")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            _ => None,
        })
        .collect()
}

/// The valid secret values of a source item (what the webhook verifier compares against).
pub fn secret_values(item: &Item) -> Vec<Vec<u8>> {
    entries(item)
        .into_iter()
        .map(|e| e.secret.into_bytes())
        .collect()
}

fn entry_value(e: &Entry) -> Value {
    Value::M(BTreeMap::from([
        ("id".to_string(), Value::s(e.id.clone())),
        ("secret".to_string(), Value::s(e.secret.clone())),
        ("created_at".to_string(), Value::s(e.created_at.clone())),
    ]))
}

/// A source item holding a first secret (for provisioning).
pub fn new_source_item(tenant: &TenantId, source: &str, secret: &str, now: DateTime<Utc>) -> Item {
    let entry = Entry {
        id: new_id(),
        secret: secret.to_string(),
        created_at: keys::sortable_time(now),
    };
    source_item(tenant, source, &[entry], 1)
}

fn source_item(tenant: &TenantId, source: &str, entries: &[Entry], revision: i64) -> Item {
    let mut item = keys::webhook_source(tenant, source).to_item();
    item.insert("entity".into(), Value::s("webhook_source"));
    item.insert(
        "secrets".into(),
        Value::L(entries.iter().map(entry_value).collect()),
    );
    item.insert(REVISION.into(), Value::n(revision));
    item
}

fn new_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

pub fn random_secret() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

/// Adds a secret to a source: `given` when the vendor chooses it (Zendesk's signing secret,
/// Delighted's API key), else a random one. Refused when two are already active.
pub async fn create_secret(
    store: &dyn ItemStore,
    tenant: &TenantId,
    source: &str,
    given: Option<&str>,
    now: DateTime<Utc>,
) -> Result<CreatedSecret, SecretsError> {
    let secret = match given {
        Some(s) if (16..=512).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) => {
            s.to_string()
        }
        Some(_) => return Err(SecretsError::BadSecret),
        None => random_secret(),
    };
    let key = keys::webhook_source(tenant, source);
    let current = store.get(&key).await?;
    let mut list = current.as_ref().map(entries).unwrap_or_default();
    if list.len() >= MAX_ACTIVE_SECRETS {
        return Err(SecretsError::TooMany(source.to_string()));
    }
    let created = Entry {
        id: new_id(),
        secret,
        created_at: keys::sortable_time(now),
    };
    let answer = CreatedSecret {
        id: created.id.clone(),
        secret: created.secret.clone(),
        created_at: created.created_at.clone(),
    };
    list.push(created);
    write(store, tenant, source, current.as_ref(), &list).await?;
    Ok(answer)
}

/// The ids of a source's active secrets, oldest first.
pub async fn list_secrets(
    store: &dyn ItemStore,
    tenant: &TenantId,
    source: &str,
) -> Result<Vec<SecretInfo>, StoreError> {
    Ok(store
        .get(&keys::webhook_source(tenant, source))
        .await?
        .as_ref()
        .map(entries)
        .unwrap_or_default()
        .into_iter()
        .map(|e| SecretInfo {
            id: e.id,
            created_at: e.created_at,
        })
        .collect())
}

/// Revokes one secret: from then on it verifies nothing.
pub async fn revoke_secret(
    store: &dyn ItemStore,
    tenant: &TenantId,
    source: &str,
    id: &str,
) -> Result<(), SecretsError> {
    let not_found = || SecretsError::NotFound {
        name: source.to_string(),
        id: id.chars().take(40).collect(),
    };
    let current = store
        .get(&keys::webhook_source(tenant, source))
        .await?
        .ok_or_else(not_found)?;
    let mut list = entries(&current);
    let before = list.len();
    list.retain(|e| e.id != id);
    if list.len() == before {
        return Err(not_found());
    }
    write(store, tenant, source, Some(&current), &list).await
}

/// Replaces the source item if nobody changed it since `current` was read.
async fn write(
    store: &dyn ItemStore,
    tenant: &TenantId,
    source: &str,
    current: Option<&Item>,
    list: &[Entry],
) -> Result<(), SecretsError> {
    let revision = current.and_then(|i| i.i64_attr(REVISION));
    let guard = match (current, revision) {
        (None, _) => Condition::item_absent(),
        (Some(_), Some(r)) => Condition::eq(REVISION, Value::n(r)),
        (Some(_), None) => Condition::NotExists(REVISION.into()),
    };
    let item = source_item(tenant, source, list, revision.unwrap_or(0) + 1);
    match store.put(item, Some(guard)).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_condition_failure() => Err(SecretsError::Conflict),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_string_secrets_of_the_first_shape_still_verify_and_list() {
        let mut item = Item::new();
        item.insert(
            "secrets".into(),
            Value::L(vec![Value::s("legacy-secret-value")]),
        );
        assert_eq!(secret_values(&item), vec![b"legacy-secret-value".to_vec()]);
        assert_eq!(entries(&item)[0].id, "initial-0");
    }

    #[test]
    fn a_created_secret_never_prints_its_value() {
        let created = CreatedSecret {
            id: "x".into(),
            secret: "s3cr3t-value".into(),
            created_at: String::new(),
        };
        assert!(!format!("{created:?}").contains("s3cr3t"));
    }
}
