//! The OpenAPI document: its frame here, each operation on its handler.

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookline API",
        version = "3.0.0",
        description = "Webhook management and delivery. Admin routes (accounts, event types, events) take the platform's admin key; account routes take an account's API key. Keys go in the API-key header or `Authorization: Bearer`.",
        license(name = "Apache-2.0")
    ),
    security(("apiKey" = []), ("bearer" = [])),
    components(schemas(crate::views::ErrorBody, crate::views::ErrorDetail)),
    tags(
        (name = "accounts", description = "Customer accounts and their API keys (admin)"),
        (name = "event types", description = "The event-type catalog (admin)"),
        (name = "events", description = "Publishing events (admin)"),
        (name = "webhooks", description = "Webhook endpoints (account)"),
        (name = "secrets", description = "Account webhook secret and signing secrets (account)"),
        (name = "logs", description = "Delivery logs, counts and manual retries (account)"),
        (name = "jobs", description = "Replay and recovery, run as background jobs (account)"),
        (name = "test events", description = "Sample events sent to your own webhooks (account)"),
        (name = "guide routes", description = "Other platforms' webhook APIs as their guides write them: Infermedica's `/api/v2/config/webhook` and the organization-style `/webhook-events` (account key; the admin key may act for an organization)"),
        (name = "meta", description = "Health and this document")
    )
)]
pub struct ApiDoc;

/// Completes the generated document with what is known only at run time: the API-key header.
pub fn finish(mut doc: utoipa::openapi::OpenApi, api_key_header: &str) -> String {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "apiKey",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(api_key_header))),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    doc.to_json().expect("the OpenAPI document serialises")
}
