//! The retry function on Lambda, invoked by EventBridge Scheduler.

use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let service = hookline_aws::env::lambda_service().await?;
    let service = &service;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        hookline_fn_retry::handle(service, event)
    }))
    .await
}
