//! Each vendor connector against a local HTTP server that asserts the request shapes the
//! vendor documents (method, path, headers, the exact JSON body), its auth flow (including
//! token renewal), its error shapes, and account-note round trips that leave foreign text as
//! it was. The expected shapes are written out here from the vendors' docs (cited in each
//! connector), not derived from the code under test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use closedloop_connectors::{Connectors, http_client};
use closedloop_core::helpdesk::{
    AccountBlock, ConnectorConfig, ConnectorError, ConnectorKind, ConnectorSettings,
    HelpdeskConnector, HelpdeskOperation, NewTicket, Reopened,
};
use closedloop_core::ids::{AccountId, AgentId, TenantId, TicketId};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn ticket() -> TicketId {
    TicketId::parse("1001").unwrap()
}

fn account() -> AccountId {
    AccountId::parse("42").unwrap()
}

fn block(text: &str) -> AccountBlock {
    AccountBlock {
        detractor: true,
        subject: String::new(),
        latest_score: Some(3),
        answered_at: None,
        text: text.into(),
    }
}

/// Foreign text an admin wrote on the account: unicode, CRLF, and a line that mentions the
/// marker without being one.
const FOREIGN: &str =
    "Pays by invoice – Zahlung 30 Tage 💶\r\nKey contact: Zoë\r\nSee [closedloop] for NPS\r\n";
const WITH_BLOCK: &str = "Pays by invoice – Zahlung 30 Tage 💶\r\nKey contact: Zoë\r\nSee [closedloop] for NPS\r\n\r\n[closedloop]\r\nLatest NPS: 3 (detractor)\r\n[/closedloop]";

fn config(
    kind: ConnectorKind,
    url: &str,
    settings: ConnectorSettings,
    secret: &str,
) -> ConnectorConfig {
    ConnectorConfig {
        kind,
        url: url.into(),
        secret: secret.into(),
        settings,
        updated_at: chrono::Utc::now(),
        account_block_limits: None,
    }
}

fn build(connectors: &Connectors, config: ConnectorConfig) -> Arc<dyn HelpdeskConnector> {
    connectors.build(&tenant(), config)
}

fn connectors() -> Connectors {
    Connectors::new(http_client(Duration::from_secs(2)))
}

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// The JSON body equals `expected` once the fields named in `dynamic` (a time we cannot know)
/// are taken out; each of those must be present and an RFC 3339 time.
struct JsonExceptTimes(Value, &'static [&'static str]);

impl Match for JsonExceptTimes {
    fn matches(&self, request: &Request) -> bool {
        let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) else {
            return false;
        };
        for field in self.1 {
            let Some(t) = body.as_object_mut().and_then(|o| o.remove(*field)) else {
                return false;
            };
            if t.as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .is_none()
            {
                return false;
            }
        }
        body == self.0
    }
}

/// The form body holds exactly these pairs, in any order.
struct FormIs(&'static [(&'static str, &'static str)]);

impl Match for FormIs {
    fn matches(&self, request: &Request) -> bool {
        let got: std::collections::BTreeSet<(String, String)> =
            url::form_urlencoded::parse(&request.body)
                .into_owned()
                .collect();
        let want: std::collections::BTreeSet<(String, String)> = self
            .0
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        request
            .headers
            .get("content-type")
            .is_some_and(|v| v == "application/x-www-form-urlencoded")
            && got == want
    }
}

/// Answers with a new token each time: `t1`, `t2`, ...
struct Tokens {
    n: AtomicUsize,
    answer: fn(&str) -> Value,
}

impl Respond for Tokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json((self.answer)(&format!("t{n}")))
    }
}

async fn calls_to(server: &MockServer, p: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == p)
        .collect()
}

fn bearer(r: &Request) -> String {
    r.headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

// ── Kaseya BMS ───────────────────────────────────────────────────────────────────────────────

mod kaseya {
    use super::*;

    pub fn settings(cap: Option<u32>) -> ConnectorSettings {
        ConnectorSettings {
            username: Some("api@msp.example".into()),
            company: Some("Acme MSP".into()),
            hourly_cap: cap,
            ids: [("note_type_id", 2)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..Default::default()
        }
    }

    const LOGIN: &[(&str, &str)] = &[
        ("GrantType", "password"),
        ("UserName", "api@msp.example"),
        ("Password", "bms password"),
        ("Tenant", "Acme MSP"),
    ];

    /// Tokens valid for `secs` more seconds.
    pub async fn login(server: &MockServer, secs: i64) {
        fn hour(token: &str) -> Value {
            json!({"Success": true, "Result": {"AccessToken": token,
                "AccessTokenExpireOn": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}})
        }
        fn soon(token: &str) -> Value {
            json!({"Success": true, "Result": {"AccessToken": token,
                "AccessTokenExpireOn": (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc3339()}})
        }
        Mock::given(method("POST"))
            .and(path("/v2/security/authenticate"))
            .and(FormIs(LOGIN))
            .respond_with(Tokens {
                n: AtomicUsize::new(0),
                answer: if secs > 60 { hour } else { soon },
            })
            .mount(server)
            .await;
    }

    fn connector(server: &MockServer, cap: Option<u32>) -> Arc<dyn HelpdeskConnector> {
        build(
            &connectors(),
            config(
                ConnectorKind::KaseyaBms,
                &server.uri(),
                settings(cap),
                "bms password",
            ),
        )
    }

    fn ok(result: Value) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({"Success": true, "Result": result}))
    }

    #[tokio::test]
    async fn a_note_is_posted_with_is_internal_and_the_token_from_one_login() {
        let server = MockServer::start().await;
        login(&server, 3600).await;
        Mock::given(method("POST"))
            .and(path("/v2/servicedesk/tickets/1001/notes"))
            .and(header("authorization", "Bearer t1"))
            .and(JsonExceptTimes(
                json!({"Details": "Customer unhappy", "IsInternal": true, "TypeId": 2}),
                &["NoteDate"],
            ))
            .respond_with(ok(json!({"Id": 7})))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v2/servicedesk/tickets/1001/notes"))
            .and(header("authorization", "Bearer t1"))
            .and(JsonExceptTimes(
                json!({"Details": "We are on it", "IsInternal": false, "TypeId": 2}),
                &["NoteDate"],
            ))
            .respond_with(ok(json!({"Id": 8})))
            .expect(1)
            .mount(&server)
            .await;
        let c = connector(&server, None);
        c.add_internal_note("k", &ticket(), "Customer unhappy")
            .await
            .unwrap();
        c.public_reply("k", &ticket(), "We are on it")
            .await
            .unwrap();
        assert_eq!(
            calls_to(&server, "/v2/security/authenticate").await.len(),
            1
        );
    }

    #[tokio::test]
    async fn an_expiring_token_is_renewed_before_the_next_call() {
        let server = MockServer::start().await;
        login(&server, 30).await;
        Mock::given(method("PATCH"))
            .and(path("/v2/servicedesk/tickets/1001"))
            .and(body_json(
                json!([{"op": "replace", "path": "/AssigneeId", "value": 17}]),
            ))
            .respond_with(ok(json!({"Id": 1001})))
            .expect(2)
            .mount(&server)
            .await;
        let c = connector(&server, None);
        let agent = AgentId::parse("17").unwrap();
        c.assign_agent("k", &ticket(), &agent).await.unwrap();
        c.assign_agent("k", &ticket(), &agent).await.unwrap();
        let patches = calls_to(&server, "/v2/servicedesk/tickets/1001").await;
        assert_eq!(
            patches.iter().map(bearer).collect::<Vec<_>>(),
            ["Bearer t1", "Bearer t2"],
            "a token 30 s from expiry is not used again"
        );
    }

    #[tokio::test]
    async fn a_token_refused_before_its_time_is_renewed_once_and_the_call_made_again() {
        let server = MockServer::start().await;
        login(&server, 3600).await;
        Mock::given(method("PATCH"))
            .and(header("authorization", "Bearer t1"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(header("authorization", "Bearer t2"))
            .respond_with(ok(json!({})))
            .expect(1)
            .mount(&server)
            .await;
        connector(&server, None)
            .assign_agent("k", &ticket(), &AgentId::parse("17").unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn success_false_inside_a_200_is_a_failure_with_bms_own_words() {
        let server = MockServer::start().await;
        login(&server, 3600).await;
        Mock::given(method("POST"))
            .and(path("/v2/servicedesk/tickets/1001/notes"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"Success": false,
                "Error": {"Code": 404, "Message": "Ticket 1001 does not exist"}, "Result": null})),
            )
            .mount(&server)
            .await;
        let e = connector(&server, None)
            .add_internal_note("k", &ticket(), "x")
            .await
            .unwrap_err();
        assert_eq!(
            e,
            ConnectorError::Rejected {
                status: 200,
                message: "Kaseya BMS refused the request: Ticket 1001 does not exist".into()
            }
        );
        assert!(!e.is_transient());
    }

    #[tokio::test]
    async fn a_refused_login_is_a_credentials_error() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/security/authenticate"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"Success": false,
                "Error": {"Message": "Invalid username or password"}})),
            )
            .mount(&server)
            .await;
        let e = connector(&server, None)
            .add_internal_note("k", &ticket(), "x")
            .await
            .unwrap_err();
        let ConnectorError::Unauthorized(m) = e else {
            panic!("{e:?}")
        };
        assert!(
            m.contains("Invalid username or password") && m.contains("company"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn a_status_by_name_is_looked_up_and_patched_as_its_id() {
        let server = MockServer::start().await;
        login(&server, 3600).await;
        Mock::given(method("GET"))
            .and(path("/v2/system/statuses/lookup"))
            .respond_with(ok(json!([{"Id": 1, "Name": "New", "IsActive": true},
                {"Id": 3, "Name": "Waiting Customer", "IsActive": true}])))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/v2/servicedesk/tickets/1001"))
            .and(body_json(
                json!([{"op": "replace", "path": "/StatusId", "value": 3}]),
            ))
            .respond_with(ok(json!({})))
            .expect(1)
            .mount(&server)
            .await;
        let c = connector(&server, None);
        c.set_ticket_status("k", &ticket(), "waiting customer")
            .await
            .unwrap();
        let e = c
            .set_ticket_status("k", &ticket(), "Frozen")
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("no status 'Frozen'; it has New, Waiting Customer"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_hourly_cap_is_kept_client_side_and_a_refused_call_never_leaves() {
        let server = MockServer::start().await;
        login(&server, 3600).await;
        Mock::given(method("PATCH"))
            .respond_with(ok(json!({})))
            .expect(2)
            .mount(&server)
            .await;
        let c = connector(&server, Some(2));
        let agent = AgentId::parse("17").unwrap();
        c.assign_agent("k", &ticket(), &agent).await.unwrap();
        c.assign_agent("k", &ticket(), &agent).await.unwrap();
        let e = c.assign_agent("k", &ticket(), &agent).await.unwrap_err();
        let wait = e.retry_after().expect("says how long");
        assert!(wait > Duration::from_secs(3590), "{wait:?}");
        assert!(e.is_transient());
        assert_eq!(
            calls_to(&server, "/v2/servicedesk/tickets/1001")
                .await
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn the_account_description_keeps_foreign_text_byte_for_byte() {
        let server = MockServer::start().await;
        login(&server, 3600).await;
        Mock::given(method("GET"))
            .and(path("/v2/crm/accounts/summary/42"))
            .respond_with(ok(
                json!({"Id": 42, "AccountName": "Northwind", "Description": FOREIGN}),
            ))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v2/crm/accounts/summary/42"))
            .respond_with(ok(json!({"Id": 42, "Description": WITH_BLOCK})))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/v2/crm/accounts/42"))
            .and(body_json(
                json!([{"op": "replace", "path": "/Description", "value": WITH_BLOCK}]),
            ))
            .respond_with(ok(json!({})))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/v2/crm/accounts/42"))
            .and(body_json(
                json!([{"op": "replace", "path": "/Description", "value": FOREIGN}]),
            ))
            .respond_with(ok(json!({})))
            .expect(1)
            .mount(&server)
            .await;
        let c = connector(&server, None);
        c.upsert_account_block("k", &account(), &block("Latest NPS: 3 (detractor)"))
            .await
            .unwrap();
        c.remove_account_block("k", &account()).await.unwrap();
    }

    #[tokio::test]
    async fn tags_are_unsupported_and_cost_no_call() {
        let server = MockServer::start().await;
        let e = connector(&server, None)
            .add_tag("k", &ticket(), "vip")
            .await
            .unwrap_err();
        assert_eq!(
            e,
            ConnectorError::Unsupported {
                vendor: "Kaseya BMS".into(),
                operation: HelpdeskOperation::AddTag
            }
        );
        assert!(server.received_requests().await.unwrap().is_empty());
    }
}

// ── ConnectWise PSA ──────────────────────────────────────────────────────────────────────────

mod connectwise {
    use super::*;

    fn connector(server: &MockServer) -> Arc<dyn HelpdeskConnector> {
        let settings = ConnectorSettings {
            company: Some("acme".into()),
            public_key: Some("pubKEY".into()),
            client_id: Some("0b7b5a8c-1111-2222-3333-444455556666".into()),
            ..Default::default()
        };
        build(
            &connectors(),
            config(
                ConnectorKind::Connectwise,
                &server.uri(),
                settings,
                "privKEY",
            ),
        )
    }

    /// Every call: Basic `company+public:private` and the `clientId` header.
    fn authed(m: wiremock::MockBuilder) -> wiremock::MockBuilder {
        m.and(header(
            "authorization",
            basic("acme+pubKEY:privKEY").as_str(),
        ))
        .and(header("clientid", "0b7b5a8c-1111-2222-3333-444455556666"))
    }

    const BASE: &str = "/v4_6_release/apis/3.0";

    #[tokio::test]
    async fn notes_carry_the_internal_or_discussion_flags() {
        let server = MockServer::start().await;
        authed(Mock::given(method("POST")).and(path(format!("{BASE}/service/tickets/1001/notes"))))
            .and(body_json(
                json!({"text": "Customer unhappy", "detailDescriptionFlag": false,
                "internalAnalysisFlag": true, "resolutionFlag": false}),
            ))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 5})))
            .expect(1)
            .mount(&server)
            .await;
        authed(Mock::given(method("POST")).and(path(format!("{BASE}/service/tickets/1001/notes"))))
            .and(body_json(json!({"text": "We are on it", "detailDescriptionFlag": true,
                "internalAnalysisFlag": false, "resolutionFlag": false, "processNotifications": true})))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 6})))
            .expect(1)
            .mount(&server)
            .await;
        let c = connector(&server);
        c.add_internal_note("k", &ticket(), "Customer unhappy")
            .await
            .unwrap();
        c.public_reply("k", &ticket(), "We are on it")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn changes_are_json_patch_on_the_ticket() {
        let server = MockServer::start().await;
        for patch in [
            json!([{"op": "replace", "path": "status", "value": {"name": "Waiting Customer"}}]),
            json!([{"op": "replace", "path": "type", "value": {"name": "Incident"}}]),
            json!([{"op": "replace", "path": "owner", "value": {"identifier": "jsmith"}}]),
            json!([{"op": "replace", "path": "status", "value": {"name": "Open"}}]),
        ] {
            authed(Mock::given(method("PATCH")).and(path(format!("{BASE}/service/tickets/1001"))))
                .and(body_json(patch))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 1001})))
                .expect(1)
                .mount(&server)
                .await;
        }
        let c = connector(&server);
        c.set_ticket_status("k", &ticket(), "Waiting Customer")
            .await
            .unwrap();
        c.change_ticket_type("k", &ticket(), "Incident")
            .await
            .unwrap();
        c.assign_agent("k", &ticket(), &AgentId::parse("jsmith").unwrap())
            .await
            .unwrap();
        assert_eq!(
            c.reopen_ticket("k", &ticket()).await.unwrap(),
            Reopened::Reopened
        );
    }

    #[tokio::test]
    async fn a_401_says_which_keys_to_check() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(401).set_body_json(json!({"code": "Unauthorized",
                "message": "Authentication failed"})),
            )
            .mount(&server)
            .await;
        let e = connector(&server)
            .add_internal_note("k", &ticket(), "x")
            .await
            .unwrap_err();
        assert_eq!(
            e,
            ConnectorError::Unauthorized(
                "401 from ConnectWise: check the public/private key pair and the company id (Authentication failed)".into()
            )
        );
    }

    #[tokio::test]
    async fn the_company_note_is_ours_or_created_and_foreign_notes_are_untouched() {
        let server = MockServer::start().await;
        // First: only a foreign note, so ours is created beside it.
        Mock::given(method("GET"))
            .and(path(format!("{BASE}/company/companies/42/notes")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"id": 1, "text": FOREIGN}])))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        authed(Mock::given(method("POST")).and(path(format!("{BASE}/company/companies/42/notes"))))
            .and(body_json(
                json!({"text": "[closedloop]\nLatest NPS: 3 (detractor)\n[/closedloop]"}),
            ))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 2})))
            .expect(1)
            .mount(&server)
            .await;
        // Then: someone wrote into our note; an update keeps their words.
        let edited = "Call first!\n[closedloop]\nLatest NPS: 3 (detractor)\n[/closedloop]";
        Mock::given(method("GET"))
            .and(path(format!("{BASE}/company/companies/42/notes")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"id": 1, "text": FOREIGN}, {"id": 2, "text": edited}])))
            .mount(&server)
            .await;
        authed(
            Mock::given(method("PATCH")).and(path(format!("{BASE}/company/companies/42/notes/2"))),
        )
        .and(body_json(json!([{"op": "replace", "path": "text",
                "value": "Call first!\n[closedloop]\nLatest NPS: 9 (promoter)\n[/closedloop]"}])))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 2})))
        .expect(1)
        .mount(&server)
        .await;
        authed(
            Mock::given(method("PATCH")).and(path(format!("{BASE}/company/companies/42/notes/2"))),
        )
        .and(body_json(
            json!([{"op": "replace", "path": "text", "value": "Call first!"}]),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 2})))
        .expect(1)
        .mount(&server)
        .await;
        let c = connector(&server);
        c.upsert_account_block("k", &account(), &block("Latest NPS: 3 (detractor)"))
            .await
            .unwrap();
        c.upsert_account_block("k", &account(), &block("Latest NPS: 9 (promoter)"))
            .await
            .unwrap();
        c.remove_account_block("k", &account()).await.unwrap();
        let touched_foreign = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .any(|r| r.url.path().ends_with("/notes/1"));
        assert!(!touched_foreign);
    }
}

// ── Autotask ─────────────────────────────────────────────────────────────────────────────────

mod autotask {
    use super::*;

    fn connector(lookup: &MockServer) -> Arc<dyn HelpdeskConnector> {
        let settings = ConnectorSettings {
            username: Some("api@msp.example".into()),
            integration_code: Some("ABCDEFGHIJKLMNOPQRSTUVWXYZ1".into()),
            ..Default::default()
        };
        build(
            &connectors(),
            config(
                ConnectorKind::Autotask,
                &format!("{}/atservicesrest", lookup.uri()),
                settings,
                "at-secret",
            ),
        )
    }

    /// The zone lookup answers with the zone server's URL.
    async fn zone(lookup: &MockServer, zone: &MockServer) {
        Mock::given(method("GET"))
            .and(path("/atservicesrest/v1.0/zoneInformation"))
            .and(query_param("user", "api@msp.example"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "zoneName": "Test", "url": format!("{}/atservicesrest/", zone.uri()), "ci": 1})))
            .expect(1)
            .mount(lookup)
            .await;
    }

    fn authed(m: wiremock::MockBuilder) -> wiremock::MockBuilder {
        m.and(header("apiintegrationcode", "ABCDEFGHIJKLMNOPQRSTUVWXYZ1"))
            .and(header("username", "api@msp.example"))
            .and(header("secret", "at-secret"))
    }

    #[tokio::test]
    async fn the_zone_is_looked_up_once_then_notes_and_updates_go_to_it() {
        let (lookup, zone_server) = (MockServer::start().await, MockServer::start().await);
        zone(&lookup, &zone_server).await;
        authed(Mock::given(method("POST")).and(path("/atservicesrest/v1.0/Tickets/1001/Notes")))
            .and(body_json(json!({"ticketID": 1001, "title": "closedloop",
                "description": "Customer unhappy", "noteType": 1, "publish": 2})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"itemId": 9})))
            .expect(1)
            .mount(&zone_server)
            .await;
        authed(Mock::given(method("GET")).and(path(
            "/atservicesrest/v1.0/Tickets/entityInformation/fields",
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"fields": [
                {"name": "status", "isPickList": true, "picklistValues": [
                    {"value": "1", "label": "New", "isActive": true},
                    {"value": "7", "label": "Waiting Customer", "isActive": true}]},
                {"name": "ticketType", "isPickList": true, "picklistValues": [
                    {"value": "1", "label": "Service Request", "isActive": true},
                    {"value": "2", "label": "Incident", "isActive": true}]}]})))
        .mount(&zone_server)
        .await;
        authed(Mock::given(method("PATCH")).and(path("/atservicesrest/v1.0/Tickets")))
            .and(body_json(json!({"id": 1001, "status": 7})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"itemId": 1001})))
            .expect(1)
            .mount(&zone_server)
            .await;
        authed(Mock::given(method("PATCH")).and(path("/atservicesrest/v1.0/Tickets")))
            .and(body_json(json!({"id": 1001, "ticketType": 2})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"itemId": 1001})))
            .expect(1)
            .mount(&zone_server)
            .await;
        let c = connector(&lookup);
        c.add_internal_note("k", &ticket(), "Customer unhappy")
            .await
            .unwrap();
        c.set_ticket_status("k", &ticket(), "Waiting Customer")
            .await
            .unwrap();
        c.change_ticket_type("k", &ticket(), "incident")
            .await
            .unwrap();
        assert_eq!(
            c.list_ticket_types().await.unwrap(),
            ["Service Request", "Incident"]
        );
    }

    #[tokio::test]
    async fn the_company_alert_changes_only_in_our_block() {
        let (lookup, zone_server) = (MockServer::start().await, MockServer::start().await);
        zone(&lookup, &zone_server).await;
        authed(Mock::given(method("POST")).and(path("/atservicesrest/v1.0/CompanyAlerts/query")))
            .and(body_json(json!({"filter": [
                {"op": "eq", "field": "companyID", "value": 42},
                {"op": "eq", "field": "alertTypeID", "value": 1}]})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": [
                {"id": 77, "companyID": 42, "alertTypeID": 1, "alertText": FOREIGN}]})))
            .mount(&zone_server)
            .await;
        authed(Mock::given(method("PATCH")).and(path("/atservicesrest/v1.0/CompanyAlerts")))
            .and(body_json(json!({"id": 77, "alertText": WITH_BLOCK})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"itemId": 77})))
            .expect(1)
            .mount(&zone_server)
            .await;
        connector(&lookup)
            .upsert_account_block("k", &account(), &block("Latest NPS: 3 (detractor)"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn tags_and_public_replies_are_unsupported_and_cost_no_call() {
        let lookup = MockServer::start().await;
        let c = connector(&lookup);
        assert!(matches!(
            c.public_reply("k", &ticket(), "x").await.unwrap_err(),
            ConnectorError::Unsupported { operation: HelpdeskOperation::PublicReply, ref vendor } if vendor == "Autotask"
        ));
        assert!(c.add_tag("k", &ticket(), "x").await.is_err());
        assert!(lookup.received_requests().await.unwrap().is_empty());
        assert!(!c.supports(HelpdeskOperation::AddTag));
    }
}

// ── HaloPSA ──────────────────────────────────────────────────────────────────────────────────

mod halopsa {
    use super::*;

    fn connector(server: &MockServer) -> Arc<dyn HelpdeskConnector> {
        let settings = ConnectorSettings {
            client_id: Some("halo-client".into()),
            tenant: Some("acme".into()),
            ..Default::default()
        };
        build(
            &connectors(),
            config(
                ConnectorKind::Halopsa,
                &server.uri(),
                settings,
                "halo-secret",
            ),
        )
    }

    async fn token(server: &MockServer, expires_in: u64) {
        fn hour(t: &str) -> Value {
            json!({"access_token": t, "token_type": "Bearer", "expires_in": 3600})
        }
        fn soon(t: &str) -> Value {
            json!({"access_token": t, "token_type": "Bearer", "expires_in": 30})
        }
        Mock::given(method("POST"))
            .and(path("/auth/token"))
            .and(query_param("tenant", "acme"))
            .and(FormIs(&[
                ("grant_type", "client_credentials"),
                ("client_id", "halo-client"),
                ("client_secret", "halo-secret"),
                ("scope", "all"),
            ]))
            .respond_with(Tokens {
                n: AtomicUsize::new(0),
                answer: if expires_in > 60 { hour } else { soon },
            })
            .mount(server)
            .await;
    }

    #[tokio::test]
    async fn a_private_note_is_an_action_and_an_expired_token_is_fetched_again() {
        let server = MockServer::start().await;
        token(&server, 30).await;
        Mock::given(method("POST"))
            .and(path("/api/Actions"))
            .and(body_json(
                json!([{"ticket_id": 1001, "note": "Customer unhappy",
                "hiddenfromuser": true, "outcome": "Private Note"}]),
            ))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
            .expect(2)
            .mount(&server)
            .await;
        let c = connector(&server);
        c.add_internal_note("k", &ticket(), "Customer unhappy")
            .await
            .unwrap();
        c.add_internal_note("k", &ticket(), "Customer unhappy")
            .await
            .unwrap();
        let actions = calls_to(&server, "/api/Actions").await;
        assert_eq!(
            actions.iter().map(bearer).collect::<Vec<_>>(),
            ["Bearer t1", "Bearer t2"]
        );
    }

    #[tokio::test]
    async fn ticket_updates_are_posted_with_the_ticket_id_and_one_token_serves_many_calls() {
        let server = MockServer::start().await;
        token(&server, 3600).await;
        Mock::given(method("GET"))
            .and(path("/api/Status"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"id": 1, "name": "New"}, {"id": 2, "name": "Open"}, {"id": 9, "name": "Closed"}])))
            .mount(&server)
            .await;
        for body in [
            json!([{"id": 1001, "status_id": 9}]),
            json!([{"id": 1001, "status_id": 2}]),
            json!([{"id": 1001, "agent_id": 5}]),
        ] {
            Mock::given(method("POST"))
                .and(path("/api/Tickets"))
                .and(header("authorization", "Bearer t1"))
                .and(body_json(body))
                .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1001})))
                .expect(1)
                .mount(&server)
                .await;
        }
        let c = connector(&server);
        c.set_ticket_status("k", &ticket(), "closed").await.unwrap();
        c.reopen_ticket("k", &ticket()).await.unwrap();
        c.assign_agent("k", &ticket(), &AgentId::parse("5").unwrap())
            .await
            .unwrap();
        assert_eq!(calls_to(&server, "/auth/token").await.len(), 1);
    }

    #[tokio::test]
    async fn a_bad_client_secret_is_a_clear_credentials_error() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/auth/token"))
            .respond_with(
                ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_client"})),
            )
            .mount(&server)
            .await;
        let e = connector(&server)
            .add_internal_note("k", &ticket(), "x")
            .await
            .unwrap_err();
        let ConnectorError::Unauthorized(m) = e else {
            panic!("{e:?}")
        };
        assert!(
            m.contains("invalid_client") && m.contains("client id and secret"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn client_notes_keep_foreign_text() {
        let server = MockServer::start().await;
        token(&server, 3600).await;
        Mock::given(method("GET"))
            .and(path("/api/Client/42"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": 42, "name": "Northwind", "notes": WITH_BLOCK})),
            )
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/Client"))
            .and(body_json(json!([{"id": 42, "notes": FOREIGN}])))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 42})))
            .expect(1)
            .mount(&server)
            .await;
        connector(&server)
            .remove_account_block("k", &account())
            .await
            .unwrap();
    }
}

// ── Zendesk ──────────────────────────────────────────────────────────────────────────────────

pub mod zendesk {
    use super::*;

    pub fn settings() -> ConnectorSettings {
        ConnectorSettings {
            email: Some("agent@acme.example".into()),
            ..Default::default()
        }
    }

    fn connector(server: &MockServer) -> Arc<dyn HelpdeskConnector> {
        build(
            &connectors(),
            config(
                ConnectorKind::Zendesk,
                &server.uri(),
                settings(),
                "zd-token",
            ),
        )
    }

    pub fn authed(m: wiremock::MockBuilder) -> wiremock::MockBuilder {
        m.and(header(
            "authorization",
            basic("agent@acme.example/token:zd-token").as_str(),
        ))
    }

    #[tokio::test]
    async fn a_private_comment_status_and_type_are_ticket_updates() {
        let server = MockServer::start().await;
        for body in [
            json!({"ticket": {"comment": {"body": "Customer unhappy", "public": false}}}),
            json!({"ticket": {"comment": {"body": "Sorry about that", "public": true}}}),
            json!({"ticket": {"status": "pending"}}),
            json!({"ticket": {"type": "incident"}}),
            json!({"ticket": {"assignee_id": 501}}),
        ] {
            authed(Mock::given(method("PUT")).and(path("/api/v2/tickets/1001.json")))
                .and(body_json(body))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(json!({"ticket": {"id": 1001}})),
                )
                .expect(1)
                .mount(&server)
                .await;
        }
        authed(Mock::given(method("PUT")).and(path("/api/v2/tickets/1001/tags.json")))
            .and(body_json(json!({"tags": ["vip"]})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tags": ["vip"]})))
            .expect(1)
            .mount(&server)
            .await;
        let c = connector(&server);
        c.add_internal_note("k", &ticket(), "Customer unhappy")
            .await
            .unwrap();
        c.public_reply("k", &ticket(), "Sorry about that")
            .await
            .unwrap();
        c.set_ticket_status("k", &ticket(), "Pending")
            .await
            .unwrap();
        c.change_ticket_type("k", &ticket(), "incident")
            .await
            .unwrap();
        c.assign_agent("k", &ticket(), &AgentId::parse("501").unwrap())
            .await
            .unwrap();
        c.add_tag("k", &ticket(), "vip").await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_ticket_gets_a_follow_up_and_the_reopen_says_so() {
        let server = MockServer::start().await;
        authed(Mock::given(method("GET")).and(path("/api/v2/tickets/1001.json")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": {
                "id": 1001, "status": "closed", "subject": "Printer jams", "requester_id": 88}})))
            .mount(&server)
            .await;
        authed(Mock::given(method("POST")).and(path("/api/v2/tickets.json")))
            .and(body_json(json!({"ticket": {"via_followup_source_id": 1001,
                "subject": "Follow-up: Printer jams",
                "comment": {"body": "Reopened by closedloop: ticket #1001 is closed, so this follow-up continues it.", "public": false},
                "requester_id": 88}})))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": 2002}})))
            .expect(1)
            .mount(&server)
            .await;
        let outcome = connector(&server)
            .reopen_ticket("k", &ticket())
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Reopened::FollowUpCreated {
                ticket_id: TicketId::parse("2002").unwrap()
            }
        );
        // Nothing tried to update the closed ticket.
        assert!(
            server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .all(|r| r.method.as_str() != "PUT")
        );
    }

    #[tokio::test]
    async fn a_solved_ticket_is_simply_reopened() {
        let server = MockServer::start().await;
        authed(Mock::given(method("GET")).and(path("/api/v2/tickets/1001.json")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"ticket": {"id": 1001, "status": "solved"}})),
            )
            .mount(&server)
            .await;
        authed(Mock::given(method("PUT")).and(path("/api/v2/tickets/1001.json")))
            .and(body_json(json!({"ticket": {"status": "open"}})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": {"id": 1001}})))
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(
            connector(&server)
                .reopen_ticket("k", &ticket())
                .await
                .unwrap(),
            Reopened::Reopened
        );
    }

    #[tokio::test]
    async fn organization_notes_are_read_changed_in_our_block_and_written_back() {
        let server = MockServer::start().await;
        authed(Mock::given(method("GET")).and(path("/api/v2/organizations/42.json")))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"organization": {
                "id": 42, "name": "Northwind", "notes": FOREIGN, "details": "untouched"}})),
            )
            .mount(&server)
            .await;
        authed(Mock::given(method("PUT")).and(path("/api/v2/organizations/42.json")))
            .and(body_json(json!({"organization": {"notes": WITH_BLOCK}})))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"organization": {"id": 42}})),
            )
            .expect(1)
            .mount(&server)
            .await;
        connector(&server)
            .upsert_account_block("k", &account(), &block("Latest NPS: 3 (detractor)"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_rate_headers_saying_none_left_hold_the_next_call_back() {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("X-Rate-Limit", "700")
                    .insert_header("X-Rate-Limit-Remaining", "0")
                    .insert_header("ratelimit-reset", "30")
                    .set_body_json(json!({"ticket": {"id": 1001}})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let c = connector(&server);
        c.set_ticket_status("k", &ticket(), "open").await.unwrap();
        let e = c
            .set_ticket_status("k", &ticket(), "open")
            .await
            .unwrap_err();
        let wait = e.retry_after().unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }

    #[tokio::test]
    async fn fetch_reads_the_requester_from_the_sideloaded_users() {
        let server = MockServer::start().await;
        authed(Mock::given(method("GET")).and(path("/api/v2/tickets/1001.json")).and(query_param("include", "users")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ticket": {"id": 1001, "subject": "Printer jams", "status": "open", "requester_id": 88,
                    "organization_id": 42, "type": "incident", "tags": ["vip"],
                    "updated_at": "2026-11-23T10:00:00Z"},
                "users": [{"id": 5, "name": "Agent", "email": "agent@acme.example"},
                    {"id": 88, "name": "Bob Stone", "email": "bob@northwind.example"}]})))
            .mount(&server)
            .await;
        let t = connector(&server).fetch_ticket(&ticket()).await.unwrap();
        assert_eq!(t.contact.email.as_str(), "bob@northwind.example");
        assert_eq!(t.contact.account.unwrap().id.as_str(), "42");
        assert_eq!(
            (t.status.as_str(), t.tags),
            ("open", vec!["vip".to_string()])
        );
    }
}

// ── Freshdesk ────────────────────────────────────────────────────────────────────────────────

mod freshdesk {
    use super::*;

    fn connector(server: &MockServer) -> Arc<dyn HelpdeskConnector> {
        build(
            &connectors(),
            config(
                ConnectorKind::Freshdesk,
                &server.uri(),
                ConnectorSettings::default(),
                "fd-api-key",
            ),
        )
    }

    fn authed(m: wiremock::MockBuilder) -> wiremock::MockBuilder {
        m.and(header("authorization", basic("fd-api-key:X").as_str()))
    }

    #[tokio::test]
    async fn private_notes_replies_and_ticket_updates() {
        let server = MockServer::start().await;
        authed(Mock::given(method("POST")).and(path("/api/v2/tickets/1001/notes")))
            .and(body_json(
                json!({"body": "Customer unhappy", "private": true}),
            ))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
            .expect(1)
            .mount(&server)
            .await;
        authed(Mock::given(method("POST")).and(path("/api/v2/tickets/1001/reply")))
            .and(body_json(json!({"body": "Sorry about that"})))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 2})))
            .expect(1)
            .mount(&server)
            .await;
        for body in [
            json!({"status": 3}),
            json!({"status": 2}),
            json!({"type": "Incident"}),
            json!({"responder_id": 77}),
            json!({"tags": ["billing", "vip"]}),
        ] {
            authed(Mock::given(method("PUT")).and(path("/api/v2/tickets/1001")))
                .and(body_json(body))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 1001})))
                .expect(1)
                .mount(&server)
                .await;
        }
        authed(Mock::given(method("GET")).and(path("/api/v2/tickets/1001")))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"id": 1001, "tags": ["billing"]})),
            )
            .mount(&server)
            .await;
        let c = connector(&server);
        c.add_internal_note("k", &ticket(), "Customer unhappy")
            .await
            .unwrap();
        c.public_reply("k", &ticket(), "Sorry about that")
            .await
            .unwrap();
        c.set_ticket_status("k", &ticket(), "pending")
            .await
            .unwrap();
        c.reopen_ticket("k", &ticket()).await.unwrap();
        c.change_ticket_type("k", &ticket(), "Incident")
            .await
            .unwrap();
        c.assign_agent("k", &ticket(), &AgentId::parse("77").unwrap())
            .await
            .unwrap();
        // Tags on an update replace them all: the current ones are kept.
        c.add_tag("k", &ticket(), "vip").await.unwrap();
        c.add_tag("k", &ticket(), "Billing").await.unwrap();
    }

    #[tokio::test]
    async fn note_and_reply_bodies_are_sent_as_html_with_customer_markup_escaped() {
        let server = MockServer::start().await;
        authed(Mock::given(method("POST")).and(path("/api/v2/tickets/1001/notes")))
            .and(body_json(json!({
                "body": "Bob said:<br>&lt;img src=x onerror=alert(1)&gt; &amp; more",
                "private": true
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
            .expect(1)
            .mount(&server)
            .await;
        authed(Mock::given(method("POST")).and(path("/api/v2/tickets/1001/reply")))
            .and(body_json(json!({"body": "&lt;script&gt;x&lt;/script&gt;"})))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 2})))
            .expect(1)
            .mount(&server)
            .await;
        let c = connector(&server);
        c.add_internal_note(
            "k",
            &ticket(),
            "Bob said:\n<img src=x onerror=alert(1)> & more",
        )
        .await
        .unwrap();
        c.public_reply("k", &ticket(), "<script>x</script>")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_follow_up_ticket_is_created_for_the_customer() {
        let server = MockServer::start().await;
        authed(Mock::given(method("POST")).and(path("/api/v2/tickets")))
            .and(body_json(
                json!({"subject": "Follow up", "description": "Call Bob",
                "email": "bob@northwind.example", "name": "Bob Stone", "status": 2, "priority": 1}),
            ))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 3003})))
            .expect(1)
            .mount(&server)
            .await;
        let id = connector(&server)
            .create_ticket(
                "k",
                &NewTicket {
                    subject: "Follow up".into(),
                    body: "Call Bob".into(),
                    requester: Some(closedloop_core::helpdesk::Requester {
                        name: "Bob Stone".into(),
                        email: closedloop_core::domain::Email::parse("bob@northwind.example")
                            .unwrap(),
                    }),
                    related_ticket_id: Some(ticket()),
                },
            )
            .await
            .unwrap();
        assert_eq!(id.as_str(), "3003");
    }

    #[tokio::test]
    async fn the_company_note_round_trips_and_validation_errors_say_the_field() {
        let server = MockServer::start().await;
        authed(Mock::given(method("GET")).and(path("/api/v2/companies/42")))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"id": 42, "note": FOREIGN})),
            )
            .mount(&server)
            .await;
        authed(Mock::given(method("PUT")).and(path("/api/v2/companies/42")))
            .and(body_json(json!({"note": WITH_BLOCK})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 42})))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path("/api/v2/tickets/1001"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"description": "Validation failed",
                "errors": [{"field": "type", "message": "It should be one of these values: 'Question,Incident'", "code": "invalid_value"}]})))
            .mount(&server)
            .await;
        let c = connector(&server);
        c.upsert_account_block("k", &account(), &block("Latest NPS: 3 (detractor)"))
            .await
            .unwrap();
        let e = c
            .change_ticket_type("k", &ticket(), "Rant")
            .await
            .unwrap_err();
        assert_eq!(
            e,
            ConnectorError::Rejected {
                status: 400,
                message:
                    "Validation failed: type: It should be one of these values: 'Question,Incident'"
                        .into()
            }
        );
        assert!(!e.is_transient());
    }

    #[tokio::test]
    async fn a_secret_never_appears_in_debug_output_or_errors() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_string("bad key"))
            .mount(&server)
            .await;
        let c = Connectors::new(http_client(Duration::from_secs(2)));
        let built = c.build(
            &tenant(),
            config(
                ConnectorKind::Freshdesk,
                &server.uri(),
                Default::default(),
                "fd-api-key",
            ),
        );
        let e = built
            .add_internal_note("k", &ticket(), "x")
            .await
            .unwrap_err();
        assert_eq!(
            e,
            ConnectorError::Unauthorized(
                "401 from Freshdesk: check the API key (Profile settings > Your API Key) (bad key)"
                    .into()
            )
        );
        assert!(!format!("{e:?}{e}").contains("fd-api-key"));
        let cfg = config(
            ConnectorKind::Freshdesk,
            &server.uri(),
            Default::default(),
            "fd-api-key",
        );
        assert!(!format!("{cfg:?}").contains("fd-api-key"));
    }
}

// ── Through the actions executor ─────────────────────────────────────────────────────────────

mod executor {
    use super::*;
    use closedloop_connectors::{HttpWebhookSender, StoreConnectorDirectory};
    use closedloop_core::actions::{ActionOutcome, Executor, RetryPolicy};
    use closedloop_core::automation::ActionRequest;
    use closedloop_core::domain::{Contact, Email, TenantSettings, TicketSnapshot};
    use closedloop_core::event::{EventEnvelope, EventType};
    use closedloop_core::ids::{ContactId, RuleId};
    use closedloop_core::ports::SystemClock;
    use closedloop_core::records::record_item;
    use closedloop_core::rules::Action;
    use closedloop_core::store::ItemStore;
    use closedloop_core::{helpdesk, keys, tenancy};
    use closedloop_embedded::JournalStore;
    use closedloop_embedded::outbox_mailer::OutboxMailer;

    struct World {
        store: Arc<dyn ItemStore>,
        directory: StoreConnectorDirectory,
        mailer: OutboxMailer,
        webhooks: HttpWebhookSender,
        server: MockServer,
    }

    /// A tenant whose helpdesk is Zendesk at a local server, with ticket 1001 stored.
    async fn world() -> World {
        let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
        let now = chrono::Utc::now();
        tenancy::provision_tenant(
            store.as_ref(),
            tenant(),
            "Acme",
            TenantSettings::default(),
            now,
        )
        .await
        .unwrap();
        let t = TicketSnapshot {
            id: ticket(),
            subject: "Printer jams".into(),
            status: "solved".into(),
            agent: None,
            contact: Contact {
                id: ContactId::parse("c-bob").unwrap(),
                name: "Bob Stone".into(),
                email: Email::parse("bob@northwind.example").unwrap(),
                account: None,
            },
            channel: None,
            url: None,
            tags: vec![],
            ticket_type: None,
            inbox: None,
            inbox_group: None,
            integration: None,
            created_at: None,
            last_customer_message_at: None,
            answered: None,
            updated_at: now,
        };
        store
            .put(
                record_item(&keys::ticket(&tenant(), &t.id), "ticket", &t),
                None,
            )
            .await
            .unwrap();
        let server = MockServer::start().await;
        helpdesk::put_config(
            store.as_ref(),
            &tenant(),
            ConnectorKind::Zendesk,
            &server.uri(),
            zendesk::settings(),
            Some("zd-token"),
            now,
        )
        .await
        .unwrap();
        let http = http_client(Duration::from_secs(2));
        let dir = std::env::temp_dir().join(format!("closedloop-vendors-{}", ulid_like()));
        World {
            directory: StoreConnectorDirectory::new(store.clone(), http.clone()),
            mailer: OutboxMailer::new(&dir, "feedback@acme.example").unwrap(),
            webhooks: HttpWebhookSender::new(http),
            store,
            server,
        }
    }

    fn ulid_like() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    impl World {
        async fn run(&self, action: Value) -> ActionOutcome {
            let cause = EventEnvelope::new_root(
                tenant(),
                EventType::TicketClosed,
                chrono::Utc::now(),
                json!({"ticket": {"id": "1001"}, "source": "zendesk"}),
            );
            let request = ActionRequest {
                rule_id: RuleId::new(),
                rule_name: "Follow up".into(),
                action_index: 0,
                action: serde_json::from_value::<Action>(action).unwrap(),
                cause: cause.clone(),
            };
            let event = cause.caused(
                EventType::ActionRequested,
                chrono::Utc::now(),
                Some(request.rule_id),
                serde_json::to_value(&request).unwrap(),
            );
            Executor {
                store: self.store.as_ref(),
                mailer: &self.mailer,
                connectors: &self.directory,
                webhooks: &self.webhooks,
                clock: &SystemClock,
                // Milliseconds, three calls at most.
                retry: RetryPolicy {
                    max_attempts: 3,
                    base_delay: Duration::from_millis(10),
                    max_delay: Duration::from_millis(40),
                    max_retry_after: Duration::from_secs(3),
                    budget: Duration::from_secs(10),
                },
            }
            .execute(&event)
            .await
            .unwrap()
        }
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_waited_out_then_the_note_is_made() {
        let w = world().await;
        Mock::given(method("PUT"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&w.server)
            .await;
        zendesk::authed(Mock::given(method("PUT")).and(path("/api/v2/tickets/1001.json")))
            .and(body_json(
                json!({"ticket": {"comment": {"body": "Call Bob", "public": false}}}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": {"id": 1001}})))
            .expect(1)
            .mount(&w.server)
            .await;
        let started = Instant::now();
        let outcome = w
            .run(json!({"type": "add_internal_note", "body": "Call Bob"}))
            .await;
        assert!(matches!(outcome, ActionOutcome::Done { .. }), "{outcome:?}");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(w.server.received_requests().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn three_500s_end_in_a_dead_letter_with_zendesks_words() {
        let w = world().await;
        Mock::given(method("PUT"))
            .respond_with(
                ResponseTemplate::new(500).set_body_json(json!({"error": "InternalError",
                "description": "Something went wrong"})),
            )
            .mount(&w.server)
            .await;
        let outcome = w
            .run(json!({"type": "set_ticket_status", "status": "pending"}))
            .await;
        let ActionOutcome::Failed {
            attempts, error, ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(attempts, 3);
        assert_eq!(
            error,
            "the helpdesk is unavailable: Zendesk answered 500: Something went wrong"
        );
        assert_eq!(w.server.received_requests().await.unwrap().len(), 3);
        let failed = closedloop_core::actions::list_failed(w.store.as_ref(), &tenant(), 10, None)
            .await
            .unwrap();
        assert!(failed[0].retryable);
        assert!(!failed[0].redacted().to_string().contains("zd-token"));
    }

    #[tokio::test]
    async fn a_401_fails_at_once_with_what_to_check() {
        let w = world().await;
        Mock::given(method("PUT"))
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(json!({"error": "Couldn't authenticate you"})),
            )
            .mount(&w.server)
            .await;
        let outcome = w
            .run(json!({"type": "add_internal_note", "body": "x"}))
            .await;
        let ActionOutcome::Failed {
            attempts, error, ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(attempts, 1);
        assert_eq!(
            error,
            "the helpdesk refused our credentials: 401 from Zendesk: check the agent's email address and API token (or the OAuth token) (Couldn't authenticate you)"
        );
    }

    #[tokio::test]
    async fn a_reopen_of_a_closed_ticket_is_done_as_a_follow_up_and_the_audit_says_so() {
        let w = world().await;
        Mock::given(method("GET"))
            .and(path("/api/v2/tickets/1001.json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": {
                "id": 1001, "status": "closed", "subject": "Printer jams", "requester_id": 88}})))
            .mount(&w.server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/v2/tickets.json"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": 2002}})))
            .expect(1)
            .mount(&w.server)
            .await;
        let outcome = w.run(json!({"type": "reopen_ticket"})).await;
        assert_eq!(outcome, ActionOutcome::Done {
            detail: "ticket 1001 is closed for good in Zendesk, so follow-up ticket 2002 was created".into()
        });
    }

    #[tokio::test]
    async fn an_unsupported_operation_fails_without_a_call_naming_the_vendor() {
        let w = world().await;
        helpdesk::put_config(
            w.store.as_ref(),
            &tenant(),
            ConnectorKind::Autotask,
            "",
            ConnectorSettings {
                username: Some("u@x.example".into()),
                integration_code: Some("CODE".into()),
                ..Default::default()
            },
            Some("secret"),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        let outcome = w.run(json!({"type": "add_ticket_tag", "tag": "vip"})).await;
        let ActionOutcome::Failed {
            attempts, error, ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!((attempts, error.as_str()), (1, "Autotask cannot add_tag"));
    }
}
