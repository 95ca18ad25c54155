//! The embedded store's contents, in memory: the items by partition, the two GSIs and the TTL
//! index as ordered sets, and the outbox stream. Every change is an [`Op`]; the journal
//! records the same ops, so replaying them rebuilds this state exactly.
//!
//! Keys and index keys compare as Rust strings do, byte-wise on UTF-8, which is the order
//! DynamoDB sorts string keys in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::sync::Arc;

use closedloop_core::store::{
    Index, Item, ItemExt, Key, Page, Query, SortKeyCondition, StoreError, TTL_ATTRIBUTE, Value,
};

/// The attribute and value that mark an outbox item (see `closedloop_core::outbox`).
const ENTITY_ATTRIBUTE: &str = "entity";
const OUTBOX_ENTITY: &str = "outbox";

/// One change. `Put` of a new outbox item also appends a stream record, on replay too.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    Put(Item),
    Delete(Key),
    /// Drops stream records up to and including this sequence number.
    TrimStream(u64),
    Checkpoint {
        consumer: String,
        seq: u64,
    },
    /// Compaction only: an item restored as it was, without a stream record. Shared, so a
    /// snapshot is written from the live items without copying them.
    Restore(Arc<Item>),
    /// Compaction only: a stream record restored with its sequence number.
    RestoreStream {
        seq: u64,
        image: Arc<Item>,
    },
    /// Compaction only: the stream's high-water mark (kept even when every record is trimmed).
    StreamSeq(u64),
}

/// One entry of a GSI: (index pk, index sk, table pk, table sk), a total order.
type IndexEntry = (String, String, String, String);

/// Items are shared (`Arc`) so that a stream record is the outbox item itself, not a copy, and
/// a snapshot for compaction is taken in moments.
#[derive(Default)]
pub(crate) struct State {
    partitions: HashMap<String, BTreeMap<String, Arc<Item>>>,
    gsi1: BTreeSet<IndexEntry>,
    gsi2: BTreeSet<IndexEntry>,
    /// (expires_at, pk, sk) of items whose TTL attribute is a number.
    expiry: BTreeSet<(i64, String, String)>,
    stream: BTreeMap<u64, Arc<Item>>,
    last_seq: u64,
    checkpoints: BTreeMap<String, u64>,
    items: usize,
}

impl State {
    pub(crate) fn get(&self, key: &Key) -> Option<&Item> {
        self.get_shared(key).map(Arc::as_ref)
    }

    pub(crate) fn get_shared(&self, key: &Key) -> Option<&Arc<Item>> {
        self.partitions.get(&key.pk)?.get(&key.sk)
    }

    /// Every item, ordered by (PK, SK).
    pub(crate) fn all_items(&self) -> Vec<Item> {
        let mut pks: Vec<&String> = self.partitions.keys().collect();
        pks.sort();
        pks.into_iter()
            .flat_map(|pk| {
                self.partitions[pk]
                    .values()
                    .map(|item| item.as_ref().clone())
            })
            .collect()
    }

    pub(crate) fn item_count(&self) -> usize {
        self.items
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub(crate) fn checkpoint(&self, consumer: &str) -> u64 {
        self.checkpoints.get(consumer).copied().unwrap_or(0)
    }

    pub(crate) fn stream_after(&self, after: u64, limit: usize) -> Vec<(u64, Arc<Item>)> {
        self.stream
            .range((Excluded(after), Unbounded))
            .take(limit)
            .map(|(seq, image)| (*seq, image.clone()))
            .collect()
    }

    pub(crate) fn stream_len(&self) -> usize {
        self.stream.len()
    }

    /// How many stream records have a sequence number up to `seq`.
    pub(crate) fn stream_records_upto(&self, seq: u64) -> usize {
        self.stream.range(..=seq).count()
    }

    /// Up to `limit` keys of items whose TTL is before `now`.
    pub(crate) fn expired(&self, now: i64, limit: usize) -> Vec<Key> {
        self.expiry
            .range(..(now, String::new(), String::new()))
            .take(limit)
            .map(|(_, pk, sk)| Key::new(pk.clone(), sk.clone()))
            .collect()
    }

    /// Applies one op.
    pub(crate) fn apply(&mut self, op: Op) {
        match op {
            Op::Put(item) => {
                let Some(key) = item.key() else {
                    return; // validated before it got here
                };
                let item = Arc::new(item);
                if is_outbox(&item) && self.get(&key).is_none() {
                    self.last_seq += 1;
                    self.stream.insert(self.last_seq, item.clone());
                }
                self.insert(key, item);
            }
            Op::Restore(item) => {
                if let Some(key) = item.key() {
                    self.insert(key, item);
                }
            }
            Op::Delete(key) => {
                self.remove(&key);
            }
            Op::TrimStream(upto) => {
                self.stream = self.stream.split_off(&(upto.saturating_add(1)));
            }
            Op::Checkpoint { consumer, seq } => {
                self.checkpoints.insert(consumer, seq);
            }
            Op::RestoreStream { seq, image } => {
                self.stream.insert(seq, image);
                self.last_seq = self.last_seq.max(seq);
            }
            Op::StreamSeq(seq) => self.last_seq = self.last_seq.max(seq),
        }
    }

    /// What rebuilds this state, taken in moments (items are shared, indexes are derived).
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            items: self
                .partitions
                .values()
                .flat_map(|partition| partition.values().cloned())
                .collect(),
            stream: self
                .stream
                .iter()
                .map(|(seq, image)| (*seq, image.clone()))
                .collect(),
            last_seq: self.last_seq,
            checkpoints: self
                .checkpoints
                .iter()
                .map(|(consumer, seq)| (consumer.clone(), *seq))
                .collect(),
        }
    }

    fn insert(&mut self, key: Key, item: Arc<Item>) -> Option<Arc<Item>> {
        let old = self.remove(&key);
        self.index(&key, &item, true);
        self.partitions
            .entry(key.pk)
            .or_default()
            .insert(key.sk, item);
        self.items += 1;
        old
    }

    fn remove(&mut self, key: &Key) -> Option<Arc<Item>> {
        let partition = self.partitions.get_mut(&key.pk)?;
        let old = partition.remove(&key.sk)?;
        if partition.is_empty() {
            self.partitions.remove(&key.pk);
        }
        self.items -= 1;
        self.index(key, &old, false);
        Some(old)
    }

    /// Adds or removes `item`'s entries in the GSIs and the TTL index.
    fn index(&mut self, key: &Key, item: &Item, add: bool) {
        for index in Index::ALL {
            let (Some(ipk), Some(isk)) = (
                item.str_attr(index.pk_attribute()),
                item.str_attr(index.sk_attribute()),
            ) else {
                continue;
            };
            let entry = (
                ipk.to_string(),
                isk.to_string(),
                key.pk.clone(),
                key.sk.clone(),
            );
            let set = match index {
                Index::Gsi1 => &mut self.gsi1,
                Index::Gsi2 => &mut self.gsi2,
            };
            if add {
                set.insert(entry);
            } else {
                set.remove(&entry);
            }
        }
        if let Some(expires_at) = item.get(TTL_ATTRIBUTE).and_then(ttl_seconds) {
            let entry = (expires_at, key.pk.clone(), key.sk.clone());
            if add {
                self.expiry.insert(entry);
            } else {
                self.expiry.remove(&entry);
            }
        }
    }

    /// Runs a validated query.
    pub(crate) fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let fetch = query.limit.map_or(usize::MAX, |l| l.saturating_add(1));
        let mut items = match query.index {
            None => self.query_table(query, fetch)?,
            Some(index) => self.query_index(query, index, fetch)?,
        };
        // One more than asked tells whether another page follows.
        let more = query.limit.is_some_and(|limit| items.len() > limit);
        if let Some(limit) = query.limit {
            items.truncate(limit);
        }
        let last_evaluated = match items.last() {
            Some(last) if more => Some(page_key(last, query.index)),
            _ => None,
        };
        Ok(Page {
            items,
            last_evaluated,
        })
    }

    fn query_table(&self, query: &Query, fetch: usize) -> Result<Vec<Item>, StoreError> {
        let Some(partition) = self.partitions.get(&query.pk) else {
            return Ok(Vec::new());
        };
        let (mut low, mut high) = sort_key_bounds(query.sk.as_ref());
        if let Some(start) = &query.start_after {
            (low, high) = narrow_past(query.forward, low, high, start_attr(start, "SK")?);
        }
        if is_empty(&low, &high) {
            return Ok(Vec::new());
        }
        let range = partition.range::<String, _>((low, high));
        let items: Vec<Item> = if query.forward {
            range
                .take(fetch)
                .map(|(_, item)| Item::clone(item))
                .collect()
        } else {
            range
                .rev()
                .take(fetch)
                .map(|(_, item)| Item::clone(item))
                .collect()
        };
        Ok(items)
    }

    fn query_index(
        &self,
        query: &Query,
        index: Index,
        fetch: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let set = match index {
            Index::Gsi1 => &self.gsi1,
            Index::Gsi2 => &self.gsi2,
        };
        let pk = &query.pk;
        let at = |isk: String| (pk.clone(), isk, String::new(), String::new());
        // Bounds on the index sort key become bounds on whole entries: `x + "\0"` is the
        // smallest string above `x`, and "" the smallest of all.
        let (sk_low, sk_high) = sort_key_bounds(query.sk.as_ref());
        let mut low = match sk_low {
            Unbounded => Included(at(String::new())),
            Included(l) => Included(at(l)),
            Excluded(l) => Included(at(l + "\0")),
        };
        let mut high = match sk_high {
            Unbounded => Excluded((
                pk.clone() + "\0",
                String::new(),
                String::new(),
                String::new(),
            )),
            Included(h) => Excluded(at(h + "\0")),
            Excluded(h) => Excluded(at(h)),
        };
        if let Some(start) = &query.start_after {
            // Items may share an index sort key: page by (index sk, table key), a total order.
            let entry = (
                pk.clone(),
                start_attr(start, index.sk_attribute())?,
                start_attr(start, "PK")?,
                start_attr(start, "SK")?,
            );
            (low, high) = narrow_past(query.forward, low, high, entry);
        }
        if is_empty(&low, &high) {
            return Ok(Vec::new());
        }
        let item = |(_, _, pk, sk): &IndexEntry| {
            self.partitions
                .get(pk)
                .and_then(|p| p.get(sk))
                .map(|item| Item::clone(item))
                .ok_or_else(|| StoreError::Other(format!("index entry without item {pk}/{sk}")))
        };
        let range = set.range((low, high));
        if query.forward {
            range.take(fetch).map(item).collect()
        } else {
            range.rev().take(fetch).map(item).collect()
        }
    }
}

/// A moment's view of the state, for compaction: the ops that rebuild it.
pub(crate) struct Snapshot {
    items: Vec<Arc<Item>>,
    stream: Vec<(u64, Arc<Item>)>,
    last_seq: u64,
    checkpoints: Vec<(String, u64)>,
}

impl Snapshot {
    /// In an order replay accepts.
    pub(crate) fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        let items = self.items.iter().map(|item| Op::Restore(item.clone()));
        let stream = self.stream.iter().map(|(seq, image)| Op::RestoreStream {
            seq: *seq,
            image: image.clone(),
        });
        let checkpoints = self
            .checkpoints
            .iter()
            .map(|(consumer, seq)| Op::Checkpoint {
                consumer: consumer.clone(),
                seq: *seq,
            });
        items
            .chain(stream)
            .chain(std::iter::once(Op::StreamSeq(self.last_seq)))
            .chain(checkpoints)
    }
}

fn is_outbox(item: &Item) -> bool {
    item.str_attr(ENTITY_ATTRIBUTE) == Some(OUTBOX_ENTITY)
}

/// The whole seconds of a TTL attribute; DynamoDB ignores TTL values that are not numbers.
fn ttl_seconds(value: &Value) -> Option<i64> {
    match value {
        Value::N(n) => n.split('.').next().and_then(|whole| whole.parse().ok()),
        _ => None,
    }
}

fn start_attr(start: &Item, name: &str) -> Result<String, StoreError> {
    start
        .str_attr(name)
        .map(String::from)
        .ok_or_else(|| StoreError::Invalid(format!("start_after lacks {name}")))
}

fn sort_key_bounds(condition: Option<&SortKeyCondition>) -> (Bound<String>, Bound<String>) {
    match condition {
        None => (Unbounded, Unbounded),
        Some(SortKeyCondition::BeginsWith(prefix)) => (
            Included(prefix.clone()),
            prefix_successor(prefix).map_or(Unbounded, Excluded),
        ),
        Some(SortKeyCondition::Between(low, high)) => {
            (Included(low.clone()), Included(high.clone()))
        }
        Some(SortKeyCondition::Lt(v)) => (Unbounded, Excluded(v.clone())),
        Some(SortKeyCondition::Le(v)) => (Unbounded, Included(v.clone())),
        Some(SortKeyCondition::Gt(v)) => (Excluded(v.clone()), Unbounded),
        Some(SortKeyCondition::Ge(v)) => (Included(v.clone()), Unbounded),
        Some(SortKeyCondition::Eq(v)) => (Included(v.clone()), Included(v.clone())),
    }
}

/// Narrows a range to what lies past `start` in the query's direction (pagination).
fn narrow_past<T: Ord>(
    forward: bool,
    low: Bound<T>,
    high: Bound<T>,
    start: T,
) -> (Bound<T>, Bound<T>) {
    if forward {
        (max_lower(low, Excluded(start)), high)
    } else {
        (low, min_upper(high, Excluded(start)))
    }
}

/// The tighter of two lower bounds.
fn max_lower<T: Ord>(a: Bound<T>, b: Bound<T>) -> Bound<T> {
    match (a, b) {
        (Unbounded, b) => b,
        (a, Unbounded) => a,
        (Included(x), Included(y)) => Included(x.max(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.max(y)),
        (Included(i), Excluded(e)) | (Excluded(e), Included(i)) => {
            if i > e {
                Included(i)
            } else {
                Excluded(e)
            }
        }
    }
}

/// The tighter of two upper bounds.
fn min_upper<T: Ord>(a: Bound<T>, b: Bound<T>) -> Bound<T> {
    match (a, b) {
        (Unbounded, b) => b,
        (a, Unbounded) => a,
        (Included(x), Included(y)) => Included(x.min(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.min(y)),
        (Included(i), Excluded(e)) | (Excluded(e), Included(i)) => {
            if i < e {
                Included(i)
            } else {
                Excluded(e)
            }
        }
    }
}

/// True when no value lies between the bounds (`BTreeMap::range` panics on such ranges).
fn is_empty<T: Ord>(low: &Bound<T>, high: &Bound<T>) -> bool {
    match (low, high) {
        (Unbounded, _) | (_, Unbounded) => false,
        (Included(l), Included(h)) => l > h,
        (Included(l), Excluded(h)) | (Excluded(l), Included(h)) | (Excluded(l), Excluded(h)) => {
            l >= h
        }
    }
}

/// The key attributes that identify `item`'s position: the table key, plus the index key.
fn page_key(item: &Item, index: Option<Index>) -> Item {
    let mut names = vec!["PK", "SK"];
    if let Some(index) = index {
        names.extend([index.pk_attribute(), index.sk_attribute()]);
    }
    names
        .into_iter()
        .filter_map(|name| Some((name.to_string(), Value::s(item.str_attr(name)?))))
        .collect()
}

/// The smallest string above every string that starts with `prefix` (`None`: no bound).
/// UTF-8 byte order is code point order, so bump the last character that can be bumped.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000; // skip the surrogates, which are not characters
        }
        if let Some(bumped) = char::from_u32(next) {
            chars.push(bumped);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_bounds_the_prefix() {
        assert_eq!(prefix_successor("b#").as_deref(), Some("b$"));
        assert_eq!(prefix_successor("é").as_deref(), Some("ê"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        assert_eq!(prefix_successor(""), None);
    }

    fn item(pk: &str, sk: &str, extra: &[(&str, Value)]) -> Item {
        let mut item = Key::new(pk, sk).to_item();
        for (name, value) in extra {
            item.insert(name.to_string(), value.clone());
        }
        item
    }

    /// Replacing an item moves its index entries; deleting it removes them.
    #[test]
    fn index_entries_follow_the_item() {
        let mut state = State::default();
        let gsi = |sk: &str| {
            [
                ("GSI1PK", Value::s("due")),
                ("GSI1SK", Value::s(sk)),
                ("expires_at", Value::n(100)),
            ]
        };
        state.apply(Op::Put(item("p", "a", &gsi("2025-01"))));
        state.apply(Op::Put(item("p", "a", &gsi("2025-02"))));
        let due = Query::on_index(Index::Gsi1, "due");
        let page = state.query(&due).expect("query");
        assert_eq!(page.items.len(), 1, "the old index entry is gone");
        assert_eq!(page.items[0].str_attr("GSI1SK"), Some("2025-02"));
        assert_eq!(state.expired(1_000, 10).len(), 1);
        state.apply(Op::Delete(Key::new("p", "a")));
        assert!(state.query(&due).expect("query").items.is_empty());
        assert!(
            state.expired(1_000, 10).is_empty(),
            "the TTL entry went too"
        );
        assert_eq!(state.item_count(), 0);
    }

    #[test]
    fn only_a_new_outbox_item_appends_to_the_stream() {
        let mut state = State::default();
        let outbox = |sk: &str| item("T#t#OUTBOX", sk, &[("entity", Value::s("outbox"))]);
        state.apply(Op::Put(outbox("E1")));
        state.apply(Op::Put(outbox("E1")));
        assert_eq!(
            state.last_seq(),
            1,
            "rewriting an outbox item is not a new record"
        );
        state.apply(Op::Put(item("T#t#OTHER", "E2", &[])));
        state.apply(Op::Put(outbox("E2")));
        assert_eq!(state.last_seq(), 2);
        state.apply(Op::TrimStream(1));
        let left: Vec<u64> = state.stream_after(0, 10).iter().map(|(s, _)| *s).collect();
        assert_eq!(left, [2]);
    }
}
