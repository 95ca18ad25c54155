use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use closedloop_core::outbox::StreamEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    let publisher = aws.publisher;
    lambda_runtime::run(service_fn(|event: LambdaEvent<StreamEvent>| {
        let publisher = publisher.clone();
        async move {
            Ok::<_, lambda_runtime::Error>(
                event_relay::handle(publisher.as_ref(), event.payload).await,
            )
        }
    }))
    .await
}
