use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    let aws = &aws;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            actions::handle(
                aws.store.as_ref(),
                aws.mailer.as_ref(),
                aws.clock.as_ref(),
                &event.payload,
            )
            .await?;
            Ok::<_, lambda_runtime::Error>(())
        },
    ))
    .await
}
