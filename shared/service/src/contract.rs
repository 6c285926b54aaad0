//! The contract test suites of the ports. Every adapter of a port runs its suite (from the
//! adapter's tests), so all adapters behave alike. Each suite works in accounts of its own, so
//! it can share a table or queue with other tests.

use crate::ports::{
    AttemptRecord, DeliveryQuery, DueItem, HttpSender, OutboundRequest, Queue, SendErrorKind, Store,
};
use chrono::{DateTime, Duration, Utc};
use hookline_model::delivery::MAX_KEPT_ATTEMPTS;
use hookline_model::types::SigningSecretEntry;
use hookline_model::{
    Account, ApiKeyRecord, Attempt, Delivery, DeliveryJob, DeliveryStatus, Event, EventTypeInfo,
    StatusCounts, Webhook, ids, keys,
};
use std::collections::BTreeSet;
use std::future::Future;

fn account(now: DateTime<Utc>) -> (Account, ApiKeyRecord) {
    let account = Account {
        id: ids::new_id(ids::ACCOUNT, now),
        name: "Contract Clinic".into(),
        created_at: now,
        webhook_secret: Some("account-secret".into()),
    };
    let key = ApiKeyRecord {
        id: ids::new_id(ids::API_KEY, now),
        account_id: account.id.clone(),
        key_hash: keys::hash_api_key(&keys::generate_api_key()),
        created_at: now,
    };
    (account, key)
}

fn webhook(account_id: &str, now: DateTime<Utc>, events: &[&str]) -> Webhook {
    Webhook {
        id: ids::new_id(ids::WEBHOOK, now),
        account_id: account_id.into(),
        url: "https://receiver.example/hook".into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        active: true,
        description: Some("contract".into()),
        metadata: Some(serde_json::json!({"team": "care"})),
        authorization_token: Some("tok".into()),
        // Not the defaults, so every store is seen to keep them (issue 15 item 6).
        request: hookline_model::RequestOptions {
            format: hookline_model::PayloadFormat::Content,
            headers: [("X-Tenant".to_string(), "care".to_string())].into(),
            token_header: Some("x-webhook-infermedica-token".into()),
        },
        signing_secrets: vec![SigningSecretEntry {
            secret: "whsec_x".into(),
            expires_at: None,
        }],
        // Stored as given, operator keys included.
        filter: Some(serde_json::json!({"$or": [{"amount": {"$gte": 1}}, {"a.b": null}]})),
        rate_limit: Some(25),
        ordered: true,
        created_at: now,
        updated_at: now,
        version: 0,
        health: Default::default(),
    }
}

fn delivery(event: &Event, webhook: &Webhook) -> Delivery {
    Delivery::pending(event, webhook)
}

/// Due items of one account only (the table may hold other tests' work).
async fn due_of(store: &dyn Store, account_id: &str, before: DateTime<Utc>) -> Vec<DueItem> {
    store
        .due(before, usize::MAX)
        .await
        .expect("due")
        .into_iter()
        .filter(|item| match item {
            DueItem::FanOut { account_id: a, .. } => a == account_id,
            DueItem::Delivery { job, .. } => job.account_id == account_id,
            DueItem::Job { account_id: a, .. } => a == account_id,
        })
        .collect()
}

/// The Store contract.
pub async fn store_contract(store: &dyn Store) {
    store_contract_settling(store, &|| Box::pin(async {})).await
}

/// Waits until a store's status counters have caught up with its writes (a store that counts
/// as it writes has nothing to wait for; one that counts from a change stream folds it).
pub type Settle<'a> = &'a (dyn Fn() -> futures::future::BoxFuture<'static, ()> + Sync);

/// [`store_contract`] for a store whose counts settle a moment after its writes: `settle` is
/// awaited before every read of the counts.
pub async fn store_contract_settling(store: &dyn Store, settle: Settle<'_>) {
    // The store, once its counts have caught up with its writes.
    let settled = || async move {
        settle().await;
        store
    };
    // Recent (counters cover the log retention), with a random offset so runs do not collide.
    let now = Utc::now() - Duration::hours(1) + Duration::milliseconds(rand_ms());

    // Accounts and keys.
    let (acct, key) = account(now);
    store.insert_account(&acct, &key).await.unwrap();
    assert_eq!(
        store.get_account(&acct.id).await.unwrap(),
        Some(acct.clone())
    );
    assert_eq!(store.get_account("acct_missing").await.unwrap(), None);
    assert_eq!(
        store.find_api_key(&key.key_hash).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(
        store
            .find_api_key(&keys::hash_api_key("unknown"))
            .await
            .unwrap(),
        None
    );
    let (other, other_key) = account(now + Duration::milliseconds(1));
    store.insert_account(&other, &other_key).await.unwrap();

    // The account list (this suite's table holds only its own accounts), oldest first.
    let listed = store.list_accounts(0, 1).await.unwrap();
    assert_eq!(listed.total, 2);
    assert_eq!(listed.items, vec![acct.clone()]);
    let listed = store.list_accounts(1, 1).await.unwrap();
    assert_eq!(listed.items, vec![other.clone()]);
    assert!(store.list_accounts(2, 1).await.unwrap().items.is_empty());

    // The account secret.
    assert!(
        store
            .set_account_secret(&acct.id, Some("s3cret"))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get_account(&acct.id)
            .await
            .unwrap()
            .unwrap()
            .webhook_secret,
        Some("s3cret".into())
    );
    assert!(store.set_account_secret(&acct.id, None).await.unwrap());
    assert_eq!(
        store
            .get_account(&acct.id)
            .await
            .unwrap()
            .unwrap()
            .webhook_secret,
        None
    );
    assert!(
        !store
            .set_account_secret("acct_missing", Some("x"))
            .await
            .unwrap()
    );
    assert!(
        store.get_account("acct_missing").await.unwrap().is_none(),
        "setting a secret creates no account"
    );
    store
        .set_account_secret(&acct.id, acct.webhook_secret.as_deref())
        .await
        .unwrap();

    // More keys; revoking one makes it unknown at once.
    let second_key = ApiKeyRecord {
        id: ids::new_id(ids::API_KEY, now + Duration::milliseconds(2)),
        account_id: acct.id.clone(),
        key_hash: keys::hash_api_key(&keys::generate_api_key()),
        created_at: now,
    };
    store.insert_api_key(&second_key).await.unwrap();
    assert_eq!(
        store.list_api_keys(&acct.id).await.unwrap(),
        vec![key.clone(), second_key.clone()]
    );
    assert!(
        !store
            .delete_api_key(&other.id, &second_key.id)
            .await
            .unwrap(),
        "another account's key is not revoked"
    );
    assert!(
        store
            .delete_api_key(&acct.id, &second_key.id)
            .await
            .unwrap()
    );
    assert_eq!(
        store.find_api_key(&second_key.key_hash).await.unwrap(),
        None
    );
    assert!(
        !store
            .delete_api_key(&acct.id, &second_key.id)
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_api_keys(&acct.id).await.unwrap(),
        vec![key.clone()]
    );
    assert_eq!(
        store.find_api_key(&key.key_hash).await.unwrap(),
        Some(key.clone())
    );

    // Stored admin keys (local mode's generated one) are revoked together; account keys stay.
    let admin_key = ApiKeyRecord {
        id: ids::new_id(ids::API_KEY, now),
        account_id: crate::accounts::ADMIN_ACCOUNT.into(),
        key_hash: keys::hash_api_key(&keys::generate_api_key()),
        created_at: now,
    };
    store.insert_api_key(&admin_key).await.unwrap();
    assert_eq!(
        store.find_api_key(&admin_key.key_hash).await.unwrap(),
        Some(admin_key.clone())
    );
    assert!(store.delete_admin_keys().await.unwrap() >= 1);
    assert_eq!(store.find_api_key(&admin_key.key_hash).await.unwrap(), None);
    assert_eq!(
        store.find_api_key(&key.key_hash).await.unwrap(),
        Some(key.clone())
    );

    // Registered event types: a name once.
    let survey = EventTypeInfo {
        name: format!("survey_finished_{}", rand_ms()),
        description: "A survey was finished.".into(),
    };
    assert!(store.insert_event_type(&survey).await.unwrap());
    assert!(!store.insert_event_type(&survey).await.unwrap());
    assert_eq!(
        store.get_event_type(&survey.name).await.unwrap(),
        Some(survey.clone())
    );
    assert!(store.list_event_types().await.unwrap().contains(&survey));
    assert_eq!(store.get_event_type("nope.nothing").await.unwrap(), None);

    // Webhooks are per account.
    let wh = webhook(&acct.id, now, &["patient.created"]);
    let wh2 = webhook(&acct.id, now + Duration::milliseconds(1), &["reading.*"]);
    assert!(store.insert_webhook(&wh, 3).await.unwrap());
    assert!(store.insert_webhook(&wh2, 3).await.unwrap());
    assert_eq!(
        store.get_webhook(&acct.id, &wh.id).await.unwrap(),
        Some(wh.clone())
    );
    assert_eq!(
        store.get_webhook(&other.id, &wh.id).await.unwrap(),
        None,
        "another account's webhook is not found"
    );
    let listed: Vec<String> = store
        .list_webhooks(&acct.id)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(listed, vec![wh.id.clone(), wh2.id.clone()]);
    assert!(store.list_webhooks(&other.id).await.unwrap().is_empty());
    let page = store.list_webhooks_page(&acct.id, 1, 1).await.unwrap();
    assert_eq!((page.total, page.items), (2, vec![wh2.clone()]));
    assert_eq!(
        store
            .list_webhooks_page(&other.id, 0, 20)
            .await
            .unwrap()
            .total,
        0
    );
    let mut changed = wh.clone();
    changed.url = "https://receiver.example/v2".into();
    assert!(store.update_webhook(&changed).await.unwrap());
    // Written over the version it read, as the next version: a second writer that read the
    // same version must read again.
    let mut stale = wh.clone();
    stale.url = "https://receiver.example/stale".into();
    assert!(
        !store.update_webhook(&stale).await.unwrap(),
        "an update over a version that moved on writes nothing"
    );
    changed.version = 1;
    assert_eq!(
        store.get_webhook(&acct.id, &wh.id).await.unwrap(),
        Some(changed.clone())
    );
    let mut foreign_update = changed.clone();
    foreign_update.account_id = other.id.clone();
    assert!(
        !store.update_webhook(&foreign_update).await.unwrap(),
        "an update never creates a webhook"
    );
    assert_eq!(store.get_webhook(&other.id, &wh.id).await.unwrap(), None);
    // Deleting returns the webhook once.
    let doomed = webhook(&acct.id, now + Duration::milliseconds(3), &["*"]);
    assert!(store.insert_webhook(&doomed, 3).await.unwrap());
    let over = webhook(&acct.id, now + Duration::milliseconds(4), &["*"]);
    assert!(
        !store.insert_webhook(&over, 3).await.unwrap(),
        "no more webhooks than the quota"
    );
    assert_eq!(store.get_webhook(&acct.id, &over.id).await.unwrap(), None);
    assert_eq!(
        store
            .list_webhooks_page(&acct.id, 0, 20)
            .await
            .unwrap()
            .total,
        3
    );
    assert_eq!(
        store.delete_webhook(&other.id, &doomed.id).await.unwrap(),
        None
    );
    assert_eq!(
        store.delete_webhook(&acct.id, &doomed.id).await.unwrap(),
        Some(doomed.clone())
    );
    assert_eq!(
        store.delete_webhook(&acct.id, &doomed.id).await.unwrap(),
        None
    );
    assert_eq!(store.get_webhook(&acct.id, &doomed.id).await.unwrap(), None);
    let page = store.list_webhooks_page(&acct.id, 0, 20).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.items.len(), 2);
    assert_eq!(
        store
            .get_webhook(&acct.id, &wh.id)
            .await
            .unwrap()
            .unwrap()
            .url,
        changed.url
    );

    // Events: inserted once, the first one wins, due for fan-out until fanned out.
    let event = Event {
        id: ids::new_id(ids::EVENT, now),
        account_id: acct.id.clone(),
        event_type: "patient.created".into(),
        payload: r#"{"patientId":7,"name":"Ada"}"#.into(),
        created_at: now,
        deliveries: 0,
        fanned_out: false,
    };
    assert_eq!(store.insert_event(&event, now).await.unwrap(), None);
    let mut again = event.clone();
    again.payload = "{}".into();
    assert_eq!(
        store.insert_event(&again, now).await.unwrap(),
        Some(event.clone()),
        "the first publish wins"
    );
    assert_eq!(
        store.get_event(&acct.id, &event.id).await.unwrap(),
        Some(event.clone())
    );
    assert_eq!(store.get_event(&other.id, &event.id).await.unwrap(), None);
    assert_eq!(
        due_of(store, &acct.id, now).await,
        vec![DueItem::FanOut {
            account_id: acct.id.clone(),
            event_id: event.id.clone()
        }]
    );
    assert!(
        due_of(store, &acct.id, now - Duration::seconds(1))
            .await
            .is_empty(),
        "not due before its sweep time"
    );

    // Fan-out: deliveries stored and due; the event due until marked done.
    let d1 = delivery(&event, &changed);
    let sweep_at = now + Duration::seconds(120);
    assert_eq!(
        store
            .insert_deliveries(&event, std::slice::from_ref(&d1), sweep_at)
            .await
            .unwrap(),
        vec![true]
    );
    assert!(
        due_of(store, &acct.id, sweep_at)
            .await
            .contains(&DueItem::FanOut {
                account_id: acct.id.clone(),
                event_id: event.id.clone()
            }),
        "the event stays due until its fan-out is finished"
    );
    store.finish_fan_out(&event, 1).await.unwrap();
    let stored_event = store.get_event(&acct.id, &event.id).await.unwrap().unwrap();
    assert!(stored_event.fanned_out);
    assert_eq!(stored_event.deliveries, 1);
    assert_eq!(
        store
            .get_events(&acct.id, &[event.id.clone(), "evt_missing".into()])
            .await
            .unwrap(),
        vec![stored_event.clone()]
    );
    assert_eq!(
        due_of(store, &acct.id, sweep_at).await,
        vec![DueItem::Delivery {
            job: d1.job(),
            next_attempt_at: None
        }]
    );
    // Re-running the fan-out (after a crash) does not duplicate or count twice, and says
    // the delivery is not new (so it is not queued again).
    assert_eq!(
        store
            .insert_deliveries(&event, std::slice::from_ref(&d1), sweep_at)
            .await
            .unwrap(),
        vec![false]
    );
    assert_eq!(due_of(store, &acct.id, sweep_at).await.len(), 1);
    assert_eq!(
        settled().await.status_counts(&acct.id).await.unwrap(),
        StatusCounts {
            pending: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        settled().await.status_counts(&other.id).await.unwrap(),
        StatusCounts::default()
    );

    // Loading a delivery brings everything an attempt needs.
    let ctx = store
        .load_delivery(&d1.job())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(ctx.delivery, d1);
    assert_eq!(ctx.event, Some(stored_event.clone()));
    assert_eq!(ctx.webhook, Some(changed.clone()));
    assert_eq!(ctx.account, Some(acct.clone()));
    let mut foreign = d1.job();
    foreign.account_id = other.id.clone();
    assert!(store.load_delivery(&foreign).await.unwrap().is_none());

    // Postponing moves the sweep time.
    let due_item = DueItem::Delivery {
        job: d1.job(),
        next_attempt_at: None,
    };
    store
        .postpone(&due_item, sweep_at + Duration::seconds(60))
        .await
        .unwrap();
    assert!(due_of(store, &acct.id, sweep_at).await.is_empty());
    assert_eq!(
        due_of(store, &acct.id, sweep_at + Duration::seconds(60))
            .await
            .len(),
        1
    );

    // A failed attempt with a retry: recorded, due at its sweep time with the retry time.
    let retry_at = now + Duration::seconds(900);
    let failure = Attempt {
        at: now,
        status_code: Some(500),
        duration_ms: 12,
        error: Some("status".into()),
        response_body: Some("oops".into()),
    };
    let retry_record = AttemptRecord {
        attempt: failure.clone(),
        status: DeliveryStatus::Retrying,
        next_attempt_at: Some(retry_at),
        sweep_at: Some(retry_at + Duration::seconds(120)),
        deactivates_webhook: false,
    };
    assert!(store.record_attempt(&d1, &retry_record).await.unwrap());
    assert_eq!(
        settled().await.status_counts(&acct.id).await.unwrap(),
        StatusCounts {
            retrying: 1,
            ..Default::default()
        }
    );
    // A duplicate still holding the pending delivery records nothing.
    assert!(!store.record_attempt(&d1, &retry_record).await.unwrap());
    let after = store.get_delivery(&acct.id, &d1.id).await.unwrap().unwrap();
    assert_eq!(after.status, DeliveryStatus::Retrying);
    assert_eq!(after.attempts, vec![failure.clone()]);
    assert_eq!(after.last_response_status, Some(500));
    assert_eq!(after.next_attempt_at, Some(retry_at));
    assert_eq!(
        due_of(store, &acct.id, retry_at + Duration::seconds(120)).await,
        vec![DueItem::Delivery {
            job: d1.job(),
            next_attempt_at: Some(retry_at)
        }]
    );
    assert!(
        store
            .get_delivery(&other.id, &d1.id)
            .await
            .unwrap()
            .is_none()
    );

    // Success: terminal, no longer due.
    let success = Attempt {
        at: retry_at,
        status_code: Some(204),
        duration_ms: 3,
        error: None,
        response_body: None,
    };
    assert!(
        store
            .record_attempt(
                &after,
                &AttemptRecord {
                    attempt: success.clone(),
                    status: DeliveryStatus::Delivered,
                    next_attempt_at: None,
                    sweep_at: None,
                    deactivates_webhook: false,
                },
            )
            .await
            .unwrap()
    );
    let done = store.get_delivery(&acct.id, &d1.id).await.unwrap().unwrap();
    assert_eq!(done.status, DeliveryStatus::Delivered);
    assert_eq!(done.attempts, vec![failure, success]);
    assert_eq!(done.last_response_status, Some(204));
    assert_eq!(done.last_attempt_at, Some(retry_at));
    assert_eq!(done.next_attempt_at, None);
    assert!(
        due_of(store, &acct.id, DateTime::<Utc>::MAX_UTC)
            .await
            .is_empty()
    );
    // A late re-run of the fan-out leaves the delivered delivery alone.
    store
        .insert_deliveries(&event, std::slice::from_ref(&d1), sweep_at)
        .await
        .unwrap();
    assert_eq!(
        store.get_delivery(&acct.id, &d1.id).await.unwrap(),
        Some(done.clone())
    );

    // Listing: newest first, filtered, paginated, with a total.
    let mut second_event = event.clone();
    second_event.id = ids::new_id(ids::EVENT, now + Duration::seconds(5));
    second_event.created_at = now + Duration::seconds(5);
    second_event.event_type = "reading.weight".into();
    store.insert_event(&second_event, now).await.unwrap();
    let d2 = delivery(&second_event, &wh2);
    store
        .insert_deliveries(&second_event, std::slice::from_ref(&d2), sweep_at)
        .await
        .unwrap();
    store.finish_fan_out(&second_event, 1).await.unwrap();
    let all = settled()
        .await
        .list_deliveries(
            &acct.id,
            &DeliveryQuery {
                size: 20,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.total, 2);
    assert_eq!(
        all.items.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![d2.id.clone(), d1.id.clone()]
    );
    let page1 = settled()
        .await
        .list_deliveries(
            &acct.id,
            &DeliveryQuery {
                size: 1,
                page: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (page1.total, page1.items.len(), page1.items[0].id.clone()),
        (2, 1, d1.id.clone())
    );
    let by_status = DeliveryQuery {
        size: 20,
        status: Some(DeliveryStatus::Delivered),
        ..Default::default()
    };
    assert_eq!(
        settled()
            .await
            .list_deliveries(&acct.id, &by_status)
            .await
            .unwrap()
            .items,
        vec![done.clone()]
    );
    let by_webhook = DeliveryQuery {
        size: 20,
        webhook_id: Some(wh2.id.clone()),
        ..Default::default()
    };
    assert_eq!(
        settled()
            .await
            .list_deliveries(&acct.id, &by_webhook)
            .await
            .unwrap()
            .total,
        1
    );
    // The first page without its total is the same page.
    for first in [
        by_webhook.clone(),
        DeliveryQuery {
            size: 1,
            ..Default::default()
        },
    ] {
        let store = settled().await;
        let listed = store.list_deliveries(&acct.id, &first).await.unwrap().items;
        assert_eq!(listed.len(), 1);
        assert_eq!(
            store.first_deliveries(&acct.id, &first).await.unwrap(),
            listed
        );
    }
    let by_type = DeliveryQuery {
        size: 20,
        event_type: Some("reading.weight".into()),
        ..Default::default()
    };
    assert_eq!(
        settled()
            .await
            .list_deliveries(&acct.id, &by_type)
            .await
            .unwrap()
            .items[0]
            .id,
        d2.id
    );
    let by_time = DeliveryQuery {
        size: 20,
        created_from: Some(now + Duration::seconds(1)),
        created_to: Some(now + Duration::seconds(10)),
        ..Default::default()
    };
    assert_eq!(
        settled()
            .await
            .list_deliveries(&acct.id, &by_time)
            .await
            .unwrap()
            .items,
        vec![d2.clone()]
    );
    assert_eq!(
        settled()
            .await
            .list_deliveries(
                &other.id,
                &DeliveryQuery {
                    size: 20,
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        settled().await.status_counts(&acct.id).await.unwrap(),
        StatusCounts {
            pending: 1,
            delivered: 1,
            ..Default::default()
        }
    );
    // The last-attempt filters: only attempted deliveries, by the time of their last attempt.
    let by_last_attempt = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| DeliveryQuery {
        size: 20,
        last_attempt_from: from,
        last_attempt_to: to,
        ..Default::default()
    };
    let found = settled()
        .await
        .list_deliveries(&acct.id, &by_last_attempt(Some(retry_at), None))
        .await
        .unwrap();
    assert_eq!((found.total, found.items), (1, vec![done.clone()]));
    let found = settled()
        .await
        .list_deliveries(
            &acct.id,
            &by_last_attempt(None, Some(retry_at - Duration::seconds(1))),
        )
        .await
        .unwrap();
    assert_eq!(found.total, 0, "its last attempt is later");
    // Filters combine: a status within one webhook, a type within a time range.
    let combined = DeliveryQuery {
        size: 20,
        webhook_id: Some(wh2.id.clone()),
        status: Some(DeliveryStatus::Pending),
        ..Default::default()
    };
    assert_eq!(
        settled()
            .await
            .list_deliveries(&acct.id, &combined)
            .await
            .unwrap()
            .items,
        vec![d2.clone()]
    );
    let combined = DeliveryQuery {
        size: 20,
        webhook_id: Some(wh2.id.clone()),
        status: Some(DeliveryStatus::Delivered),
        ..Default::default()
    };
    assert_eq!(
        settled()
            .await
            .list_deliveries(&acct.id, &combined)
            .await
            .unwrap()
            .total,
        0
    );
    let combined = DeliveryQuery {
        size: 20,
        event_type: Some("patient.created".into()),
        last_attempt_from: Some(now),
        created_to: Some(now + Duration::seconds(1)),
        ..Default::default()
    };
    assert_eq!(
        settled()
            .await
            .list_deliveries(&acct.id, &combined)
            .await
            .unwrap()
            .items,
        vec![done.clone()]
    );
    assert_eq!(
        settled()
            .await
            .list_deliveries(
                &acct.id,
                &DeliveryQuery {
                    size: 20,
                    status: Some(DeliveryStatus::Pending),
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .total,
        1,
        "a status-only total comes from the counters"
    );

    // A manual retry: back to pending for a new round, counted, due for the sweep; once.
    let later = now + Duration::seconds(3600);
    assert!(store.requeue_delivery(&done, later).await.unwrap());
    let requeued = store.get_delivery(&acct.id, &d1.id).await.unwrap().unwrap();
    assert_eq!(requeued.status, DeliveryStatus::Pending);
    assert_eq!(requeued.round_start, 2);
    assert_eq!(requeued.round_attempts(), 0);
    assert_eq!(
        requeued.attempts.len(),
        2,
        "earlier attempts stay in the log"
    );
    assert_eq!(requeued.next_attempt_at, None);
    assert!(
        !store.requeue_delivery(&done, later).await.unwrap(),
        "a second retry of the same state does nothing"
    );
    assert_eq!(
        settled().await.status_counts(&acct.id).await.unwrap(),
        StatusCounts {
            pending: 2,
            ..Default::default()
        }
    );
    assert!(
        due_of(store, &acct.id, later)
            .await
            .contains(&DueItem::Delivery {
                job: d1.job(),
                next_attempt_at: None
            })
    );

    // Health is stored with the webhook: a run of failures, then a 410 that ends it.
    let mut failing = store.get_webhook(&acct.id, &wh2.id).await.unwrap().unwrap();
    failing.health.failing_since = Some(now);
    assert!(store.update_webhook(&failing).await.unwrap());
    let failing = store.get_webhook(&acct.id, &wh2.id).await.unwrap().unwrap();
    assert_eq!(failing.health.failing_since, Some(now));

    // Deactivation (410 Gone), with its reason and time.
    assert!(
        store
            .deactivate_webhook(&acct.id, &wh2.id, later)
            .await
            .unwrap()
    );
    let gone = store.get_webhook(&acct.id, &wh2.id).await.unwrap().unwrap();
    assert!(!gone.active);
    assert_eq!(gone.updated_at, later);
    assert_eq!(
        gone.health.disabled_reason.as_deref(),
        Some(hookline_model::GONE_DISABLED_REASON)
    );
    assert_eq!(gone.health.disabled_at, Some(later));
    assert_eq!(
        gone.health.failing_since, None,
        "the run is over once it is off"
    );
    assert!(
        !store
            .deactivate_webhook(&other.id, &wh2.id, later)
            .await
            .unwrap()
    );
    assert_eq!(store.get_webhook(&other.id, &wh2.id).await.unwrap(), None);

    atomic_publish(store, now, settle).await;
    attempt_rules(store, now, settle).await;
    walks_and_jobs(store, now).await;
}

/// Every step of a walk, from the start to its end, in steps of `limit`.
async fn walk_all_deliveries(
    store: &dyn Store,
    account_id: &str,
    query: &DeliveryQuery,
) -> Vec<String> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let walk = store
            .walk_deliveries(account_id, query, cursor.as_deref(), 2)
            .await
            .expect("walk_deliveries");
        assert!(walk.items.len() <= 2, "a step finds at most its limit");
        found.extend(walk.items.into_iter().map(|d| d.id));
        match walk.next {
            Some(next) => cursor = Some(next),
            None => return found,
        }
    }
    panic!("the walk never ended");
}

/// Walks (what background jobs read) find each match exactly once, a step at a time; jobs
/// round-trip, are due for the sweep while they run, and move on only as of their version.
async fn walks_and_jobs(store: &dyn Store, now: DateTime<Utc>) {
    use hookline_model::{Job, JobKind, JobStatus};
    let (acct, key) = account(now + Duration::milliseconds(3));
    store.insert_account(&acct, &key).await.unwrap();
    let (other, other_key) = account(now + Duration::milliseconds(4));
    store.insert_account(&other, &other_key).await.unwrap();
    let hooks = [
        webhook(&acct.id, now, &["*"]),
        webhook(&acct.id, now + Duration::milliseconds(1), &["*"]),
    ];
    for hook in &hooks {
        assert!(store.insert_webhook(hook, 500).await.unwrap());
    }
    // Four events a second apart; each to both webhooks; plus one of another account.
    let mut events = Vec::new();
    let mut deliveries = Vec::new();
    for i in 0..4 {
        let event = Event {
            id: ids::new_id(ids::EVENT, now + Duration::seconds(i)),
            account_id: acct.id.clone(),
            event_type: "reading.weight".into(),
            payload: format!(r#"{{"n":{i}}}"#),
            created_at: now + Duration::seconds(i),
            deliveries: 0,
            fanned_out: false,
        };
        let ds: Vec<Delivery> = hooks.iter().map(|w| delivery(&event, w)).collect();
        store
            .insert_event_with_deliveries(&event, &ds, now + Duration::seconds(120))
            .await
            .unwrap();
        events.push(event);
        deliveries.extend(ds);
    }
    let stranger = Event {
        id: ids::new_id(ids::EVENT, now + Duration::seconds(1)),
        account_id: other.id.clone(),
        event_type: "reading.weight".into(),
        payload: "{}".into(),
        created_at: now + Duration::seconds(1),
        deliveries: 0,
        fanned_out: false,
    };
    let other_hook = webhook(&other.id, now, &["*"]);
    assert!(store.insert_webhook(&other_hook, 500).await.unwrap());
    store
        .insert_event_with_deliveries(
            &stranger,
            &[delivery(&stranger, &other_hook)],
            now + Duration::seconds(120),
        )
        .await
        .unwrap();
    // One delivered.
    let delivered = &deliveries[2];
    assert!(
        store
            .record_attempt(
                delivered,
                &AttemptRecord {
                    attempt: Attempt {
                        at: now + Duration::seconds(5),
                        status_code: Some(200),
                        duration_ms: 1,
                        error: None,
                        response_body: None,
                    },
                    status: DeliveryStatus::Delivered,
                    next_attempt_at: None,
                    sweep_at: None,
                    deactivates_webhook: false,
                },
            )
            .await
            .unwrap()
    );

    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    let ids_of =
        |ds: &mut dyn Iterator<Item = &Delivery>| sorted(ds.map(|d| d.id.clone()).collect());
    let everything = walk_all_deliveries(store, &acct.id, &DeliveryQuery::default()).await;
    assert_eq!(
        everything.len(),
        8,
        "each delivery exactly once: {everything:?}"
    );
    assert_eq!(sorted(everything), ids_of(&mut deliveries.iter()));
    let of_one_webhook = DeliveryQuery {
        webhook_id: Some(hooks[1].id.clone()),
        ..Default::default()
    };
    assert_eq!(
        sorted(walk_all_deliveries(store, &acct.id, &of_one_webhook).await),
        ids_of(&mut deliveries.iter().filter(|d| d.webhook_id == hooks[1].id))
    );
    let in_range = DeliveryQuery {
        created_from: Some(now + Duration::seconds(1)),
        created_to: Some(now + Duration::seconds(2)),
        ..Default::default()
    };
    assert_eq!(
        sorted(walk_all_deliveries(store, &acct.id, &in_range).await),
        ids_of(&mut deliveries[2..6].iter())
    );
    let only_delivered = DeliveryQuery {
        status: Some(DeliveryStatus::Delivered),
        ..Default::default()
    };
    assert_eq!(
        walk_all_deliveries(store, &acct.id, &only_delivered).await,
        vec![delivered.id.clone()]
    );
    assert!(
        walk_all_deliveries(store, "acct_missing", &DeliveryQuery::default())
            .await
            .is_empty()
    );

    // Events in a time range, a step at a time, of this account only.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let walk = store
            .walk_events(
                &acct.id,
                now + Duration::seconds(1),
                now + Duration::seconds(3),
                cursor.as_deref(),
                1,
            )
            .await
            .unwrap();
        assert!(walk.items.len() <= 1);
        walked.extend(walk.items.into_iter().map(|e| e.id));
        match walk.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(walked.len() <= 3, "the walk never ended");
    }
    assert_eq!(
        sorted(walked),
        sorted(events[1..4].iter().map(|e| e.id.clone()).collect())
    );

    // Jobs.
    let job = Job::new(
        ids::new_id(hookline_model::job::JOB, now),
        &acct.id,
        JobKind::Replay {
            webhook_id: Some(hooks[0].id.clone()),
            since: now,
            until: now + Duration::seconds(3),
            delivery_status: None,
        },
        now,
    );
    let lease = now + Duration::seconds(60);
    store.insert_job(&job, lease).await.unwrap();
    assert_eq!(
        store.get_job(&acct.id, &job.id).await.unwrap(),
        Some(job.clone())
    );
    assert_eq!(
        store.get_job(&other.id, &job.id).await.unwrap(),
        None,
        "another account's job"
    );
    assert_eq!(store.get_job(&acct.id, "job_missing").await.unwrap(), None);
    let job_due = DueItem::Job {
        account_id: acct.id.clone(),
        job_id: job.id.clone(),
    };
    let due_jobs = |items: Vec<DueItem>| -> Vec<DueItem> {
        items
            .into_iter()
            .filter(|i| matches!(i, DueItem::Job { .. }))
            .collect()
    };
    assert!(due_jobs(due_of(store, &acct.id, lease - Duration::seconds(1)).await).is_empty());
    assert_eq!(
        due_jobs(due_of(store, &acct.id, lease).await),
        vec![job_due.clone()]
    );
    store
        .postpone(&job_due, lease + Duration::seconds(60))
        .await
        .unwrap();
    assert!(
        due_jobs(due_of(store, &acct.id, lease).await).is_empty(),
        "postponed"
    );

    let mut stepped = job.clone();
    stepped.total = 3;
    stepped.done = 2;
    stepped.cursor = Some("somewhere".into());
    stepped.updated_at = now + Duration::seconds(1);
    assert!(
        store
            .update_job(&stepped, Some(lease + Duration::seconds(90)))
            .await
            .unwrap()
    );
    let read = store.get_job(&acct.id, &job.id).await.unwrap().unwrap();
    assert_eq!(read.version, 1);
    assert_eq!(
        (read.total, read.done, read.cursor.as_deref()),
        (3, 2, Some("somewhere"))
    );
    assert!(
        !store.update_job(&stepped, None).await.unwrap(),
        "a job moved on by another worker is not overwritten"
    );
    assert_eq!(
        due_jobs(due_of(store, &acct.id, lease + Duration::seconds(90)).await),
        vec![job_due.clone()]
    );
    let mut ended = read.clone();
    ended.status = JobStatus::Completed;
    assert!(store.update_job(&ended, None).await.unwrap());
    assert_eq!(
        store
            .get_job(&acct.id, &job.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        JobStatus::Completed
    );
    assert!(
        due_jobs(due_of(store, &acct.id, DateTime::<Utc>::MAX_UTC).await).is_empty(),
        "an ended job is not due"
    );
}

/// What recording an attempt guarantees: a job loaded before another attempt records nothing
/// (even with the same status), the log keeps the newest attempts and counts them all, a 410's
/// deactivation is part of the same write, and one record that cannot be written never fails
/// the others of its batch.
async fn attempt_rules(store: &dyn Store, now: DateTime<Utc>, settle: Settle<'_>) {
    // The store, once its counts have caught up with its writes.
    let settled = || async move {
        settle().await;
        store
    };
    let (acct, key) = account(now + Duration::milliseconds(7));
    store.insert_account(&acct, &key).await.unwrap();
    let hook = webhook(&acct.id, now, &["*"]);
    let doomed = webhook(&acct.id, now + Duration::milliseconds(1), &["*"]);
    assert!(store.insert_webhook(&hook, 500).await.unwrap());
    assert!(store.insert_webhook(&doomed, 500).await.unwrap());
    let event = Event {
        id: ids::new_id(ids::EVENT, now),
        account_id: acct.id.clone(),
        event_type: "patient.created".into(),
        payload: r#"{"patientId":7}"#.into(),
        created_at: now,
        deliveries: 0,
        fanned_out: false,
    };
    let deliveries = [delivery(&event, &hook), delivery(&event, &doomed)];
    let sweep_at = now + Duration::seconds(120);
    assert_eq!(
        store
            .insert_event_with_deliveries(&event, &deliveries, sweep_at)
            .await
            .unwrap(),
        None
    );
    let failed_attempt = |n: u64| Attempt {
        at: now + Duration::seconds(n as i64),
        status_code: Some(500),
        duration_ms: n,
        error: Some("status".into()),
        response_body: Some("e".repeat(4096)),
    };
    let retrying = |n: u64| AttemptRecord {
        attempt: failed_attempt(n),
        status: DeliveryStatus::Retrying,
        next_attempt_at: Some(now + Duration::minutes(15)),
        sweep_at: Some(now + Duration::minutes(17)),
        deactivates_webhook: false,
    };
    let load = || async {
        store
            .get_delivery(&acct.id, &deliveries[0].id)
            .await
            .unwrap()
            .unwrap()
    };
    assert!(
        store
            .record_attempt(&deliveries[0], &retrying(0))
            .await
            .unwrap()
    );
    let first = load().await;
    assert!(store.record_attempt(&first, &retrying(1)).await.unwrap());
    assert!(
        !store.record_attempt(&first, &retrying(2)).await.unwrap(),
        "a duplicate job that loaded the delivery before the last attempt records nothing, \
         though the status is the same"
    );
    for n in 2..30 {
        let current = load().await;
        assert!(store.record_attempt(&current, &retrying(n)).await.unwrap());
    }
    let kept = load().await;
    assert_eq!(kept.attempt_count, 30);
    assert_eq!(kept.attempts.len(), MAX_KEPT_ATTEMPTS);
    assert_eq!(kept.attempts.last().unwrap().duration_ms, 29);
    assert!(
        kept.attempts
            .iter()
            .all(|a| a.response_body.as_deref() == Some("e".repeat(4096).as_str())),
        "each kept attempt reads back with its whole 4 KiB answer"
    );
    assert_eq!(kept.retry_attempts(), 29);

    // 410: the delivery fails and its webhook is inactive, in one write.
    let gone = AttemptRecord {
        attempt: Attempt {
            status_code: Some(410),
            ..failed_attempt(40)
        },
        status: DeliveryStatus::Failed,
        next_attempt_at: None,
        sweep_at: None,
        deactivates_webhook: true,
    };
    let current = load().await;
    assert!(store.record_attempt(&current, &gone).await.unwrap());
    let hook_now = store
        .get_webhook(&acct.id, &hook.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!hook_now.active);
    assert_eq!(hook_now.version, hook.version + 1);
    assert_eq!(
        hook_now.health.disabled_reason.as_deref(),
        Some(hookline_model::GONE_DISABLED_REASON)
    );
    assert!(
        !store.update_webhook(&hook).await.unwrap(),
        "a change read before the deactivation cannot write active back"
    );
    // A webhook deleted meanwhile: the attempt is recorded all the same.
    assert!(
        store
            .delete_webhook(&acct.id, &doomed.id)
            .await
            .unwrap()
            .is_some()
    );
    // One record that cannot be written (far over any item size) fails only itself.
    let huge = AttemptRecord {
        attempt: Attempt {
            response_body: Some("x".repeat(600 * 1024)),
            ..failed_attempt(41)
        },
        ..gone.clone()
    };
    let answers = store
        .record_attempts(&[
            (deliveries[1].clone(), gone.clone()),
            (deliveries[1].clone(), huge),
        ])
        .await;
    assert!(matches!(answers[0], Ok(true)), "{answers:?}");
    assert!(!matches!(answers[1], Ok(true)), "{answers:?}");
    let other = store
        .get_delivery(&acct.id, &deliveries[1].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (other.status, other.attempt_count),
        (DeliveryStatus::Failed, 1)
    );
    assert_eq!(
        settled().await.status_counts(&acct.id).await.unwrap(),
        StatusCounts {
            failed: 2,
            ..Default::default()
        }
    );
}

/// A small fan-out's publish in one write: the event fanned out (not due), its deliveries
/// pending, due and counted; a second publish of the id writes nothing. Then the attempts of
/// both recorded in one batch.
async fn atomic_publish(store: &dyn Store, now: DateTime<Utc>, settle: Settle<'_>) {
    // The store, once its counts have caught up with its writes.
    let settled = || async move {
        settle().await;
        store
    };
    let (acct, key) = account(now + Duration::milliseconds(2));
    store.insert_account(&acct, &key).await.unwrap();
    let hooks = [
        webhook(&acct.id, now, &["reading.*"]),
        webhook(&acct.id, now + Duration::milliseconds(1), &["*"]),
    ];
    for hook in &hooks {
        assert!(store.insert_webhook(hook, 500).await.unwrap());
    }
    let event = Event {
        id: ids::new_id(ids::EVENT, now),
        account_id: acct.id.clone(),
        event_type: "reading.weight".into(),
        payload: r#"{"weight":81.5}"#.into(),
        created_at: now,
        deliveries: 0,
        fanned_out: false,
    };
    let deliveries: Vec<Delivery> = hooks.iter().map(|w| delivery(&event, w)).collect();
    let sweep_at = now + Duration::seconds(120);
    assert_eq!(
        store
            .insert_event_with_deliveries(&event, &deliveries, sweep_at)
            .await
            .unwrap(),
        None
    );
    let stored = store.get_event(&acct.id, &event.id).await.unwrap().unwrap();
    assert!(stored.fanned_out);
    assert_eq!(stored.deliveries, 2);
    assert_eq!(stored.payload, event.payload);
    let due: BTreeSet<String> = due_of(store, &acct.id, sweep_at)
        .await
        .into_iter()
        .map(|item| match item {
            DueItem::Delivery { job, .. } => job.delivery_id,
            DueItem::FanOut { event_id, .. } => event_id,
            DueItem::Job { job_id, .. } => job_id,
        })
        .collect();
    assert_eq!(
        due,
        deliveries.iter().map(|d| d.id.clone()).collect(),
        "the deliveries are due, the event is not"
    );
    let ctx = store
        .load_delivery(&deliveries[1].job())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ctx.delivery, deliveries[1]);
    assert_eq!(ctx.event, Some(stored.clone()));
    assert_eq!(ctx.webhook, Some(hooks[1].clone()));

    let mut again = event.clone();
    again.payload = "{}".into();
    assert_eq!(
        store
            .insert_event_with_deliveries(&again, &deliveries[..1], sweep_at)
            .await
            .unwrap(),
        Some(stored.clone()),
        "the first publish wins"
    );
    assert_eq!(
        settled().await.status_counts(&acct.id).await.unwrap(),
        StatusCounts {
            pending: 2,
            ..Default::default()
        },
        "counted once"
    );

    // Attempts recorded in one batch: each answered as alone; a stale one records nothing.
    let delivered = AttemptRecord {
        attempt: Attempt {
            at: now,
            status_code: Some(200),
            duration_ms: 2,
            error: None,
            response_body: None,
        },
        status: DeliveryStatus::Delivered,
        next_attempt_at: None,
        sweep_at: None,
        deactivates_webhook: false,
    };
    let retrying = AttemptRecord {
        attempt: Attempt {
            at: now,
            status_code: Some(500),
            duration_ms: 3,
            error: Some("status".into()),
            response_body: Some("down".into()),
        },
        status: DeliveryStatus::Retrying,
        next_attempt_at: Some(now + Duration::minutes(1)),
        sweep_at: Some(now + Duration::minutes(3)),
        deactivates_webhook: false,
    };
    let answers = store
        .record_attempts(&[
            (deliveries[0].clone(), delivered.clone()),
            (deliveries[1].clone(), retrying.clone()),
            (deliveries[0].clone(), delivered.clone()),
        ])
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<bool>>();
    assert_eq!(answers, vec![true, true, false]);
    let first = store
        .get_delivery(&acct.id, &deliveries[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.status, first.attempts.len()),
        (DeliveryStatus::Delivered, 1)
    );
    let second = store
        .get_delivery(&acct.id, &deliveries[1].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.status, DeliveryStatus::Retrying);
    assert_eq!(second.attempts, vec![retrying.attempt.clone()]);
    assert_eq!(second.next_attempt_at, retrying.next_attempt_at);
    assert_eq!(
        settled().await.status_counts(&acct.id).await.unwrap(),
        StatusCounts {
            retrying: 1,
            delivered: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        store
            .record_attempts(&[(second.clone(), delivered.clone())])
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<bool>>(),
        vec![true]
    );

    // No matching webhook: the event alone.
    let mut lone = event.clone();
    lone.id = ids::new_id(ids::EVENT, now + Duration::milliseconds(3));
    assert_eq!(
        store
            .insert_event_with_deliveries(&lone, &[], sweep_at)
            .await
            .unwrap(),
        None
    );
    let lone = store.get_event(&acct.id, &lone.id).await.unwrap().unwrap();
    assert!(lone.fanned_out);
    assert_eq!(lone.deliveries, 0);
}

fn rand_ms() -> i64 {
    (u32::from_le_bytes(keys::random_bytes::<4>()) % 1_000_000) as i64
}

/// The Queue contract: every enqueued job comes out, in batches of any size.
/// `receive` returns whatever the adapter's consumer got since the last call.
pub async fn queue_contract<F, Fut>(queue: &dyn Queue, mut receive: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<DeliveryJob>>,
{
    let now = Utc::now();
    let account_id = ids::new_id(ids::ACCOUNT, now);
    let jobs: Vec<DeliveryJob> = (0..25)
        .map(|i| DeliveryJob {
            account_id: account_id.clone(),
            delivery_id: ids::new_id(ids::DELIVERY, now + Duration::milliseconds(i)),
            event_id: ids::new_id(ids::EVENT, now),
            webhook_id: ids::new_id(ids::WEBHOOK, now),
            not_before: None,
            ordered: false,
            round: 0,
        })
        .collect();
    queue.enqueue(&[]).await.expect("an empty batch is fine");
    queue.enqueue(&jobs[..1]).await.unwrap();
    queue.enqueue(&jobs[1..]).await.unwrap();
    let want: BTreeSet<String> = jobs.iter().map(|j| j.delivery_id.clone()).collect();
    let mut got = BTreeSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while got != want && std::time::Instant::now() < deadline {
        for job in receive().await {
            if job.account_id == account_id {
                assert!(jobs.contains(&job), "a job comes out as it went in");
                got.insert(job.delivery_id);
            }
        }
    }
    assert_eq!(got, want, "every enqueued job is received");

    // A deferred job comes out at its time (up to 2 s early, for SQS's whole seconds), still
    // carrying that time.
    let at = Utc::now() + Duration::seconds(3);
    let deferred = DeliveryJob {
        delivery_id: ids::new_id(ids::DELIVERY, Utc::now()),
        not_before: Some(at),
        ..jobs[0].clone()
    };
    queue.defer(&deferred, at).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut came = None;
    while came.is_none() && std::time::Instant::now() < deadline {
        came = receive()
            .await
            .into_iter()
            .find(|job| job.delivery_id == deferred.delivery_id)
            .map(|job| (job, Utc::now()));
    }
    let (job, when) = came.expect("a deferred job is received");
    assert_eq!(job, deferred, "it keeps its time");
    assert!(
        when >= at - Duration::seconds(2),
        "not before its time (less 2 s): {when} for {at}"
    );
}

/// The RateLimiter contract: turns of one webhook are spaced by its rate, also when taken at
/// once; other webhooks have their own; an idle webhook's next turn is now. "Now" is the time
/// a turn is handed out: the `now` asked with, moved on by however long taking it took (a turn
/// from a time gone by would be sent at once, together with the next), so each is checked to
/// be at or after that `now` and within a second of it, and turns at least a spacing apart.
pub async fn rate_limiter_contract(limiter: &dyn crate::ports::RateLimiter) {
    let soon = |turn: DateTime<Utc>, asked: DateTime<Utc>| {
        turn >= asked && turn - asked < Duration::seconds(1)
    };
    // Whole microseconds: what a store of times keeps.
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let webhook = ids::new_id(ids::WEBHOOK, now);
    let mut turns: Vec<DateTime<Utc>> =
        futures::future::join_all((0..20).map(|_| limiter.reserve(&webhook, 50, now)))
            .await
            .into_iter()
            .map(|turn| turn.expect("a turn"))
            .collect();
    turns.sort();
    assert!(
        soon(turns[0], now),
        "the first turn now: {} for {now}",
        turns[0]
    );
    let gaps: Vec<i64> = turns
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).num_microseconds().unwrap())
        .collect();
    // 20 ms apart when taken together; a turn taken a moment later is that much later.
    assert!(
        gaps.iter().all(|gap| *gap >= 20_000) && gaps.iter().sum::<i64>() < 1_380_000,
        "20 turns at 50/s, at least 20 ms apart: {gaps:?}"
    );
    let other = ids::new_id(ids::WEBHOOK, now + Duration::milliseconds(1));
    let turn = limiter.reserve(&other, 50, now).await.unwrap();
    assert!(
        soon(turn, now),
        "another webhook's own turn: {turn} for {now}"
    );
    let later = now + Duration::seconds(10);
    let idle = limiter.reserve(&webhook, 50, later).await.unwrap();
    assert!(
        soon(idle, later),
        "idle: no burst to catch up: {idle} for {later}"
    );
    let after = limiter.reserve(&webhook, 1, later).await.unwrap();
    assert!(
        after >= idle + Duration::milliseconds(20) && after < idle + Duration::seconds(1),
        "the turn after is a spacing of the rate it was taken at: {after} after {idle}"
    );
}

/// The HttpSender contract, against a receiver on `base` (http://127.0.0.1:port) that answers:
/// `/ok` 204, `/fail` 500 with a 10 KiB body, `/redirect` 302 to `/ok`, `/slow` after
/// `slow_secs` + 1 seconds, `/echo` 200 with the request's body and `x-seen-*` of its headers.
pub async fn http_sender_contract(sender: &dyn HttpSender, base: &str) {
    let req = |path: &str| OutboundRequest {
        url: format!("{base}{path}"),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), "dlv_1".into()),
        ],
        body: br#"{"hello":"world"}"#.to_vec(),
    };
    let ok = sender.send(req("/ok")).await;
    assert!(ok.is_success(), "{ok:?}");
    assert_eq!(ok.status, Some(204));

    let echo = sender.send(req("/echo")).await;
    assert_eq!(
        echo.body.as_deref(),
        Some(r#"{"hello":"world"}"#),
        "the body arrives as sent"
    );

    let fail = sender.send(req("/fail")).await;
    assert!(!fail.is_success());
    assert_eq!(fail.status, Some(500));
    assert!(
        fail.body
            .as_ref()
            .is_some_and(|b| !b.is_empty() && b.len() <= 4096),
        "the kept body is cut to 4 KiB"
    );

    let redirect = sender.send(req("/redirect")).await;
    assert!(!redirect.is_success(), "redirects are not followed");
    assert_eq!(redirect.status, Some(302));
    assert_eq!(
        redirect.error.as_ref().map(|e| e.0),
        Some(SendErrorKind::Redirect)
    );

    let slow = sender.send(req("/slow")).await;
    assert!(!slow.is_success());
    assert_eq!(
        slow.error.as_ref().map(|e| e.0),
        Some(SendErrorKind::Timeout)
    );

    let refused = sender
        .send(OutboundRequest {
            url: "http://127.0.0.1:1/".into(),
            ..req("/")
        })
        .await;
    assert!(!refused.is_success());
    assert_eq!(refused.status, None);
    assert_eq!(
        refused.error.as_ref().map(|e| e.0),
        Some(SendErrorKind::Connect)
    );
}
