use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use closedloop_connectors::{
    CALL_TIMEOUT, HttpWebhookSender, StoreConnectorDirectory, http_client,
};
use closedloop_core::actions::{Executor, RetryPolicy};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    // One HTTP client per cold start: its connection pool serves every invocation.
    let http = http_client(CALL_TIMEOUT);
    let connectors = StoreConnectorDirectory::new(aws.store.clone(), http.clone());
    let webhooks = HttpWebhookSender::new(http);
    let executor = Executor {
        store: aws.store.as_ref(),
        mailer: aws.mailer.as_ref(),
        connectors: &connectors,
        webhooks: &webhooks,
        clock: aws.clock.as_ref(),
        retry: RetryPolicy::default(),
    };
    let executor = &executor;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            actions::handle(executor, &event.payload).await?;
            Ok::<_, lambda_runtime::Error>(())
        },
    ))
    .await
}
