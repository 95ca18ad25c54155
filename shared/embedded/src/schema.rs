//! The SQLite schema of the embedded item store, and the row-level statements the store uses.
//!
//! One row per item: its key, the item as DynamoDB JSON, and copies of the attributes SQLite
//! must index (the two GSIs' keys and the TTL). The GSIs are partial indexes on those columns,
//! so they are maintained by the same statement that writes the row: no second table to keep
//! in step, and an item lacking an index's keys simply has NULLs there and is not indexed.
//! All text compares with SQLite's default BINARY collation, which is UTF-8 byte order, the
//! order DynamoDB sorts keys in.

use closedloop_core::store::{Index, Item, ItemExt, Key, StoreError, TTL_ATTRIBUTE, Value};
use rusqlite::{Connection, OptionalExtension, params};

/// Bumped when the schema changes; a database written by a newer build is refused.
pub(crate) const SCHEMA_VERSION: i64 = 1;

const CREATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk         TEXT NOT NULL,
    sk         TEXT NOT NULL,
    item       TEXT NOT NULL,   -- the whole item, DynamoDB JSON
    gsi1pk     TEXT,            -- NULL unless the item has both GSI1PK and GSI1SK
    gsi1sk     TEXT,
    gsi2pk     TEXT,
    gsi2sk     TEXT,
    expires_at INTEGER,         -- the TTL attribute, when it is a number
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_gsi1 ON items (gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_gsi2 ON items (gsi2pk, gsi2sk, pk, sk) WHERE gsi2pk IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;

-- New outbox items, in commit order (a local stand-in for the table's DynamoDB stream).
-- AUTOINCREMENT: sequence numbers are never reused, even after a trim.
CREATE TABLE IF NOT EXISTS stream (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    new_image TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_checkpoints (
    consumer TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Creates the schema if the database is new; refuses a database from a newer build.
pub(crate) fn ensure_schema(conn: &Connection) -> Result<(), SchemaError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(SchemaError::TooNew(version));
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {CREATE_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SchemaError {
    #[error("schema version {0} is newer than this build understands")]
    TooNew(i64),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// The indexed copies of an item's attributes.
pub(crate) struct IndexedColumns {
    gsi1: Option<(String, String)>,
    gsi2: Option<(String, String)>,
    expires_at: Option<i64>,
}

impl IndexedColumns {
    pub(crate) fn of(item: &Item) -> Self {
        let index_keys = |index: Index| {
            let pk = item.str_attr(index.pk_attribute())?;
            let sk = item.str_attr(index.sk_attribute())?;
            Some((pk.to_string(), sk.to_string()))
        };
        IndexedColumns {
            gsi1: index_keys(Index::Gsi1),
            gsi2: index_keys(Index::Gsi2),
            expires_at: item.get(TTL_ATTRIBUTE).and_then(ttl_seconds),
        }
    }
}

/// The whole seconds of a TTL attribute; DynamoDB ignores TTL values that are not numbers.
fn ttl_seconds(value: &Value) -> Option<i64> {
    match value {
        Value::N(n) => n.split('.').next().and_then(|whole| whole.parse().ok()),
        _ => None,
    }
}

pub(crate) fn load(conn: &Connection, key: &Key) -> Result<Option<Item>, StoreError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT item FROM items WHERE pk = ?1 AND sk = ?2")
        .and_then(|mut stmt| {
            stmt.query_row(params![key.pk, key.sk], |row| row.get(0))
                .optional()
        })
        .map_err(sqlite_error)?;
    json.map(|json| decode_item(&json)).transpose()
}

pub(crate) fn upsert(
    conn: &Connection,
    key: &Key,
    json: &str,
    columns: &IndexedColumns,
) -> Result<(), StoreError> {
    let (g1pk, g1sk) = split(&columns.gsi1);
    let (g2pk, g2sk) = split(&columns.gsi2);
    conn.prepare_cached(
        "INSERT INTO items (pk, sk, item, gsi1pk, gsi1sk, gsi2pk, gsi2sk, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (pk, sk) DO UPDATE SET
             item = excluded.item,
             gsi1pk = excluded.gsi1pk, gsi1sk = excluded.gsi1sk,
             gsi2pk = excluded.gsi2pk, gsi2sk = excluded.gsi2sk,
             expires_at = excluded.expires_at",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            key.pk,
            key.sk,
            json,
            g1pk,
            g1sk,
            g2pk,
            g2sk,
            columns.expires_at
        ])
    })
    .map_err(sqlite_error)?;
    Ok(())
}

fn split(keys: &Option<(String, String)>) -> (Option<&str>, Option<&str>) {
    match keys {
        Some((pk, sk)) => (Some(pk), Some(sk)),
        None => (None, None),
    }
}

pub(crate) fn delete(conn: &Connection, key: &Key) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
        .and_then(|mut stmt| stmt.execute(params![key.pk, key.sk]))
        .map_err(sqlite_error)?;
    Ok(())
}

/// Appends a stream record and returns its sequence number.
pub(crate) fn append_stream(conn: &Connection, new_image_json: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("INSERT INTO stream (new_image) VALUES (?1)")
        .and_then(|mut stmt| stmt.insert(params![new_image_json]))
        .map_err(sqlite_error)
}

pub(crate) fn last_stream_seq(conn: &Connection) -> Result<i64, rusqlite::Error> {
    // sqlite_sequence keeps the high-water mark even when every record was trimmed.
    conn.query_row(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'stream'), 0)",
        [],
        |row| row.get(0),
    )
}

pub(crate) fn decode_item(json: &str) -> Result<Item, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Other(format!("a stored item is not valid DynamoDB JSON: {e}")))
}

pub(crate) fn encode_item(item: &Item) -> Result<String, StoreError> {
    serde_json::to_string(item)
        .map_err(|e| StoreError::Other(format!("cannot encode an item: {e}")))
}

/// SQLite's "busy"/"locked" are worth retrying; everything else is not.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => StoreError::Transient(format!("sqlite: {e}")),
        _ => StoreError::Other(format!("sqlite: {e}")),
    }
}
