//! The management API on Lambda: the shared axum Router behind API Gateway (HTTP API).

use hookline_aws::emf::Metrics;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let metrics = Metrics::install("api")?;
    let service = hookline_aws::env::lambda_service().await?;
    // Flushed after each request, before the environment may be frozen.
    let router = hookline_api::router(service).layer(axum::middleware::map_response(
        move |response: axum::response::Response| async move {
            metrics.flush();
            response
        },
    ));
    lambda_http::run(router).await
}
