//! The event-type catalog: built-in types plus those the platform registers.

use crate::{Service, ServiceError, ServiceResult};
use hookline_model::catalog::{Catalog, is_built_in, validate_event_type_name};
use hookline_model::{EventTypeInfo, ValidationError};
use serde::Deserialize;

/// `POST /event-types`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEventType {
    /// Dot-separated segments of letters, digits, `_` and `-`.
    #[schema(example = "survey_finished")]
    pub name: String,
    pub description: String,
}

const MAX_DESCRIPTION: usize = 1000;

impl Service {
    pub async fn register_event_type(&self, input: NewEventType) -> ServiceResult<EventTypeInfo> {
        let name = input.name.trim();
        validate_event_type_name("name", name)?;
        let description = input.description.trim();
        if description.is_empty() || description.chars().count() > MAX_DESCRIPTION {
            return Err(ValidationError::new(
                "description",
                format!("must be 1 to {MAX_DESCRIPTION} characters"),
            )
            .into());
        }
        let info = EventTypeInfo {
            name: name.to_string(),
            description: description.to_string(),
        };
        if is_built_in(name) || !self.ports.store.insert_event_type(&info).await? {
            return Err(ServiceError::Conflict(format!(
                "name: the event type '{name}' already exists"
            )));
        }
        Ok(info)
    }

    /// Every known event type: built-in first, then registered.
    pub async fn catalog(&self) -> ServiceResult<Catalog> {
        Ok(Catalog::new(self.ports.store.list_event_types().await?))
    }

    /// Whether events of this type may be published.
    pub(crate) async fn is_known_event_type(&self, name: &str) -> ServiceResult<bool> {
        Ok(is_built_in(name) || self.ports.store.get_event_type(name).await?.is_some())
    }
}
