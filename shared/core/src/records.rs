//! Domain records stored as items: the record as JSON in `data`, plus the few attributes that
//! conditions and indexes need (`entity`, `status`, index keys).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{Item, ItemExt, Key, StoreError, Value};

pub const DATA: &str = "data";
pub const ENTITY: &str = "entity";

pub fn record_item<T: Serialize>(key: &Key, entity: &str, record: &T) -> Item {
    let mut item = key.to_item();
    item.insert(ENTITY.into(), Value::s(entity));
    item.insert(DATA.into(), Value::S(to_json(record)));
    item
}

/// `serde_json::to_string`, written into a reused buffer and copied out at its exact size:
/// no growing reallocations, and the stored string holds no spare capacity.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            serde_json::to_writer(&mut *buf, value).expect("records and events serialise");
            let json = std::str::from_utf8(&buf)
                .expect("JSON is UTF-8")
                .to_string();
            // Keep a few pages, not the largest value ever written.
            if buf.capacity() > 64 * 1024 {
                *buf = Vec::new();
            }
            json
        }
        // Only if a value's serialisation itself called this.
        Err(_) => serde_json::to_string(value).expect("records and events serialise"),
    })
}

pub fn read_record<T: DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let json = item
        .str_attr(DATA)
        .ok_or_else(|| StoreError::Other(format!("item {:?} has no data", item.key())))?;
    serde_json::from_str(json)
        .map_err(|e| StoreError::Other(format!("item {:?} is unreadable: {e}", item.key())))
}
