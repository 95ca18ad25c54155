//! `SqliteStore`: the embedded `ItemStore`, one SQLite file, for the local runner and tests.
//!
//! How it is put together, and why:
//! - **One writer thread** owns the only writing connection. Every write is a job sent to it;
//!   it runs each job's condition check and write inside `BEGIN IMMEDIATE` … `COMMIT`, so a
//!   conditional write or a transaction is atomic against every other caller, with no retry
//!   loops. Jobs that queue up while a commit is under way are committed together (group
//!   commit, each job in its own savepoint), which is what makes `Durability::PowerLoss`
//!   affordable under concurrency. A caller is answered only after its commit.
//! - **A small pool of read connections** serves `get` and `query` in parallel with the writer
//!   (WAL mode: readers see the last commit and never block the writer).
//! - **Exclusive use**: a lock file next to the database (`<file>.lock`) is locked for the
//!   store's lifetime, so a second process opening the same file fails with `StoreLocked`
//!   instead of racing. The OS drops the lock when the process dies, even by a crash.
//! - **Outbox stream**: a write that creates an item whose `entity` is `"outbox"` appends the
//!   new image to the `stream` table in the same transaction, like a DynamoDB stream INSERT
//!   record that the event relay reads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use closedloop_core::store::{
    CancelReason, Condition, Index, Item, ItemExt, ItemStore, Key, Page, Query, SortKeyCondition,
    StoreError, Update, Value, WriteOp, validate_condition, validate_item, validate_key,
    validate_query, validate_transaction, validate_update,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{Semaphore, oneshot, watch};

use crate::expression::{apply_update, condition_holds};
use crate::schema::{self, IndexedColumns, SchemaError, decode_item, encode_item, sqlite_error};

/// The attribute and value that mark an outbox item (see `closedloop_core::outbox`).
const ENTITY_ATTRIBUTE: &str = "entity";
const OUTBOX_ENTITY: &str = "outbox";

/// At most this many queued writes share one commit.
const MAX_GROUP_COMMIT: usize = 128;
/// Rows deleted per write job by `purge_expired`, so a large purge does not stall writers.
const PURGE_CHUNK: i64 = 500;

/// How much a committed write survives. Both modes use SQLite's write-ahead log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL`: a committed write survives a crash of the process (it is in the
    /// OS's page cache), but the last commits may be lost on power loss or an OS crash (the
    /// database stays consistent). Right for the local runner and tests: writes are fast.
    #[default]
    ProcessCrash,
    /// `synchronous=FULL`: every commit is fsynced before the caller hears back, so it also
    /// survives power loss. Costs a disk flush per commit (shared by concurrent writers).
    PowerLoss,
}

/// Options for [`SqliteStore::open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub durability: Durability,
    /// Read connections serving `get`/`query` in parallel (at least 1).
    pub read_connections: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::default(),
            read_connections: 4,
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the store {path} is already open elsewhere ({path}.lock is locked): by another \
         process, or by another SqliteStore in this one; stop that or open another file"
    )]
    StoreLocked { path: PathBuf },
    #[error("cannot create or lock {path}: {source}")]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the SQLite database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the database {path} has schema version {found}, newer than this build understands \
         ({supported}); use a newer closedloop"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
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

/// The embedded item store. Cheap to clone; clones share one database.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: Option<PathBuf>,
    /// `None` only while dropping (so the writer thread sees the channel close).
    writer: Option<mpsc::Sender<WriterMessage>>,
    writer_thread: Option<JoinHandle<()>>,
    readers: Readers,
    stream_seq: watch::Receiver<u64>,
    /// Held (locked) for as long as the store is open; dropped last.
    _lock_file: Option<std::fs::File>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Let queued writes finish and the writer connection close before the lock goes.
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

enum Readers {
    /// File databases: a pool of read-only connections, used from `spawn_blocking`.
    Pool {
        idle: Arc<Mutex<Vec<Connection>>>,
        permits: Arc<Semaphore>,
        path: PathBuf,
    },
    /// In-memory databases have one connection: reads go through the writer thread.
    ViaWriter,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `path`, with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (creating if needed) the store in `path`. Fails with `StoreLocked` when another
    /// process (or another `SqliteStore` in this one) has it open.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let lock_file = lock_exclusively(&path)?;
        let sqlite = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let writer = Connection::open(&path).map_err(sqlite)?;
        let synchronous = match options.durability {
            Durability::ProcessCrash => "NORMAL",
            Durability::PowerLoss => "FULL",
        };
        let journal: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(sqlite)?;
        if !journal.eq_ignore_ascii_case("wal") {
            tracing::warn!(%journal, path = %path.display(), "SQLite refused WAL mode");
        }
        // temp_store = MEMORY keeps the sub-journal of the group commit's per-job savepoints in
        // memory: by default it spills to a temporary file after 64 KiB, and creating, writing
        // and closing that file on every commit was over a quarter of the writer thread's time
        // in `scripts/bench-clicks.sh`. It holds only pages one batch changes.
        writer
            .execute_batch(&format!(
                "PRAGMA synchronous = {synchronous}; PRAGMA temp_store = MEMORY;"
            ))
            .map_err(sqlite)?;
        configure(&writer).map_err(sqlite)?;
        schema::ensure_schema(&writer).map_err(|e| schema_error(&path, e))?;
        let readers = Readers::Pool {
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(Semaphore::new(options.read_connections.max(1))),
            path: path.clone(),
        };
        Self::start(writer, Some(path), readers, Some(lock_file))
    }

    /// A private store in memory, gone when the last clone is dropped. For tests.
    pub fn open_in_memory() -> Result<Self, OpenError> {
        let path = PathBuf::from(":memory:");
        let sqlite = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let writer = Connection::open_in_memory().map_err(sqlite)?;
        configure(&writer).map_err(sqlite)?;
        schema::ensure_schema(&writer).map_err(|e| schema_error(&path, e))?;
        Self::start(writer, None, Readers::ViaWriter, None)
    }

    fn start(
        writer: Connection,
        path: Option<PathBuf>,
        readers: Readers,
        lock_file: Option<std::fs::File>,
    ) -> Result<Self, OpenError> {
        let last_seq = schema::last_stream_seq(&writer).map_err(|source| OpenError::Sqlite {
            path: path.clone().unwrap_or_default(),
            source,
        })?;
        let (seq_tx, seq_rx) = watch::channel(u64::try_from(last_seq).unwrap_or(0));
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-store-writer".into())
            .spawn(move || writer_loop(writer, rx, seq_tx))
            .map_err(OpenError::WriterThread)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Some(tx),
                writer_thread: Some(thread),
                readers,
                stream_seq: seq_rx,
                _lock_file: lock_file,
            }),
        })
    }

    /// The database file (`None` for an in-memory store).
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
                    batch
                        .conn
                        .prepare_cached(
                            "DELETE FROM items WHERE (pk, sk) IN
                             (SELECT pk, sk FROM items WHERE expires_at < ?1 LIMIT ?2)",
                        )
                        .and_then(|mut stmt| stmt.execute(params![now_epoch_secs, PURGE_CHUNK]))
                        .map_err(sqlite_error)
                })
                .await?;
            total += deleted;
            if (deleted as i64) < PURGE_CHUNK {
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
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, new_image FROM stream WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(sqlite_error)?;
            let rows = stmt
                .query_map(params![after, limit], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(sqlite_error)?;
            let mut records = Vec::new();
            for row in rows {
                let (seq, json) = row.map_err(sqlite_error)?;
                records.push(StreamRecord {
                    seq: u64::try_from(seq).map_err(|_| {
                        StoreError::Other(format!("negative stream sequence {seq}"))
                    })?,
                    new_image: decode_item(&json)?,
                });
            }
            Ok(records)
        })
        .await
    }

    /// The last sequence number `consumer` has processed; 0 if it never checkpointed
    /// (sequence numbers start at 1).
    pub async fn stream_checkpoint_get(&self, consumer: &str) -> Result<u64, StoreError> {
        let consumer = consumer.to_string();
        self.read(move |conn| {
            let seq: Option<i64> = conn
                .prepare_cached("SELECT seq FROM stream_checkpoints WHERE consumer = ?1")
                .and_then(|mut stmt| stmt.query_row([&consumer], |row| row.get(0)).optional())
                .map_err(sqlite_error)?;
            Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
        })
        .await
    }

    /// Records, durably, that `consumer` has processed every record up to `seq`.
    pub async fn stream_checkpoint_set(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        let consumer = consumer.to_string();
        let seq = i64::try_from(seq)
            .map_err(|_| StoreError::Invalid(format!("stream sequence {seq} is out of range")))?;
        self.write(move |batch| {
            batch
                .conn
                .prepare_cached(
                    "INSERT INTO stream_checkpoints (consumer, seq) VALUES (?1, ?2)
                     ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq",
                )
                .and_then(|mut stmt| stmt.execute(params![consumer, seq]))
                .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    /// Deletes stream records up to and including `upto_seq`; returns how many.
    pub async fn stream_trim(&self, upto_seq: u64) -> Result<usize, StoreError> {
        let upto = i64::try_from(upto_seq).unwrap_or(i64::MAX);
        self.write(move |batch| {
            batch
                .conn
                .prepare_cached("DELETE FROM stream WHERE seq <= ?1")
                .and_then(|mut stmt| stmt.execute([upto]))
                .map_err(sqlite_error)
        })
        .await
    }

    /// Watches the newest stream sequence number, so a relay can wait for new records
    /// instead of polling (`changed().await`, then `stream_read`).
    pub fn stream_watch(&self) -> watch::Receiver<u64> {
        self.inner.stream_seq.clone()
    }

    /// Runs `work` on the writer thread, inside the write transaction, and answers after
    /// the commit.
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
        self.send(WriterMessage::Write(job))?;
        answer.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// Runs `read` on a read connection (or the writer's, for an in-memory store).
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.inner.readers {
            Readers::Pool {
                idle,
                permits,
                path,
            } => {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Other("the read pool is closed".into()))?;
                let idle = idle.clone();
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let pooled = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let conn = match pooled {
                        Some(conn) => conn,
                        None => open_reader(&path).map_err(sqlite_error)?,
                    };
                    let result = read(&conn);
                    idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
                    result
                })
                .await
                .unwrap_or_else(|e| Err(StoreError::Other(format!("a read failed: {e}"))))
            }
            Readers::ViaWriter => {
                let (reply, answer) = oneshot::channel();
                let job: ReadJob = Box::new(move |conn| {
                    let _ = reply.send(read(conn));
                });
                self.send(WriterMessage::Read(job))?;
                answer.await.unwrap_or_else(|_| Err(writer_gone()))
            }
        }
    }

    fn send(&self, message: WriterMessage) -> Result<(), StoreError> {
        self.inner
            .writer
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(message)
            .map_err(|_| writer_gone())
    }
}

fn writer_gone() -> StoreError {
    StoreError::Other("the store's writer thread has stopped".into())
}

fn schema_error(path: &Path, error: SchemaError) -> OpenError {
    match error {
        SchemaError::TooNew(found) => OpenError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: schema::SCHEMA_VERSION,
        },
        SchemaError::Sqlite(source) => OpenError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Locks the file `<db>.lock` next to the database, or reports that someone else holds it.
fn lock_exclusively(db_path: &Path) -> Result<std::fs::File, OpenError> {
    let mut lock_path = db_path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let lock_error = |source| OpenError::LockFile {
        path: lock_path.clone(),
        source,
    };
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
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
            path: db_path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(lock_error(source)),
    }
}

/// Settings shared by the writer and the readers.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // Readers wait out a checkpoint instead of failing; the writer never waits (exclusive).
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    // Read-write flags (WAL readers need the shared-memory file), but query_only.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    conn.execute_batch("PRAGMA query_only = ON;")?;
    Ok(conn)
}

// ---------------------------------------------------------------------------------------------
// The writer thread

enum WriterMessage {
    Write(Box<dyn WriteJob>),
    Read(ReadJob),
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// What a write job sees: the connection, inside the open transaction.
struct Batch<'c> {
    conn: &'c Connection,
    /// The stream sequence number this job appended, if any.
    appended_seq: Option<i64>,
}

impl Batch<'_> {
    fn load(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        schema::load(self.conn, key)
    }

    /// Writes `item` (encoded as `json`) and, if it is a new outbox item, its stream record.
    fn store(
        &mut self,
        key: &Key,
        item: &Item,
        json: &str,
        existed: bool,
    ) -> Result<(), StoreError> {
        schema::upsert(self.conn, key, json, &IndexedColumns::of(item))?;
        if !existed && is_outbox(item) {
            self.appended_seq = Some(schema::append_stream(self.conn, json)?);
        }
        Ok(())
    }
}

fn is_outbox(item: &Item) -> bool {
    item.str_attr(ENTITY_ATTRIBUTE) == Some(OUTBOX_ENTITY)
}

trait WriteJob: Send {
    /// Runs the work inside the batch transaction; whether it succeeded (else its savepoint
    /// is rolled back).
    fn apply(&mut self, batch: &mut Batch<'_>) -> bool;
    /// Answers the caller once the batch's fate (`commit`) is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
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

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (self.outcome, commit) {
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
    conn: Connection,
    inbox: mpsc::Receiver<WriterMessage>,
    stream_seq: watch::Sender<u64>,
) {
    let mut held_back = None;
    loop {
        let message = match held_back.take() {
            Some(message) => message,
            None => match inbox.recv() {
                Ok(message) => message,
                Err(_) => return, // every store handle is gone
            },
        };
        match message {
            WriterMessage::Read(read) => {
                if catch_unwind(AssertUnwindSafe(|| read(&conn))).is_err() {
                    tracing::error!("a read on the embedded store panicked");
                }
            }
            WriterMessage::Write(first) => {
                let mut jobs = vec![first];
                while jobs.len() < MAX_GROUP_COMMIT {
                    match inbox.try_recv() {
                        Ok(WriterMessage::Write(job)) => jobs.push(job),
                        Ok(read) => {
                            held_back = Some(read);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                commit_batch(&conn, jobs, &stream_seq);
            }
        }
    }
}

/// Runs the jobs in one transaction, each in a savepoint so a failing job (say, a false
/// condition) leaves the others' writes in place, then commits and answers every caller.
/// A lone job needs no savepoint (measured: ~15% of a write), and if it fails, nothing is
/// written, so the transaction is rolled back instead of committed.
fn commit_batch(
    conn: &Connection,
    mut jobs: Vec<Box<dyn WriteJob>>,
    stream_seq: &watch::Sender<u64>,
) {
    let mut newest_seq = None;
    let alone = jobs.len() == 1;
    let result = (|| -> Result<(), rusqlite::Error> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut wrote = false;
        for job in &mut jobs {
            if !alone {
                conn.execute_batch("SAVEPOINT job")?;
            }
            let mut batch = Batch {
                conn,
                appended_seq: None,
            };
            let succeeded = catch_unwind(AssertUnwindSafe(|| job.apply(&mut batch)))
                .unwrap_or_else(|_| {
                    tracing::error!("a write on the embedded store panicked");
                    false
                });
            wrote |= succeeded;
            if succeeded {
                newest_seq = batch.appended_seq.or(newest_seq);
            }
            match (alone, succeeded) {
                (true, _) => {}
                (false, true) => conn.execute_batch("RELEASE job")?,
                (false, false) => conn.execute_batch("ROLLBACK TO job; RELEASE job")?,
            }
        }
        if wrote {
            conn.execute_batch("COMMIT")
        } else {
            conn.execute_batch("ROLLBACK")
        }
    })();
    let commit = result.map_err(|e| {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        tracing::error!(error = %e, "embedded store commit failed");
        sqlite_error(e)
    });
    if commit.is_ok()
        && let Some(seq) = newest_seq.and_then(|s| u64::try_from(s).ok())
    {
        stream_seq.send_replace(seq);
    }
    for job in jobs {
        job.finish(commit.clone());
    }
}

// ---------------------------------------------------------------------------------------------
// The port

#[async_trait]
impl ItemStore for SqliteStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        validate_key(key)?;
        match &self.inner.readers {
            // A point read by primary key takes microseconds: running it here costs less than
            // handing it to the blocking pool and waking this task again.
            Readers::Pool { idle, path, .. } => {
                let pooled = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let conn = match pooled {
                    Some(conn) => conn,
                    None => open_reader(path).map_err(sqlite_error)?,
                };
                let result = schema::load(&conn, key);
                idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
                result
            }
            Readers::ViaWriter => {
                let key = key.clone();
                self.read(move |conn| schema::load(conn, &key)).await
            }
        }
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        let key = validate_item(&item)?;
        if let Some(condition) = &condition {
            validate_condition(condition)?;
        }
        // Encode outside the writer thread: it is the one thing every write waits on.
        let json = encode_item(&item)?;
        self.write(move |batch| {
            let old = if condition.is_some() || is_outbox(&item) {
                batch.load(&key)?
            } else {
                None
            };
            if let Some(condition) = &condition
                && !condition_holds(condition, old.as_ref())
            {
                return Err(StoreError::ConditionFailed {
                    old: old.map(Box::new),
                });
            }
            batch.store(&key, &item, &json, old.is_some())
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
            let old = batch.load(&key)?;
            if let Some(condition) = &condition
                && !condition_holds(condition, old.as_ref())
            {
                return Err(StoreError::ConditionFailed {
                    old: old.map(Box::new),
                });
            }
            let new = apply_update(&key, old.as_ref(), &update)?;
            validate_item(&new)?;
            batch.store(&key, &new, &encode_item(&new)?, old.is_some())?;
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
            if let Some(condition) = &condition {
                let old = batch.load(&key)?;
                if !condition_holds(condition, old.as_ref()) {
                    return Err(StoreError::ConditionFailed {
                        old: old.map(Box::new),
                    });
                }
            }
            schema::delete(batch.conn, &key)
        })
        .await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        validate_query(&query)?;
        self.read(move |conn| run_query(conn, &query)).await
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        self.write(move |batch| {
            // Check every condition first, against the items as they are, as DynamoDB does.
            let mut olds = Vec::with_capacity(ops.len());
            let mut reasons = Vec::with_capacity(ops.len());
            for op in &ops {
                let key = op_key(op)?;
                let old = batch.load(&key)?;
                let failed = op_condition(op).is_some_and(|c| !condition_holds(c, old.as_ref()));
                reasons.push(failed.then(|| CancelReason::ConditionFailed(old.clone())));
                olds.push(old);
            }
            if reasons.iter().any(Option::is_some) {
                return Err(StoreError::TransactionCanceled { reasons });
            }
            for (op, old) in ops.into_iter().zip(olds) {
                apply_op(batch, op, old)?;
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

/// Applies one transaction op whose condition already held.
fn apply_op(batch: &mut Batch<'_>, op: WriteOp, old: Option<Item>) -> Result<(), StoreError> {
    match op {
        WriteOp::Put { item, .. } => {
            let key = item.key().ok_or_else(|| {
                StoreError::Invalid("a transaction put needs string PK and SK".into())
            })?;
            batch.store(&key, &item, &encode_item(&item)?, old.is_some())
        }
        WriteOp::Update { key, update, .. } => {
            let new = apply_update(&key, old.as_ref(), &update)?;
            validate_item(&new)?;
            batch.store(&key, &new, &encode_item(&new)?, old.is_some())
        }
        WriteOp::Delete { key, .. } => schema::delete(batch.conn, &key),
        WriteOp::ConditionCheck { .. } => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Queries

/// Column names for the table or one of its indexes.
struct QueryColumns {
    pk: &'static str,
    sk: &'static str,
}

fn query_columns(index: Option<Index>) -> QueryColumns {
    match index {
        None => QueryColumns { pk: "pk", sk: "sk" },
        Some(Index::Gsi1) => QueryColumns {
            pk: "gsi1pk",
            sk: "gsi1sk",
        },
        Some(Index::Gsi2) => QueryColumns {
            pk: "gsi2pk",
            sk: "gsi2sk",
        },
    }
}

fn run_query(conn: &Connection, query: &Query) -> Result<Page, StoreError> {
    use rusqlite::types::Value as Sql;
    let columns = query_columns(query.index);
    let (cmp, dir) = if query.forward {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    let mut sql = format!("SELECT item FROM items WHERE {} = ?", columns.pk);
    let mut args: Vec<Sql> = vec![Sql::Text(query.pk.clone())];
    let sk = columns.sk;
    let mut bound = |sql: &mut String, op: &str, value: &str| {
        sql.push_str(&format!(" AND {sk} {op} ?"));
        args.push(Sql::Text(value.to_string()));
    };
    match &query.sk {
        None => {}
        Some(SortKeyCondition::BeginsWith(prefix)) => {
            // A range, so SQLite seeks in the index instead of scanning the partition.
            bound(&mut sql, ">=", prefix);
            if let Some(end) = prefix_successor(prefix) {
                bound(&mut sql, "<", &end);
            }
        }
        Some(SortKeyCondition::Between(low, high)) => {
            bound(&mut sql, ">=", low);
            bound(&mut sql, "<=", high);
        }
        Some(SortKeyCondition::Lt(v)) => bound(&mut sql, "<", v),
        Some(SortKeyCondition::Le(v)) => bound(&mut sql, "<=", v),
        Some(SortKeyCondition::Gt(v)) => bound(&mut sql, ">", v),
        Some(SortKeyCondition::Ge(v)) => bound(&mut sql, ">=", v),
        Some(SortKeyCondition::Eq(v)) => bound(&mut sql, "=", v),
    }
    let start_after = |name: &str| -> Result<String, StoreError> {
        query
            .start_after
            .as_ref()
            .and_then(|start| start.str_attr(name))
            .map(String::from)
            .ok_or_else(|| StoreError::Invalid(format!("start_after lacks {name}")))
    };
    match (&query.start_after, query.index) {
        (None, _) => {}
        (Some(_), None) => {
            sql.push_str(&format!(" AND sk {cmp} ?"));
            args.push(Sql::Text(start_after("SK")?));
        }
        (Some(_), Some(index)) => {
            // Items may share an index sort key: page by (index sk, table key), a total order.
            sql.push_str(&format!(" AND ({sk}, pk, sk) {cmp} (?, ?, ?)"));
            args.push(Sql::Text(start_after(index.sk_attribute())?));
            args.push(Sql::Text(start_after("PK")?));
            args.push(Sql::Text(start_after("SK")?));
        }
    }
    if query.index.is_some() {
        sql.push_str(&format!(" ORDER BY {sk} {dir}, pk {dir}, sk {dir}"));
    } else {
        sql.push_str(&format!(" ORDER BY sk {dir}"));
    }
    // One more than asked tells whether another page follows.
    let fetch = query
        .limit
        .map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1);
    sql.push_str(" LIMIT ?");
    args.push(Sql::Integer(fetch));

    let mut stmt = conn.prepare_cached(&sql).map_err(sqlite_error)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |row| {
            row.get::<_, String>(0)
        })
        .map_err(sqlite_error)?;
    let mut items = Vec::new();
    for row in rows {
        items.push(decode_item(&row.map_err(sqlite_error)?)?);
    }
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

    /// The queries seek in the right index and never sort in memory.
    #[test]
    fn queries_use_the_indexes() {
        let conn = Connection::open_in_memory().expect("open");
        schema::ensure_schema(&conn).expect("schema");
        let plan = |sql: &str, args: usize| -> String {
            let params: Vec<String> = (0..args).map(|i| format!("x{i}")).collect();
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("prepare");
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), |row| {
                    row.get::<_, String>(3)
                })
                .expect("plan");
            rows.map(|r| r.expect("row"))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let table = plan(
            "SELECT item FROM items WHERE pk = ? AND sk >= ? AND sk < ? ORDER BY sk DESC LIMIT 5",
            3,
        );
        assert!(
            table.contains("USING PRIMARY KEY (pk=? AND sk>? AND sk<?)"),
            "{table}"
        );
        let index = plan(
            "SELECT item FROM items WHERE gsi1pk = ? AND gsi1sk >= ? AND (gsi1sk, pk, sk) > (?, ?, ?) \
             ORDER BY gsi1sk ASC, pk ASC, sk ASC LIMIT 5",
            5,
        );
        assert!(
            index.contains("USING INDEX items_gsi1 (gsi1pk=?"),
            "{index}"
        );
        assert!(!index.contains("TEMP B-TREE"), "{index}");
        let expiry = plan("SELECT pk, sk FROM items WHERE expires_at < ? LIMIT 5", 1);
        assert!(expiry.contains("items_expiry"), "{expiry}");
    }
}
