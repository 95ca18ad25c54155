//! `JournalStore`: the embedded `ItemStore` for the local runner and tests. Every item lives in
//! memory; every write is appended to a journal file before it is answered or seen.
//!
//! How it is put together, and why:
//! - **Reads** (`get`, `query`) take a shared lock on the in-memory state and run on the
//!   caller's thread: no syscall, no decoding, no hand-off.
//! - **Writes** run on the caller's thread too, under the exclusive lock: check the condition,
//!   apply the changes, queue the journal line (a transaction is one line, replayed whole or
//!   not at all). Then, with the lock released, the caller makes sure its line is written:
//!   one caller at a time writes everything queued so far with one `write` (group commit), and
//!   whoever finds their line already written returns at once. A caller hears back only after
//!   its line is written; the relay sees a stream record only after that too.
//! - A line that cannot be written (a full disk) stops the store: it refuses every later write
//!   with the reason, since later writes may have read the unwritten one. Restarting replays
//!   what was written.
//! - **Durability**: by default an answered write is in the operating system's page cache, so
//!   it survives a crash of the process (not a power cut), like SQLite's WAL with
//!   `synchronous=NORMAL`. `Durability::PowerLoss` flushes each batch to the disk first.
//! - **Exclusive use**: a lock file next to the journal (`<file>.lock`) is locked for the
//!   store's lifetime, so a second process opening the same file fails with `StoreLocked`
//!   instead of racing. The OS drops the lock when the process dies, even by a crash.
//! - **Outbox stream**: a write that creates an item whose `entity` is `"outbox"` appends the
//!   new image to the stream in the same step, like a DynamoDB stream INSERT record that the
//!   event relay reads.
//!
//! The trade: the data set must fit in memory, which suits a laptop and a test run. Production
//! runs on DynamoDB.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use parking_lot::{RwLock, RwLockReadGuard};

use async_trait::async_trait;
use closedloop_core::store::{
    CancelReason, Condition, Item, ItemStore, Key, Page, Query, StoreError, Update, WriteOp,
    validate_condition, validate_item, validate_key, validate_query, validate_transaction,
    validate_update,
};
use tokio::sync::watch;

use crate::expression::{apply_update, condition_holds};
use crate::journal::{self, Journal, JournalError};
use crate::state::{Op, State};

/// Items deleted per write by `purge_expired`, so a large purge does not stall writers.
const PURGE_CHUNK: usize = 500;

/// How much an answered write survives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// The journal line is handed to the OS before the answer: it survives a crash of the
    /// process, but the last writes may be lost on power loss or an OS crash (the journal
    /// stays consistent: a torn tail is cut off when it is opened). Right for the local
    /// runner and tests.
    #[default]
    ProcessCrash,
    /// Each group of lines is flushed to the disk (`fdatasync`) before anyone in it hears back,
    /// so it also survives power loss. Costs a disk flush per group, shared by concurrent
    /// writers; the flush runs on the writing caller's thread.
    PowerLoss,
}

/// Options for [`JournalStore::open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub durability: Durability,
    /// The journal is rewritten as a snapshot once it is four times its last snapshot and at
    /// least this big (64 MiB by default).
    pub compact_after_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::default(),
            compact_after_bytes: journal::COMPACT_AFTER_BYTES,
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the store {path} is already open elsewhere ({path}.lock is locked): by another \
         process, or by another JournalStore in this one; stop that or open another file"
    )]
    StoreLocked { path: PathBuf },
    #[error("cannot create or lock {path}: {source}")]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read or write the store's journal {path}: {source}")]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the store {path} was written by a newer closedloop (journal format {found}; this \
         build reads up to {supported}); use a newer closedloop"
    )]
    FormatTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "{path} is not a closedloop store journal (it starts with {start:?}); point the store \
         at another file"
    )]
    NotAJournal { path: PathBuf, start: String },
}

/// One record of the outbox stream: a newly created outbox item.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRecord {
    /// Increases with every record, never reused.
    pub seq: u64,
    /// The outbox item itself, shared with the store.
    pub new_image: Arc<Item>,
}

/// The embedded item store. Cheap to clone; clones share one store.
#[derive(Clone)]
pub struct JournalStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: Option<PathBuf>,
    state: RwLock<State>,
    /// `None` for an in-memory store.
    journal: Option<Arc<JournalSink>>,
    /// The newest stream sequence number whose record is written (what the relay may read).
    stream_seq: watch::Sender<u64>,
    /// Held (locked) for as long as the store is open; dropped last (fields drop in order).
    _lock_file: Option<std::fs::File>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Finish a background compaction before the lock file is released.
        if let Some(journal) = &self.journal {
            let compactor = journal
                .compactor
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(compactor) = compactor {
                let _ = compactor.join();
            }
        }
    }
}

/// Journal lines waiting to be written, and the file they go to.
struct JournalSink {
    /// Lock order: `file`, then `state`, then `queued` (writers take `state`, then `queued`).
    /// An async lock: a caller waiting for another's `write` yields its worker thread.
    file: tokio::sync::Mutex<Journal>,
    queued: Mutex<Queued>,
    /// How far (in `Queued::end` terms) the file is written.
    written: AtomicU64,
    /// Why the store stopped taking writes, once a line could not be written.
    broken: Mutex<Option<String>>,
    /// A compaction is running in the background.
    compacting: AtomicBool,
    /// The last background compaction, joined when the store closes.
    compactor: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct Queued {
    lines: Vec<u8>,
    /// Bytes ever queued: the position just after the last queued line.
    end: u64,
    /// The stream's high-water mark once every queued line is applied.
    last_seq: u64,
}

impl std::fmt::Debug for JournalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl JournalStore {
    /// Opens (creating if needed) the store in the journal file `path`, with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (creating if needed) the store in `path`. Fails with `StoreLocked` when another
    /// process (or another `JournalStore` in this one) has it open.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let lock_file = lock_exclusively(&path)?;
        let sync = options.durability == Durability::PowerLoss;
        let opened = std::time::Instant::now();
        let (mut journal, replayed) = Journal::open(&path, sync, options.compact_after_bytes)
            .map_err(|e| match e {
                JournalError::Io(source) => OpenError::Journal {
                    path: path.clone(),
                    source,
                },
                JournalError::TooNew { found, supported } => OpenError::FormatTooNew {
                    path: path.clone(),
                    found,
                    supported,
                },
                JournalError::NotAJournal(start) => OpenError::NotAJournal {
                    path: path.clone(),
                    start,
                },
            })?;
        if replayed.cut_bytes > 0 {
            tracing::warn!(path = %path.display(), cut_bytes = replayed.cut_bytes,
                "the journal ended in a torn write (a crash or power cut mid-write); it was \
                 cut back to the last whole write");
        }
        tracing::info!(path = %path.display(), items = replayed.state.item_count(),
            writes = replayed.lines, bytes = journal.bytes(),
            ms = opened.elapsed().as_millis() as u64, "store journal replayed");
        // Many more writes than live items and stream records: mostly overwritten history.
        let live = replayed.state.item_count() + replayed.state.stream_len();
        if journal.bytes() > options.compact_after_bytes && replayed.lines > 2 * live as u64 {
            journal
                .compact(&replayed.state)
                .map_err(|source| OpenError::Journal {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(Self::start(
            replayed.state,
            Some(journal),
            Some(path),
            Some(lock_file),
        ))
    }

    /// A private store in memory only, gone when the last clone is dropped. For tests.
    pub fn open_in_memory() -> Result<Self, OpenError> {
        Ok(Self::start(State::default(), None, None, None))
    }

    fn start(
        state: State,
        journal: Option<Journal>,
        path: Option<PathBuf>,
        lock_file: Option<std::fs::File>,
    ) -> Self {
        let (stream_seq, _) = watch::channel(state.last_seq());
        let journal = journal.map(|file| {
            Arc::new(JournalSink {
                file: tokio::sync::Mutex::new(file),
                queued: Mutex::new(Queued {
                    last_seq: state.last_seq(),
                    ..Queued::default()
                }),
                written: AtomicU64::new(0),
                broken: Mutex::new(None),
                compacting: AtomicBool::new(false),
                compactor: Mutex::new(None),
            })
        });
        JournalStore {
            inner: Arc::new(Inner {
                path,
                state: RwLock::new(state),
                journal,
                stream_seq,
                _lock_file: lock_file,
            }),
        }
    }

    /// The journal file (`None` for an in-memory store).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Deletes items whose TTL (`expires_at`, epoch seconds) is before `now_epoch_secs`, as
    /// DynamoDB's TTL sweeper would. Returns how many were deleted.
    pub async fn purge_expired(&self, now_epoch_secs: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let deleted = self
                .write(move |batch| {
                    let expired = batch.state().expired(now_epoch_secs, PURGE_CHUNK);
                    let deleted = expired.len();
                    if deleted > 0 {
                        batch.commit(expired.into_iter().map(Op::Delete).collect(), None);
                    }
                    Ok(deleted)
                })
                .await?;
            total += deleted;
            if deleted < PURGE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// Every item, ordered by (PK, SK): for tests and tools that compare the whole table
    /// before and after a request ("nothing was written").
    pub fn items(&self) -> Vec<Item> {
        self.state().all_items()
    }

    /// Up to `limit` stream records with a sequence number above `after_seq`, oldest first.
    pub async fn stream_read(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        let written = *self.inner.stream_seq.borrow();
        Ok(self
            .state()
            .stream_after(after_seq, limit)
            .into_iter()
            .take_while(|(seq, _)| *seq <= written)
            .map(|(seq, new_image)| StreamRecord { seq, new_image })
            .collect())
    }

    /// The last sequence number `consumer` has processed; 0 if it never checkpointed
    /// (sequence numbers start at 1).
    pub async fn stream_checkpoint_get(&self, consumer: &str) -> Result<u64, StoreError> {
        Ok(self.state().checkpoint(consumer))
    }

    /// Records, durably, that `consumer` has processed every record up to `seq`.
    pub async fn stream_checkpoint_set(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        let consumer = consumer.to_string();
        self.write(move |batch| {
            batch.commit(vec![Op::Checkpoint { consumer, seq }], None);
            Ok(())
        })
        .await
    }

    /// Deletes stream records up to and including `upto_seq`; returns how many.
    pub async fn stream_trim(&self, upto_seq: u64) -> Result<usize, StoreError> {
        self.write(move |batch| {
            let count = batch.state().stream_records_upto(upto_seq);
            if count > 0 {
                batch.commit(vec![Op::TrimStream(upto_seq)], None);
            }
            Ok(count)
        })
        .await
    }

    /// Watches the newest stream sequence number, so a relay can wait for new records
    /// instead of polling (`changed().await`, then `stream_read`).
    pub fn stream_watch(&self) -> watch::Receiver<u64> {
        self.inner.stream_seq.subscribe()
    }

    fn state(&self) -> RwLockReadGuard<'_, State> {
        // A panic inside the writer cannot leave half a write behind (changes are applied
        // only after every check), so a poisoned lock still guards a consistent state.
        self.inner.state.read()
    }

    /// Runs `work` under the exclusive lock and answers once its changes are in the journal.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Batch<'_>) -> Result<T, StoreError>,
    {
        let inner = &self.inner;
        if let Some(journal) = &inner.journal
            && let Some(why) = journal.broken()
        {
            return Err(why);
        }
        let mut line = Vec::new();
        let (outcome, queued_to) = {
            let mut state = inner.state.write();
            let mut batch = Batch {
                state: &mut state,
                lines: inner.journal.as_ref().map(|_| &mut line),
            };
            let outcome = work(&mut batch);
            let queued_to = match &inner.journal {
                Some(journal) if !line.is_empty() => {
                    let mut queued = journal.queued.lock().unwrap_or_else(|e| e.into_inner());
                    queued.end += line.len() as u64;
                    // Usually nothing else is queued: hand the line over instead of copying it.
                    if queued.lines.is_empty() {
                        queued.lines = std::mem::take(&mut line);
                    } else {
                        queued.lines.extend_from_slice(&line);
                    }
                    queued.last_seq = state.last_seq();
                    Some(queued.end)
                }
                _ => None,
            };
            if inner.journal.is_none() && state.last_seq() > *inner.stream_seq.borrow() {
                inner.stream_seq.send_replace(state.last_seq());
            }
            (outcome, queued_to)
        };
        if let (Some(journal), Some(position)) = (&inner.journal, queued_to) {
            journal
                .clone()
                .write_through(position, &inner.state, &inner.stream_seq)
                .await?;
        }
        outcome
    }
}

impl JournalSink {
    fn broken(&self) -> Option<StoreError> {
        let broken = self.broken.lock().unwrap_or_else(|e| e.into_inner());
        broken.as_ref().map(|why| {
            StoreError::Other(format!(
                "the store stopped taking writes: its journal could not be written ({why}); \
                 free disk space and restart closedloop"
            ))
        })
    }

    /// Returns once every line queued up to `position` is written (by this caller or another).
    async fn write_through(
        self: Arc<Self>,
        position: u64,
        state: &RwLock<State>,
        stream_seq: &watch::Sender<u64>,
    ) -> Result<(), StoreError> {
        if self.written.load(Ordering::Acquire) >= position {
            return Ok(());
        }
        let mut file = self.file.lock().await;
        if self.written.load(Ordering::Acquire) >= position {
            return Ok(()); // the caller before us wrote our line too
        }
        self.write_queued(&mut file, stream_seq)?;
        if file.wants_compaction() && !self.compacting.swap(true, Ordering::AcqRel) {
            self.start_compaction(&mut file, state, stream_seq);
        }
        Ok(())
    }

    /// Writes every queued line; the caller holds the file.
    fn write_queued(
        &self,
        file: &mut Journal,
        stream_seq: &watch::Sender<u64>,
    ) -> Result<(), StoreError> {
        if let Some(why) = self.broken() {
            return Err(why);
        }
        let (lines, end, last_seq) = {
            let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
            (
                std::mem::take(&mut queued.lines),
                queued.end,
                queued.last_seq,
            )
        };
        if !lines.is_empty()
            && let Err(e) = file.append(&lines)
        {
            tracing::error!(error = %e, "cannot append to the store journal; the store stops taking writes");
            *self.broken.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            return Err(self.broken().expect("just set"));
        }
        self.written.store(end, Ordering::Release);
        if last_seq > *stream_seq.borrow() {
            stream_seq.send_replace(last_seq);
        }
        Ok(())
    }

    /// Rewrites the journal as a snapshot, in the background: writers are held up only while
    /// the snapshot is taken (items are shared, not copied). Lines written meanwhile are
    /// carried over to the new journal.
    fn start_compaction(
        self: &Arc<Self>,
        file: &mut Journal,
        state: &RwLock<State>,
        stream_seq: &watch::Sender<u64>,
    ) {
        // Writers apply and queue under the state lock: with it held and the queue written,
        // the journal holds exactly this state.
        let snapshot = {
            let state = state.read();
            if self.write_queued(file, stream_seq).is_err() {
                self.compacting.store(false, Ordering::Release);
                return;
            }
            state.snapshot()
        };
        let tail_from = file.bytes();
        let temp = file.compaction_path();
        let sink = self.clone();
        let compactor = std::thread::Builder::new()
            .name("journal-compaction".into())
            .spawn(move || {
                let written = journal::write_snapshot(&temp, &snapshot);
                drop(snapshot);
                let mut file = sink.file.blocking_lock();
                let before = file.bytes();
                match written.and_then(|()| file.install_snapshot(&temp, tail_from)) {
                    Ok(()) => {
                        tracing::info!(before, after = file.bytes(), "store journal compacted")
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&temp);
                        tracing::error!(error = %e, "store journal compaction failed; will retry");
                    }
                }
                sink.compacting.store(false, Ordering::Release);
            });
        match compactor {
            Ok(handle) => {
                *self.compactor.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the journal compaction");
                self.compacting.store(false, Ordering::Release);
            }
        }
    }
}

/// Locks the file `<journal>.lock` next to the journal, or reports that someone else holds it.
fn lock_exclusively(journal_path: &Path) -> Result<std::fs::File, OpenError> {
    let mut lock_path = journal_path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let lock_error = |source| OpenError::LockFile {
        path: lock_path.clone(),
        source,
    };
    if let Some(dir) = journal_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(lock_error)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::StoreLocked {
            path: journal_path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(lock_error(source)),
    }
}

// ---------------------------------------------------------------------------------------------
// Writes

/// What a write sees: the state, under the exclusive lock.
struct Batch<'s> {
    state: &'s mut State,
    /// The journal line of this write (`None`: an in-memory store keeps no journal).
    lines: Option<&'s mut Vec<u8>>,
}

impl Batch<'_> {
    fn state(&self) -> &State {
        self.state
    }

    fn get(&self, key: &Key) -> Option<Item> {
        self.state.get(key).cloned()
    }

    /// Applies a write's changes, all together, after its checks passed. `encoded` is the
    /// journal line for `ops` when the caller already encoded it (outside the lock).
    fn commit(&mut self, ops: Vec<Op>, encoded: Option<Vec<u8>>) {
        if let Some(lines) = self.lines.as_deref_mut() {
            match encoded {
                Some(line) if lines.is_empty() => *lines = line,
                Some(line) => lines.extend_from_slice(&line),
                None => journal::encode_line(&ops, lines),
            }
        }
        for op in ops {
            self.state.apply(op);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The port

#[async_trait]
impl ItemStore for JournalStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        validate_key(key)?;
        Ok(self.state().get(key).cloned())
    }

    async fn get_shared(&self, key: &Key) -> Result<Option<Arc<Item>>, StoreError> {
        validate_key(key)?;
        Ok(self.state().get_shared(key).cloned())
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        let key = validate_item(&item)?;
        if let Some(condition) = &condition {
            validate_condition(condition)?;
        }
        // Encode here, in parallel with other callers: the writer thread is shared.
        let ops = vec![Op::Put(item)];
        let encoded = self
            .inner
            .journal
            .is_some()
            .then(|| journal::encoded_line(&ops));
        self.write(move |batch| {
            if let Some(condition) = &condition {
                let old = batch.get(&key);
                if !condition_holds(condition, old.as_ref()) {
                    return Err(StoreError::ConditionFailed {
                        old: old.map(Box::new),
                    });
                }
            }
            batch.commit(ops, encoded);
            Ok(())
        })
        .await
    }

    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        validate_key(key)?;
        validate_update(&update)?;
        if let Some(condition) = &condition {
            validate_condition(condition)?;
        }
        let key = key.clone();
        self.write(move |batch| {
            let old = batch.get(&key);
            if let Some(condition) = &condition
                && !condition_holds(condition, old.as_ref())
            {
                return Err(StoreError::ConditionFailed {
                    old: old.map(Box::new),
                });
            }
            let new = apply_update(&key, old.as_ref(), &update)?;
            validate_item(&new)?;
            batch.commit(vec![Op::Put(new.clone())], None);
            Ok(new)
        })
        .await
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        validate_key(key)?;
        if let Some(condition) = &condition {
            validate_condition(condition)?;
        }
        let key = key.clone();
        self.write(move |batch| {
            let old = batch.get(&key);
            if let Some(condition) = &condition
                && !condition_holds(condition, old.as_ref())
            {
                return Err(StoreError::ConditionFailed {
                    old: old.map(Box::new),
                });
            }
            if old.is_some() {
                batch.commit(vec![Op::Delete(key)], None);
            }
            Ok(())
        })
        .await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        validate_query(&query)?;
        self.state().query(&query)
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        let checks = ops
            .iter()
            .map(|op| Ok((op_key(op)?, op_condition(op).cloned())))
            .collect::<Result<Vec<(Key, Option<Condition>)>, StoreError>>()?;
        // Without updates, the changes are known before the conditions are checked: encode
        // their journal line here, outside the lock that every reader and writer shares.
        let planned: Result<(Vec<Op>, Option<Vec<u8>>), Vec<WriteOp>> =
            if ops.iter().any(|op| matches!(op, WriteOp::Update { .. })) {
                Err(ops)
            } else {
                let changes: Vec<Op> = ops
                    .into_iter()
                    .filter_map(|op| match op {
                        WriteOp::Put { item, .. } => Some(Op::Put(item)),
                        WriteOp::Delete { key, .. } => Some(Op::Delete(key)),
                        _ => None,
                    })
                    .collect();
                let encoded = (self.inner.journal.is_some() && !changes.is_empty())
                    .then(|| journal::encoded_line(&changes));
                Ok((changes, encoded))
            };
        self.write(move |batch| {
            // Check every condition first, against the items as they are, as DynamoDB does.
            let mut reasons = Vec::with_capacity(checks.len());
            for (key, condition) in &checks {
                let old = batch.state().get(key);
                let failed = condition.as_ref().is_some_and(|c| !condition_holds(c, old));
                reasons.push(failed.then(|| CancelReason::ConditionFailed(old.cloned())));
            }
            if reasons.iter().any(Option::is_some) {
                return Err(StoreError::TransactionCanceled { reasons });
            }
            let (changes, encoded) = match planned {
                Ok(planned) => planned,
                Err(ops) => {
                    // Work out every change before applying any, so a bad update writes nothing.
                    let mut changes = Vec::with_capacity(ops.len());
                    for op in ops {
                        match op {
                            WriteOp::Put { item, .. } => changes.push(Op::Put(item)),
                            WriteOp::Update { key, update, .. } => {
                                let new = apply_update(&key, batch.state().get(&key), &update)?;
                                validate_item(&new)?;
                                changes.push(Op::Put(new));
                            }
                            WriteOp::Delete { key, .. } => changes.push(Op::Delete(key)),
                            WriteOp::ConditionCheck { .. } => {}
                        }
                    }
                    (changes, None)
                }
            };
            if !changes.is_empty() {
                batch.commit(changes, encoded);
            }
            Ok(())
        })
        .await
    }
}

fn op_key(op: &WriteOp) -> Result<Key, StoreError> {
    op.key()
        .ok_or_else(|| StoreError::Invalid("a transaction put needs string PK and SK".into()))
}

fn op_condition(op: &WriteOp) -> Option<&Condition> {
    match op {
        WriteOp::Put { condition, .. }
        | WriteOp::Update { condition, .. }
        | WriteOp::Delete { condition, .. } => condition.as_ref(),
        WriteOp::ConditionCheck { condition, .. } => Some(condition),
    }
}
