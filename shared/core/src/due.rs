//! Reading a sparse "due" partition of GSI1 (rating requests to send, reviews to settle, cases
//! past their deadline): only the items whose sort key, `<time>#<id>`, is at or before now.

use chrono::{DateTime, Utc};

use crate::keys;
use crate::store::{Index, Item, ItemStore, Query, SortKeyCondition, StoreError};

const PAGE_SIZE: usize = 100;

/// Pages through the due items of one GSI1 partition, oldest first.
pub struct DueItems {
    partition: String,
    /// '~' sorts after every id, so everything due up to `now` is included.
    upper_bound: String,
    start: Option<Item>,
    done: bool,
}

impl DueItems {
    pub fn new(partition: String, now: DateTime<Utc>) -> Self {
        DueItems {
            partition,
            upper_bound: format!("{}#~", keys::sortable_time(now)),
            start: None,
            done: false,
        }
    }

    /// The next page, or `None` once every due item was read.
    pub async fn next_page(
        &mut self,
        store: &dyn ItemStore,
    ) -> Result<Option<Vec<Item>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = store
            .query(
                Query::on_index(Index::Gsi1, self.partition.clone())
                    .sk(SortKeyCondition::Le(self.upper_bound.clone()))
                    .limit(PAGE_SIZE)
                    .start_after(self.start.take()),
            )
            .await?;
        self.start = page.last_evaluated;
        self.done = self.start.is_none();
        Ok(Some(page.items))
    }
}
