//! What the embedded store does beyond the port: the outbox stream, TTL purging, exclusive
//! use of the file, durability across a crash, a torn journal tail, and the format version check.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use closedloop_core::store::{Condition, Item, ItemStore, Key, StoreError, Update, Value, WriteOp};
use closedloop_embedded::{JournalStore, OpenError, StoreOptions};

/// A scratch directory under Cargo's target dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("journal-store-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
    fn db(&self) -> PathBuf {
        self.0.join("store.journal")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn outbox_item(id: &str) -> Item {
    let mut item = Key::new("T#acme#OUTBOX", id).to_item();
    item.insert("entity".into(), Value::s("outbox"));
    item.insert("event".into(), Value::s(format!("{{\"id\":\"{id}\"}}")));
    item
}

fn plain_item(sk: &str) -> Item {
    let mut item = Key::new("T#acme#THINGS", sk).to_item();
    item.insert("entity".into(), Value::s("thing"));
    item
}

fn stream_ids(records: &[closedloop_embedded::StreamRecord]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| {
            r.new_image
                .get("SK")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn new_outbox_items_and_only_those_reach_the_stream() {
    let store = JournalStore::open_in_memory().expect("store");
    store
        .put(outbox_item("E1"), Some(Condition::item_absent()))
        .await
        .expect("put E1");
    // Replacing an existing outbox item is not an insert.
    store
        .put(outbox_item("E1"), None)
        .await
        .expect("replace E1");
    // A failed condition writes nothing, so nothing is streamed.
    let again = store
        .put(outbox_item("E1"), Some(Condition::item_absent()))
        .await;
    assert!(matches!(again, Err(StoreError::ConditionFailed { .. })));
    store
        .put(plain_item("X"), None)
        .await
        .expect("put a non-outbox item");
    // Inside a transaction, beside a state change.
    store
        .transact_write(vec![
            WriteOp::put(plain_item("Y")),
            WriteOp::put_if(outbox_item("E2"), Condition::item_absent()),
        ])
        .await
        .expect("transaction");
    // A cancelled transaction streams nothing.
    let cancelled = store
        .transact_write(vec![
            WriteOp::put(outbox_item("E3")),
            WriteOp::ConditionCheck {
                key: Key::new("T#acme#THINGS", "MISSING"),
                condition: Condition::item_present(),
            },
        ])
        .await;
    assert!(matches!(
        cancelled,
        Err(StoreError::TransactionCanceled { .. })
    ));
    // An update that creates an outbox item is an insert too (as in a DynamoDB stream).
    store
        .update(
            &Key::new("T#acme#OUTBOX", "E4"),
            Update::new().set("entity", Value::s("outbox")),
            None,
        )
        .await
        .expect("upsert E4");

    let records = store.stream_read(0, 100).await.expect("read");
    assert_eq!(stream_ids(&records), ["E1", "E2", "E4"]);
    assert!(
        records.windows(2).all(|w| w[0].seq < w[1].seq),
        "increasing sequence numbers"
    );
    assert_eq!(
        *records[0].new_image,
        outbox_item("E1"),
        "the new image, as written"
    );

    let after_first = store.stream_read(records[0].seq, 1).await.expect("read");
    assert_eq!(stream_ids(&after_first), ["E2"], "after_seq and limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_and_trim_survive_a_reopen() {
    let _no_forks = FORKS.lock().await;
    let scratch = Scratch::new();
    let last_seq = {
        let store = JournalStore::open(scratch.db()).expect("open");
        assert_eq!(store.stream_checkpoint_get("relay").await.expect("get"), 0);
        for id in ["E1", "E2", "E3"] {
            store
                .put(outbox_item(id), Some(Condition::item_absent()))
                .await
                .expect("put");
        }
        let records = store.stream_read(0, 10).await.expect("read");
        store
            .stream_checkpoint_set("relay", records[1].seq)
            .await
            .expect("checkpoint");
        assert_eq!(store.stream_trim(records[1].seq).await.expect("trim"), 2);
        records[2].seq
    };
    let store = JournalStore::open(scratch.db()).expect("reopen");
    let checkpoint = store.stream_checkpoint_get("relay").await.expect("get");
    assert_eq!(checkpoint, last_seq - 1);
    assert_eq!(store.stream_checkpoint_get("other").await.expect("get"), 0);
    let rest = store.stream_read(checkpoint, 10).await.expect("read");
    assert_eq!(stream_ids(&rest), ["E3"]);
    assert_eq!(
        *store.stream_watch().borrow(),
        last_seq,
        "the watch starts at the newest record"
    );

    // Sequence numbers keep growing after a trim of everything and a reopen.
    store.stream_trim(u64::MAX).await.expect("trim all");
    drop(store);
    let store = JournalStore::open(scratch.db()).expect("reopen");
    store.put(outbox_item("E4"), None).await.expect("put");
    let records = store.stream_read(0, 10).await.expect("read");
    assert_eq!(stream_ids(&records), ["E4"]);
    assert!(
        records[0].seq > last_seq,
        "sequence numbers are never reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_watch_wakes_on_new_records() {
    let store = JournalStore::open_in_memory().expect("store");
    let mut watch = store.stream_watch();
    let writer = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.put(plain_item("QUIET"), None).await.expect("put");
        writer.put(outbox_item("E1"), None).await.expect("put");
    });
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("woken within 5 s")
        .expect("store alive");
    let seq = *watch.borrow();
    let records = store.stream_read(seq - 1, 10).await.expect("read");
    assert_eq!(stream_ids(&records), ["E1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_expired_deletes_only_expired_items() {
    let store = JournalStore::open_in_memory().expect("store");
    let with_ttl = |sk: &str, ttl: Value| {
        let mut item = plain_item(sk);
        item.insert("expires_at".into(), ttl);
        item
    };
    for i in 0..1200 {
        store
            .put(with_ttl(&format!("OLD#{i:04}"), Value::n(1_000 + i)), None)
            .await
            .expect("put");
    }
    store
        .put(with_ttl("EDGE", Value::n(5_000)), None)
        .await
        .expect("put");
    store
        .put(with_ttl("FUTURE", Value::n(9_000)), None)
        .await
        .expect("put");
    store
        .put(with_ttl("DECIMAL", Value::N("4999.5".into())), None)
        .await
        .expect("put");
    store
        .put(with_ttl("NOT_A_NUMBER", Value::s("1000")), None)
        .await
        .expect("put");
    store.put(plain_item("NO_TTL"), None).await.expect("put");

    let deleted = store.purge_expired(5_000).await.expect("purge");
    assert_eq!(
        deleted, 1201,
        "1200 old ones and the decimal one; 5000 itself is not before 5000"
    );
    let left = store
        .query(closedloop_core::store::Query::partition("T#acme#THINGS"))
        .await
        .expect("query");
    let keys: Vec<&str> = left
        .items
        .iter()
        .filter_map(|i| i.get("SK").and_then(Value::as_str))
        .collect();
    assert_eq!(keys, ["EDGE", "FUTURE", "NOT_A_NUMBER", "NO_TTL"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_file_is_used_by_one_store_at_a_time() {
    let _no_forks = FORKS.lock().await;
    let scratch = Scratch::new();
    let first = JournalStore::open(scratch.db()).expect("open");
    match JournalStore::open(scratch.db()) {
        Err(OpenError::StoreLocked { path }) => assert_eq!(path, scratch.db()),
        other => panic!("expected StoreLocked, got {other:?}"),
    }
    // Another process is refused too.
    let status = run_child("try-open", &scratch.db());
    assert_eq!(
        status.code(),
        Some(CHILD_SAW_LOCKED),
        "the child process saw StoreLocked"
    );
    drop(first);
    let reopened = JournalStore::open(scratch.db()).expect("reopen after the first closed");
    drop(reopened);
}

#[test]
fn the_lock_error_says_what_to_do() {
    let error = OpenError::StoreLocked {
        path: PathBuf::from("/data/closedloop.db"),
    };
    let message = error.to_string();
    assert!(
        message.contains("/data/closedloop.db") && message.contains("another process"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_a_process_crash() {
    let scratch = Scratch::new();
    let status = {
        let _forking = FORKS.lock().await;
        run_child("write-then-abort", &scratch.db())
    };
    assert!(!status.success(), "the child aborted");
    assert_eq!(status.code(), None, "killed by SIGABRT, not a normal exit");
    // The crash released the lock, and every acknowledged write is there.
    let store = JournalStore::open(scratch.db()).expect("reopen after the crash");
    for i in 0..CRASH_WRITES {
        let item = store
            .get(&Key::new("T#acme#CRASH", format!("{i:04}")))
            .await
            .expect("get");
        assert!(
            item.is_some(),
            "write {i} was acknowledged before the crash and must survive"
        );
    }
    let counter = store
        .get(&Key::new("T#acme#CRASH", "COUNTER"))
        .await
        .expect("get");
    assert_eq!(
        counter.and_then(|c| c.get("n").and_then(Value::as_i64)),
        Some(CRASH_WRITES as i64)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_from_a_newer_build_is_refused_and_left_alone() {
    let scratch = Scratch::new();
    std::fs::write(scratch.db(), "closedloop-journal 99\n00000000 []\n").expect("write");
    match JournalStore::open(scratch.db()) {
        Err(OpenError::FormatTooNew { found: 99, .. }) => {}
        other => panic!("expected FormatTooNew, got {other:?}"),
    }
    let text = std::fs::read_to_string(scratch.db()).expect("read");
    assert!(text.starts_with("closedloop-journal 99"), "not rewritten");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_journal_is_refused_and_left_alone() {
    let scratch = Scratch::new();
    std::fs::write(scratch.db(), b"SQLite format 3\0...").expect("write");
    let err = JournalStore::open(scratch.db()).expect_err("not a journal");
    assert!(matches!(err, OpenError::NotAJournal { .. }), "{err:?}");
    assert!(
        err.to_string().contains("another file"),
        "says what to do: {err}"
    );
    assert_eq!(
        std::fs::read(scratch.db()).expect("read"),
        b"SQLite format 3\0..."
    );
}

/// A write the machine lost power during leaves a partial line; opening keeps every whole
/// write before it, drops the partial one, and later writes replay after a reopen.
#[tokio::test(flavor = "multi_thread")]
async fn a_torn_last_write_is_cut_off_and_everything_before_it_kept() {
    let _no_forks = FORKS.lock().await;
    let scratch = Scratch::new();
    let store = JournalStore::open(scratch.db()).expect("open");
    for sk in ["a", "b", "c"] {
        store.put(plain_item(sk), None).await.expect("put");
    }
    drop(store);
    let whole = std::fs::read(scratch.db()).expect("read");
    // Half of the last line, as a torn append would leave it.
    let last_line_start = whole[..whole.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("lines")
        + 1;
    let torn_at = last_line_start + (whole.len() - last_line_start) / 2;
    std::fs::write(scratch.db(), &whole[..torn_at]).expect("tear");

    let store = JournalStore::open(scratch.db()).expect("reopen a torn journal");
    let things = |store: JournalStore| async move {
        let mut found = Vec::new();
        for sk in ["a", "b", "c", "d"] {
            if store
                .get(&Key::new("T#acme#THINGS", sk))
                .await
                .expect("get")
                .is_some()
            {
                found.push(sk);
            }
        }
        found
    };
    assert_eq!(
        things(store.clone()).await,
        ["a", "b"],
        "the torn write is gone"
    );
    store
        .put(plain_item("d"), None)
        .await
        .expect("put after the cut");
    drop(store);
    let store = JournalStore::open(scratch.db()).expect("reopen");
    assert_eq!(
        things(store).await,
        ["a", "b", "d"],
        "writes after the cut replay"
    );
}

/// A flipped byte in the middle of a line (a bad sector, a torn page) fails its checksum:
/// replay stops there instead of loading a wrong item.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_write_is_not_replayed() {
    let _no_forks = FORKS.lock().await;
    let scratch = Scratch::new();
    let store = JournalStore::open(scratch.db()).expect("open");
    let mut item = plain_item("a");
    item.insert("note".into(), Value::s("original text"));
    store.put(item, None).await.expect("put");
    drop(store);
    let text = std::fs::read_to_string(scratch.db()).expect("read");
    std::fs::write(scratch.db(), text.replace("original text", "originaL text")).expect("write");
    let store = JournalStore::open(scratch.db()).expect("reopen");
    assert_eq!(
        store
            .get(&Key::new("T#acme#THINGS", "a"))
            .await
            .expect("get"),
        None,
        "a line whose checksum fails is not trusted"
    );
}

/// Updates, deletes, transactions and the stream come back identical after a reopen.
#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_write_replays_to_the_same_state() {
    let _no_forks = FORKS.lock().await;
    let scratch = Scratch::new();
    let store = JournalStore::open(scratch.db()).expect("open");
    store.put(plain_item("kept"), None).await.expect("put");
    store.put(plain_item("gone"), None).await.expect("put");
    store
        .update(
            &Key::new("T#acme#THINGS", "kept"),
            Update::new().add("n", 5),
            None,
        )
        .await
        .expect("update");
    store
        .delete(&Key::new("T#acme#THINGS", "gone"), None)
        .await
        .expect("delete");
    store
        .transact_write(vec![
            WriteOp::put(outbox_item("E1")),
            WriteOp::put(plain_item("with-event")),
        ])
        .await
        .expect("transaction");
    let refused = store
        .put(plain_item("kept"), Some(Condition::item_absent()))
        .await;
    assert!(matches!(refused, Err(StoreError::ConditionFailed { .. })));
    let before: Vec<Option<Item>> = snapshot(&store).await;
    let stream_before = store.stream_read(0, 10).await.expect("stream");
    drop(store);

    let store = JournalStore::open(scratch.db()).expect("reopen");
    assert_eq!(snapshot(&store).await, before);
    assert_eq!(
        store.stream_read(0, 10).await.expect("stream"),
        stream_before
    );
    assert_eq!(
        store
            .get(&Key::new("T#acme#THINGS", "kept"))
            .await
            .expect("get")
            .and_then(|i| i.get("n").and_then(Value::as_i64)),
        Some(5)
    );
}

/// Rewriting the same items over and over compacts the journal (in the background) to about
/// what is live, and a reopen sees every item, the stream and the checkpoints as they were,
/// including writes made while a compaction ran.
#[tokio::test(flavor = "multi_thread")]
async fn a_compacted_journal_reopens_to_the_same_state() {
    let _no_forks = FORKS.lock().await;
    let scratch = Scratch::new();
    let options = || StoreOptions {
        compact_after_bytes: 16 * 1024,
        ..StoreOptions::default()
    };
    let store = JournalStore::open_with(scratch.db(), options()).expect("open");
    for round in 0..200 {
        for sk in ["a", "b", "c"] {
            let mut item = plain_item(sk);
            item.insert("round".into(), Value::n(round));
            item.insert("padding".into(), Value::s("x".repeat(200)));
            store.put(item, None).await.expect("put");
        }
    }
    store.put(outbox_item("E1"), None).await.expect("outbox");
    store.put(outbox_item("E2"), None).await.expect("outbox");
    store
        .stream_checkpoint_set("relay", 1)
        .await
        .expect("checkpoint");
    let stream = store.stream_read(0, 10).await.expect("stream");
    drop(store); // waits for a compaction under way
    // Each write's line is over 320 bytes, so without a compaction the journal would hold
    // over 190 KB; one finished compaction leaves at most the writes made after it started.
    let before_reopen = std::fs::metadata(scratch.db()).expect("journal").len();
    assert!(
        before_reopen < 190 * 1024,
        "a compaction ran while the store was open: {before_reopen} bytes"
    );

    let store = JournalStore::open_with(scratch.db(), options()).expect("reopen");
    for sk in ["a", "b", "c"] {
        let item = store
            .get(&Key::new("T#acme#THINGS", sk))
            .await
            .expect("get")
            .expect("kept through compaction");
        assert_eq!(item.get("round").and_then(Value::as_i64), Some(199));
    }
    assert_eq!(store.stream_read(0, 10).await.expect("stream"), stream);
    assert_eq!(store.stream_checkpoint_get("relay").await.expect("get"), 1);
    store.put(outbox_item("E3"), None).await.expect("outbox");
    let seqs: Vec<u64> = store
        .stream_read(0, 10)
        .await
        .expect("stream")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        seqs,
        [1, 2, 3],
        "sequence numbers carry on after compaction"
    );
}

/// A journal that grew while compaction was off (an older build, a crash mid-compaction) is
/// compacted when it is opened.
#[tokio::test(flavor = "multi_thread")]
async fn opening_a_journal_of_mostly_overwritten_history_compacts_it() {
    let _no_forks = FORKS.lock().await;
    let scratch = Scratch::new();
    let never = StoreOptions {
        compact_after_bytes: u64::MAX,
        ..StoreOptions::default()
    };
    let store = JournalStore::open_with(scratch.db(), never).expect("open");
    for round in 0..200 {
        let mut item = plain_item("a");
        item.insert("round".into(), Value::n(round));
        item.insert("padding".into(), Value::s("x".repeat(200)));
        store.put(item, None).await.expect("put");
    }
    drop(store);
    let grown = std::fs::metadata(scratch.db()).expect("journal").len();
    assert!(
        grown > 60 * 1024,
        "200 lines of over 300 bytes: {grown} bytes"
    );

    let options = StoreOptions {
        compact_after_bytes: 16 * 1024,
        ..StoreOptions::default()
    };
    let store = JournalStore::open_with(scratch.db(), options).expect("reopen");
    let compacted = std::fs::metadata(scratch.db()).expect("journal").len();
    assert!(
        compacted < 2 * 1024,
        "one live item left: {compacted} bytes"
    );
    let item = store
        .get(&Key::new("T#acme#THINGS", "a"))
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(item.get("round").and_then(Value::as_i64), Some(199));
}

async fn snapshot(store: &JournalStore) -> Vec<Option<Item>> {
    let mut items = Vec::new();
    for sk in ["kept", "gone", "with-event"] {
        items.push(
            store
                .get(&Key::new("T#acme#THINGS", sk))
                .await
                .expect("get"),
        );
    }
    items.push(
        store
            .get(&Key::new("T#acme#OUTBOX", "E1"))
            .await
            .expect("get"),
    );
    items
}

// ---------------------------------------------------------------------------------------------
// Child processes: this test binary re-run with CHILD_ENV set, doing one thing.

const CHILD_ENV: &str = "CLOSEDLOOP_JOURNAL_STORE_CHILD";

/// A forked child shares the parent's open files until it execs, lock included (flock
/// semantics), so a test that checks the lock is released on close, or reopens a store it
/// closed, must not overlap another test's fork: forking and reopening tests hold this.
static FORKS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const CHILD_SAW_LOCKED: i32 = 42;
const CRASH_WRITES: usize = 200;

fn run_child(mode: &str, db: &Path) -> std::process::ExitStatus {
    let exe = std::env::current_exe().expect("test binary");
    Command::new(exe)
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{mode}|{}", db.display()))
        .status()
        .expect("run child")
}

/// Does nothing in a normal test run; in a child process, does what `CHILD_ENV` says.
#[test]
fn child_process_entry() {
    let Ok(task) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (mode, db) = task.split_once('|').expect("mode|path");
    match mode {
        "try-open" => match JournalStore::open(db) {
            Err(OpenError::StoreLocked { .. }) => std::process::exit(CHILD_SAW_LOCKED),
            other => {
                eprintln!("child expected StoreLocked, got {other:?}");
                std::process::exit(1)
            }
        },
        "write-then-abort" => {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async {
                let store = JournalStore::open(db).expect("child open");
                for i in 0..CRASH_WRITES {
                    let item = Key::new("T#acme#CRASH", format!("{i:04}")).to_item();
                    store
                        .put(item, Some(Condition::item_absent()))
                        .await
                        .expect("put");
                    store
                        .update(
                            &Key::new("T#acme#CRASH", "COUNTER"),
                            Update::new().add("n", 1),
                            None,
                        )
                        .await
                        .expect("add");
                }
                // The store is still open: no destructors, no clean close;
                // like a crash right after the last acknowledgement.
                std::process::abort();
            });
        }
        other => panic!("unknown child mode {other}"),
    }
}
