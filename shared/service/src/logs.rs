//! Delivery logs.

use crate::ports::DeliveryQuery;
use crate::{Service, ServiceError, ServiceResult};
use hookline_model::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use hookline_model::{Delivery, StatusCounts, ValidationError, ids};
use std::collections::HashMap;

/// One page of logs, each delivery with its event's payload (as a JSON string).
pub struct LogPage {
    pub items: Vec<(Delivery, Option<String>)>,
    pub page: u32,
    pub size: u32,
    pub total: u64,
}

impl Service {
    pub async fn list_logs(
        &self,
        account_id: &str,
        mut query: DeliveryQuery,
    ) -> ServiceResult<LogPage> {
        if query.size == 0 {
            query.size = DEFAULT_PAGE_SIZE;
        }
        if query.size > MAX_PAGE_SIZE {
            return Err(
                ValidationError::new("size", format!("must be at most {MAX_PAGE_SIZE}")).into(),
            );
        }
        if let (Some(from), Some(to)) = (query.created_from, query.created_to)
            && from > to
        {
            return Err(
                ValidationError::new("startTimestamp", "must not be after endTimestamp").into(),
            );
        }
        if let (Some(from), Some(to)) = (query.last_attempt_from, query.last_attempt_to)
            && from > to
        {
            return Err(ValidationError::new(
                "startLastRetryTimestamp",
                "must not be after endLastRetryTimestamp",
            )
            .into());
        }
        let page = self.ports.store.list_deliveries(account_id, &query).await?;
        let mut event_ids: Vec<String> = page.items.iter().map(|d| d.event_id.clone()).collect();
        event_ids.sort();
        event_ids.dedup();
        let payloads: HashMap<String, String> = self
            .ports
            .store
            .get_events(account_id, &event_ids)
            .await?
            .into_iter()
            .map(|e| (e.id, e.payload))
            .collect();
        Ok(LogPage {
            items: page
                .items
                .into_iter()
                .map(|d| {
                    let payload = payloads.get(&d.event_id).cloned();
                    (d, payload)
                })
                .collect(),
            page: query.page,
            size: query.size,
            total: page.total,
        })
    }

    /// One delivery with its attempts.
    pub async fn get_log(
        &self,
        account_id: &str,
        delivery_id: &str,
    ) -> ServiceResult<(Delivery, Option<String>)> {
        let delivery = self.find_delivery(account_id, delivery_id).await?;
        let payload = self
            .ports
            .store
            .get_event(account_id, &delivery.event_id)
            .await?
            .map(|e| e.payload);
        Ok((delivery, payload))
    }

    /// One of the account's deliveries; another account's is simply not found.
    pub(crate) async fn find_delivery(
        &self,
        account_id: &str,
        delivery_id: &str,
    ) -> ServiceResult<Delivery> {
        if !ids::has_prefix(delivery_id, ids::DELIVERY) {
            return Err(ServiceError::NotFound("delivery"));
        }
        self.ports
            .store
            .get_delivery(account_id, delivery_id)
            .await?
            .ok_or(ServiceError::NotFound("delivery"))
    }

    /// The account's deliveries per status (`GET /webhook/status`).
    pub async fn status_counts(&self, account_id: &str) -> ServiceResult<StatusCounts> {
        Ok(self.ports.store.status_counts(account_id).await?)
    }
}
