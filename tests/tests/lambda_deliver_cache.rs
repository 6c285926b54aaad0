//! The deliver function's cache of webhooks and accounts: a change is seen once the copy
//! expires; a 410 deactivation at once.

use axum::http::StatusCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
mod lambda_stack;
use lambda_stack::*;

/// Deliver keeps webhooks and accounts for a few seconds (2 of a delivery's 4 read units): a
/// change to a webhook reaches deliveries once its copy is older than that.
#[tokio::test(flavor = "multi_thread")]
async fn deliver_sees_a_changed_webhook_once_its_cached_copy_expires() {
    let stack = stack().await;
    let deliver = stack.deliver_service(Duration::from_secs(2)).await;
    let (first_url, first_hits) = answering(StatusCode::OK).await;
    let (second_url, second_hits) = answering(StatusCode::OK).await;
    let account = stack.account_with_webhook(&first_url).await;
    stack.publish(&account).await;
    stack.publish(&account).await;
    stack.publish(&account).await;
    let jobs = stack.drain_jobs().await;
    assert_eq!(jobs.len(), 3);
    stack.deliver_job(&deliver, &jobs[0]).await;
    let webhook = &stack.ports.store.list_webhooks(&account).await.unwrap()[0];
    stack
        .service
        .update_webhook(
            &account,
            &webhook.id,
            hookline_service::webhooks::WebhookPatch {
                url: Some(Some(second_url)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Within the time to live the cached webhook is used (no read of it) ...
    stack.deliver_job(&deliver, &jobs[1]).await;
    assert_eq!(first_hits.load(Ordering::SeqCst), 2);
    // ... and after it, the changed one.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    stack.deliver_job(&deliver, &jobs[2]).await;
    assert_eq!(first_hits.load(Ordering::SeqCst), 2);
    assert_eq!(second_hits.load(Ordering::SeqCst), 1);
}

/// A 410 deactivates the webhook; a cached copy of it must not send the next delivery.
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_deactivated_by_a_410_is_not_sent_to_from_the_cache() {
    let stack = stack().await;
    let deliver = stack.deliver_service(Duration::from_secs(300)).await;
    let (url, hits) = answering(StatusCode::GONE).await;
    let account = stack.account_with_webhook(&url).await;
    stack.publish(&account).await;
    stack.publish(&account).await;
    let jobs = stack.drain_jobs().await;
    assert_eq!(jobs.len(), 2);
    stack.deliver_job(&deliver, &jobs[0]).await;
    stack.deliver_job(&deliver, &jobs[1]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "nothing sent after the 410");
    let webhook = &stack.ports.store.list_webhooks(&account).await.unwrap()[0];
    assert!(!webhook.active);
}
