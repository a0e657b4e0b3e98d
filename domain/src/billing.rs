//! Billing arithmetic (docs/ARCHITECTURE.md, "Billing, usage and reconciliation"): one pure function from a month's segments to its
//! invoice lines, used by the invoice read model and by reconciliation alike.
//!
//! A month is split into segments wherever the organization's terms change (tier changes,
//! a trial starting or ending, closing). Each segment of fraction
//! `f = seconds in segment / seconds in month` bills `base fee × f` and
//! `max(0, conversations − round_half_up(included × f)) × overage rate`, each line rounded
//! half-up to cents. Trial segments bill nothing.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::{Money, Terms, Tier, ValidationError};

/// A calendar month in UTC, written `YYYY-MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// # Errors
    /// When `month` is not 1–12 or the year is out of range.
    pub fn new(year: i32, month: u32) -> Result<Self, ValidationError> {
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return Err(ValidationError::new("month", "must be a month YYYY-MM"));
        }
        Ok(Self { year, month })
    }

    /// The month containing `at`.
    pub fn of(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    /// The first instant of the month.
    pub fn start(&self) -> DateTime<Utc> {
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(self.year, self.month, 1)
                .expect("a valid month")
                .and_hms_opt(0, 0, 0)
                .expect("midnight"),
        )
    }

    /// The first instant of the next month (the end, exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        self.next().start()
    }

    pub fn next(&self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn seconds(&self) -> i64 {
        (self.end() - self.start()).num_seconds()
    }

    /// `YYYYMM`, as in invoice numbers.
    pub fn compact(&self) -> String {
        format!("{:04}{:02}", self.year, self.month)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ValidationError::new("month", "must be a month YYYY-MM");
        let (year, month) = s.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        Month::new(
            year.parse().map_err(|_| bad())?,
            month.parse().map_err(|_| bad())?,
        )
    }
}

impl TryFrom<String> for Month {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Month> for String {
    fn from(month: Month) -> String {
        month.to_string()
    }
}

/// The terms in force from an instant on, as the organization's events set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsChange {
    pub from: DateTime<Utc>,
    pub tier: Tier,
    pub terms: Terms,
    /// A trial bills nothing.
    pub trial: bool,
    /// Closed: nothing is billed from `from` on.
    pub closed: bool,
}

/// One stretch of a month under one set of terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub tier: Tier,
    pub terms: Terms,
    pub trial: bool,
    /// Conversations started in the segment.
    pub conversations: u64,
}

/// One invoice line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Line {
    pub description: String,
    /// The fraction of the month for a base fee; conversations for an overage.
    pub quantity: Decimal,
    pub unit_price: Money,
    pub amount: Money,
}

/// A month's bill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    pub month: Month,
    pub lines: Vec<Line>,
    pub total: Money,
}

/// `amount` rounded half-up to cents, written with exactly two places (`"0.00"`, never `"0"`:
/// a zero product keeps the scale of its factors, which need not be two).
fn cents(amount: Decimal) -> Money {
    let mut rounded = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    Money(rounded)
}

/// The segments of `month` from an organization's terms timeline (ordered by `from`), with
/// the conversations counted under each change (`conversations[i]` for `timeline[i]`, in this
/// month). A draft (`closed_at = None`, no closing in the timeline) runs its last segment to
/// the end of the month.
pub fn segments(month: Month, timeline: &[TermsChange], conversations: &[u64]) -> Vec<Segment> {
    let (start, end) = (month.start(), month.end());
    let mut out = Vec::new();
    for (i, change) in timeline.iter().enumerate() {
        if change.closed {
            continue;
        }
        let next = timeline.get(i + 1).map_or(end, |n| n.from);
        let (from, to) = (change.from.max(start), next.min(end));
        if from >= to {
            continue;
        }
        out.push(Segment {
            start: from,
            end: to,
            tier: change.tier,
            terms: change.terms,
            trial: change.trial,
            conversations: conversations.get(i).copied().unwrap_or(0),
        });
    }
    out
}

/// Bills `segments` of `month`: a base-fee line and an overage line per segment.
pub fn bill(month: Month, segments: &[Segment]) -> Bill {
    let month_seconds = Decimal::from(month.seconds());
    let mut lines = Vec::with_capacity(segments.len() * 2);
    for segment in segments {
        let seconds = Decimal::from((segment.end - segment.start).num_seconds());
        let f = seconds / month_seconds;
        let period = format!(
            "{} to {}",
            segment.start.format("%Y-%m-%d %H:%M"),
            segment.end.format("%Y-%m-%d %H:%M")
        );
        let tier = segment.tier;
        if segment.trial {
            lines.push(Line {
                description: format!("{tier} trial, {period}"),
                quantity: f.round_dp(6),
                unit_price: Money::cents(0),
                amount: Money::cents(0),
            });
            lines.push(Line {
                description: format!("{tier} trial conversations, {period}"),
                quantity: Decimal::from(segment.conversations),
                unit_price: Money::cents(0),
                amount: Money::cents(0),
            });
            continue;
        }
        let terms = segment.terms;
        let allowance = (Decimal::from(terms.included_conversations) * f)
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
        let overage = (Decimal::from(segment.conversations) - allowance).max(Decimal::ZERO);
        lines.push(Line {
            description: format!("{tier} base fee, {period}"),
            quantity: f.round_dp(6),
            unit_price: terms.base_fee.into(),
            amount: cents(terms.base_fee.get() * f),
        });
        lines.push(Line {
            description: format!(
                "{tier} conversations beyond {allowance} included ({} started), {period}",
                segment.conversations
            ),
            quantity: overage,
            unit_price: terms.overage_rate.into(),
            amount: cents(overage * terms.overage_rate.get()),
        });
    }
    let total = Money(lines.iter().map(|l| l.amount.0).sum());
    Bill {
        month,
        lines,
        total,
    }
}

/// How an organization event moves its terms timeline; `None` for events that do not.
///
/// The one definition used by the billing projection and by reconciliation. A trial with an
/// end records that end as a change dated in the future; a later status change or closing
/// drops such pending changes; a tier change carries over to them.
pub fn apply_to_timeline(
    timeline: &mut Vec<TermsChange>,
    at: DateTime<Utc>,
    event: &crate::organization::OrganizationEvent,
) -> bool {
    use crate::organization::{OrganizationEvent as E, OrganizationStatus};
    let in_force = |timeline: &[TermsChange]| timeline.iter().rev().find(|c| c.from <= at).copied();
    let push = |timeline: &mut Vec<TermsChange>, change: TermsChange| {
        timeline.retain(|c| c.from != change.from);
        timeline.push(change);
        timeline.sort_by_key(|c| c.from);
    };
    match event {
        E::OrganizationCreated {
            tier,
            terms,
            status,
            trial_ends_at,
            ..
        } => {
            let trial = *status == OrganizationStatus::Trial;
            push(
                timeline,
                TermsChange {
                    from: at,
                    tier: *tier,
                    terms: *terms,
                    trial,
                    closed: false,
                },
            );
            if let (true, Some(ends)) = (trial, trial_ends_at) {
                push(
                    timeline,
                    TermsChange {
                        from: (*ends).max(at),
                        tier: *tier,
                        terms: *terms,
                        trial: false,
                        closed: false,
                    },
                );
            }
        }
        E::TierChanged { tier, terms, .. } => {
            let trial = in_force(timeline).is_some_and(|c| c.trial);
            push(
                timeline,
                TermsChange {
                    from: at,
                    tier: *tier,
                    terms: *terms,
                    trial,
                    closed: false,
                },
            );
            for later in timeline.iter_mut().filter(|c| c.from > at) {
                later.tier = *tier;
                later.terms = *terms;
            }
        }
        E::SubscriptionStatusChanged {
            status,
            trial_ends_at,
        } => {
            let Some(current) = in_force(timeline) else {
                return false;
            };
            timeline.retain(|c| c.from <= at);
            let trial = *status == OrganizationStatus::Trial;
            push(
                timeline,
                TermsChange {
                    from: at,
                    trial,
                    closed: false,
                    ..current
                },
            );
            if let (true, Some(ends)) = (trial, trial_ends_at) {
                push(
                    timeline,
                    TermsChange {
                        from: (*ends).max(at),
                        trial: false,
                        closed: false,
                        ..current
                    },
                );
            }
        }
        E::OrganizationClosed {} => {
            let Some(current) = in_force(timeline) else {
                return false;
            };
            timeline.retain(|c| c.from <= at);
            push(
                timeline,
                TermsChange {
                    from: at,
                    trial: false,
                    closed: true,
                    ..current
                },
            );
        }
        _ => return false,
    }
    true
}

/// Which segment of `segments` (from [`segments`]) a conversation started at `at` counts in.
pub fn segment_of(segments: &[Segment], at: DateTime<Utc>) -> Option<usize> {
    segments.iter().position(|s| s.start <= at && at < s.end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BaseFee, IncludedConversations, OverageRate};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn change(from: &str, tier: Tier) -> TermsChange {
        TermsChange {
            from: at(from),
            tier,
            terms: tier.list_terms().unwrap(),
            trial: false,
            closed: false,
        }
    }

    fn total(month: &str, timeline: &[TermsChange], conversations: &[u64]) -> String {
        let month: Month = month.parse().unwrap();
        bill(month, &segments(month, timeline, conversations))
            .total
            .to_string()
    }

    #[test]
    fn months_parse_and_measure() {
        let m: Month = "2026-02".parse().unwrap();
        assert_eq!(m.seconds(), 28 * 86_400);
        assert_eq!("2024-02".parse::<Month>().unwrap().seconds(), 29 * 86_400);
        assert_eq!("2026-01".parse::<Month>().unwrap().seconds(), 31 * 86_400);
        assert_eq!(m.compact(), "202602");
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", ""] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_whole_month_per_tier() {
        assert_eq!(
            total(
                "2026-03",
                &[change("2026-01-01T00:00:00Z", Tier::Basic)],
                &[0]
            ),
            "99.00"
        );
        assert_eq!(
            total(
                "2026-03",
                &[change("2026-01-01T00:00:00Z", Tier::Pro)],
                &[0]
            ),
            "499.00"
        );
    }

    #[test]
    fn usage_at_under_and_over_the_allowance() {
        let basic = [change("2026-01-01T00:00:00Z", Tier::Basic)];
        assert_eq!(total("2026-03", &basic, &[999]), "99.00");
        assert_eq!(total("2026-03", &basic, &[1_000]), "99.00");
        assert_eq!(total("2026-03", &basic, &[1_001]), "99.10");
        let pro = [change("2026-01-01T00:00:00Z", Tier::Pro)];
        assert_eq!(total("2026-03", &pro, &[5_250]), "511.50");
    }

    #[test]
    fn an_upgrade_mid_month_splits_it() {
        // April has 30 days; the upgrade at the start of day 16 leaves 15 days each.
        let timeline = [
            change("2026-01-01T00:00:00Z", Tier::Basic),
            change("2026-04-16T00:00:00Z", Tier::Pro),
        ];
        let month: Month = "2026-04".parse().unwrap();
        let b = bill(month, &segments(month, &timeline, &[600, 100]));
        // Basic half: 49.50 base, allowance 500, 100 over at 0.10 = 10.00.
        // Pro half: 249.50 base, allowance 2500, nothing over.
        let amounts: Vec<String> = b.lines.iter().map(|l| l.amount.to_string()).collect();
        assert_eq!(amounts, ["49.50", "10.00", "249.50", "0.00"]);
        assert_eq!(b.total.to_string(), "309.00");
        // As the API and the events write them: two places, a zero line too.
        let written: Vec<serde_json::Value> = b
            .lines
            .iter()
            .map(|l| serde_json::to_value(l.amount).unwrap())
            .collect();
        assert_eq!(written, ["49.50", "10.00", "249.50", "0.00"]);
        assert_eq!(serde_json::to_value(b.total).unwrap(), "309.00");
    }

    #[test]
    fn a_downgrade_and_two_changes_in_one_month() {
        let timeline = [
            change("2026-01-01T00:00:00Z", Tier::Pro),
            change("2026-04-11T00:00:00Z", Tier::Basic),
            change("2026-04-21T00:00:00Z", Tier::Pro),
        ];
        let month: Month = "2026-04".parse().unwrap();
        let b = bill(month, &segments(month, &timeline, &[0, 400, 0]));
        // Thirds of a 30-day month: Pro 10 days 166.333.. → 166.33; Basic 33.00 with
        // allowance 333 and 67 over → 6.70; Pro 166.33.
        let amounts: Vec<String> = b.lines.iter().map(|l| l.amount.to_string()).collect();
        assert_eq!(
            amounts,
            ["166.33", "0.00", "33.00", "6.70", "166.33", "0.00"]
        );
        assert_eq!(b.total.to_string(), "372.36");
    }

    #[test]
    fn a_trial_ending_mid_month_bills_from_then() {
        let mut trial = change("2026-01-20T00:00:00Z", Tier::Pro);
        trial.trial = true;
        let timeline = [trial, change("2026-02-15T00:00:00Z", Tier::Pro)];
        // February 2026: 28 days, 14 of them after the trial: a 249.50 base fee.
        let month: Month = "2026-02".parse().unwrap();
        let b = bill(month, &segments(month, &timeline, &[9_000, 2_600]));
        assert_eq!(b.lines[0].amount.to_string(), "0.00");
        assert_eq!(
            b.lines[1].amount.to_string(),
            "0.00",
            "trial conversations are free"
        );
        // And 2,600 > 2,500 allowance: 100 over at 0.05.
        assert_eq!(b.lines[3].amount.to_string(), "5.00");
        assert_eq!(b.total.to_string(), "254.50");
    }

    #[test]
    fn closing_mid_month_ends_the_last_segment() {
        let mut closed = change("2026-01-11T00:00:00Z", Tier::Basic);
        closed.closed = true;
        let timeline = [change("2025-06-01T00:00:00Z", Tier::Basic), closed];
        // January: 10 of 31 days.
        assert_eq!(total("2026-01", &timeline, &[0, 0]), "31.94");
        // Nothing after closing.
        assert_eq!(total("2026-02", &timeline, &[0, 0]), "0.00");
    }

    #[test]
    fn billing_starts_when_the_organization_is_created() {
        // Created on 2026-03-17 12:00 in a 31-day month: 14.5 days, 499 × 14.5 / 31 = 233.403…
        assert_eq!(
            total(
                "2026-03",
                &[change("2026-03-17T12:00:00Z", Tier::Pro)],
                &[0]
            ),
            "233.40"
        );
        assert_eq!(
            total("2026-02", &[change("2026-03-17T12:00:00Z", Tier::Pro)], &[]),
            "0.00"
        );
    }

    #[test]
    fn enterprise_custom_prices() {
        let timeline = [TermsChange {
            from: at("2026-01-01T00:00:00Z"),
            tier: Tier::Enterprise,
            terms: Terms {
                base_fee: BaseFee::parse(Decimal::new(2_500_000, 2)).unwrap(),
                included_conversations: IncludedConversations::parse(100_000).unwrap(),
                overage_rate: OverageRate::parse(Decimal::new(125, 4)).unwrap(),
            },
            trial: false,
            closed: false,
        }];
        // 100,001 conversations: one over at $0.0125 → 0.0125 → 0.01 (half-up at the cent).
        assert_eq!(total("2026-03", &timeline, &[100_001]), "25000.01");
        assert_eq!(total("2026-03", &timeline, &[100_004]), "25000.05");
    }

    #[test]
    fn fractional_cents_round_half_up() {
        // A 31-day month, created at the start of day 2: 30/31 of $99 = 95.806451… → 95.81.
        assert_eq!(
            total(
                "2026-01",
                &[change("2026-01-02T00:00:00Z", Tier::Basic)],
                &[0]
            ),
            "95.81"
        );
        // $0.005 rounds up to a cent: allowance round-half-up(1000 × 30/31) = 968; 1 over → 0.10.
        assert_eq!(
            total(
                "2026-01",
                &[change("2026-01-02T00:00:00Z", Tier::Basic)],
                &[969]
            ),
            "95.91"
        );
        assert_eq!(cents(Decimal::new(5, 3)).to_string(), "0.01");
        assert_eq!(cents(Decimal::new(4999, 3)).to_string(), "5.00");
    }

    #[test]
    fn no_usage_bills_the_base_fee() {
        let month: Month = "2026-03".parse().unwrap();
        let b = bill(
            month,
            &segments(month, &[change("2026-01-01T00:00:00Z", Tier::Basic)], &[0]),
        );
        assert_eq!(b.lines.len(), 2);
        assert_eq!(b.lines[1].quantity, Decimal::ZERO);
        assert_eq!(b.total.to_string(), "99.00");
    }
}
