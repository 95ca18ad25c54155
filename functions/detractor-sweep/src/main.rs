use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use closedloop_connectors::{CALL_TIMEOUT, StoreConnectorDirectory, http_client};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    let connectors = StoreConnectorDirectory::new(aws.store.clone(), http_client(CALL_TIMEOUT));
    let (aws, connectors) = (&aws, &connectors);
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let summary = detractor_sweep::handle(
                aws.store.as_ref(),
                connectors,
                aws.mailer.as_ref(),
                aws.clock.as_ref(),
            )
            .await?;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(&summary)?)
        },
    ))
    .await
}
