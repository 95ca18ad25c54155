use closedloop_aws::runtime::{AwsAdapters, init_tracing};
use closedloop_core::surveys::LinkSigner;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let aws = AwsAdapters::from_env().await?;
    let public_base_url = aws.config.require_public_base_url()?.to_string();
    let (aws, public_base_url) = (&aws, &public_base_url);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let links = LinkSigner {
                keyring: &aws.config.token_keys,
                public_base_url,
            };
            survey_scheduler::handle(
                aws.store.as_ref(),
                aws.mailer.as_ref(),
                aws.clock.as_ref(),
                &links,
                &event.payload,
            )
            .await?;
            Ok::<_, lambda_runtime::Error>(())
        },
    ))
    .await
}
