//! The stream function on Lambda, invoked by the table's stream (template.yaml).

use hookline_service::{Config, FanOutQueue, Mode, Queue};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(Mode::Lambda)?;
    let table = std::env::var("HOOKLINE_TABLE").map_err(|_| "HOOKLINE_TABLE is not set")?;
    let aws = aws_config::load_from_env().await;
    // Laid out as the table records: a planned fan-out's deliveries are looked for, and
    // stored, under the keys publish used.
    let store =
        hookline_aws::env::lambda_store(aws_sdk_dynamodb::Client::new(&aws), table, &config)
            .await?;
    // It queues new deliveries when publish leaves that to it (an ordered webhook's to the
    // FIFO queue, as every function sends them).
    let queue = match config.fan_out_queue {
        FanOutQueue::Stream => Some(hookline_aws::env::lambda_queue(
            aws_sdk_sqs::Client::new(&aws),
            |name| std::env::var(name).ok(),
        )?),
        FanOutQueue::Api => None,
    };
    let (store, queue) = (&store, queue.as_ref().map(|q| q as &dyn Queue));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        let folded = hookline_fn_stream::handle(store, queue, event).await?;
        tracing::info!(?folded, "stream batch handled");
        Ok::<_, Error>(())
    }))
    .await
}
