use admin_api::{AdminState, router};
use closedloop_aws::runtime::{AwsAdapters, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    let connectors = closedloop_connectors::StoreConnectorDirectory::new(
        aws.store.clone(),
        closedloop_connectors::http_client(closedloop_connectors::CALL_TIMEOUT),
    );
    closedloop_http::run_on_lambda(router(AdminState {
        store: aws.store,
        clock: aws.clock,
        // Nothing else in this process reads settings through a cache.
        settings: Default::default(),
        connectors: std::sync::Arc::new(connectors),
    }))
    .await
}
