//! The deliver function on Lambda, fed by the SQS delivery queue.

use hookline_aws::emf::Metrics;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let metrics = Metrics::install("deliver")?;
    let service = hookline_aws::env::lambda_service().await?;
    let service = &service;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        let response = hookline_fn_deliver::handle(service, event).await;
        metrics.flush();
        response
    }))
    .await
}
