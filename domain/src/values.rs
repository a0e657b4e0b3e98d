//! Validated values. Each is built through `parse`, so an invalid one cannot exist past the
//! boundary; deserializing goes through the same `parse`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that failed validation, naming the field it was meant for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The field (wire name) the value was given for.
    pub field: &'static str,
    /// What is wrong with it, in words a client can show.
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The field name used in validation errors.
            pub const FIELD: &'static str = $field;

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_value!(
    /// An organization's display name: 1–200 characters after trimming, no control characters.
    OrganizationName,
    "name"
);
string_value!(
    /// A platform-wide unique handle: 3–40 of `a-z`, `0-9` and `-`, starting and ending with a
    /// letter or digit.
    Slug,
    "slug"
);
string_value!(
    /// An email address: `local@domain.tld`, at most 254 characters, no spaces.
    Email,
    "billing_email"
);

impl OrganizationName {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into().trim().to_owned();
        if value.is_empty() {
            return Err(ValidationError::new(Self::FIELD, "must not be empty"));
        }
        if value.chars().count() > 200 {
            return Err(ValidationError::new(
                Self::FIELD,
                "must be at most 200 characters",
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(ValidationError::new(
                Self::FIELD,
                "must not contain control characters",
            ));
        }
        Ok(Self(value))
    }
}

impl Slug {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !(3..=40).contains(&value.len()) {
            return Err(ValidationError::new(
                Self::FIELD,
                "must be 3 to 40 characters long",
            ));
        }
        if !value.chars().all(allowed) {
            return Err(ValidationError::new(
                Self::FIELD,
                "may contain only lowercase letters, digits and dashes",
            ));
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(ValidationError::new(
                Self::FIELD,
                "must not start or end with a dash",
            ));
        }
        Ok(Self(value))
    }
}

impl Email {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into().trim().to_owned();
        let malformed = || {
            ValidationError::new(
                Self::FIELD,
                "must be an email address like name@example.com",
            )
        };
        if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed());
        }
        let (local, domain) = value.rsplit_once('@').ok_or_else(malformed)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        if local.is_empty() || local.contains('@') || local.len() > 64 || !domain_ok {
            return Err(malformed());
        }
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(Reason::parse("  unpaid\n").unwrap().as_str(), "unpaid");
        assert!(Reason::parse("line one\nline two\tend").is_ok());
        assert!(Reason::parse("x".repeat(Reason::MAX_CHARS)).is_ok());
        for bad in [
            String::new(),
            "   ".into(),
            "a\0b".into(),
            "bell\u{7}".into(),
            "x".repeat(Reason::MAX_CHARS + 1),
            "x".repeat(500_000),
        ] {
            let err = Reason::parse(bad.clone()).unwrap_err();
            assert_eq!(err.field, "reason", "{bad:?}");
        }
        let from_json: Result<Reason, _> = serde_json::from_str("\"a\\u0000b\"");
        assert!(from_json.is_err());
    }

    #[test]
    fn slugs() {
        assert!(Slug::parse("acme-2").is_ok());
        assert!(Slug::parse("ab").is_err());
        assert!(Slug::parse("a".repeat(41)).is_err());
        assert!(Slug::parse("a".repeat(40)).is_ok());
        assert!(Slug::parse("Acme").is_err());
        assert!(Slug::parse("ac_me").is_err());
        assert!(Slug::parse("-acme").is_err());
        assert!(Slug::parse("acme-").is_err());
    }

    #[test]
    fn emails() {
        assert!(Email::parse("billing@acme.com").is_ok());
        for bad in [
            "",
            "acme.com",
            "@acme.com",
            "a@acme",
            "a@@acme.com",
            "a b@acme.com",
            "a@.com",
            "a@acme..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            OrganizationName::parse("  Acme  ").unwrap().as_str(),
            "Acme"
        );
        assert!(OrganizationName::parse("   ").is_err());
        assert!(OrganizationName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn base_fees_have_cents_and_bounds() {
        let fee = |s: &str| BaseFee::parse(s.parse().unwrap());
        assert_eq!(fee("0.01").unwrap().to_string(), "0.01");
        assert_eq!(fee("2500.00").unwrap().to_string(), "2500.00");
        assert!(fee("1000000.00").is_ok());
        assert!(fee("0.010").is_ok(), "trailing zeros are not places");
        for bad in [
            "0.000000000000000000000000001",
            "0.001",
            "0",
            "0.00",
            "-5",
            "1000000.01",
        ] {
            assert_eq!(fee(bad).unwrap_err().field, "base_fee", "{bad}");
        }
        assert!(fee("0.001")
            .unwrap_err()
            .message
            .contains("2 decimal places"));
    }

    #[test]
    fn overage_rates_have_four_places_and_bounds() {
        let rate = |s: &str| OverageRate::parse(s.parse().unwrap());
        assert!(rate("0.0001").is_ok());
        assert!(rate("0.0125").is_ok());
        assert!(rate("1000").is_ok());
        for bad in ["0.0000000001", "0.00001", "0", "-0.5", "1000.0001"] {
            assert_eq!(rate(bad).unwrap_err().field, "overage_rate", "{bad}");
        }
    }

    #[test]
    fn prices_keep_their_wire_format() {
        // Events already stored hold decimal strings; they decode, and encode the same.
        let fee: BaseFee = serde_json::from_str("\"2500.00\"").unwrap();
        assert_eq!(serde_json::to_string(&fee).unwrap(), "\"2500.00\"");
        let rate: OverageRate = serde_json::from_str("\"0.0125\"").unwrap();
        assert_eq!(serde_json::to_string(&rate).unwrap(), "\"0.0125\"");
        assert!(serde_json::from_str::<BaseFee>("\"0.001\"").is_err());
        assert!(serde_json::from_str::<OverageRate>("\"0.00001\"").is_err());
    }

    #[test]
    fn included_conversations_are_bounded_and_lossless() {
        assert_eq!(IncludedConversations::parse(0).unwrap().get(), 0);
        let most = IncludedConversations::parse(1_000_000_000).unwrap();
        assert_eq!(i64::from(most), 1_000_000_000);
        assert_eq!(u64::from(most), 1_000_000_000);
        assert_eq!(most.to_string(), "1000000000");
        for bad in [1_000_000_001, u64::from(u32::MAX) + 1, u64::MAX] {
            assert_eq!(
                IncludedConversations::parse(bad).unwrap_err().field,
                "included_conversations",
                "{bad}"
            );
        }
        assert!(IncludedConversations::try_from(-1i64).is_err());
        assert_eq!(
            IncludedConversations::try_from(50_000i64).unwrap().get(),
            50_000
        );
        // The wire format: a JSON integer, as stored events hold it.
        let n: IncludedConversations = serde_json::from_str("50000").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "50000");
        assert!(serde_json::from_str::<IncludedConversations>("18446744073709551615").is_err());
        assert!(serde_json::from_str::<IncludedConversations>("-1").is_err());
    }

    #[test]
    fn deserializing_validates() {
        let err = serde_json::from_str::<Slug>("\"NO\"").unwrap_err();
        assert!(err.to_string().contains("slug"));
    }
}

string_value!(
    /// A store's display name: 1–200 characters after trimming.
    StoreName,
    "name"
);
string_value!(
    /// A store's web domain, such as `shop.example.com`: lowercase host name, 1–253 characters.
    StoreDomain,
    "domain"
);
string_value!(
    /// An API or widget key's label: 1–100 characters after trimming.
    KeyName,
    "name"
);
string_value!(
    /// Who the end customer is in the tenant's own terms (an id, an email…): 1–200 characters.
    CustomerRef,
    "customer_ref"
);
string_value!(
    /// A message's text: 1–32,000 characters.
    MessageContent,
    "content"
);
string_value!(
    /// Why something was done, in an operator's words (an organization's suspension): 1–1,000
    /// characters after trimming, no control characters but line breaks and tabs.
    Reason,
    "reason"
);

fn trimmed_text(field: &'static str, value: String, max: usize) -> Result<String, ValidationError> {
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value)
}

impl StoreName {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        trimmed_text(Self::FIELD, value.into(), 200).map(Self)
    }
}

impl KeyName {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        trimmed_text(Self::FIELD, value.into(), 100).map(Self)
    }
}

impl CustomerRef {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        trimmed_text(Self::FIELD, value.into(), 200).map(Self)
    }
}

impl Reason {
    /// The most characters a reason may have.
    pub const MAX_CHARS: usize = 1000;

    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        trimmed_text(Self::FIELD, value.into(), Self::MAX_CHARS).map(Self)
    }
}

impl MessageContent {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        if value.trim().is_empty() {
            return Err(ValidationError::new(Self::FIELD, "must not be empty"));
        }
        if value.chars().count() > 32_000 {
            return Err(ValidationError::new(
                Self::FIELD,
                "must be at most 32000 characters",
            ));
        }
        if value.contains('\0') {
            return Err(ValidationError::new(
                Self::FIELD,
                "must not contain NUL characters",
            ));
        }
        Ok(Self(value))
    }
}

impl StoreDomain {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into().trim().to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if value.is_empty() || value.len() > 253 || !value.split('.').all(label_ok) {
            return Err(ValidationError::new(
                Self::FIELD,
                "must be a host name such as shop.example.com",
            ));
        }
        Ok(Self(value))
    }
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(ValidationError::new(
                        $field,
                        concat!("must be one of ", $($wire, " "),+),
                    )),
                }
            }
        }
    };
}

wire_enum!(
    /// A member's role. Each includes the ones after it: owner ⊃ admin ⊃ developer ⊃ member.
    Role, "role" { Owner => "owner", Admin => "admin", Developer => "developer", Member => "member" }
);
wire_enum!(
    /// Where a store runs.
    Platform, "platform" { Shopify => "shopify", Woocommerce => "woocommerce", Magento => "magento", Bigcommerce => "bigcommerce", Custom => "custom" }
);
wire_enum!(
    /// The kinds of agent the catalog offers.
    AgentType, "agent_type" { CustomerService => "customer_service", Sales => "sales", Marketing => "marketing" }
);
wire_enum!(
    /// How a conversation reached the agent.
    Channel, "channel" { Web => "web", Email => "email", Api => "api" }
);
wire_enum!(
    /// Who wrote a message.
    MessageRole, "role" { Customer => "customer", Agent => "agent" }
);
wire_enum!(
    /// How a conversation ended.
    Resolution, "resolution" { Resolved => "resolved", Abandoned => "abandoned", Escalated => "escalated" }
);

impl Role {
    /// Whether this role includes everything `other` may do.
    pub fn includes(self, other: Role) -> bool {
        // Declaration order is owner, admin, developer, member: smaller is stronger.
        self <= other
    }
}

/// An amount of US dollars. Never a float; serialized as a decimal string (`"99.00"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(pub rust_decimal::Decimal);

impl Money {
    /// `units` cents, e.g. `Money::cents(9900)` is $99.00.
    pub fn cents(units: i64) -> Self {
        Money(rust_decimal::Decimal::new(units, 2))
    }

    pub fn is_negative(&self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

/// A decimal of at most `places` decimal places in `min..=max`, or why not, for `field`.
fn bounded_decimal(
    field: &'static str,
    value: rust_decimal::Decimal,
    places: u32,
    (min, max): (rust_decimal::Decimal, rust_decimal::Decimal),
) -> Result<rust_decimal::Decimal, ValidationError> {
    if value.normalize().scale() > places {
        return Err(ValidationError::new(
            field,
            format!("must have at most {places} decimal places"),
        ));
    }
    if value < min || value > max {
        return Err(ValidationError::new(
            field,
            format!("must be from {min} to {max}"),
        ));
    }
    Ok(value)
}

/// A monthly base fee in US dollars: at most 2 decimal places, from 0.01 to 1,000,000.00.
/// Serialized as a decimal string, as [`Money`] is (stored events keep decoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "rust_decimal::Decimal", into = "rust_decimal::Decimal")]
pub struct BaseFee(rust_decimal::Decimal);

impl BaseFee {
    /// The field name used in validation errors.
    pub const FIELD: &'static str = "base_fee";
    /// The smallest fee, 0.01.
    pub const MIN: rust_decimal::Decimal = rust_decimal::Decimal::from_parts(1, 0, 0, false, 2);
    /// The largest fee, 1,000,000.00.
    pub const MAX: rust_decimal::Decimal =
        rust_decimal::Decimal::from_parts(100_000_000, 0, 0, false, 2);

    /// # Errors
    /// When `value` has more than 2 decimal places or lies outside 0.01–1,000,000.00.
    pub fn parse(value: rust_decimal::Decimal) -> Result<Self, ValidationError> {
        bounded_decimal(Self::FIELD, value, 2, (Self::MIN, Self::MAX)).map(Self)
    }

    /// `units` cents, for the list prices (which are within bounds).
    pub(crate) const fn cents(units: u32) -> Self {
        BaseFee(rust_decimal::Decimal::from_parts(units, 0, 0, false, 2))
    }

    /// A fee as it was recorded, unchecked: terms recorded before the bounds existed may hold
    /// any amount, and history must stay readable ([`crate::Terms`] decodes through this).
    pub fn recorded(value: rust_decimal::Decimal) -> Self {
        Self(value)
    }

    pub fn get(self) -> rust_decimal::Decimal {
        self.0
    }
}

/// The price of one conversation beyond the included ones, in US dollars: at most 4 decimal
/// places, from 0.0001 to 1,000.0000. Serialized as a decimal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "rust_decimal::Decimal", into = "rust_decimal::Decimal")]
pub struct OverageRate(rust_decimal::Decimal);

impl OverageRate {
    /// The field name used in validation errors.
    pub const FIELD: &'static str = "overage_rate";
    /// The smallest rate, 0.0001.
    pub const MIN: rust_decimal::Decimal = rust_decimal::Decimal::from_parts(1, 0, 0, false, 4);
    /// The largest rate, 1,000.0000.
    pub const MAX: rust_decimal::Decimal =
        rust_decimal::Decimal::from_parts(10_000_000, 0, 0, false, 4);

    /// # Errors
    /// When `value` has more than 4 decimal places or lies outside 0.0001–1,000.0000.
    pub fn parse(value: rust_decimal::Decimal) -> Result<Self, ValidationError> {
        bounded_decimal(Self::FIELD, value, 4, (Self::MIN, Self::MAX)).map(Self)
    }

    /// `units` cents, for the list prices (which are within bounds).
    pub(crate) const fn cents(units: u32) -> Self {
        OverageRate(rust_decimal::Decimal::from_parts(units, 0, 0, false, 2))
    }

    /// A rate as it was recorded, unchecked (see [`BaseFee::recorded`]).
    pub fn recorded(value: rust_decimal::Decimal) -> Self {
        Self(value)
    }

    pub fn get(self) -> rust_decimal::Decimal {
        self.0
    }
}

/// How many conversations a month's base fee includes: a whole number from 0 to
/// 1,000,000,000 ([`IncludedConversations::MAX`]). Held as a `u32`, so it converts without loss
/// to the `u64` of the domain's arithmetic, the `i64` (BIGINT) of the read model and every
/// JSON reader's numbers: the usage, the dashboard and the invoice show the same number.
/// Serialized as a JSON integer, as stored events always held it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct IncludedConversations(u32);

impl IncludedConversations {
    /// The field name used in validation errors.
    pub const FIELD: &'static str = "included_conversations";
    /// The most a month may include.
    pub const MAX: u32 = 1_000_000_000;
    /// None included (what a reader shows for an organization without terms).
    pub const ZERO: Self = Self(0);

    /// # Errors
    /// When `value` is above [`Self::MAX`].
    pub fn parse(value: u64) -> Result<Self, ValidationError> {
        u32::try_from(value)
            .ok()
            .filter(|n| *n <= Self::MAX)
            .map(Self)
            .ok_or_else(|| {
                ValidationError::new(
                    Self::FIELD,
                    format!("must be a whole number from 0 to {}", Self::MAX),
                )
            })
    }

    /// `n` conversations, for the list prices (which are within bounds).
    pub(crate) const fn of(n: u32) -> Self {
        Self(n)
    }

    /// An allowance as it was recorded (see [`BaseFee::recorded`]): one above the bound, which
    /// only terms recorded before it existed can hold, reads as the bound, so their history
    /// stays readable. Such an allowance (a billion or more conversations a month) was never
    /// reached either way.
    pub fn recorded(value: u64) -> Self {
        Self(u32::try_from(value).unwrap_or(u32::MAX).min(Self::MAX))
    }

    pub fn get(self) -> u64 {
        u64::from(self.0)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl TryFrom<u64> for IncludedConversations {
    type Error = ValidationError;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

/// A read model's BIGINT, checked on the way back.
impl TryFrom<i64> for IncludedConversations {
    type Error = ValidationError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        u64::try_from(value)
            .map_err(|_| ValidationError::new(Self::FIELD, "must not be negative"))
            .and_then(Self::parse)
    }
}

impl From<IncludedConversations> for u64 {
    fn from(value: IncludedConversations) -> u64 {
        u64::from(value.0)
    }
}

impl From<IncludedConversations> for i64 {
    fn from(value: IncludedConversations) -> i64 {
        i64::from(value.0)
    }
}

impl From<IncludedConversations> for f64 {
    fn from(value: IncludedConversations) -> f64 {
        f64::from(value.0)
    }
}

impl From<IncludedConversations> for rust_decimal::Decimal {
    fn from(value: IncludedConversations) -> rust_decimal::Decimal {
        rust_decimal::Decimal::from(value.0)
    }
}

impl fmt::Display for IncludedConversations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

macro_rules! decimal_value_conversions {
    ($($name:ident),+) => {$(
        impl TryFrom<rust_decimal::Decimal> for $name {
            type Error = ValidationError;
            fn try_from(value: rust_decimal::Decimal) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for rust_decimal::Decimal {
            fn from(value: $name) -> rust_decimal::Decimal {
                value.0
            }
        }

        impl From<$name> for Money {
            fn from(value: $name) -> Money {
                Money(value.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )+};
}

decimal_value_conversions!(BaseFee, OverageRate);

/// The most a free-form JSON object (settings, agent config) may weigh, serialized.
pub const MAX_JSON_OBJECT_BYTES: usize = 64 * 1024;

/// Checks a free-form JSON object before it goes into an event: at most 64 KiB, nested at
/// most 16 deep, no NUL characters (PostgreSQL's jsonb refuses them), and numbers that are
/// integers (a float may not read back from jsonb exactly as written, and the hash chain
/// covers the payload).
///
/// # Errors
/// A [`ValidationError`] for `field` saying what is wrong.
pub fn validate_json_object(
    field: &'static str,
    object: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ValidationError> {
    fn walk(value: &serde_json::Value, depth: usize) -> Result<(), &'static str> {
        if depth > 16 {
            return Err("is nested too deeply (16 levels at most)");
        }
        match value {
            serde_json::Value::String(s) if s.contains('\0') => {
                Err("must not contain NUL characters")
            }
            serde_json::Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
                Err("may hold whole numbers only (write decimals as strings)")
            }
            serde_json::Value::Array(items) => items.iter().try_for_each(|v| walk(v, depth + 1)),
            serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| {
                if k.contains('\0') {
                    return Err("must not contain NUL characters");
                }
                walk(v, depth + 1)
            }),
            _ => Ok(()),
        }
    }
    let size = serde_json::to_vec(object)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_JSON_OBJECT_BYTES {
        return Err(ValidationError::new(field, "must be at most 64 KiB"));
    }
    object
        .values()
        .chain(std::iter::empty())
        .try_for_each(|v| walk(v, 1))
        .and_then(|()| {
            if object.keys().any(|k| k.contains('\0')) {
                Err("must not contain NUL characters")
            } else {
                Ok(())
            }
        })
        .map_err(|message| ValidationError::new(field, message))
}
