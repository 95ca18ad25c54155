//! What every Lambda `main` does once per cold start: logging, configuration, clients.

use std::sync::Arc;

use closedloop_core::ports::{Clock, EventPublisher, Mailer, SystemClock};
use closedloop_core::store::ItemStore;

use crate::config::{ConfigError, FunctionConfig, sdk_config};
use crate::events::EventBridgePublisher;
use crate::mail::SesMailer;
use crate::store::DynamoStore;

/// JSON logs for CloudWatch; level from `RUST_LOG`. Never log secrets.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();
}

/// The production adapters, built from one shared SDK configuration.
#[derive(Clone)]
pub struct AwsAdapters {
    pub config: FunctionConfig,
    pub store: Arc<dyn ItemStore>,
    pub publisher: Arc<dyn EventPublisher>,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
}

impl AwsAdapters {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = FunctionConfig::from_env()?;
        let sdk = sdk_config().await;
        Ok(AwsAdapters {
            store: Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                config.table_name.clone(),
            )),
            publisher: Arc::new(EventBridgePublisher::new(
                aws_sdk_eventbridge::Client::new(&sdk),
                config.event_bus_name.clone(),
            )),
            mailer: Arc::new(SesMailer::new(
                aws_sdk_sesv2::Client::new(&sdk),
                config.mail_from.clone(),
            )),
            clock: Arc::new(SystemClock),
            config,
        })
    }
}
