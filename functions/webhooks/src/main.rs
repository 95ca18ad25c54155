use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use webhooks::{WebhooksState, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    closedloop_http::run_on_lambda(router(WebhooksState {
        store: aws.store,
        clock: aws.clock,
    }))
    .await
}
