use std::sync::Arc;

use admin_api::{AdminState, router};
use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use closedloop_connectors::{CALL_TIMEOUT, StoreConnectorDirectory, http_client};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    // One HTTP client per cold start: connection tests and a case's reply go through it.
    let connectors = StoreConnectorDirectory::new(aws.store.clone(), http_client(CALL_TIMEOUT));
    closedloop_http::run_on_lambda(router(AdminState {
        store: aws.store,
        clock: aws.clock,
        // Nothing else in this process reads settings through a cache.
        settings: Default::default(),
        connectors: Arc::new(connectors),
    }))
    .await
}
