//! The item-store port: a narrow, DynamoDB-shaped key/value store.
//!
//! Both adapters (DynamoDB and embedded SQLite) implement exactly this trait and pass the
//! same conformance suite (`crate::conformance::store`), so repositories are written once.
//!
//! Shape, and the rules both adapters follow:
//! - One table. Every item has string keys `PK` and `SK`. Sort order is by UTF-8 bytes.
//! - Two sparse global secondary indexes, `GSI1` (`GSI1PK`/`GSI1SK`) and `GSI2`
//!   (`GSI2PK`/`GSI2SK`), both string keys, projecting the whole item. An item without the
//!   index's partition key is not in that index.
//! - TTL on the numeric attribute `expires_at` (epoch seconds). Expired items may still be
//!   returned (DynamoDB deletes lazily), so code that cares checks expiry itself.
//! - A failed condition reports the item as it was (`ReturnValuesOnConditionCheckFailure=ALL_OLD`).
//! - A transaction holds at most 100 operations, on distinct items, and is all-or-nothing.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const TTL_ATTRIBUTE: &str = "expires_at";
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// DynamoDB's item size limit; the embedded store enforces the same.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// An attribute value, serialised exactly as DynamoDB JSON (`{"S": "x"}`, `{"N": "1"}`),
/// which is also the shape of a DynamoDB stream record's image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    S(String),
    /// Numbers travel as decimal strings, as in DynamoDB.
    N(String),
    #[serde(rename = "BOOL")]
    Bool(bool),
    #[serde(rename = "NULL")]
    Null(bool),
    L(Vec<Value>),
    M(BTreeMap<String, Value>),
}

impl Value {
    pub fn s(s: impl Into<String>) -> Self {
        Value::S(s.into())
    }
    pub fn n(n: i64) -> Self {
        Value::N(n.to_string())
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::S(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::N(n) => n.parse().ok(),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// An item: attribute name to value.
pub type Item = BTreeMap<String, Value>;

/// Convenience accessors on an item.
pub trait ItemExt {
    fn str_attr(&self, name: &str) -> Option<&str>;
    fn i64_attr(&self, name: &str) -> Option<i64>;
    fn key(&self) -> Option<Key>;
}

impl ItemExt for Item {
    fn str_attr(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }
    fn i64_attr(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_i64)
    }
    fn key(&self) -> Option<Key> {
        Some(Key::new(self.str_attr(PK)?, self.str_attr(SK)?))
    }
}

/// The primary key of an item.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
    /// An item holding only this key; add attributes with `insert`.
    pub fn to_item(&self) -> Item {
        let mut item = Item::new();
        item.insert(PK.into(), Value::S(self.pk.clone()));
        item.insert(SK.into(), Value::S(self.sk.clone()));
        item
    }
}

/// The sparse global secondary indexes of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Index {
    Gsi1,
    Gsi2,
}

impl Index {
    pub const ALL: [Index; 2] = [Index::Gsi1, Index::Gsi2];
    pub fn name(self) -> &'static str {
        match self {
            Index::Gsi1 => "GSI1",
            Index::Gsi2 => "GSI2",
        }
    }
    pub fn pk_attribute(self) -> &'static str {
        match self {
            Index::Gsi1 => "GSI1PK",
            Index::Gsi2 => "GSI2PK",
        }
    }
    pub fn sk_attribute(self) -> &'static str {
        match self {
            Index::Gsi1 => "GSI1SK",
            Index::Gsi2 => "GSI2SK",
        }
    }
}

/// A typed condition on one item, evaluated atomically with the write it guards.
/// Comparisons with a missing attribute are false, as in DynamoDB.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Exists(String),
    NotExists(String),
    Eq(String, Value),
    Lt(String, Value),
    Le(String, Value),
    Gt(String, Value),
    Ge(String, Value),
    BeginsWith(String, String),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

impl Condition {
    /// The item does not exist yet.
    pub fn item_absent() -> Self {
        Condition::NotExists(PK.into())
    }
    /// The item exists.
    pub fn item_present() -> Self {
        Condition::Exists(PK.into())
    }
    pub fn eq(name: impl Into<String>, value: Value) -> Self {
        Condition::Eq(name.into(), value)
    }
    pub fn and(self, other: Condition) -> Self {
        match self {
            Condition::And(mut all) => {
                all.push(other);
                Condition::And(all)
            }
            first => Condition::And(vec![first, other]),
        }
    }
    pub fn or(self, other: Condition) -> Self {
        match self {
            Condition::Or(mut any) => {
                any.push(other);
                Condition::Or(any)
            }
            first => Condition::Or(vec![first, other]),
        }
    }
    pub fn negate(self) -> Self {
        Condition::Not(Box::new(self))
    }
}

/// An update expression: SET, SET if_not_exists, ADD (numbers), REMOVE.
/// An update on a missing item creates it (DynamoDB upsert semantics); guard with
/// `Condition::item_present()` when that is not wanted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Update {
    pub set: Vec<(String, Value)>,
    pub set_if_not_exists: Vec<(String, Value)>,
    pub add: Vec<(String, i64)>,
    pub remove: Vec<String>,
}

impl Update {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set(mut self, name: impl Into<String>, value: Value) -> Self {
        self.set.push((name.into(), value));
        self
    }
    pub fn set_if_not_exists(mut self, name: impl Into<String>, value: Value) -> Self {
        self.set_if_not_exists.push((name.into(), value));
        self
    }
    pub fn add(mut self, name: impl Into<String>, delta: i64) -> Self {
        self.add.push((name.into(), delta));
        self
    }
    pub fn remove(mut self, name: impl Into<String>) -> Self {
        self.remove.push(name.into());
        self
    }
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
            && self.set_if_not_exists.is_empty()
            && self.add.is_empty()
            && self.remove.is_empty()
    }
}

/// A condition on the sort key of a query.
#[derive(Clone, Debug, PartialEq)]
pub enum SortKeyCondition {
    BeginsWith(String),
    Between(String, String),
    Lt(String),
    Le(String),
    Gt(String),
    Ge(String),
    Eq(String),
}

/// Query one partition of the table or of an index.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub index: Option<Index>,
    pub pk: String,
    pub sk: Option<SortKeyCondition>,
    /// Ascending by sort key when true.
    pub forward: bool,
    pub limit: Option<usize>,
    /// The `last_evaluated` of a previous page.
    pub start_after: Option<Item>,
}

impl Query {
    pub fn partition(pk: impl Into<String>) -> Self {
        Query {
            index: None,
            pk: pk.into(),
            sk: None,
            forward: true,
            limit: None,
            start_after: None,
        }
    }
    pub fn on_index(index: Index, pk: impl Into<String>) -> Self {
        Query {
            index: Some(index),
            ..Query::partition(pk)
        }
    }
    pub fn sk(mut self, condition: SortKeyCondition) -> Self {
        self.sk = Some(condition);
        self
    }
    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
    pub fn start_after(mut self, key: Option<Item>) -> Self {
        self.start_after = key;
        self
    }
}

/// One page of a query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    /// Key attributes of the last item returned when more may follow (table keys, plus the
    /// index keys for an index query). Pass it back as `Query::start_after`.
    pub last_evaluated: Option<Item>,
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    Put {
        item: Item,
        condition: Option<Condition>,
    },
    Update {
        key: Key,
        update: Update,
        condition: Option<Condition>,
    },
    Delete {
        key: Key,
        condition: Option<Condition>,
    },
    ConditionCheck {
        key: Key,
        condition: Condition,
    },
}

impl WriteOp {
    pub fn put(item: Item) -> Self {
        WriteOp::Put {
            item,
            condition: None,
        }
    }
    pub fn put_if(item: Item, condition: Condition) -> Self {
        WriteOp::Put {
            item,
            condition: Some(condition),
        }
    }
    pub fn key(&self) -> Option<Key> {
        match self {
            WriteOp::Put { item, .. } => item.key(),
            WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. }
            | WriteOp::ConditionCheck { key, .. } => Some(key.clone()),
        }
    }
}

/// Why one operation of a cancelled transaction failed.
#[derive(Clone, Debug, PartialEq)]
pub enum CancelReason {
    /// Its condition failed; the item as it was, if it existed.
    ConditionFailed(Option<Item>),
    /// Another transaction or write was touching the item.
    Conflict,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The condition of a single-item write failed; the item as it was (ALL_OLD).
    #[error("condition failed")]
    ConditionFailed { old: Option<Box<Item>> },
    /// The transaction was cancelled; one reason per operation, in order (`None`: that one was fine).
    #[error("transaction cancelled")]
    TransactionCanceled { reasons: Vec<Option<CancelReason>> },
    /// The request itself is invalid (missing key, too many operations, item too large, ...).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Throttling, a timeout, a locked database: worth retrying.
    #[error("store temporarily unavailable: {0}")]
    Transient(String),
    /// Anything else.
    #[error("store failure: {0}")]
    Other(String),
}

impl StoreError {
    pub fn is_condition_failure(&self) -> bool {
        matches!(self, StoreError::ConditionFailed { .. })
    }
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
    /// The ALL_OLD item of a failed single-item condition.
    pub fn old_item(&self) -> Option<&Item> {
        match self {
            StoreError::ConditionFailed { old } => old.as_deref(),
            _ => None,
        }
    }
}

#[async_trait]
pub trait ItemStore: Send + Sync {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;
    /// Writes the whole item (it must hold `PK` and `SK`), replacing any previous one.
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError>;
    /// Applies the update and returns the item as it is afterwards (ALL_NEW).
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError>;
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError>;
    async fn query(&self, query: Query) -> Result<Page, StoreError>;
    /// All or nothing, at most `MAX_TRANSACTION_ITEMS` operations on distinct items.
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;
}

/// Validation shared by both adapters, so they refuse the same requests.
pub fn validate_item(item: &Item) -> Result<Key, StoreError> {
    let key = item
        .key()
        .ok_or_else(|| StoreError::Invalid("item must have string PK and SK".into()))?;
    if key.pk.is_empty() || key.sk.is_empty() {
        return Err(StoreError::Invalid("PK and SK must not be empty".into()));
    }
    for index in Index::ALL {
        for attr in [index.pk_attribute(), index.sk_attribute()] {
            match item.get(attr) {
                None | Some(Value::S(_)) => {}
                Some(_) => {
                    return Err(StoreError::Invalid(format!(
                        "{attr} is an index key and must be a string"
                    )));
                }
            }
        }
    }
    Ok(key)
}

/// Validation of a transaction shared by both adapters.
pub fn validate_transaction(ops: &[WriteOp]) -> Result<(), StoreError> {
    if ops.is_empty() || ops.len() > MAX_TRANSACTION_ITEMS {
        return Err(StoreError::Invalid(format!(
            "a transaction holds 1 to {MAX_TRANSACTION_ITEMS} operations, got {}",
            ops.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for op in ops {
        let key = match op {
            WriteOp::Put { item, .. } => validate_item(item)?,
            other => other.key().expect("non-put ops carry a key"),
        };
        if !seen.insert(key.clone()) {
            return Err(StoreError::Invalid(format!(
                "a transaction cannot touch one item twice ({}/{})",
                key.pk, key.sk
            )));
        }
    }
    Ok(())
}
