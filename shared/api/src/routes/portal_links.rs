//! Portal links (admin): a short-lived link that opens one account's portal.

use super::{ApiResult, Errors};
use crate::ApiError;
use crate::auth::Admin;
use crate::extract::{Ids, OptionalBody};
use crate::portal::token::{Claims, Kind};
use crate::portal::{Browser, DEFAULT_LINK_LIFETIME, MAX_LINK_LIFETIME, link_url};
use crate::views::timestamp;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use chrono::{Duration, Utc};
use hookline_service::Service;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPortalLink {
    /// How long the link (and the session it opens) lasts, in seconds: 1 to 86400
    /// (default 3600).
    #[schema(minimum = 1, maximum = 86400, example = 3600)]
    expires_in: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortalLinkView {
    /// Opens the account's portal; the token is in the fragment, which browsers do not send
    /// to servers, and the portal swaps it for a session cookie at once.
    url: String,
    /// RFC 3339 UTC.
    expires_at: String,
}

/// Creates a short-lived link to one account's portal, for the platform to open or embed.
#[utoipa::path(post, path = "/accounts/{id}/portal-links", tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    request_body(content = Option<NewPortalLink>, description = "Optional; the link lasts an hour by default"),
    responses((status = 201, body = PortalLinkView, description = "Created"), Errors))]
pub async fn create_portal_link(
    State(service): State<Service>,
    _: Admin,
    Extension(browser): Extension<Browser>,
    headers: HeaderMap,
    Ids(id): Ids<String>,
    OptionalBody(input): OptionalBody<NewPortalLink>,
) -> ApiResult<(StatusCode, Json<PortalLinkView>)> {
    let lifetime = match input.expires_in {
        None => DEFAULT_LINK_LIFETIME,
        Some(seconds) if (1..=MAX_LINK_LIFETIME.num_seconds()).contains(&seconds) => {
            Duration::seconds(seconds)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "expiresIn: must be 1 to 86400 seconds",
            ));
        }
    };
    // 404 for an account that does not exist: no link to nowhere.
    let (account, _) = service.get_account(&id).await?;
    let expires_at = Utc::now() + lifetime;
    let token = browser
        .0
        .signer
        .sign(&Claims::new(Kind::Link, &account.id, expires_at));
    Ok((
        StatusCode::CREATED,
        Json(PortalLinkView {
            url: link_url(&browser, &headers, &token),
            expires_at: timestamp(expires_at),
        }),
    ))
}
