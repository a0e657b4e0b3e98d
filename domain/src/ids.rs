//! Identifier newtypes. Ids are UUID v7, so they sort by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID (read back from storage or a URL).
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// An organization, which is also the tenant: every event and read-model row of an
    /// organization carries its id as `tenant_id`.
    OrganizationId
);
id_type!(
    /// The tenant partition key. Equal to the owning organization's id.
    TenantId
);
id_type!(
    /// One event, unique platform-wide; also its NATS message id (deduplication).
    EventId
);

id_type!(
    /// A store (business unit) of an organization.
    StoreId
);
id_type!(
    /// An agent instance deployed into a store.
    AgentInstanceId
);
id_type!(
    /// A conversation held by an agent instance.
    ConversationId
);
id_type!(
    /// A member of an organization's team.
    MemberId
);
id_type!(
    /// An organization API key (`sk_live_…`).
    ApiKeyId
);
id_type!(
    /// A publishable widget key (`pk_widget_…`) bound to one agent instance.
    WidgetKeyId
);
id_type!(
    /// One message of a conversation.
    MessageId
);

impl From<OrganizationId> for TenantId {
    fn from(id: OrganizationId) -> Self {
        TenantId(id.0)
    }
}
