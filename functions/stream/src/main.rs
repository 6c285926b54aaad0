//! The stream function on Lambda, invoked by the table's stream (template.yaml).

use hookline_aws::DynamoStore;
use hookline_aws::store::Counting;
use hookline_service::{Config, Mode};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(Mode::Lambda)?;
    let table = std::env::var("HOOKLINE_TABLE").map_err(|_| "HOOKLINE_TABLE is not set")?;
    let aws = aws_config::load_from_env().await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        table,
        config.log_retention_days,
    )
    .with_counting(Counting::FromStream);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        let folded = hookline_fn_stream::handle(store, event).await?;
        tracing::info!(?folded, "stream batch folded");
        Ok::<_, Error>(())
    }))
    .await
}
