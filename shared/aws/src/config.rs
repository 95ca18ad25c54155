//! Configuration of a Lambda function, from its environment (set by template.yaml).

use closedloop_core::tokens::{KeyringError, TokenKeyring};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error(transparent)]
    Keys(#[from] KeyringError),
}

/// Everything a function reads from its environment. Build it once per cold start.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    pub table_name: String,
    pub event_bus_name: String,
    pub mail_from: String,
    /// Where customer links point. Only functions that build links need it; the HTTP functions
    /// get it empty from the template (the API cannot reference itself).
    pub public_base_url: Option<String>,
    pub token_keys: TokenKeyring,
}

fn var(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing(name))
}

impl FunctionConfig {
    /// The public base URL, for functions that cannot work without it.
    pub fn require_public_base_url(&self) -> Result<&str, ConfigError> {
        self.public_base_url
            .as_deref()
            .ok_or(ConfigError::Missing("PUBLIC_BASE_URL"))
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(FunctionConfig {
            table_name: var("TABLE_NAME")?,
            event_bus_name: var("EVENT_BUS_NAME")?,
            mail_from: var("MAIL_FROM")?,
            public_base_url: var("PUBLIC_BASE_URL").ok(),
            token_keys: TokenKeyring::parse(&var("TOKEN_KEYS")?)?,
        })
    }
}

/// The shared SDK configuration: region, credentials, and `AWS_ENDPOINT_URL` (emulators) from
/// the environment. Load it once per cold start and build every client from it.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
