//! How a store decides: each command is checked against the state its events left and its
//! organization's context, then refused or answered with the events that record it.

use crate::DomainError;

use super::{Store, StoreAction, StoreCommand, StoreEvent};

impl Store {
    /// The events that record `command`, or why it is refused.
    pub(super) fn decide(&self, command: StoreCommand) -> Result<Vec<StoreEvent>, DomainError> {
        command.org.ensure_accepts_commands()?;
        if let StoreAction::Create {
            id,
            organization_id,
            name,
            domain,
            platform,
        } = command.action
        {
            if self.exists() {
                return Err(DomainError::AlreadyExists("store"));
            }
            return Ok(vec![StoreEvent::StoreCreated {
                store_id: id,
                organization_id,
                name,
                domain,
                platform,
            }]);
        }
        if !self.exists() {
            return Err(DomainError::NotFound("store"));
        }
        Ok(match command.action {
            StoreAction::Create { .. } => unreachable!("handled above"),
            StoreAction::Update {
                name,
                domain,
                platform,
            } => {
                let missing = || DomainError::NotFound("store");
                vec![StoreEvent::StoreUpdated {
                    name: name.or_else(|| self.name.clone()).ok_or_else(missing)?,
                    domain: domain.or_else(|| self.domain.clone()).ok_or_else(missing)?,
                    platform: platform.or(self.platform).ok_or_else(missing)?,
                }]
            }
            StoreAction::Deactivate if !self.active => {
                return Err(DomainError::StoreAlready("deactivated"))
            }
            StoreAction::Deactivate => vec![StoreEvent::StoreDeactivated {}],
            StoreAction::Reactivate if self.active => {
                return Err(DomainError::StoreAlready("active"))
            }
            StoreAction::Reactivate => vec![StoreEvent::StoreReactivated {}],
        })
    }
}
