use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use lambda_runtime::{LambdaEvent, service_fn};
use rules::RuleCache;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    let cache = RuleCache::default();
    let (aws, cache) = (&aws, &cache);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            rules::handle(
                aws.store.as_ref(),
                aws.clock.as_ref(),
                cache,
                &event.payload,
            )
            .await?;
            Ok::<_, lambda_runtime::Error>(())
        },
    ))
    .await
}
