//! The rating link as a customer meets it: one click records, the page takes a comment.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use closedloop_core::domain::{Comment, CsatValue, Rating, Review, TenantSettings};
use closedloop_core::event::{EventEnvelope, EventType};
use closedloop_core::ids::{SurveyRequestId, TenantId};
use closedloop_core::ports::{Clock, MailError, Mailer, OutgoingEmail, SystemClock};
use closedloop_core::records::read_record;
use closedloop_core::store::ItemStore;
use closedloop_core::surveys::{self, LinkSigner, ScheduleOutcome};
use closedloop_core::tokens::TokenKeyring;
use closedloop_core::{keys, tenancy};
use closedloop_embedded::SqliteStore;
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

struct Fixture {
    app: axum::Router,
    store: Arc<dyn ItemStore>,
    survey: SurveyRequestId,
    /// Link path (`/r/<token>`) per choice value.
    links: Vec<(String, String)>,
}

async fn fixture(settings: TenantSettings) -> Fixture {
    let store: Arc<dyn ItemStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
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
    let ticket = serde_json::json!({ "ticket": { "id": "42", "subject": "VPN <drops>", "status": "closed",
        "contact": { "id": "c1", "name": "Bob", "email": "bob@example.com" }, "updated_at": SystemClock.now() } });
    let event = EventEnvelope::new_root(tenant, EventType::TicketClosed, SystemClock.now(), ticket);
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
    let text = mail.0.lock().unwrap()[0].text.clone();
    let links = text
        .lines()
        .filter_map(|l| l.split_once("https://fb.example"))
        .map(|(_, path)| {
            let token = path.trim_start_matches("/r/");
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
            (value, path.trim().to_string())
        })
        .collect();
    let app = router(RatingLinkState {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        keyring,
    });
    Fixture {
        app,
        store,
        survey,
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
    async fn get(&self, path: &str) -> (StatusCode, String) {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
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

#[tokio::test]
async fn with_changes_forbidden_a_second_click_or_post_keeps_the_first_rating() {
    let f = fixture(TenantSettings {
        forbid_rating_change: true,
        ..TenantSettings::default()
    })
    .await;
    f.get(&f.link("negative")).await;
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
