use std::sync::Arc;

use admin_api::{AdminState, router};
use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use closedloop_connectors::{CALL_TIMEOUT, StoreConnectorDirectory, http_client};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    // One HTTP client per cold start, for a case's reply through the tenant's helpdesk.
    let connectors = StoreConnectorDirectory::new(aws.store.clone(), http_client(CALL_TIMEOUT));
    closedloop_http::run_on_lambda(router(AdminState {
        store: aws.store,
        clock: aws.clock,
        connectors: Arc::new(connectors),
    }))
    .await
}
