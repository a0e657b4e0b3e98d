//! The subscription tiers: prices, allowances and limits ([`Tier::list_terms`],
//! [`Tier::limits`]), the one place the price list is written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::values::{AgentType, BaseFee, IncludedConversations, OverageRate, ValidationError};

/// A subscription tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Basic,
    Pro,
    Enterprise,
}

impl Tier {
    /// Every tier, smallest first.
    pub const ALL: &'static [Tier] = &[Tier::Basic, Tier::Pro, Tier::Enterprise];

    /// The wire name (`basic`, `pro`, `enterprise`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Basic => "basic",
            Tier::Pro => "pro",
            Tier::Enterprise => "enterprise",
        }
    }

    /// What the tier allows.
    pub fn limits(self) -> Limits {
        match self {
            Tier::Basic => Limits {
                stores: Some(1),
                active_instances: Some(3),
                agent_types: &[AgentType::CustomerService],
                members_beyond_owner: false,
                prompt_overrides: false,
                requests_per_minute: 600,
            },
            Tier::Pro => Limits {
                stores: Some(10),
                active_instances: Some(50),
                agent_types: AgentType::ALL,
                members_beyond_owner: true,
                prompt_overrides: false,
                requests_per_minute: 3_000,
            },
            Tier::Enterprise => Limits {
                stores: None,
                active_instances: None,
                agent_types: AgentType::ALL,
                members_beyond_owner: true,
                prompt_overrides: true,
                requests_per_minute: 12_000,
            },
        }
    }

    /// The list price of Basic and Pro; Enterprise has none (it is negotiated).
    pub fn list_terms(self) -> Option<Terms> {
        match self {
            Tier::Basic => Some(Terms {
                base_fee: BaseFee::cents(9_900),
                included_conversations: IncludedConversations::of(1_000),
                overage_rate: OverageRate::cents(10),
            }),
            Tier::Pro => Some(Terms {
                base_fee: BaseFee::cents(49_900),
                included_conversations: IncludedConversations::of(5_000),
                overage_rate: OverageRate::cents(5),
            }),
            Tier::Enterprise => None,
        }
    }

    /// The smallest tier whose limits satisfy `fits`.
    pub fn smallest_where(fits: impl Fn(&Limits) -> bool) -> Tier {
        [Tier::Basic, Tier::Pro, Tier::Enterprise]
            .into_iter()
            .find(|t| fits(&t.limits()))
            .unwrap_or(Tier::Enterprise)
    }
}

/// What a tier allows. `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub stores: Option<u32>,
    pub active_instances: Option<u32>,
    pub agent_types: &'static [AgentType],
    pub members_beyond_owner: bool,
    pub prompt_overrides: bool,
    pub requests_per_minute: u32,
}

/// What an organization pays: the base fee per month, the conversations it includes, and the
/// price of each one beyond them. The fee and the rate are validated values where they enter
/// ([`BaseFee`]: cents, up to 1,000,000.00; [`OverageRate`]: up to 4 places, up to 1,000.0000),
/// so terms out of bounds cannot be built or recorded now. Recorded terms decode as they were
/// recorded ([`RecordedTerms`]): events written before the bounds existed stay readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RecordedTerms")]
pub struct Terms {
    pub base_fee: BaseFee,
    pub included_conversations: IncludedConversations,
    pub overage_rate: OverageRate,
}

/// Terms as an event or a read model recorded them, before any bound is checked.
#[derive(Deserialize)]
struct RecordedTerms {
    base_fee: rust_decimal::Decimal,
    included_conversations: u64,
    overage_rate: rust_decimal::Decimal,
}

impl From<RecordedTerms> for Terms {
    fn from(recorded: RecordedTerms) -> Self {
        Terms {
            base_fee: BaseFee::recorded(recorded.base_fee),
            included_conversations: IncludedConversations::recorded(
                recorded.included_conversations,
            ),
            overage_rate: OverageRate::recorded(recorded.overage_rate),
        }
    }
}

impl Terms {
    /// Terms for `tier`: its list price, or for Enterprise the negotiated `custom` terms
    /// (required, including at least one conversation; the fee and the rate are positive by
    /// their types).
    ///
    /// # Errors
    /// When Enterprise has no custom terms or includes no conversation, or when custom terms
    /// are given for a listed tier.
    pub fn for_tier(tier: Tier, custom: Option<Terms>) -> Result<Terms, ValidationError> {
        match (tier.list_terms(), custom) {
            (Some(list), None) => Ok(list),
            (Some(_), Some(_)) => Err(ValidationError::new(
                "base_fee",
                "custom prices are for the enterprise tier only",
            )),
            (None, None) => Err(ValidationError::new(
                "base_fee",
                "the enterprise tier needs base_fee, included_conversations and overage_rate",
            )),
            (None, Some(terms)) => {
                if terms.included_conversations.is_zero() {
                    return Err(ValidationError::new(
                        "included_conversations",
                        "must be positive",
                    ));
                }
                Ok(terms)
            }
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "basic" => Ok(Tier::Basic),
            "pro" => Ok(Tier::Pro),
            "enterprise" => Ok(Tier::Enterprise),
            _ => Err(ValidationError::new(
                "tier",
                "must be one of basic, pro, enterprise",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enterprise_needs_positive_custom_terms() {
        let custom = Terms {
            base_fee: BaseFee::cents(250_000),
            included_conversations: IncludedConversations::of(50_000),
            overage_rate: OverageRate::cents(2),
        };
        assert_eq!(Terms::for_tier(Tier::Enterprise, Some(custom)), Ok(custom));
        assert!(Terms::for_tier(Tier::Enterprise, None).is_err());
        assert!(Terms::for_tier(Tier::Pro, Some(custom)).is_err());
        let zero = Terms {
            included_conversations: IncludedConversations::ZERO,
            ..custom
        };
        assert_eq!(
            Terms::for_tier(Tier::Enterprise, Some(zero))
                .unwrap_err()
                .field,
            "included_conversations"
        );
        assert_eq!(
            Terms::for_tier(Tier::Basic, None)
                .unwrap()
                .base_fee
                .to_string(),
            "99.00"
        );
    }

    #[test]
    fn smallest_tier_for_a_need() {
        assert_eq!(
            Tier::smallest_where(|l| l.stores.is_none_or(|n| n >= 2)),
            Tier::Pro
        );
        assert_eq!(
            Tier::smallest_where(|l| l.prompt_overrides),
            Tier::Enterprise
        );
    }

    #[test]
    fn recorded_terms_decode_as_recorded_while_requests_are_bounded() {
        // Terms an owner could record before the bounds existed (the hardening issue's
        // example): the history that holds them must stay readable.
        let old = serde_json::json!({
            "base_fee": "0.000000000000000000000000001",
            "included_conversations": 18446744073709551615u64,
            "overage_rate": "0.0000000001",
        });
        let terms: Terms = serde_json::from_value(old).expect("recorded terms decode");
        assert_eq!(
            terms.base_fee.get().to_string(),
            "0.000000000000000000000000001"
        );
        assert_eq!(
            terms.included_conversations.get(),
            u64::from(IncludedConversations::MAX)
        );
        // What a request sends is still checked where it enters.
        assert!(serde_json::from_value::<BaseFee>(serde_json::json!("0.001")).is_err());
        assert!(
            serde_json::from_value::<IncludedConversations>(serde_json::json!(1_000_000_001u64))
                .is_err()
        );
        // And terms written now read back as written.
        let list = Tier::Pro.list_terms().unwrap();
        let again: Terms = serde_json::from_value(serde_json::to_value(list).unwrap()).unwrap();
        assert_eq!(again, list);
    }
}
