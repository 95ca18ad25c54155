//! Writes to one review that land between another writer's read and its conditional write.
//! Found by the load run (`docs/load.md`): the guard compared `updated_at`, which has
//! millisecond resolution and which settling does not change, so a second write in the same
//! millisecond, or the scheduler settling the review meanwhile, went unnoticed: an accepted
//! rating was silently replaced, `review.received` went out twice, and a review was counted
//! twice. Every write now moves the review's `revision`, and every write is guarded by it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use closedloop_core::domain::{Rating, SurveyKind, TenantSettings};
use closedloop_core::event::{EventEnvelope, EventType};
use closedloop_core::ids::{SurveyRequestId, TenantId};
use closedloop_core::outbox::envelope_from_image;
use closedloop_core::ports::{MailError, Mailer, ManualClock, OutgoingEmail};
use closedloop_core::ratings::{self, Links, Via};
use closedloop_core::records::read_record;
use closedloop_core::reports::{self, Counts, DateRange};
use closedloop_core::store::{
    Condition, Item, ItemStore, Key, Page, Query, StoreError, Update, WriteOp,
};
use closedloop_core::surveys::{self, LinkSigner, ScheduleOutcome};
use closedloop_core::tenancy::{self, SettingsCache};
use closedloop_core::tokens::TokenKeyring;
use closedloop_core::{keys, ports::Clock};
use closedloop_embedded::JournalStore;

type Hook = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The embedded store, with one other writer let in just before the next transaction.
struct Interleaved {
    inner: Arc<JournalStore>,
    before_next_write: tokio::sync::Mutex<Option<Hook>>,
}

#[async_trait]
impl ItemStore for Interleaved {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.inner.get(key).await
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
        self.inner.query(query).await
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let hook = self.before_next_write.lock().await.take();
        if let Some(hook) = hook {
            hook.await;
        }
        self.inner.transact_write(ops).await
    }
}

struct NoMail;

#[async_trait]
impl Mailer for NoMail {
    async fn send(&self, _: &OutgoingEmail) -> Result<String, MailError> {
        Ok("m".into())
    }
}

struct World {
    inner: Arc<JournalStore>,
    store: Interleaved,
    keyring: Arc<TokenKeyring>,
    settings: Arc<SettingsCache>,
    tenant: TenantId,
    survey: SurveyRequestId,
    clock: ManualClock,
}

impl World {
    async fn new() -> World {
        let inner = Arc::new(JournalStore::open_in_memory().unwrap());
        let clock = ManualClock::new("2026-11-23T10:00:00Z".parse().unwrap());
        let tenant = TenantId::parse("acme").unwrap();
        let settings = TenantSettings {
            survey_kind: SurveyKind::Nps,
            change_window_minutes: 0,
            ..TenantSettings::default()
        };
        tenancy::provision_tenant(
            inner.as_ref(),
            tenant.clone(),
            "acme",
            settings,
            clock.now(),
        )
        .await
        .unwrap();
        let keyring = Arc::new(TokenKeyring::parse(&TokenKeyring::generate_spec("k1")).unwrap());
        let signer = LinkSigner {
            keyring: &keyring,
            public_base_url: "",
        };
        let ticket = serde_json::json!({ "ticket": { "id": "1001", "subject": "Printer",
            "status": "closed", "agent": { "id": "a-ann", "name": "Ann", "email": "ann@example.com", "email_notifications": false },
            "contact": { "id": "c-bob", "name": "Bob", "email": "bob@example.com" },
            "updated_at": clock.now() } });
        let event =
            EventEnvelope::new_root(tenant.clone(), EventType::TicketClosed, clock.now(), ticket);
        let ScheduleOutcome::Scheduled { survey, .. } =
            surveys::on_ticket_event(inner.as_ref(), &NoMail, &clock, &signer, &event)
                .await
                .unwrap()
        else {
            panic!("a rating request is sent");
        };
        World {
            store: Interleaved {
                inner: inner.clone(),
                before_next_write: Default::default(),
            },
            inner,
            keyring,
            settings: Arc::new(SettingsCache::default()),
            tenant,
            survey,
            clock,
        }
    }

    fn token(&self, score: u8) -> String {
        let signer = LinkSigner {
            keyring: &self.keyring,
            public_base_url: "",
        };
        let url = signer.rating_url(
            &self.tenant,
            self.survey,
            &score.to_string(),
            self.clock.now(),
        );
        url.rsplit('/').next().unwrap().to_string()
    }

    /// A page post with `score`, straight on the store (no other writer let in).
    fn post_now(&self, score: u8, at: DateTime<Utc>) -> Hook {
        let (inner, keyring, settings, token) = (
            self.inner.clone(),
            self.keyring.clone(),
            self.settings.clone(),
            self.token(score),
        );
        Box::pin(async move {
            let links = Links {
                keyring: &keyring,
                settings: &settings,
            };
            ratings::submit(inner.as_ref(), links, at, &token, Via::Form, None, Some(""))
                .await
                .expect("the other post is saved");
        })
    }

    async fn let_in_before_next_write(&self, hook: Hook) {
        *self.store.before_next_write.lock().await = Some(hook);
    }

    async fn submit(&self, score: u8, via: Via) -> ratings::Recorded {
        let links = Links {
            keyring: &self.keyring,
            settings: &self.settings,
        };
        let comment = (via == Via::Form).then_some("");
        ratings::submit(
            &self.store,
            links,
            self.clock.now(),
            &self.token(score),
            via,
            None,
            comment,
        )
        .await
        .unwrap()
    }

    async fn events(&self, of: EventType) -> Vec<EventEnvelope> {
        let page = self
            .inner
            .query(Query::partition(keys::outbox_partition(&self.tenant)))
            .await
            .unwrap();
        page.items
            .iter()
            .filter_map(|i| envelope_from_image(i).ok())
            .filter(|e| e.event_type == of)
            .collect()
    }

    async fn stored(&self) -> Rating {
        let item = self
            .inner
            .get(&keys::review(&self.tenant, self.survey))
            .await
            .unwrap();
        read_record::<closedloop_core::domain::Review>(&item.expect("a review"))
            .unwrap()
            .rating
    }

    /// The counters the reports read, against a recount of the (one) stored review.
    async fn assert_counted_once(&self) {
        let tz = tenancy::time_zone(self.inner.as_ref(), &self.tenant)
            .await
            .unwrap();
        let range = DateRange::last_days(self.clock.now(), tz, 2);
        let rows = reports::read_counters(self.inner.as_ref(), &self.tenant, range, None)
            .await
            .unwrap();
        let mut counters = Counts::default();
        for (_, _, c) in rows.rows {
            counters.add(&c);
        }
        let mut recount = Counts::default();
        recount.count(self.stored().await);
        assert_eq!(counters, recount, "the counters equal a recount");
    }
}

fn nps(event: &EventEnvelope, field: &str) -> Option<Rating> {
    serde_json::from_value(event.data[field].clone()).ok()
}

/// Two posts in the same millisecond on a settled review: the second must see the first, so
/// the last write wins and every accepted write replaced the one before it.
#[tokio::test]
async fn a_post_in_the_same_millisecond_as_another_is_not_lost() {
    let w = World::new().await;
    w.submit(3, Via::Form).await; // settles at once: the window is 0
    // Post 9 reads the review; post 5 (same instant) commits before post 9 writes.
    w.let_in_before_next_write(w.post_now(5, w.clock.now()))
        .await;
    w.submit(9, Via::Form).await;

    let recorded = w.events(EventType::ReviewRecorded).await;
    let mut replaced: Vec<Option<Rating>> =
        recorded.iter().map(|e| nps(e, "previous_rating")).collect();
    replaced.sort_by_key(|r| format!("{r:?}"));
    let before = replaced.len();
    replaced.dedup();
    assert_eq!(
        replaced.len(),
        before,
        "no two accepted writes replaced the same rating (a lost update): {recorded:#?}"
    );
    assert_eq!(recorded.len(), 3);
    // Post 9 wrote last, after it saw post 5: it is what is stored.
    assert_eq!(w.stored().await.value_string(), "9");
    assert_eq!(w.events(EventType::ReviewReceived).await.len(), 1);
    w.assert_counted_once().await;
}

/// A post that read the review before the scheduler settled it must not undo the settling:
/// one `review.received`, one count.
#[tokio::test]
async fn a_post_racing_the_scheduler_settles_the_review_once() {
    let w = World::new().await;
    w.submit(3, Via::Link).await; // a link click waits out the burst guard
    w.clock.advance(chrono::Duration::seconds(11));
    // The post reads the unsettled review; the scheduler settles it before the post writes.
    let (inner, at) = (w.inner.clone(), w.clock.now());
    w.let_in_before_next_write(Box::pin(async move {
        assert_eq!(
            ratings::settle_reviews(inner.as_ref(), at).await.unwrap(),
            1
        );
    }))
    .await;
    w.submit(8, Via::Form).await;
    w.clock.advance(chrono::Duration::minutes(10));
    ratings::settle_reviews(w.inner.as_ref(), w.clock.now())
        .await
        .unwrap();

    assert_eq!(w.stored().await.value_string(), "8");
    assert_eq!(
        w.events(EventType::ReviewReceived).await.len(),
        1,
        "review.received goes out once"
    );
    w.assert_counted_once().await;
}
