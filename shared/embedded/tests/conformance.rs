//! The shared store conformance suite, against an in-memory store (one per test) and against a
//! file-backed store, which also exercises the read-connection pool and WAL mode.

use std::path::PathBuf;

use async_trait::async_trait;
use closedloop_core::store::{
    Condition, Item, ItemStore, Key, Page, Query, StoreError, Update, WriteOp,
};
use closedloop_embedded::JournalStore;

closedloop_core::store_conformance_tests!(JournalStore::open_in_memory().expect("in-memory store"));

/// Every conformance test once more, all against one database file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_suite_on_a_database_file() {
    let store = FileStore::new();
    closedloop_core::conformance::store::run_all(&store).await;
}

/// A store in a fresh file under Cargo's scratch directory, deleted when dropped.
struct FileStore {
    store: Option<JournalStore>,
    dir: PathBuf,
}

impl FileStore {
    fn new() -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("conformance-{}", ulid::Ulid::new()));
        let store = JournalStore::open(dir.join("store.journal")).expect("file store");
        FileStore {
            store: Some(store),
            dir,
        }
    }
    fn store(&self) -> &JournalStore {
        self.store.as_ref().expect("open until dropped")
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        drop(self.store.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[async_trait]
impl ItemStore for FileStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.store().get(key).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        self.store().put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        self.store().update(key, update, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        self.store().delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.store().query(query).await
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.store().transact_write(ops).await
    }
}
