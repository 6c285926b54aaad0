//! The deliver function on Lambda, fed by the SQS delivery queue and the FIFO queue of
//! ordered webhooks.

use hookline_aws::emf::Metrics;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let metrics = Metrics::install("deliver")?;
    // Webhooks and accounts kept 5 s: a delivery reads its own item and its event only.
    let (service, queue) =
        hookline_aws::env::lambda_service_and_queue(Some(Duration::from_secs(5))).await?;
    let (service, queue) = (&service, &queue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        let response = hookline_fn_deliver::handle_with_lanes(service, Some(queue), event).await;
        metrics.flush();
        response
    }))
    .await
}
