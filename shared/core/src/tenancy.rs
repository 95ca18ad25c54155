//! Tenants, their settings, their admin API keys and their webhook secrets.
//!
//! API keys look like `cl.<tenant>.<key id>.<secret>`. Only a SHA-256 of the secret is stored;
//! the tenant in the key decides which partition is read, so a key can never reach another
//! tenant's data, and the hash is compared in constant time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::{Tenant, TenantSettings};
use crate::ids::TenantId;
use crate::keys;
use crate::signature::constant_time_eq;
use crate::sources;
use crate::store::{Condition, Index, Item, ItemExt, ItemStore, Query, StoreError, Value, WriteOp};

pub const GENERIC_SOURCE: &str = "generic";

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("tenant '{0}' already exists")]
    AlreadyExists(TenantId),
    #[error("tenant '{0}' does not exist")]
    NotFound(TenantId),
    #[error("no API key with id '{0}'")]
    NoSuchApiKey(String),
    #[error("stored data for tenant '{0}' is unreadable: {1}")]
    Corrupt(TenantId, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new tenant gets. The secrets are shown once and only their hash (API key) or the
/// secret itself (webhook, needed to verify HMACs) is stored.
#[derive(Debug, Clone)]
pub struct ProvisionedTenant {
    pub tenant: Tenant,
    pub api_key: String,
    pub webhook_secret: String,
}

fn random_secret() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

fn api_key_item(tenant: &TenantId, now: DateTime<Utc>) -> (String, Item) {
    let key_id = ulid::Ulid::new().to_string().to_lowercase();
    let secret = random_secret();
    let mut item = keys::api_key(tenant, &key_id).to_item();
    item.insert("entity".into(), Value::s("api_key"));
    item.insert(
        "secret_sha256".into(),
        Value::S(hex::encode(sha256(secret.as_bytes()))),
    );
    item.insert("created_at".into(), Value::S(keys::sortable_time(now)));
    (format!("cl.{}.{key_id}.{secret}", tenant.as_str()), item)
}

/// Creates a tenant with default settings, one admin API key and a generic webhook secret.
pub async fn provision_tenant(
    store: &dyn ItemStore,
    id: TenantId,
    name: &str,
    settings: TenantSettings,
    now: DateTime<Utc>,
) -> Result<ProvisionedTenant, TenancyError> {
    let tenant = Tenant {
        id: id.clone(),
        name: name.to_string(),
        created_at: now,
    };
    let mut tenant_item = keys::tenant(&id).to_item();
    tenant_item.insert("entity".into(), Value::s("tenant"));
    tenant_item.insert("name".into(), Value::s(name));
    tenant_item.insert("created_at".into(), Value::S(keys::sortable_time(now)));
    tenant_item.insert(
        Index::Gsi1.pk_attribute().into(),
        Value::s(keys::TENANTS_INDEX_PK),
    );
    tenant_item.insert(Index::Gsi1.sk_attribute().into(), Value::s(id.as_str()));

    let (api_key, key_item) = api_key_item(&id, now);
    let webhook_secret = random_secret();
    let ops = vec![
        WriteOp::put_if(tenant_item, Condition::item_absent()),
        WriteOp::put(settings_item(&id, &settings)),
        WriteOp::put(key_item),
        WriteOp::put(sources::new_source_item(
            &id,
            GENERIC_SOURCE,
            &webhook_secret,
            now,
        )),
    ];
    match store.transact_write(ops).await {
        Ok(()) => Ok(ProvisionedTenant {
            tenant,
            api_key,
            webhook_secret,
        }),
        Err(StoreError::TransactionCanceled { .. }) => Err(TenancyError::AlreadyExists(id)),
        Err(e) => Err(e.into()),
    }
}

/// Adds another API key to an existing tenant (for the CLI and key rotation).
pub async fn create_api_key(
    store: &dyn ItemStore,
    tenant: &TenantId,
    now: DateTime<Utc>,
) -> Result<String, TenancyError> {
    if store.get(&keys::tenant(tenant)).await?.is_none() {
        return Err(TenancyError::NotFound(tenant.clone()));
    }
    let (api_key, item) = api_key_item(tenant, now);
    store.put(item, Some(Condition::item_absent())).await?;
    Ok(api_key)
}

/// Revokes one of a tenant's API keys (by the key id, the third part of the key): it stops
/// authenticating at once. Revoking twice keeps the first time.
pub async fn revoke_api_key(
    store: &dyn ItemStore,
    tenant: &TenantId,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<(), TenancyError> {
    let update = crate::store::Update::new()
        .set_if_not_exists("revoked_at", Value::S(keys::sortable_time(now)));
    match store
        .update(
            &keys::api_key(tenant, key_id),
            update,
            Some(Condition::item_present()),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_condition_failure() => Err(TenancyError::NoSuchApiKey(key_id.to_string())),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("send an API key as 'Authorization: Bearer cl.<tenant>.<key id>.<secret>'")]
    Missing,
    #[error("the API key is not valid")]
    Invalid,
    #[error("the key store is unavailable, try again")]
    Unavailable,
}

/// An API key taken apart: `cl.<tenant>.<key id>.<secret>`.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiKeyParts<'a> {
    pub tenant: TenantId,
    pub key_id: &'a str,
    pub secret: &'a str,
}

/// Reads an API key's shape, before anything is looked up.
pub fn parse_api_key(api_key: &str) -> Result<ApiKeyParts<'_>, AuthError> {
    let mut parts = api_key.trim().splitn(4, '.');
    let (Some("cl"), Some(tenant), Some(key_id), Some(secret)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Invalid);
    };
    let tenant = TenantId::parse(tenant).map_err(|_| AuthError::Invalid)?;
    if key_id.is_empty() || key_id.len() > 40 || !key_id.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(AuthError::Invalid);
    }
    Ok(ApiKeyParts {
        tenant,
        key_id,
        secret,
    })
}

/// Resolves a bearer API key to its tenant.
pub async fn authenticate(store: &dyn ItemStore, api_key: &str) -> Result<TenantId, AuthError> {
    let ApiKeyParts {
        tenant,
        key_id,
        secret,
    } = parse_api_key(api_key)?;
    let item = store
        .get(&keys::api_key(&tenant, key_id))
        .await
        .map_err(|_| AuthError::Unavailable)?
        .ok_or(AuthError::Invalid)?;
    let stored = item
        .str_attr("secret_sha256")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(AuthError::Invalid)?;
    if item.contains_key("revoked_at") || !constant_time_eq(&stored, &sha256(secret.as_bytes())) {
        return Err(AuthError::Invalid);
    }
    Ok(tenant)
}

fn settings_item(tenant: &TenantId, settings: &TenantSettings) -> Item {
    let mut item = keys::settings(tenant).to_item();
    item.insert("entity".into(), Value::s("settings"));
    item.insert(
        "settings".into(),
        Value::S(serde_json::to_string(settings).expect("settings serialise")),
    );
    item
}

pub async fn get_settings(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<TenantSettings, TenancyError> {
    let item = store
        .get_shared(&keys::settings(tenant))
        .await?
        .ok_or_else(|| TenancyError::NotFound(tenant.clone()))?;
    let json = item.str_attr("settings").unwrap_or("{}");
    serde_json::from_str(json).map_err(|e| TenancyError::Corrupt(tenant.clone(), e.to_string()))
}

/// How long a [`SettingsCache`] serves a tenant's settings before reading them again: how
/// stale another process's copy can be after the settings change.
pub const SETTINGS_TTL: Duration = Duration::from_secs(5);
/// Past this many tenants, expired entries are dropped when a new one is added.
const SETTINGS_CACHE_TENANTS: usize = 1024;

/// Each tenant's parsed settings, for a few seconds, for paths that need them on every request
/// (a rating click). Entries are per tenant; an [`SettingsCache::invalidate`] (the admin API
/// calls it after saving settings) is seen at once by everything that shares this cache,
/// so in the local runner an edit shows on the next click. Another process with its own cache
/// (another Lambda instance) may serve the old settings for up to [`SETTINGS_TTL`].
#[derive(Debug)]
pub struct SettingsCache {
    ttl: Duration,
    entries: RwLock<HashMap<TenantId, (Instant, Arc<TenantSettings>)>>,
    /// Bumped by every invalidation, so a read that raced one does not cache what it read.
    generation: AtomicU64,
}

impl Default for SettingsCache {
    fn default() -> Self {
        Self::new(SETTINGS_TTL)
    }
}

impl SettingsCache {
    pub fn new(ttl: Duration) -> Self {
        SettingsCache {
            ttl,
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// The tenant's settings: cached if read within the TTL, else read from the store.
    pub async fn get(
        &self,
        store: &dyn ItemStore,
        tenant: &TenantId,
    ) -> Result<Arc<TenantSettings>, TenancyError> {
        if let Some((read_at, settings)) = self.read().get(tenant)
            && read_at.elapsed() < self.ttl
        {
            return Ok(settings.clone());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let read_at = Instant::now();
        let settings = Arc::new(get_settings(store, tenant).await?);
        let mut entries = self.write();
        if self.generation.load(Ordering::Acquire) == generation {
            if entries.len() >= SETTINGS_CACHE_TENANTS {
                entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            }
            entries.insert(tenant.clone(), (read_at, settings.clone()));
        }
        Ok(settings)
    }

    /// Forgets the tenant's settings (after they were changed), here and for any read of them
    /// already under way.
    pub fn invalidate(&self, tenant: &TenantId) {
        let mut entries = self.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(tenant);
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<TenantId, (Instant, Arc<TenantSettings>)>> {
        // Entries are replaced whole, so a panic elsewhere cannot leave one half-written.
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<TenantId, (Instant, Arc<TenantSettings>)>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The tenant's time zone, for code that speaks only `StoreError` (UTC if the settings are
/// missing or unreadable).
pub async fn time_zone(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<chrono_tz::Tz, StoreError> {
    match get_settings(store, tenant).await {
        Ok(s) => Ok(s.time_zone.tz()),
        Err(TenancyError::Store(e)) => Err(e),
        Err(_) => Ok(chrono_tz::UTC),
    }
}

/// Replaces the settings; the caller has validated them.
pub async fn put_settings(
    store: &dyn ItemStore,
    tenant: &TenantId,
    settings: &TenantSettings,
) -> Result<(), TenancyError> {
    store
        .put(
            settings_item(tenant, settings),
            Some(Condition::item_present()),
        )
        .await
        .map_err(|e| match e {
            StoreError::ConditionFailed { .. } => TenancyError::NotFound(tenant.clone()),
            e => e.into(),
        })
}

/// The valid secrets of a tenant's webhook source (two while rotating); none if unconfigured.
pub async fn webhook_secrets(
    store: &dyn ItemStore,
    tenant: &TenantId,
    source: &str,
) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(store
        .get(&keys::webhook_source(tenant, source))
        .await?
        .as_ref()
        .map(sources::secret_values)
        .unwrap_or_default())
}

/// Every tenant, for the scheduled sweeps (GSI1 partition `TENANTS`).
pub async fn list_tenants(store: &dyn ItemStore) -> Result<Vec<TenantId>, StoreError> {
    let mut tenants = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .query(Query::on_index(Index::Gsi1, keys::TENANTS_INDEX_PK).start_after(start))
            .await?;
        tenants.extend(
            page.items
                .iter()
                .filter_map(|i| i.str_attr(Index::Gsi1.sk_attribute()))
                .filter_map(|t| TenantId::parse(t).ok()),
        );
        match page.last_evaluated {
            Some(last) => start = Some(last),
            None => return Ok(tenants),
        }
    }
}

/// The tenant's agent directory (`AGENT#` items), every page of it.
pub async fn list_agents(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<Vec<crate::domain::Agent>, StoreError> {
    let mut agents = Vec::new();
    let mut query = Query::partition(keys::tenant_prefix(tenant))
        .sk(crate::store::SortKeyCondition::BeginsWith("AGENT#".into()));
    loop {
        let page = store.query(query.clone()).await?;
        agents.extend(
            page.items
                .iter()
                .filter_map(|i| crate::records::read_record(i).ok()),
        );
        match page.last_evaluated {
            Some(last) => query = query.start_after(Some(last)),
            None => return Ok(agents),
        }
    }
}
