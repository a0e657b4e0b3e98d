//! The feed cursor.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A point in the feed: the writing transaction's id and the event's insertion position.
///
/// `position` alone is not a safe order (a later position can commit first); ordered by
/// `(transaction_id, position)` and read only below the oldest running transaction, the feed
/// never skips or repeats an event, and the order is causal. Relay, projection checkpoints,
/// rebuilds, tenant replay and consistency tokens all use this one order.
///
/// Its text form, used in headers and consistency tokens, is `<transaction_id>-<position>`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub struct Cursor {
    pub transaction_id: i64,
    pub position: i64,
}

impl Cursor {
    /// Before every event.
    pub const START: Cursor = Cursor {
        transaction_id: 0,
        position: 0,
    };

    pub const fn new(transaction_id: i64, position: i64) -> Self {
        Self {
            transaction_id,
            position,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.transaction_id, self.position)
    }
}

/// A cursor string that is not `<transaction_id>-<position>` with two non-negative integers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a position looks like <transaction>-<position>, for example 7421-3051")]
pub struct CursorParseError;

impl FromStr for Cursor {
    type Err = CursorParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tx, pos) = s.trim().split_once('-').ok_or(CursorParseError)?;
        let parse = |v: &str| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0 && v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(CursorParseError)
        };
        Ok(Cursor::new(parse(tx)?, parse(pos)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders() {
        let c = Cursor::new(812, 44);
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        assert!(Cursor::new(812, 44) < Cursor::new(813, 1));
        assert!(Cursor::new(812, 44) < Cursor::new(812, 45));
        for bad in ["", "12", "a-b", "-1-2", "1--2", "1-2-3", "1-+2"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }
}
