//! Every Lambda function's handler, linked into one process on the embedded adapters and
//! addressed by its logical id in `template.yaml`.

use std::sync::Arc;

use axum::Router;
use closedloop_core::actions::{Executor, RetryPolicy};
use closedloop_core::helpdesk::{ConnectorDirectory, WebhookSender};
use closedloop_core::ports::{Clock, EventPublisher, Mailer};
use closedloop_core::store::ItemStore;
use closedloop_core::surveys::LinkSigner;
use closedloop_core::tenancy::SettingsCache;
use closedloop_core::tokens::TokenKeyring;

pub const RATING_LINK: &str = "RatingLinkFunction";
pub const WEBHOOKS: &str = "WebhooksFunction";
pub const ADMIN_API: &str = "AdminApiFunction";
pub const EVENT_RELAY: &str = "EventRelayFunction";
pub const RULES: &str = "RulesFunction";
pub const ACTIONS: &str = "ActionsFunction";
pub const SURVEY_SCHEDULER: &str = "SurveySchedulerFunction";
pub const SLA_SWEEP: &str = "SlaSweepFunction";
pub const DETRACTOR_SWEEP: &str = "DetractorSweepFunction";

pub struct Functions {
    pub store: Arc<dyn ItemStore>,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
    pub keyring: Arc<TokenKeyring>,
    pub public_base_url: String,
    pub rule_cache: rules::RuleCache,
    /// The tenants' helpdesk connectors and the sender of rules' webhooks (real HTTP).
    pub connectors: Arc<dyn ConnectorDirectory>,
    pub webhooks: Arc<dyn WebhookSender>,
    pub action_retry: RetryPolicy,
    /// Shared by the rating links (which read settings on every click) and the admin API
    /// (which forgets a tenant's entry when it saves them).
    pub settings_cache: Arc<SettingsCache>,
}

impl Functions {
    /// The axum Router of an HTTP function.
    pub fn http_router(&self, logical_id: &str) -> Option<Router> {
        Some(match logical_id {
            RATING_LINK => rating_link::router(rating_link::RatingLinkState {
                store: self.store.clone(),
                clock: self.clock.clone(),
                keyring: self.keyring.clone(),
                settings: self.settings_cache.clone(),
            }),
            WEBHOOKS => webhooks::router(webhooks::WebhooksState {
                store: self.store.clone(),
                clock: self.clock.clone(),
            }),
            ADMIN_API => admin_api::router(admin_api::AdminState {
                store: self.store.clone(),
                clock: self.clock.clone(),
                settings: self.settings_cache.clone(),
                connectors: self.connectors.clone(),
            }),
            _ => return None,
        })
    }

    /// Invokes an event-driven function as Lambda would, with the event's JSON.
    pub async fn invoke_event(
        &self,
        logical_id: &str,
        event: serde_json::Value,
    ) -> Result<(), String> {
        let store = self.store.as_ref();
        let clock = self.clock.as_ref();
        match logical_id {
            RULES => rules::handle(store, clock, &self.rule_cache, &event)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            ACTIONS => {
                let executor = Executor {
                    store,
                    mailer: self.mailer.as_ref(),
                    connectors: self.connectors.as_ref(),
                    webhooks: self.webhooks.as_ref(),
                    clock,
                    retry: self.action_retry,
                };
                actions::handle(&executor, &event)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            SURVEY_SCHEDULER => {
                let links = LinkSigner {
                    keyring: &self.keyring,
                    public_base_url: &self.public_base_url,
                };
                survey_scheduler::handle(store, self.mailer.as_ref(), clock, &links, &event)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            SLA_SWEEP => sla_sweep::handle(store, clock)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            DETRACTOR_SWEEP => detractor_sweep::handle(
                store,
                self.connectors.as_ref(),
                self.mailer.as_ref(),
                clock,
            )
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
            other => Err(format!(
                "{other} is not an event-driven function of this runner"
            )),
        }
    }

    /// Invokes `event-relay` with a DynamoDB stream event; returns the failed sequence numbers.
    pub async fn invoke_relay(
        &self,
        publisher: &dyn EventPublisher,
        event: closedloop_core::outbox::StreamEvent,
    ) -> Vec<String> {
        event_relay::handle(publisher, event)
            .await
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }
}
