//! The item-store port: a narrow, DynamoDB-shaped key/value store.
//!
//! Both adapters (DynamoDB and the embedded journal store) implement exactly this trait and pass the
//! same conformance suite (`crate::conformance::store`), so repositories are written once.
//!
//! Shape, and the rules both adapters follow:
//! - One table. Every item has string keys `PK` and `SK`. Sort order is by UTF-8 bytes.
//! - Two sparse global secondary indexes, `GSI1` (`GSI1PK`/`GSI1SK`) and `GSI2`
//!   (`GSI2PK`/`GSI2SK`), both non-empty string keys, projecting the whole item. An item is in
//!   an index only when it holds both of that index's key attributes (as in DynamoDB).
//! - TTL on the numeric attribute `expires_at` (epoch seconds). Expired items may still be
//!   returned (DynamoDB deletes lazily), so code that cares checks expiry itself.
//! - A failed condition reports the item as it was (`ReturnValuesOnConditionCheckFailure=ALL_OLD`).
//! - A transaction holds at most 100 operations, on distinct items, and is all-or-nothing.
//! - Numbers are plain decimals (`-12.5`, no exponent), at most 38 significant digits. Adapters
//!   store them as given; DynamoDB may normalise them (`1.50` reads back as `1.5`).
//! - Requests DynamoDB would refuse are refused by both adapters before they run
//!   (`validate_*` below), so the embedded store cannot accept what production rejects.

use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// True when a transaction was cancelled because operation `n`'s condition failed.
    pub fn condition_failed_at(&self, n: usize) -> bool {
        matches!(self, StoreError::TransactionCanceled { reasons }
            if matches!(reasons.get(n), Some(Some(CancelReason::ConditionFailed(_)))))
    }
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
    /// A transaction cancelled only because other writes were touching its items (DynamoDB's
    /// `TransactionConflict`), no condition failing: nothing was written, and the same
    /// transaction may well succeed when sent again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::TransactionCanceled { reasons }
            if reasons.iter().any(|r| matches!(r, Some(CancelReason::Conflict)))
                && !reasons.iter().any(|r| matches!(r, Some(CancelReason::ConditionFailed(_)))))
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
    /// [`ItemStore::get`] for a caller that only reads the item: an adapter that keeps items
    /// shared (the embedded store) hands out its own copy instead of cloning every attribute.
    async fn get_shared(&self, key: &Key) -> Result<Option<Arc<Item>>, StoreError> {
        Ok(self.get(key).await?.map(Arc::new))
    }
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
    validate_key(&key)?;
    for (name, value) in item {
        validate_attribute(name, value)?;
    }
    let size = item_size(item);
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::Invalid(format!(
            "item {}/{} is {size} bytes, over the {MAX_ITEM_BYTES}-byte limit",
            key.pk, key.sk
        )));
    }
    Ok(key)
}

/// Both key parts must be non-empty (DynamoDB refuses empty key strings).
pub fn validate_key(key: &Key) -> Result<(), StoreError> {
    if key.pk.is_empty() || key.sk.is_empty() {
        return Err(StoreError::Invalid("PK and SK must not be empty".into()));
    }
    Ok(())
}

/// Checks one attribute as DynamoDB would: index keys are non-empty strings, numbers are
/// decimals, `NULL` is `true`.
fn validate_attribute(name: &str, value: &Value) -> Result<(), StoreError> {
    if is_index_key_attribute(name) {
        match value {
            Value::S(s) if !s.is_empty() => {}
            _ => {
                return Err(StoreError::Invalid(format!(
                    "{name} is an index key and must be a non-empty string"
                )));
            }
        }
    }
    validate_value(name, value)
}

fn validate_value(name: &str, value: &Value) -> Result<(), StoreError> {
    match value {
        Value::N(n) if !is_valid_number(n) => Err(StoreError::Invalid(format!(
            "{name}: {n:?} is not a decimal number of at most 38 significant digits"
        ))),
        Value::Null(false) => Err(StoreError::Invalid(format!(
            "{name}: a NULL value must be NULL(true)"
        ))),
        Value::L(values) => values.iter().try_for_each(|v| validate_value(name, v)),
        Value::M(map) => map.values().try_for_each(|v| validate_value(name, v)),
        _ => Ok(()),
    }
}

fn is_index_key_attribute(name: &str) -> bool {
    Index::ALL
        .iter()
        .any(|index| name == index.pk_attribute() || name == index.sk_attribute())
}

/// A plain decimal: optional `-`, digits, optional `.digits`; at most 38 significant digits.
pub fn is_valid_number(n: &str) -> bool {
    let digits = n.strip_prefix('-').unwrap_or(n);
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return false;
    }
    // Leading zeros never count, trailing ones only in a fraction (without allocating: every
    // outbox item's TTL is checked).
    let all = || int.bytes().chain(frac.unwrap_or("").bytes());
    let total = int.len() + frac.map_or(0, str::len);
    let leading = all().take_while(|&b| b == b'0').count();
    let trailing = match frac {
        Some(_) if leading < total => all().rev().take_while(|&b| b == b'0').count(),
        _ => 0,
    };
    total - leading - trailing <= 38
}

/// The size DynamoDB charges for an item: attribute names plus values, numbers at about one
/// byte per two digits, 3 bytes per list or map plus 1 per element.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::S(s) => s.len(),
        Value::N(n) => n.bytes().filter(u8::is_ascii_digit).count().div_ceil(2) + 1,
        Value::Bool(_) | Value::Null(_) => 1,
        Value::L(values) => 3 + values.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        Value::M(map) => {
            3 + map
                .iter()
                .map(|(name, v)| name.len() + value_size(v) + 1)
                .sum::<usize>()
        }
    }
}

/// An update DynamoDB would refuse: empty, touching the primary key, a non-string or empty
/// index key, ADD on an index key, or one attribute in two clauses ("paths overlap").
pub fn validate_update(update: &Update) -> Result<(), StoreError> {
    if update.is_empty() {
        return Err(StoreError::Invalid(
            "an update must change something".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let names = update
        .set
        .iter()
        .chain(&update.set_if_not_exists)
        .map(|(name, _)| name)
        .chain(update.add.iter().map(|(name, _)| name))
        .chain(&update.remove);
    for name in names {
        if name == PK || name == SK {
            return Err(StoreError::Invalid(format!(
                "cannot update {name}: it is part of the primary key"
            )));
        }
        if name.is_empty() {
            return Err(StoreError::Invalid(
                "attribute names must not be empty".into(),
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(StoreError::Invalid(format!("an update names {name} twice")));
        }
    }
    for (name, value) in update.set.iter().chain(&update.set_if_not_exists) {
        validate_attribute(name, value)?;
    }
    if let Some((name, _)) = update
        .add
        .iter()
        .find(|(name, _)| is_index_key_attribute(name))
    {
        return Err(StoreError::Invalid(format!(
            "{name} is an index key and must be a string; ADD makes a number"
        )));
    }
    Ok(())
}

/// Values in a condition follow the same rules as values in an item.
pub fn validate_condition(condition: &Condition) -> Result<(), StoreError> {
    match condition {
        Condition::Exists(_) | Condition::NotExists(_) | Condition::BeginsWith(_, _) => Ok(()),
        Condition::Eq(name, value)
        | Condition::Lt(name, value)
        | Condition::Le(name, value)
        | Condition::Gt(name, value)
        | Condition::Ge(name, value) => validate_value(name, value),
        Condition::And(all) | Condition::Or(all) => all.iter().try_for_each(validate_condition),
        Condition::Not(inner) => validate_condition(inner),
    }
}

/// A query DynamoDB would refuse: empty partition, `limit` 0, `Between` bounds out of order,
/// or a `start_after` missing the key attributes the query pages by.
pub fn validate_query(query: &Query) -> Result<(), StoreError> {
    if query.pk.is_empty() {
        return Err(StoreError::Invalid(
            "the partition key must not be empty".into(),
        ));
    }
    if query.limit == Some(0) {
        return Err(StoreError::Invalid(
            "a query limit must be at least 1".into(),
        ));
    }
    if let Some(SortKeyCondition::Between(low, high)) = &query.sk
        && low > high
    {
        return Err(StoreError::Invalid(format!(
            "between: the lower bound {low:?} is above the upper bound {high:?}"
        )));
    }
    if let Some(start) = &query.start_after {
        let mut needed = vec![PK, SK];
        if let Some(index) = query.index {
            needed.extend([index.pk_attribute(), index.sk_attribute()]);
        }
        if let Some(missing) = needed.iter().find(|name| start.str_attr(name).is_none()) {
            return Err(StoreError::Invalid(format!(
                "start_after lacks the string key attribute {missing}"
            )));
        }
    }
    Ok(())
}

/// Validation of a transaction shared by both adapters.
pub fn validate_transaction(ops: &[WriteOp]) -> Result<(), StoreError> {
    if ops.is_empty() || ops.len() > MAX_TRANSACTION_ITEMS {
        return Err(StoreError::Invalid(format!(
            "a transaction holds 1 to {MAX_TRANSACTION_ITEMS} operations, got {}",
            ops.len()
        )));
    }
    // At most 100 keys, usually 2 or 3: comparing them beats hashing them.
    let mut seen: Vec<Key> = Vec::with_capacity(ops.len());
    for op in ops {
        let (key, condition) = match op {
            WriteOp::Put { item, condition } => (validate_item(item)?, condition.as_ref()),
            WriteOp::Update {
                key,
                update,
                condition,
            } => {
                validate_update(update)?;
                (key.clone(), condition.as_ref())
            }
            WriteOp::Delete { key, condition } => (key.clone(), condition.as_ref()),
            WriteOp::ConditionCheck { key, condition } => (key.clone(), Some(condition)),
        };
        validate_key(&key)?;
        if let Some(condition) = condition {
            validate_condition(condition)?;
        }
        if seen.contains(&key) {
            return Err(StoreError::Invalid(format!(
                "a transaction cannot touch one item twice ({}/{})",
                key.pk, key.sk
            )));
        }
        seen.push(key);
    }
    Ok(())
}

#[cfg(test)]
mod validation_tests {
    use super::*;

    /// The significant-digit count, as first written (with a String).
    fn significant_digits(int: &str, frac: Option<&str>) -> usize {
        let significant: String = format!("{int}{}", frac.unwrap_or(""));
        let significant = significant.trim_start_matches('0');
        let significant = if frac.is_some() {
            significant.trim_end_matches('0')
        } else {
            significant
        };
        significant.len()
    }

    #[test]
    fn numbers_count_significant_digits_as_before() {
        let parts = [
            "",
            "0",
            "00",
            "1",
            "10",
            "01",
            "010",
            &"0".repeat(40),
            &"9".repeat(38),
        ];
        for int in parts.iter().filter(|p| !p.is_empty()) {
            for frac in parts.iter().map(|f| Some(*f)).chain([None]) {
                let text = match frac {
                    Some(f) => format!("{int}.{f}"),
                    None => int.to_string(),
                };
                let expected =
                    !frac.is_some_and(str::is_empty) && significant_digits(int, frac) <= 38;
                assert_eq!(is_valid_number(&text), expected, "{text}");
            }
        }
    }

    #[test]
    fn numbers() {
        for ok in ["0", "-1", "12.50", "007", "0.000001", &"9".repeat(38)] {
            assert!(is_valid_number(ok), "{ok}");
        }
        for bad in [
            "",
            "-",
            "1.",
            ".5",
            "1e3",
            "+1",
            "abc",
            "1.2.3",
            &"9".repeat(39),
        ] {
            assert!(!is_valid_number(bad), "{bad}");
        }
    }

    #[test]
    fn sizes_follow_dynamodb() {
        let mut item = Key::new("p", "s").to_item(); // 2 + 1 + 2 + 1
        item.insert("n".into(), Value::n(12345)); // 1 + 3 + 1
        item.insert("l".into(), Value::L(vec![Value::Bool(true)])); // 1 + 3 + 2
        assert_eq!(item_size(&item), 6 + 5 + 6);
    }

    #[test]
    fn updates_refused_like_dynamodb() {
        assert!(validate_update(&Update::new()).is_err());
        assert!(validate_update(&Update::new().set(PK, Value::s("x"))).is_err());
        assert!(validate_update(&Update::new().set("GSI1PK", Value::n(1))).is_err());
        assert!(validate_update(&Update::new().set("GSI1SK", Value::s(""))).is_err());
        assert!(validate_update(&Update::new().add("GSI2SK", 1)).is_err());
        assert!(validate_update(&Update::new().set("a", Value::n(1)).remove("a")).is_err());
        assert!(validate_update(&Update::new().set("a", Value::n(1)).remove("b")).is_ok());
    }
}

#[cfg(test)]
mod conflict_tests {
    use super::*;

    #[test]
    fn only_a_cancellation_by_conflicts_alone_is_a_conflict() {
        let cancelled = |reasons| StoreError::TransactionCanceled { reasons };
        assert!(cancelled(vec![None, Some(CancelReason::Conflict)]).is_conflict());
        // A failed condition decides: the write lost a race, retrying it cannot help.
        assert!(
            !cancelled(vec![
                Some(CancelReason::Conflict),
                Some(CancelReason::ConditionFailed(None))
            ])
            .is_conflict()
        );
        assert!(!cancelled(vec![None, None]).is_conflict());
        assert!(!StoreError::Transient("throttled".into()).is_conflict());
    }
}
