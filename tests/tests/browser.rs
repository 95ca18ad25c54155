//! The rating page in a real browser: a ticket closes in the demo, the rating email lands in the
//! outbox, and headless Chromium at phone width opens its "Good" link, sees the thank-you page,
//! types a comment and sends it (`tests/browser/rating_page.mjs` drives the browser). The store
//! then holds the rating and the comment.
//!
//! Needs `node`, Debian's `chromium` (or `CHROMIUM=/path`) and `npm ci` in `tests/browser`;
//! `scripts/test.sh` and `.ci/run` provide them. Missing any of them fails the test.
#![cfg(feature = "emulators")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use closedloop_core::domain::{CsatValue, Rating};

use common::{close_and_read_links, link_value, start_demo, stored_review, temp_dir};

/// Characters that must be escaped on the way back, and a closing tag that would break out of
/// the comment box if they were not.
const COMMENT: &str = r#"Fixed in 5 min </textarea><b>bold</b> & "quotes" 'too' &amp; thanks"#;

const INSTALL: &str = "the browser test needs Debian's chromium (`apt-get install chromium`, or \
                       CHROMIUM=/path/to/chromium), Node.js 20 with npm, and `npm ci --no-audit \
                       --no-fund` in tests/browser (.ci/run installs the first two, scripts/test.sh \
                       runs npm ci)";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// `name` if it is a path, else the first match on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| name.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The tools the script needs, or a failure that says how to install them.
fn tools() -> (PathBuf, PathBuf) {
    let node = on_path("node").unwrap_or_else(|| panic!("`node` is not on PATH: {INSTALL}"));
    let chromium_name = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let chromium = on_path(&chromium_name)
        .unwrap_or_else(|| panic!("Chromium (`{chromium_name}`) was not found: {INSTALL}"));
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{} is missing: {INSTALL}",
        playwright.display()
    );
    (node, chromium)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_on_a_phone_rates_and_comments_in_a_real_browser() {
    let (node, chromium) = tools();
    let dir = temp_dir();
    let running = start_demo(&dir).await;
    let links = close_and_read_links(&running, &dir, "1001", "bob@northwind.example").await;
    let good = links
        .iter()
        .find(|l| link_value(l) == "positive")
        .unwrap_or_else(|| panic!("no positive link in the email: {links:?}"))
        .clone();

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser/rating_page.png");
    let started = Instant::now();
    let script = tokio::task::spawn_blocking({
        let (good, screenshot) = (good.clone(), screenshot.clone());
        move || {
            Command::new(node)
                .current_dir(browser_dir())
                .arg("rating_page.mjs")
                .args(["--url", &good, "--choice", "Good", "--comment", COMMENT])
                .arg("--screenshot")
                .arg(&screenshot)
                .arg("--chromium")
                .arg(&chromium)
                .output()
                .expect("running node")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&script.stdout);
    let stderr = String::from_utf8_lossy(&script.stderr);
    assert!(
        script.status.success(),
        "the browser run failed ({}):\n{stderr}{stdout}",
        script.status
    );
    eprintln!(
        "browser run took {:.1} s; screenshot: {}",
        started.elapsed().as_secs_f64(),
        screenshot.display()
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );

    // What the browser sent is what the store holds: the rating from the click, the comment as typed.
    let review = stored_review(&running, &good)
        .await
        .expect("the click stored a review");
    assert_eq!(review.rating, Rating::Csat(CsatValue::Positive));
    assert_eq!(
        review.comment.as_ref().map(|c| c.as_str()),
        Some(COMMENT),
        "the comment as typed"
    );
    running.shutdown().await;
}

/// The report page in a real browser at laptop width: a manager opens the short-lived link
/// `closedloop report-link` prints, sees the trend chart and the per-agent table, and the page
/// fetches nothing from elsewhere (`tests/browser/report_page.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_opens_the_report_page_link_in_a_real_browser() {
    use closedloop_core::domain::{CsatValue as C, ProviderResponse, Review};
    use closedloop_core::ids::{AgentId, TenantId, TicketId};
    use closedloop_core::records::record_item;
    use closedloop_core::store::WriteOp;
    use closedloop_core::{keys, reports};

    let (node, chromium) = tools();
    let dir = temp_dir();
    let running = start_demo(&dir).await;
    let tenant = TenantId::parse("demo").unwrap();
    // Three weeks of ratings for the demo's two agents, counted as settling counts them.
    let now = chrono::Utc::now();
    for day in 0..21i64 {
        for (n, (agent, rating)) in [
            ("a-alice", C::Positive),
            ("a-mark", C::Neutral),
            (
                "a-alice",
                if day % 3 == 0 {
                    C::Negative
                } else {
                    C::Positive
                },
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let at = now - chrono::Duration::days(day) - chrono::Duration::hours(n as i64);
            let id = format!("r{day}-{n}");
            let key = keys::provider_review(&tenant, "delighted", &id);
            let review = Review {
                tenant_id: tenant.clone(),
                survey_request_id: None,
                ticket_id: Some(TicketId::parse(&format!("{}", 2000 + day)).unwrap()),
                rating: Rating::Csat(rating),
                comment: None,
                agent_id: Some(AgentId::parse(agent).unwrap()),
                contact_id: None,
                account_id: None,
                recorded_at: at,
                updated_at: at,
                provider: Some(ProviderResponse {
                    source: "delighted".into(),
                    response_id: id,
                    respondent_email: None,
                    answered_at: at,
                }),
                tags: vec![],
                status: None,
            };
            let (mut ops, attrs) =
                reports::on_review_write(&tenant, chrono_tz::UTC, &key, None, &review);
            let mut item = record_item(&key, "review", &review);
            item.extend(attrs);
            ops.push(WriteOp::put(item));
            running.store().transact_write(ops).await.unwrap();
        }
    }
    let credentials = closedloop::report_link::credentials(&dir, None).unwrap();
    let url =
        closedloop::report_link::request_link(&running.info.base_url, &credentials.api_key, 5)
            .await
            .unwrap();

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser/report_page.png");
    let script = tokio::task::spawn_blocking({
        let (url, screenshot) = (url.clone(), screenshot.clone());
        move || {
            Command::new(node)
                .current_dir(browser_dir())
                .arg("report_page.mjs")
                .args(["--url", &url, "--agent", "Alice Meyer"])
                .arg("--screenshot")
                .arg(&screenshot)
                .arg("--chromium")
                .arg(&chromium)
                .output()
                .expect("running node")
        }
    })
    .await
    .unwrap();
    assert!(
        script.status.success(),
        "the browser run failed ({}):\n{}{}",
        script.status,
        String::from_utf8_lossy(&script.stderr),
        String::from_utf8_lossy(&script.stdout)
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    eprintln!("report page screenshot: {}", screenshot.display());
    running.shutdown().await;
}
