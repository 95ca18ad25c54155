use std::sync::Arc;

use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use rating_link::{RatingLinkState, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    let state = RatingLinkState {
        store: aws.store,
        clock: aws.clock,
        keyring: Arc::new(aws.config.token_keys),
        // Per Lambda instance: a settings change reaches it within SETTINGS_TTL.
        settings: Default::default(),
    };
    closedloop_http::run_on_lambda(router(state)).await
}
