//! The rating link as a customer meets it: one click records, the page takes a comment.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use closedloop_core::domain::{Comment, CsatValue, Rating, Review, TenantSettings};
use closedloop_core::event::{EventEnvelope, EventType};
use closedloop_core::ids::{SurveyRequestId, TenantId};
use closedloop_core::ports::{Clock, MailError, Mailer, ManualClock, OutgoingEmail, SystemClock};
use closedloop_core::ratings;
use closedloop_core::records::read_record;
use closedloop_core::store::ItemStore;
use closedloop_core::surveys::{self, LinkSigner, ScheduleOutcome};
use closedloop_core::tenancy::SettingsCache;
use closedloop_core::tokens::TokenKeyring;
use closedloop_core::{keys, tenancy};
use closedloop_embedded::JournalStore;
use http_body_util::BodyExt;
use rating_link::{RatingLinkState, router};
use tower::ServiceExt;

/// Keeps sent mail in memory, so the test can read the links.
#[derive(Default)]
struct Sent(Mutex<Vec<OutgoingEmail>>);

#[async_trait]
impl Mailer for Sent {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        self.0.lock().unwrap().push(email.clone());
        Ok("m".into())
    }
}

const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

struct Fixture {
    app: axum::Router,
    store: Arc<dyn ItemStore>,
    clock: Arc<ManualClock>,
    survey: SurveyRequestId,
    keyring: Arc<TokenKeyring>,
    /// The rating request as sent.
    email: OutgoingEmail,
    /// Link path (`/r/<token>`) per choice value.
    links: Vec<(String, String)>,
}

/// `ticket.closed` for a ticket of Bob's.
fn closed(tenant: &TenantId, ticket: &str) -> EventEnvelope {
    let data = serde_json::json!({ "ticket": { "id": ticket, "subject": "VPN <drops>", "status": "closed",
        "contact": { "id": "c1", "name": "Bob", "email": "bob@example.com",
            "account": { "id": "acc-1", "name": "Northwind" } }, "updated_at": SystemClock.now() } });
    EventEnvelope::new_root(
        tenant.clone(),
        EventType::TicketClosed,
        SystemClock.now(),
        data,
    )
}

async fn fixture(settings: TenantSettings) -> Fixture {
    let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    let tenant = TenantId::parse("acme").unwrap();
    tenancy::provision_tenant(
        store.as_ref(),
        tenant.clone(),
        "Acme",
        settings,
        SystemClock.now(),
    )
    .await
    .unwrap();
    let keyring = Arc::new(TokenKeyring::parse(&TokenKeyring::generate_spec("k1")).unwrap());
    let mail = Sent::default();
    let links = LinkSigner {
        keyring: &keyring,
        public_base_url: "https://fb.example",
    };
    let event = closed(&tenant, "42");
    let ScheduleOutcome::Scheduled {
        survey,
        sent_now: true,
        ..
    } = surveys::on_ticket_event(store.as_ref(), &mail, &SystemClock, &links, &event)
        .await
        .unwrap()
    else {
        panic!("the request is sent at once with no delay")
    };
    let email = mail.0.lock().unwrap()[0].clone();
    let links = email
        .text
        .lines()
        .filter_map(|l| l.split_once("https://fb.example/r/"))
        .map(|(_, path)| {
            let token = path.trim();
            let payload = token.split('.').next().unwrap();
            use base64::Engine;
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap();
            let value = String::from_utf8(decoded)
                .unwrap()
                .split('|')
                .nth(4)
                .unwrap()
                .to_string();
            (value, format!("/r/{token}"))
        })
        .collect();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let app = router(RatingLinkState {
        store: store.clone(),
        clock: clock.clone(),
        keyring: keyring.clone(),
        settings: Default::default(),
    });
    Fixture {
        app,
        store,
        clock,
        survey,
        keyring,
        email,
        links,
    }
}

impl Fixture {
    fn link(&self, value: &str) -> String {
        self.links
            .iter()
            .find(|(v, _)| v == value)
            .unwrap()
            .1
            .clone()
    }
    async fn review(&self) -> Option<Review> {
        let key = keys::review(&TenantId::parse("acme").unwrap(), self.survey);
        self.store
            .get(&key)
            .await
            .unwrap()
            .map(|i| read_record(&i).unwrap())
    }
    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
    /// A person opening the link on a phone.
    async fn get(&self, path: &str) -> (StatusCode, String) {
        self.get_as(path, PHONE).await
    }
    async fn get_as(&self, path: &str, user_agent: &str) -> (StatusCode, String) {
        self.send(
            Request::get(path)
                .header("user-agent", user_agent)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }
    /// Closes another of Bob's tickets; returns what was mailed.
    async fn close_another(&self, ticket: &str) -> Vec<OutgoingEmail> {
        let mail = Sent::default();
        let links = LinkSigner {
            keyring: &self.keyring,
            public_base_url: "https://fb.example",
        };
        let event = closed(&TenantId::parse("acme").unwrap(), ticket);
        surveys::on_ticket_event(self.store.as_ref(), &mail, &SystemClock, &links, &event)
            .await
            .unwrap();
        mail.0.into_inner().unwrap()
    }
    fn unsubscribe_link(&self) -> String {
        let (_, url) = self
            .email
            .headers
            .iter()
            .find(|(name, _)| name == "List-Unsubscribe")
            .expect("a List-Unsubscribe header");
        let url = url.trim_matches(['<', '>']);
        assert!(self.email.text.contains(url), "the text names the link too");
        url.strip_prefix("https://fb.example").unwrap().to_string()
    }
    fn wait(&self, seconds: i64) {
        self.clock.advance(chrono::Duration::seconds(seconds));
    }
    /// How many reviews settle into `review.received` once every window has passed.
    async fn settle_all(&self) -> usize {
        let later = self.clock.now() + chrono::Duration::days(1);
        ratings::settle_reviews(self.store.as_ref(), later)
            .await
            .unwrap()
    }
    async fn post(&self, path: &str, form: &str) -> (StatusCode, String) {
        self.send(
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form.to_string()))
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn one_click_records_and_the_page_preselects_the_choice() {
    let f = fixture(TenantSettings {
        brand_name: "Acme Support".into(),
        ..TenantSettings::default()
    })
    .await;
    assert_eq!(f.links.len(), 3);
    let (status, page) = f.get(&f.link("neutral")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"value="neutral" checked"#), "{page}");
    assert!(page.contains("Acme Support"));
    assert!(page.contains("<textarea"));
    assert!(
        page.contains("VPN &lt;drops&gt;"),
        "the ticket subject is escaped"
    );
    assert_eq!(
        f.review().await.unwrap().rating,
        Rating::Csat(CsatValue::Neutral)
    );
}

#[tokio::test]
async fn posting_the_page_saves_the_comment_and_may_change_the_rating() {
    let f = fixture(TenantSettings::default()).await;
    let link = f.link("negative");
    f.get(&link).await;
    let (status, page) = f
        .post(
            &link,
            "rating=positive&comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E+fixed+now",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; fixed now"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"));
    let review = f.review().await.unwrap();
    assert_eq!(review.rating, Rating::Csat(CsatValue::Positive));
    assert_eq!(
        review.comment,
        Comment::parse("<script>alert(1)</script> fixed now").unwrap()
    );
}

/// Where a browser sends a form served at `page_path`: the URL reference `action` resolved
/// against the page's path (RFC 3986, section 5.2, for the path-only references pages use).
fn form_target(page_path: &str, action: &str) -> String {
    if action.starts_with('/') {
        return action.to_string();
    }
    let base = &page_path[..=page_path.rfind('/').unwrap()];
    format!("{base}{}", action.trim_start_matches("./"))
}

fn form_action(page: &str) -> &str {
    let start = page
        .find("<form method=\"post\" action=\"")
        .expect("a form")
        + 28;
    &page[start..start + page[start..].find('"').unwrap()]
}

#[tokio::test]
async fn the_pages_forms_post_back_to_their_own_url_behind_a_path_prefix() {
    let f = fixture(TenantSettings::default()).await;
    let link = f.link("negative");
    let (_, rating_page) = f.get(&link).await;
    // Served behind a prefix (an API mapped at a base path), the form still reaches the link.
    let prefixed = format!("/feedback{link}");
    assert_eq!(
        form_target(&prefixed, form_action(&rating_page)),
        prefixed,
        "{rating_page}"
    );
    let unsubscribe = f.unsubscribe_link();
    let (_, unsubscribe_page) = f.get(&unsubscribe).await;
    let prefixed = format!("/feedback{unsubscribe}");
    assert_eq!(
        form_target(&prefixed, form_action(&unsubscribe_page)),
        prefixed,
        "{unsubscribe_page}"
    );
}

#[tokio::test]
async fn with_changes_forbidden_a_second_click_or_post_keeps_the_first_rating() {
    let f = fixture(TenantSettings {
        forbid_rating_change: true,
        ..TenantSettings::default()
    })
    .await;
    f.get(&f.link("negative")).await;
    f.wait(60);
    let (_, page) = f.get(&f.link("positive")).await;
    assert!(page.contains(r#"value="negative" checked"#), "{page}");
    let (_, page) = f
        .post(&f.link("negative"), "rating=positive&comment=call+me")
        .await;
    assert!(page.contains("can no longer be changed"), "{page}");
    let review = f.review().await.unwrap();
    assert_eq!(review.rating, Rating::Csat(CsatValue::Negative));
    assert_eq!(review.comment.unwrap().as_str(), "call me");
}

#[tokio::test]
async fn scanners_and_bad_links_record_nothing() {
    let f = fixture(TenantSettings::default()).await;
    let link = f.link("positive");
    let (status, _) = f
        .send(Request::head(&link).body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(f.review().await, None);
    let (status, page) = f.get(&format!("{link}x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("This link doesn&#39;t work"), "{page}");
    let (status, _) = f.post(&link, "rating=eleven").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = f
        .post(&link, &format!("comment={}", "x".repeat(5001)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(f.review().await, None);
}

/// What mail-security gateways are seen sending when they open every link of an email.
const SCANNER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; Microsoft Outlook 16.0; ms-office; MSOffice 16)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
    "python-requests/2.32.3",
    "",
];

#[tokio::test]
async fn scanner_user_agents_record_nothing_but_a_person_can_confirm_on_the_page() {
    let f = fixture(TenantSettings::default()).await;
    let link = f.link("negative");
    for agent in SCANNER_AGENTS {
        let (status, page) = f.get_as(&link, agent).await;
        assert_eq!(status, StatusCode::OK, "{agent}");
        assert!(
            page.contains("Please confirm your answer"),
            "{agent}: {page}"
        );
        assert!(page.contains(r#"value="negative" checked"#), "{page}");
        assert_eq!(f.review().await, None, "{agent} recorded a rating");
    }
    // Behind an unusual browser there may be a person: the page's button records the answer.
    let (status, page) = f.post(&link, "rating=negative&comment=").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Thank you"), "{page}");
    assert_eq!(
        f.review().await.unwrap().rating,
        Rating::Csat(CsatValue::Negative)
    );
    assert_eq!(f.settle_all().await, 1);
}

#[tokio::test]
async fn a_burst_of_every_choice_within_seconds_counts_for_nothing_until_confirmed() {
    let f = fixture(TenantSettings::default()).await;
    // A gateway that passes for a phone browser opens each button in the email's order.
    f.get(&f.link("positive")).await;
    f.wait(1);
    let (_, page) = f.get(&f.link("neutral")).await;
    assert!(page.contains("Please confirm your answer"), "{page}");
    f.wait(1);
    f.get(&f.link("negative")).await;
    // Opening a link again a little later does not make the burst count either.
    f.wait(3);
    let (_, page) = f.get(&f.link("negative")).await;
    assert!(page.contains("Please confirm your answer"), "{page}");
    assert_eq!(f.settle_all().await, 0, "no review.received for a burst");

    // The customer reads the email later and confirms their real answer on the page.
    f.wait(600);
    f.post(&f.link("positive"), "rating=neutral&comment=ok+overall")
        .await;
    assert_eq!(f.settle_all().await, 1);
    let review = f.review().await.unwrap();
    assert_eq!(review.rating, Rating::Csat(CsatValue::Neutral));
    assert_eq!(review.comment.unwrap().as_str(), "ok overall");
}

#[tokio::test]
async fn a_person_who_corrects_a_click_after_some_seconds_is_not_a_burst() {
    let f = fixture(TenantSettings::default()).await;
    f.get(&f.link("negative")).await;
    f.wait(30);
    let (_, page) = f.get(&f.link("positive")).await;
    assert!(
        page.contains("Thank you! We recorded your answer."),
        "{page}"
    );
    assert!(page.contains(r#"value="positive" checked"#), "{page}");
    assert_eq!(f.settle_all().await, 1);
    assert_eq!(
        f.review().await.unwrap().rating,
        Rating::Csat(CsatValue::Positive)
    );
}

#[tokio::test]
async fn a_settled_answer_changes_only_through_the_page() {
    let f = fixture(TenantSettings::default()).await;
    f.get(&f.link("negative")).await;
    assert_eq!(f.settle_all().await, 1);
    f.wait(86_400);
    // A forwarded email scanned days later, or a second look by the customer.
    let (_, page) = f.get(&f.link("positive")).await;
    assert!(page.contains("Change your answer?"), "{page}");
    assert!(page.contains(r#"value="positive" checked"#), "{page}");
    assert_eq!(
        f.review().await.unwrap().rating,
        Rating::Csat(CsatValue::Negative)
    );
    f.post(&f.link("positive"), "rating=positive&comment=")
        .await;
    assert_eq!(
        f.review().await.unwrap().rating,
        Rating::Csat(CsatValue::Positive)
    );
}

#[tokio::test]
async fn unsubscribing_takes_a_post_and_stops_further_requests() {
    let f = fixture(TenantSettings::default()).await;
    assert!(
        f.email.headers.contains(&(
            "List-Unsubscribe-Post".into(),
            "List-Unsubscribe=One-Click".into()
        )),
        "{:?}",
        f.email.headers
    );
    let link = f.unsubscribe_link();
    // Opening the link (a person, or a scanner) only asks.
    for agent in [PHONE, SCANNER_AGENTS[0]] {
        let (status, page) = f.get_as(&link, agent).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Unsubscribe from rating requests?"), "{page}");
        assert!(page.contains("bob@example.com"), "{page}");
    }
    assert_eq!(f.close_another("43").await.len(), 1, "still subscribed");
    // The unsubscribe token is not a rating.
    let as_rating = link.replacen("/u/", "/r/", 1);
    assert_eq!(f.get(&as_rating).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(f.review().await, None);

    // A mail client's one-click POST (RFC 8058).
    let (status, page) = f.post(&link, "List-Unsubscribe=One-Click").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("You are unsubscribed"), "{page}");
    assert!(f.close_another("44").await.is_empty(), "no more requests");
    let (status, page) = f.post(&link, "").await;
    assert_eq!(status, StatusCode::OK, "unsubscribing twice is fine");
    assert!(page.contains("You are unsubscribed"), "{page}");
    // Tampering is refused.
    assert_eq!(
        f.post(&format!("{link}x"), "").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_settled_nps_answer_becomes_the_accounts_latest() {
    let f = fixture(TenantSettings {
        survey_kind: closedloop_core::domain::SurveyKind::Nps,
        ..TenantSettings::default()
    })
    .await;
    assert_eq!(f.links.len(), 11, "NPS offers 0-10");
    let tenant = TenantId::parse("acme").unwrap();
    let account = closedloop_core::ids::AccountId::parse("acc-1").unwrap();
    let latest = || async {
        closedloop_core::accounts::latest_nps_answer(f.store.as_ref(), &tenant, &account)
            .await
            .unwrap()
            .map(|a| a.score.value())
    };
    f.get(&f.link("9")).await;
    assert_eq!(latest().await, None, "not before the answer settles");
    assert_eq!(f.settle_all().await, 1);
    assert_eq!(latest().await, Some(9));
    // The customer comes back and changes the answer on the page.
    f.wait(3600);
    f.post(&f.link("9"), "rating=3&comment=it+broke+again")
        .await;
    assert_eq!(latest().await, Some(3));
}

#[tokio::test]
async fn requests_use_the_tenants_saved_template() {
    let f = fixture(TenantSettings::default()).await;
    let tenant = TenantId::parse("acme").unwrap();
    let mine = closedloop_core::templates::RatingRequestTemplates {
        subject: "Ticket {{ ticket.id }}: one click, please".into(),
        ..Default::default()
    };
    mine.check().unwrap();
    closedloop_core::templates::save_rating_request_templates(
        f.store.as_ref(),
        &tenant,
        Some(&mine),
    )
    .await
    .unwrap();
    let sent = f.close_another("77").await;
    assert_eq!(sent[0].subject, "Ticket 77: one click, please");
}

/// Settings are cached per tenant: a save that tells the shared cache shows on the next click;
/// one that does not (made by another process) shows once the cache's TTL has passed.
#[tokio::test]
async fn a_settings_change_shows_at_once_when_the_cache_is_told_and_after_its_ttl_otherwise() {
    let f = fixture(TenantSettings {
        brand_name: "Acme Support".into(),
        ..TenantSettings::default()
    })
    .await;
    let tenant = TenantId::parse("acme").unwrap();
    let app = |ttl| {
        let cache = Arc::new(SettingsCache::new(ttl));
        let app = router(RatingLinkState {
            store: f.store.clone(),
            clock: f.clock.clone(),
            keyring: f.keyring.clone(),
            settings: cache.clone(),
        });
        (app, cache)
    };
    let link = f.link("neutral");
    let open = |app: axum::Router| {
        let link = link.clone();
        async move {
            let request = Request::get(link)
                .header("user-agent", PHONE)
                .body(Body::empty())
                .unwrap();
            let body = app.oneshot(request).await.unwrap().into_body();
            String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap()
        }
    };
    let rename = |name: &str| {
        let settings = TenantSettings {
            brand_name: name.into(),
            ..TenantSettings::default()
        };
        let (store, tenant) = (f.store.clone(), tenant.clone());
        async move {
            tenancy::put_settings(store.as_ref(), &tenant, &settings)
                .await
                .unwrap()
        }
    };
    let (cached, cache) = app(std::time::Duration::from_secs(3600));
    assert!(open(cached.clone()).await.contains("Acme Support"));
    rename("Renamed").await;
    assert!(
        open(cached.clone()).await.contains("Acme Support"),
        "served from the cache"
    );
    cache.invalidate(&tenant);
    assert!(open(cached.clone()).await.contains("Renamed"));
    rename("Expired").await;
    let (uncached, _) = app(std::time::Duration::ZERO);
    assert!(open(uncached).await.contains("Expired"));
    assert!(open(cached).await.contains("Renamed"), "until its TTL");
}

/// Each answer publishes review.recorded with the review as stored and the rating it replaced.
#[tokio::test]
async fn review_recorded_carries_the_review_and_the_rating_it_replaced() {
    let f = fixture(TenantSettings::default()).await;
    let tenant = TenantId::parse("acme").unwrap();
    f.get(&f.link("negative")).await;
    let first = f.review().await.unwrap();
    f.wait(60);
    f.post(&f.link("negative"), "rating=positive&comment=Fixed")
        .await;
    let last = f.review().await.unwrap();
    let outbox = f
        .store
        .query(closedloop_core::store::Query::partition(
            keys::outbox_partition(&tenant),
        ))
        .await
        .unwrap();
    let mut recorded: Vec<EventEnvelope> = outbox
        .items
        .iter()
        .filter_map(|item| closedloop_core::outbox::envelope_from_image(item).ok())
        .filter(|event| event.event_type == EventType::ReviewRecorded)
        .collect();
    recorded.sort_by_key(|event| event.occurred_at);
    let data: Vec<serde_json::Value> = recorded.into_iter().map(|e| e.data).collect();
    assert_eq!(
        data,
        [
            serde_json::json!({ "review": first, "previous_rating": null }),
            serde_json::json!({ "review": last, "previous_rating": { "kind": "csat", "value": "negative" } }),
        ]
    );
}
