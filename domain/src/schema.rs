//! JSON Schemas of the domain's values (`schemars`), so the API's request and response
//! schemas are derived from the very types that validate them. Each constraint is stated
//! here once; the value's `parse` enforces it (the tests below hold the two together).

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::billing::Month;
use crate::ids::*;
use crate::tier::Tier;
use crate::values::*;

/// A slug, as the schema states it: 3–40 of `a-z`, `0-9` and `-`, not starting or ending
/// with a dash ([`Slug::parse`]).
pub const SLUG_PATTERN: &str = "^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$";

/// A month, `YYYY-MM` ([`Month`]'s parser).
pub const MONTH_PATTERN: &str = "^[0-9]{4}-(0[1-9]|1[0-2])$";

/// An amount of dollars as the API takes and shows it ([`Money`]).
pub const MONEY_PATTERN: &str = "^[0-9]+(\\.[0-9]+)?$";

/// A base fee's digits ([`BaseFee::parse`] also bounds it: 0.01 to 1,000,000.00).
pub const BASE_FEE_PATTERN: &str = "^[0-9]{1,7}(\\.[0-9]{1,2})?$";

/// An overage rate's digits ([`OverageRate::parse`] also bounds it: 0.0001 to 1,000.0000).
pub const OVERAGE_RATE_PATTERN: &str = "^[0-9]{1,4}(\\.[0-9]{1,4})?$";

/// Implements `JsonSchema` for `$name` as the inline schema `$schema`.
macro_rules! schema {
    ($name:ty => $schema:tt) => {
        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

/// Implements `JsonSchema` for wire enums: a string, one of their wire names.
macro_rules! enum_schema {
    ($($name:ty),+) => {$(
        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let names: Vec<&str> = <$name>::ALL.iter().map(|v| v.as_str()).collect();
                json_schema!({ "type": "string", "enum": names })
            }
        }
    )+};
}

macro_rules! id_schema {
    ($($name:ty),+) => {$(
        schema!($name => { "type": "string", "format": "uuid" });
    )+};
}

id_schema!(
    OrganizationId,
    TenantId,
    EventId,
    StoreId,
    AgentInstanceId,
    ConversationId,
    MemberId,
    ApiKeyId,
    WidgetKeyId,
    MessageId
);

enum_schema!(
    Role,
    Platform,
    AgentType,
    Channel,
    MessageRole,
    Resolution,
    Tier
);

schema!(OrganizationName => { "type": "string", "minLength": 1, "maxLength": 200 });
schema!(Slug => { "type": "string", "minLength": 3, "maxLength": 40, "pattern": SLUG_PATTERN });
schema!(Email => { "type": "string", "format": "email", "maxLength": 254 });
schema!(StoreName => { "type": "string", "minLength": 1, "maxLength": 200 });
schema!(StoreDomain => {
    "type": "string",
    "maxLength": 253,
    "description": "a host name such as shop.example.com"
});
schema!(KeyName => { "type": "string", "minLength": 1, "maxLength": 100 });
schema!(CustomerRef => { "type": "string", "minLength": 1, "maxLength": 200 });
schema!(MessageContent => { "type": "string", "minLength": 1, "maxLength": 32000 });
schema!(Reason => { "type": "string", "minLength": 1, "maxLength": 1000 });
schema!(Money => {
    "type": "string",
    "pattern": MONEY_PATTERN,
    "description": "USD as a decimal string"
});
schema!(BaseFee => {
    "type": "string",
    "pattern": BASE_FEE_PATTERN,
    "description": "USD a month as a decimal string, at most 2 decimal places, 0.01 to 1000000.00"
});
schema!(OverageRate => {
    "type": "string",
    "pattern": OVERAGE_RATE_PATTERN,
    "description": "USD per conversation as a decimal string, at most 4 decimal places, 0.0001 to 1000.0000"
});
schema!(IncludedConversations => {
    "type": "integer",
    "minimum": 0,
    "maximum": IncludedConversations::MAX
});
schema!(Month => { "type": "string", "pattern": MONTH_PATTERN });

#[cfg(test)]
mod tests {
    use super::*;

    /// `pattern`, matched the way the schema means it, for the characters slugs use.
    fn slug_pattern_matches(s: &str) -> bool {
        let bytes = s.as_bytes();
        let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        (3..=40).contains(&bytes.len())
            && edge(&bytes[0])
            && edge(&bytes[bytes.len() - 1])
            && bytes.iter().all(inner)
    }

    #[test]
    fn the_slug_schema_states_the_parser_s_rule() {
        assert_eq!(SLUG_PATTERN, "^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$");
        for s in [
            "ab",
            "abc",
            "a-c",
            "-ab",
            "ab-",
            "Abc",
            "a_c",
            "a.c",
            "0-0",
            &"a".repeat(40),
            &"a".repeat(41),
        ] {
            assert_eq!(
                Slug::parse(s).is_ok(),
                slug_pattern_matches(s),
                "{s:?}: the parser and the schema disagree"
            );
        }
    }

    #[test]
    fn wire_enums_list_their_wire_names() {
        let schema = schemars::schema_for!(Role);
        assert_eq!(
            schema.get("enum").unwrap(),
            &serde_json::json!(["owner", "admin", "developer", "member"])
        );
    }
}
