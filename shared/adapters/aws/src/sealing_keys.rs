//! Where the sealing keys come from (docs/DECISIONS.md, "Secrets at rest").
//!
//! - Lambda: envelope encryption. Data keys come from KMS `GenerateDataKey` on the key named by
//!   `HOOKLINE_KMS_KEY_ID`; only their KMS ciphertexts are stored, in one table item
//!   (`SEALING` / `DATA_KEYS`, a list `keys` of blobs, the first one sealing). A cold start
//!   reads the item and decrypts each blob with `kms:Decrypt` (one call while there is one
//!   key). The first cold start of a stack creates the item with a conditional put, so two
//!   cold starts racing agree on one data key.
//! - Local: the main key itself, checked against the SQLite store (`local/src/main_key.rs`,
//!   `KeyRing::verify_key_check`).

use crate::table::{PK, SK};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use hookline_model::sealing::{KeyRing, SealingKey};
use std::collections::HashMap;

const SEALING_PK: &str = "SEALING";
const DATA_KEYS_SK: &str = "DATA_KEYS";
/// The attribute holding the list of KMS-encrypted data keys, newest (sealing) first.
const KEYS: &str = "keys";

fn item_key(sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(SEALING_PK.into())),
        (SK.to_string(), AttributeValue::S(sk.into())),
    ])
}

async fn get_item(
    client: &Client,
    table: &str,
    sk: &str,
) -> Result<Option<HashMap<String, AttributeValue>>, String> {
    client
        .get_item()
        .table_name(table)
        .set_key(Some(item_key(sk)))
        .consistent_read(true)
        .send()
        .await
        .map(|out| out.item)
        .map_err(|e| format!("reading the sealing item {sk}: {}", DisplayErrorContext(e)))
}

/// Puts `attributes` as the item `sk` unless it exists; false when it already did.
async fn put_new_item(
    client: &Client,
    table: &str,
    sk: &str,
    attributes: HashMap<String, AttributeValue>,
) -> Result<bool, String> {
    let mut item = item_key(sk);
    item.extend(attributes);
    match client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(format!(
            "writing the sealing item {sk}: {}",
            DisplayErrorContext(e)
        )),
    }
}

/// The KMS-encrypted data keys stored in the table, newest first.
fn stored_data_keys(item: &HashMap<String, AttributeValue>) -> Result<Vec<Blob>, String> {
    let keys = item
        .get(KEYS)
        .and_then(|v| v.as_l().ok())
        .ok_or("the sealing item DATA_KEYS has no list 'keys'")?;
    let blobs: Vec<Blob> = keys
        .iter()
        .map(|v| v.as_b().cloned())
        .collect::<Result<_, _>>()
        .map_err(|_| "the sealing item DATA_KEYS holds a key that is not binary")?;
    if blobs.is_empty() {
        return Err("the sealing item DATA_KEYS holds no key".into());
    }
    Ok(blobs)
}

/// Lambda's key ring: the data keys stored (KMS-encrypted) in `table`, decrypted with KMS,
/// or a new data key from `GenerateDataKey` on `kms_key_id` when the table has none yet.
pub async fn kms_key_ring(
    dynamodb: &Client,
    table: &str,
    kms: &aws_sdk_kms::Client,
    kms_key_id: &str,
) -> Result<KeyRing, String> {
    let stored = match get_item(dynamodb, table, DATA_KEYS_SK).await? {
        Some(item) => stored_data_keys(&item)?,
        None => {
            let generated = kms
                .generate_data_key()
                .key_id(kms_key_id)
                .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "KMS GenerateDataKey on HOOKLINE_KMS_KEY_ID: {}",
                        aws_sdk_kms::error::DisplayErrorContext(e)
                    )
                })?;
            let (Some(plaintext), Some(ciphertext)) =
                (generated.plaintext(), generated.ciphertext_blob())
            else {
                return Err("KMS GenerateDataKey answered without a key".into());
            };
            let ciphertext = Blob::new(ciphertext.as_ref());
            let created = put_new_item(
                dynamodb,
                table,
                DATA_KEYS_SK,
                HashMap::from([(
                    KEYS.to_string(),
                    AttributeValue::L(vec![AttributeValue::B(ciphertext)]),
                )]),
            )
            .await?;
            if created {
                let key = SealingKey::from_bytes(plaintext.as_ref())
                    .map_err(|e| format!("the data key from KMS: {e}"))?;
                return Ok(KeyRing::new(key, vec![]));
            }
            // Another cold start stored its data key first: use that one.
            let item = get_item(dynamodb, table, DATA_KEYS_SK)
                .await?
                .ok_or("the sealing item DATA_KEYS vanished after a conditional put failed")?;
            stored_data_keys(&item)?
        }
    };
    let decrypts = stored.into_iter().map(|blob| async move {
        let out = kms
            .decrypt()
            .key_id(kms_key_id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob.into_inner()))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "KMS Decrypt of the table's data key with HOOKLINE_KMS_KEY_ID (is it the \
                     key the data key was made with?): {}",
                    aws_sdk_kms::error::DisplayErrorContext(e)
                )
            })?;
        let plaintext = out
            .plaintext()
            .ok_or("KMS Decrypt answered without a plaintext")?;
        SealingKey::from_bytes(plaintext.as_ref()).map_err(|e| format!("a stored data key: {e}"))
    });
    let mut keys = futures::future::try_join_all(decrypts).await?.into_iter();
    let current = keys
        .next()
        .ok_or("the sealing item DATA_KEYS holds no key")?;
    Ok(KeyRing::new(current, keys.collect()))
}
