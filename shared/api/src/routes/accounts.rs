//! Accounts and their API keys (admin).

use super::{ApiResult, Errors, PageParams};
use crate::auth::Admin;
use crate::extract::{Body, Ids, Params};
use crate::views::{
    AccountDetailsView, AccountView, CreatedAccountView, CreatedKeyView, Paged, timestamp,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_service::Service;
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// 1 to 200 characters.
    #[schema(example = "Acme Clinic")]
    name: String,
}

/// Creates a customer account; its first API key is in this response only.
#[utoipa::path(post, path = "/accounts", tag = "accounts", request_body = NewAccount,
    responses((status = 201, body = CreatedAccountView, description = "Created"), Errors))]
pub async fn create_account(
    State(service): State<Service>,
    _: Admin,
    Body(input): Body<NewAccount>,
) -> ApiResult<(StatusCode, Json<CreatedAccountView>)> {
    let created = service.create_account(&input.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedAccountView {
            id: created.account.id,
            name: created.account.name,
            created_at: timestamp(created.account.created_at),
            api_key: created.api_key,
        }),
    ))
}

/// Lists accounts, oldest first.
#[utoipa::path(get, path = "/accounts", tag = "accounts", params(PageParams),
    responses((status = 200, body = Paged<AccountView>, description = "A page of accounts"), Errors))]
pub async fn list_accounts(
    State(service): State<Service>,
    _: Admin,
    Params(params): Params<PageParams>,
) -> ApiResult<Json<Paged<AccountView>>> {
    let (page, size) = params.parse()?;
    let accounts = service.list_accounts(page, size).await?;
    let content = accounts.items.iter().map(AccountView::of).collect();
    Ok(Json(Paged::new(content, page, size, accounts.total)))
}

/// One account with its API key ids.
#[utoipa::path(get, path = "/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = AccountDetailsView, description = "The account"), Errors))]
pub async fn get_account(
    State(service): State<Service>,
    _: Admin,
    Ids(id): Ids<String>,
) -> ApiResult<Json<AccountDetailsView>> {
    let (account, keys) = service.get_account(&id).await?;
    Ok(Json(AccountDetailsView::of(&account, &keys)))
}

/// Adds an API key to an account; the key is in this response only.
#[utoipa::path(post, path = "/accounts/{id}/api-keys", tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    responses((status = 201, body = CreatedKeyView, description = "Created"), Errors))]
pub async fn add_api_key(
    State(service): State<Service>,
    _: Admin,
    Ids(id): Ids<String>,
) -> ApiResult<(StatusCode, Json<CreatedKeyView>)> {
    let created = service.add_api_key(&id).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyView {
            id: created.record.id,
            api_key: created.api_key,
            created_at: timestamp(created.record.created_at),
        }),
    ))
}

/// Revokes an API key at once.
#[utoipa::path(delete, path = "/accounts/{id}/api-keys/{keyId}", tag = "accounts",
    params(("id" = String, Path, description = "Account id"), ("keyId" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"), Errors))]
pub async fn revoke_api_key(
    State(service): State<Service>,
    _: Admin,
    Ids((id, key_id)): Ids<(String, String)>,
) -> ApiResult<StatusCode> {
    service.revoke_api_key(&id, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
