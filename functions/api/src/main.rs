//! The management API on Lambda: the shared axum Router behind API Gateway (HTTP API).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let service = hookline_aws::env::lambda_service().await?;
    lambda_http::run(hookline_api::router(service)).await
}
