//! Secrets on the Lambda path: sealed in the table under a KMS data key, opened to deliver.

use hookline_aws::sealing_keys::kms_key_ring;
use hookline_aws::table::ensure_table;
use hookline_service::webhooks::NewWebhook;

mod common;
mod lambda_stack;
use common::unique;
use lambda_stack::*;

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_sealed_in_the_table_and_opened_to_deliver() {
    let stack = stack().await;
    let (url, mut received) = header_receiver().await;
    let account = stack
        .service
        .create_account("Sealed Clinic")
        .await
        .unwrap()
        .account
        .id;
    let account_secret = stack
        .service
        .set_webhook_secret(&account, Some("acct-secret-Plaintext-9b1c".into()))
        .await
        .unwrap();
    let token = "webhook-token-Plaintext-2e7f";
    let webhook = stack
        .service
        .create_webhook(
            &account,
            NewWebhook {
                url: url.clone(),
                event_type: Some("reading.weight".into()),
                authorization_token: Some(token.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let signing_secret = stack
        .service
        .signing_secret(&account, &webhook.id)
        .await
        .unwrap();

    // The table holds none of them in plaintext, only sealed values.
    let raw = raw_table(&stack).await;
    for (what, secret) in [
        ("account secret", account_secret.as_str()),
        ("authorization token", token),
        (
            "signing secret",
            signing_secret.strip_prefix("whsec_").unwrap(),
        ),
    ] {
        assert!(!raw.contains(secret), "the {what} is stored in plaintext");
    }
    assert!(raw.contains("enc:v1:"), "{raw}");

    // The deliver handler opens them: the receiver gets the secret, the token and a
    // signature made with the signing secret.
    stack.publish(&account).await;
    assert_eq!(deliver_from_queue(&stack).await, 0);
    let (headers, body) = received.recv().await.unwrap();
    assert_eq!(headers["x-webhook-secret"], account_secret.as_str());
    assert_eq!(headers["x-webhook-token"], token);
    let expected = hookline_model::signing::sign(
        &hookline_model::signing::secret_key(&signing_secret).unwrap(),
        headers["webhook-id"].to_str().unwrap(),
        headers["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap(),
        body.as_bytes(),
    );
    assert!(
        headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .any(|s| s == expected),
        "signed with the opened secret"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_starts_share_one_data_key_and_a_wrong_kms_key_fails_the_start() {
    let stack = stack().await;
    // Two cold starts racing on a new table agree on one data key, and a later one reads it.
    let table = unique("hookline");
    ensure_table(&stack.dynamodb, &table).await.unwrap();
    let (first, second) = tokio::join!(
        kms_key_ring(&stack.dynamodb, &table, &stack.kms, &stack.kms_key_id),
        kms_key_ring(&stack.dynamodb, &table, &stack.kms, &stack.kms_key_id),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.current_id(), second.current_id());
    let later = kms_key_ring(&stack.dynamodb, &table, &stack.kms, &stack.kms_key_id)
        .await
        .unwrap();
    assert_eq!(later.current_id(), first.current_id());
    let sealed = first.seal("secret", "ctx").unwrap();
    assert_eq!(later.open(&sealed, "ctx").unwrap(), "secret");

    // A function configured with another KMS key cannot decrypt the data key: it fails at
    // start, instead of serving secrets it cannot open.
    let other_key = new_kms_key(&stack.kms).await;
    let error = kms_key_ring(&stack.dynamodb, &table, &stack.kms, &other_key)
        .await
        .unwrap_err();
    assert!(error.contains("KMS Decrypt"), "{error}");
}
