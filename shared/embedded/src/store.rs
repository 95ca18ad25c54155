//! `JournalStore`: the embedded `ItemStore` for the local runner and tests. Every item lives in
//! memory; every write is appended to a journal file before it is answered or seen.
//!
//! How it is put together, and why:
//! - **Reads** (`get`, `query`, the stream) take a shared lock on the in-memory state and run
//!   on the caller's thread: no syscall, no decoding, no hand-off.
//! - **One writer thread** applies every write. Writes that queue up while it works are taken
//!   together (group commit): it applies each one's condition check and changes to the state,
//!   appends their journal lines with one `write`, and only then releases the state and
//!   answers. So a write is visible only once it is in the journal, a failed condition leaves
//!   nothing behind, and a transaction is one journal line, replayed whole or not at all. If
//!   the journal cannot be written, the batch's changes are undone in memory and every caller
//!   in it gets the error.
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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use closedloop_core::store::{
    CancelReason, Condition, Item, ItemStore, Key, Page, Query, StoreError, Update, WriteOp,
    validate_condition, validate_item, validate_key, validate_query, validate_transaction,
    validate_update,
};
use tokio::sync::{oneshot, watch};

use crate::expression::{apply_update, condition_holds};
use crate::journal::{self, Journal, JournalError};
use crate::state::{Op, State, Undo};

/// At most this many queued writes share one journal append.
const MAX_GROUP_COMMIT: usize = 256;
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
    /// Each batch is flushed to the disk (`fdatasync`) before anyone hears back, so it also
    /// survives power loss. Costs a disk flush per batch, shared by concurrent writers.
    PowerLoss,
}

/// Options for [`JournalStore::open_with`].
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    pub durability: Durability,
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
    #[error("cannot start the store's writer thread: {0}")]
    WriterThread(std::io::Error),
}

/// One record of the outbox stream: a newly created outbox item.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRecord {
    /// Increases with every record, never reused.
    pub seq: u64,
    pub new_image: Item,
}

/// The embedded item store. Cheap to clone; clones share one store.
#[derive(Clone)]
pub struct JournalStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: Option<PathBuf>,
    state: Arc<RwLock<State>>,
    /// `None` only while dropping (so the writer thread sees the channel close).
    writer: Option<mpsc::Sender<Box<dyn WriteJob>>>,
    writer_thread: Option<JoinHandle<()>>,
    stream_seq: watch::Receiver<u64>,
    /// Held (locked) for as long as the store is open; dropped last.
    _lock_file: Option<std::fs::File>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Let queued writes finish and the journal close before the lock goes.
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
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
        let (mut journal, replayed) = Journal::open(&path, sync).map_err(|e| match e {
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
        if journal.wants_compaction() {
            journal
                .compact(&replayed.state)
                .map_err(|source| OpenError::Journal {
                    path: path.clone(),
                    source,
                })?;
        }
        Self::start(replayed.state, Some(journal), Some(path), Some(lock_file))
    }

    /// A private store in memory only, gone when the last clone is dropped. For tests.
    pub fn open_in_memory() -> Result<Self, OpenError> {
        Self::start(State::default(), None, None, None)
    }

    fn start(
        state: State,
        journal: Option<Journal>,
        path: Option<PathBuf>,
        lock_file: Option<std::fs::File>,
    ) -> Result<Self, OpenError> {
        let (seq_tx, seq_rx) = watch::channel(state.last_seq());
        let state = Arc::new(RwLock::new(state));
        let (tx, rx) = mpsc::channel();
        let writer_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer_loop(writer_state, journal, rx, seq_tx))
            .map_err(OpenError::WriterThread)?;
        Ok(JournalStore {
            inner: Arc::new(Inner {
                path,
                state,
                writer: Some(tx),
                writer_thread: Some(thread),
                stream_seq: seq_rx,
                _lock_file: lock_file,
            }),
        })
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

    /// Up to `limit` stream records with a sequence number above `after_seq`, oldest first.
    pub async fn stream_read(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        Ok(self
            .state()
            .stream_after(after_seq, limit)
            .into_iter()
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
            let trimmed = batch.state().stream_after(0, usize::MAX);
            let count = trimmed.iter().take_while(|(seq, _)| *seq <= upto_seq).count();
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
        self.inner.stream_seq.clone()
    }

    fn state(&self) -> RwLockReadGuard<'_, State> {
        // A panic inside the writer cannot leave half a write behind (changes are applied
        // only after every check), so a poisoned lock still guards a consistent state.
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `work` on the writer thread and answers once its changes are in the journal.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            work: Some(work),
            outcome: None,
            reply,
        });
        self.inner
            .writer
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(job)
            .map_err(|_| writer_gone())?;
        answer.await.unwrap_or_else(|_| Err(writer_gone()))
    }
}

fn writer_gone() -> StoreError {
    StoreError::Other("the store's writer thread has stopped".into())
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
// The writer thread

/// What a write job sees: the state, with this batch's earlier writes applied.
struct Batch<'s> {
    state: &'s mut State,
    undo: &'s mut Vec<Undo>,
    /// Journal lines of the batch so far (`None`: an in-memory store keeps no journal).
    lines: Option<&'s mut Vec<u8>>,
}

impl Batch<'_> {
    fn state(&self) -> &State {
        self.state
    }

    fn get(&self, key: &Key) -> Option<Item> {
        self.state.get(key).cloned()
    }

    /// Applies a job's changes, all together, after its checks passed. `encoded` is the
    /// journal line for `ops` when the caller already encoded it (off the writer thread).
    fn commit(&mut self, ops: Vec<Op>, encoded: Option<Vec<u8>>) {
        if let Some(lines) = self.lines.as_deref_mut() {
            match encoded {
                Some(line) => lines.extend_from_slice(&line),
                None => journal::encode_line(&ops, lines),
            }
        }
        for op in ops {
            self.undo.extend(self.state.apply(op));
        }
    }
}

trait WriteJob: Send {
    /// Runs the work against the batch; whether it succeeded.
    fn apply(&mut self, batch: &mut Batch<'_>) -> bool;
    /// Answers the caller once the batch's fate (`written`) is known.
    fn finish(self: Box<Self>, written: Result<(), StoreError>);
}

struct Job<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send,
{
    fn apply(&mut self, batch: &mut Batch<'_>) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let outcome = work(batch);
        let succeeded = outcome.is_ok();
        self.outcome = Some(outcome);
        succeeded
    }

    fn finish(self: Box<Self>, written: Result<(), StoreError>) {
        let answer = match (self.outcome, written) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Other("the write failed unexpectedly".into())),
        };
        // The caller may have given up waiting; nothing to do then.
        let _ = self.reply.send(answer);
    }
}

fn writer_loop(
    state: Arc<RwLock<State>>,
    mut journal: Option<Journal>,
    inbox: mpsc::Receiver<Box<dyn WriteJob>>,
    stream_seq: watch::Sender<u64>,
) {
    let mut lines = Vec::with_capacity(64 * 1024);
    let mut undo = Vec::new();
    while let Ok(first) = inbox.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP_COMMIT {
            match inbox.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        lines.clear();
        undo.clear();
        let mut guard = state.write().unwrap_or_else(|e| e.into_inner());
        let seq_before = guard.last_seq();
        for job in &mut jobs {
            let mut batch = Batch {
                state: &mut guard,
                undo: &mut undo,
                lines: journal.as_ref().map(|_| &mut lines),
            };
            if catch_unwind(AssertUnwindSafe(|| job.apply(&mut batch))).is_err() {
                tracing::error!("a write on the embedded store panicked");
            }
        }
        let written = match journal.as_mut() {
            Some(journal) if !lines.is_empty() => journal.append(&lines).map_err(|e| {
                tracing::error!(error = %e, "cannot append to the store journal");
                StoreError::Other(format!("cannot write the store journal: {e}"))
            }),
            _ => Ok(()),
        };
        if written.is_err() {
            guard.undo(std::mem::take(&mut undo));
        }
        let newest_seq = guard.last_seq();
        drop(guard);
        if newest_seq > seq_before {
            stream_seq.send_replace(newest_seq);
        }
        for job in jobs {
            job.finish(written.clone());
        }
        if let Some(journal) = journal.as_mut()
            && journal.wants_compaction()
        {
            // Readers go on meanwhile; writers wait, as nothing else changes the state.
            let guard = state.read().unwrap_or_else(|e| e.into_inner());
            let before = journal.bytes();
            match journal.compact(&guard) {
                Ok(()) => tracing::info!(before, after = journal.bytes(), "store journal compacted"),
                Err(e) => tracing::error!(error = %e, "store journal compaction failed; will retry"),
            }
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

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        let key = validate_item(&item)?;
        if let Some(condition) = &condition {
            validate_condition(condition)?;
        }
        // Encode here, in parallel with other callers: the writer thread is shared.
        let ops = vec![Op::Put(item)];
        let encoded = self.inner.path.is_some().then(|| {
            let mut line = Vec::new();
            journal::encode_line(&ops, &mut line);
            line
        });
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
        self.write(move |batch| {
            // Check every condition first, against the items as they are, as DynamoDB does.
            let mut olds = Vec::with_capacity(ops.len());
            let mut reasons = Vec::with_capacity(ops.len());
            for op in &ops {
                let key = op_key(op)?;
                let old = batch.get(&key);
                let failed = op_condition(op).is_some_and(|c| !condition_holds(c, old.as_ref()));
                reasons.push(failed.then(|| CancelReason::ConditionFailed(old.clone())));
                olds.push(old);
            }
            if reasons.iter().any(Option::is_some) {
                return Err(StoreError::TransactionCanceled { reasons });
            }
            // Work out every change before applying any, so a bad update writes nothing.
            let mut changes = Vec::with_capacity(ops.len());
            for (op, old) in ops.into_iter().zip(olds) {
                match op {
                    WriteOp::Put { item, .. } => changes.push(Op::Put(item)),
                    WriteOp::Update { key, update, .. } => {
                        let new = apply_update(&key, old.as_ref(), &update)?;
                        validate_item(&new)?;
                        changes.push(Op::Put(new));
                    }
                    WriteOp::Delete { key, .. } if old.is_some() => changes.push(Op::Delete(key)),
                    WriteOp::Delete { .. } | WriteOp::ConditionCheck { .. } => {}
                }
            }
            if !changes.is_empty() {
                batch.commit(changes, None);
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
