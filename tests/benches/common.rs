//! What the benchmarks share: a store wrapper that counts what is read, and fakes of the
//! helpdesk and the mailer that answer at once (the benchmarks time the store side).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use closedloop_core::domain::TicketSnapshot;
use closedloop_core::helpdesk::{
    AccountBlock, ConnectorDirectory, ConnectorError, HelpdeskConnector, NewTicket,
};
use closedloop_core::ids::{AccountId, AgentId, TenantId, TicketId};
use closedloop_core::ports::{MailError, Mailer, OutgoingEmail};
use closedloop_core::store::{
    Condition, Item, ItemStore, Key, Page, Query, StoreError, Update, WriteOp,
};

/// Counts items read: every GetItem that found one, every item a query returned.
pub struct Counting<S> {
    pub inner: S,
    pub items_read: AtomicUsize,
    pub requests: AtomicUsize,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Counting {
            inner,
            items_read: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        }
    }
    pub fn reset(&self) {
        self.items_read.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
    }
    pub fn read(&self) -> (usize, usize) {
        (
            self.items_read.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        )
    }
}

#[async_trait]
impl<S: ItemStore> ItemStore for Counting<S> {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let item = self.inner.get(key).await?;
        if item.is_some() {
            self.items_read.fetch_add(1, Ordering::Relaxed);
        }
        Ok(item)
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        self.inner.update(key, update, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), StoreError> {
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let page = self.inner.query(query).await?;
        self.items_read
            .fetch_add(page.items.len(), Ordering::Relaxed);
        Ok(page)
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.inner.transact_write(ops).await
    }
}

/// A helpdesk that accepts every account-block call at once and counts them.
#[derive(Default)]
pub struct Helpdesk {
    pub calls: AtomicUsize,
}

#[async_trait]
impl HelpdeskConnector for Helpdesk {
    fn vendor(&self) -> &str {
        "bench"
    }
    async fn add_internal_note(
        &self,
        _: &str,
        _: &TicketId,
        _: &str,
    ) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn change_ticket_type(
        &self,
        _: &str,
        _: &TicketId,
        _: &str,
    ) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn list_ticket_types(&self) -> Result<Vec<String>, ConnectorError> {
        unimplemented!()
    }
    async fn create_ticket(&self, _: &str, _: &NewTicket) -> Result<TicketId, ConnectorError> {
        unimplemented!()
    }
    async fn reopen_ticket(
        &self,
        _: &str,
        _: &TicketId,
    ) -> Result<closedloop_core::helpdesk::Reopened, ConnectorError> {
        unimplemented!()
    }
    async fn set_ticket_status(
        &self,
        _: &str,
        _: &TicketId,
        _: &str,
    ) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn assign_agent(&self, _: &str, _: &TicketId, _: &AgentId) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn add_tag(&self, _: &str, _: &TicketId, _: &str) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn public_reply(&self, _: &str, _: &TicketId, _: &str) -> Result<(), ConnectorError> {
        unimplemented!()
    }
    async fn fetch_ticket(&self, _: &TicketId) -> Result<TicketSnapshot, ConnectorError> {
        unimplemented!()
    }
    async fn upsert_account_block(
        &self,
        _: &str,
        _: &AccountId,
        _: &AccountBlock,
    ) -> Result<(), ConnectorError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn remove_account_block(&self, _: &str, _: &AccountId) -> Result<(), ConnectorError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

pub struct Directory(pub Arc<Helpdesk>);

#[async_trait]
impl ConnectorDirectory for Directory {
    async fn connector(
        &self,
        _: &TenantId,
    ) -> Result<Option<Arc<dyn HelpdeskConnector>>, StoreError> {
        Ok(Some(self.0.clone()))
    }
}

#[derive(Default)]
pub struct Mail {
    pub sent: AtomicUsize,
}

#[async_trait]
impl Mailer for Mail {
    async fn send(&self, _: &OutgoingEmail) -> Result<String, MailError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok("m".into())
    }
}
