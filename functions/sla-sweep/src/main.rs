use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    let aws = &aws;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let report = sla_sweep::handle(aws.store.as_ref(), aws.clock.as_ref()).await?;
            Ok::<_, lambda_runtime::Error>(
                serde_json::json!({ "items_read": report.items_read, "changed": report.changed }),
            )
        },
    ))
    .await
}
