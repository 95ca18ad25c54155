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
    item.insert(
        DATA.into(),
        Value::S(serde_json::to_string(record).expect("domain records serialise")),
    );
    item
}

pub fn read_record<T: DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let json = item
        .str_attr(DATA)
        .ok_or_else(|| StoreError::Other(format!("item {:?} has no data", item.key())))?;
    serde_json::from_str(json)
        .map_err(|e| StoreError::Other(format!("item {:?} is unreadable: {e}", item.key())))
}
