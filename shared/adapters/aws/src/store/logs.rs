//! Delivery-log queries: each is a Query on the narrowest key or index for its filters
//! (`byWebhook`, `byStatus`, `byType`, `byLastAttempt`, or the account's `DLV#` range), newest
//! first. Filters the chosen key does not cover are applied to that Query's results.
//! `total` comes from the status counters when the query is covered by them (no filter, or
//! only `status`), and otherwise from a `Select=COUNT` Query over the same key range.

use super::*;
use aws_sdk_dynamodb::types::Select;
use hookline_model::ids;

/// A log query, as DynamoDB will run it.
struct Plan {
    index: Option<&'static str>,
    key_condition: String,
    filter: Option<String>,
    names: HashMap<String, String>,
    values: Item,
}

fn millis(t: Option<DateTime<Utc>>, default: i64) -> AttributeValue {
    n(t.map_or(default, |t| t.timestamp_millis()))
}

fn plan(account_id: &str, query: &DeliveryQuery) -> Plan {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let has_created = query.created_from.is_some() || query.created_to.is_some();
    let has_last = query.last_attempt_from.is_some() || query.last_attempt_to.is_some();
    let created_range = |names: &mut HashMap<String, String>, values: &mut Item| {
        let (low, high) = ids::id_bounds(ids::DELIVERY, query.created_from, query.created_to);
        names.insert("#sk".into(), SK.into());
        values.insert(":low".into(), s(format!("DLV#{low}")));
        values.insert(":high".into(), s(format!("DLV#{high}")));
        "#sk BETWEEN :low AND :high"
    };
    let last_range = |names: &mut HashMap<String, String>, values: &mut Item| {
        names.insert("#la".into(), LAST_ATTEMPT_MS.into());
        // No lower bound is the smallest number, not 0: an upper bound before 1970 must not
        // make the range empty-and-reversed, which DynamoDB refuses.
        values.insert(":laFrom".into(), millis(query.last_attempt_from, i64::MIN));
        values.insert(":laTo".into(), millis(query.last_attempt_to, i64::MAX));
        "#la BETWEEN :laFrom AND :laTo"
    };

    // The key: the most selective filter that has an index.
    let (index, hash_name, hash_value) = if let Some(webhook_id) = &query.webhook_id {
        let value = s(log_index_key(account_id, webhook_id));
        (Some(BY_WEBHOOK), WEBHOOK_KEY, value)
    } else if let Some(status) = query.status {
        (
            Some(BY_STATUS),
            STATUS_KEY,
            counters::status_key(account_id, status),
        )
    } else if let Some(event_type) = &query.event_type {
        let value = s(log_index_key(account_id, event_type));
        (Some(BY_TYPE), TYPE_KEY, value)
    } else {
        let index = has_last.then_some(BY_LAST_ATTEMPT);
        (index, PK, s(account_pk(account_id)))
    };
    names.insert("#hk".into(), hash_name.to_string());
    values.insert(":hk".into(), hash_value);
    let range_condition = if index == Some(BY_LAST_ATTEMPT) {
        last_range(&mut names, &mut values)
    } else {
        // Also keeps a base-table query to the delivery items.
        created_range(&mut names, &mut values)
    };
    let key_condition = format!("#hk = :hk AND {range_condition}");

    // Whatever the key does not cover.
    let mut filters = Vec::new();
    if index != Some(BY_WEBHOOK)
        && let Some(webhook_id) = &query.webhook_id
    {
        names.insert("#wh".into(), "webhookId".into());
        values.insert(":wh".into(), s(webhook_id.as_str()));
        filters.push("#wh = :wh");
    }
    if index != Some(BY_STATUS)
        && let Some(status) = query.status
    {
        names.insert("#st".into(), "status".into());
        values.insert(":st".into(), s(status.as_str()));
        filters.push("#st = :st");
    }
    if index != Some(BY_TYPE)
        && let Some(event_type) = &query.event_type
    {
        names.insert("#ty".into(), "eventType".into());
        values.insert(":ty".into(), s(event_type.as_str()));
        filters.push("#ty = :ty");
    }
    if has_last && index != Some(BY_LAST_ATTEMPT) {
        filters.push(last_range(&mut names, &mut values));
    }
    if has_created && index == Some(BY_LAST_ATTEMPT) {
        filters.push(created_range(&mut names, &mut values));
    }
    Plan {
        index,
        key_condition,
        filter: (!filters.is_empty()).then(|| filters.join(" AND ")),
        names,
        values,
    }
}

impl DynamoStore {
    fn plan_query(
        &self,
        plan: &Plan,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .set_index_name(plan.index.map(String::from))
            .key_condition_expression(&plan.key_condition)
            .set_filter_expression(plan.filter.clone())
            .set_expression_attribute_names(Some(plan.names.clone()))
            .set_expression_attribute_values(Some(plan.values.clone()))
    }

    async fn count(&self, plan: &Plan) -> PortResult<u64> {
        let mut total = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .plan_query(plan)
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("Query"))?;
            total += out.count.max(0) as u64;
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(total);
            }
        }
    }

    /// The table keys of one page, in the plan's order (newest first).
    async fn page_keys(&self, plan: &Plan, skip: u64, size: usize) -> PortResult<Vec<Item>> {
        let mut names = plan.names.clone();
        names.insert("#pk".into(), PK.into());
        names.insert("#sk".into(), SK.into());
        let mut seen = 0u64;
        let mut keys = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .plan_query(plan)
                .set_expression_attribute_names(Some(names.clone()))
                .projection_expression("#pk, #sk")
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("Query"))?;
            for mut item in out.items.unwrap_or_default() {
                if seen >= skip && keys.len() < size {
                    keys.push(HashMap::from_iter(
                        [PK, SK].map(|k| (k.to_string(), item.remove(k).unwrap_or(s("")))),
                    ));
                }
                seen += 1;
            }
            start = out.last_evaluated_key;
            if start.is_none() || keys.len() >= size {
                return Ok(keys);
            }
        }
    }
}

pub(super) async fn list_deliveries(
    store: &DynamoStore,
    account_id: &str,
    query: &DeliveryQuery,
) -> PortResult<DeliveryPage> {
    let plan = plan(account_id, query);
    let counted = query.webhook_id.is_none()
        && query.event_type.is_none()
        && query.created_from.is_none()
        && query.created_to.is_none()
        && query.last_attempt_from.is_none()
        && query.last_attempt_to.is_none();
    let total = if counted {
        let counts = counters::status_counts(store, account_id).await?;
        query.status.map_or(counts.total(), |s| counts.get(s))
    } else {
        store.count(&plan).await?
    };
    let skip = query.page as u64 * query.size as u64;
    // Counters folded from the stream lag the log by a moment: a total from them never hides
    // a page of deliveries already stored.
    if query.size == 0 || (skip >= total && !(counted && store.counting == Counting::FromStream)) {
        return Ok(DeliveryPage {
            items: vec![],
            total,
        });
    }
    let keys = store.page_keys(&plan, skip, query.size as usize).await?;
    let order: Vec<String> = keys
        .iter()
        .filter_map(|k| k.get(SK).and_then(|v| v.as_s().ok()).cloned())
        .collect();
    let mut found: HashMap<String, Delivery> = HashMap::new();
    for item in store.batch_get(keys).await? {
        let sk = item
            .get(SK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        found.insert(sk, from_item(item)?);
    }
    let items: Vec<Delivery> = order.iter().filter_map(|sk| found.remove(sk)).collect();
    Ok(DeliveryPage {
        total: total.max(skip + items.len() as u64),
        items,
    })
}
