//! The split: how much the couple's shared expenses cost per month and what each partner pays.
//!
//! This module is the product's definition of the split. The server (REST responses, the
//! monthly `contributions` it writes into the document) and the SDK (what an app shows offline)
//! both call [`calculate`], so every screen agrees to the minor unit.
//!
//! # The rules
//!
//! 1. **Monthly total.** Every active expense is normalised to a month: weekly amounts × 52 / 12,
//!    monthly amounts as they are, yearly amounts / 12. The sum is computed exactly, in "per year"
//!    minor units (weekly × 52 + monthly × 12 + yearly), divided by 12 **once** and rounded half
//!    up to the minor unit. Rounding once means three weekly 0.01 expenses cost 0.13 a month
//!    (1.56 / 12), not 3 × 0.04: the total never drifts with the number of items.
//! 2. **Income basis.** When both partners have entered an income and the two add up to more than
//!    zero, the total is divided in proportion to incomes. Each share is the exact rational
//!    `total × income_i / (income_1 + income_2)`, floored; the minor unit left over (there is at
//!    most one with two partners) goes to the partner with the larger remainder — the
//!    largest-remainder rule — and on a tie to partner 1. For two partners this is the same as
//!    rounding partner 1's exact share half up. A partner with zero income pays nothing and the
//!    other pays everything.
//! 3. **Equal basis.** While either income is missing, or both are zero, proportions are unknown
//!    and the total is split in equal halves; an odd minor unit goes to partner 1. A missing
//!    income means "not entered yet", which is not the same as zero: one partner filling in their
//!    income before the other must not make them pay everything.
//! 4. **Always exact.** `share_1 + share_2 == monthly_total` and `ratio_1 + ratio_2 == 100` hold
//!    for every input. Ratios are the incomes as whole percentages by the same largest-remainder
//!    rule (ties to partner 1), and 50/50 on the equal basis.
//!
//! Everything is computed in `i128`, so no intermediate value overflows; a result that does not
//! fit the document's `i64` minor units is [`SplitError::Overflow`]. Negative amounts are refused
//! ([`SplitError::NegativeExpense`], [`SplitError::NegativeIncome`]): validation never lets them
//! into a document, so seeing one means a rule was bypassed and a number would be misleading.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::enums::Frequency;
use crate::money::MinorUnits;

/// Why a split or a month could not be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SplitError {
    /// A total or share does not fit in `i64` minor units.
    #[error("the split does not fit in 64-bit minor units")]
    Overflow,
    /// An expense amount is negative.
    #[error("an expense amount is negative")]
    NegativeExpense,
    /// An income is negative.
    #[error("an income is negative")]
    NegativeIncome,
    /// Not a calendar month `YYYY-MM` with a four-digit year and a month 01–12.
    #[error("invalid month {0:?}: expected YYYY-MM")]
    InvalidMonth(String),
}

/// One active expense as the split sees it: its amount per occurrence and how often it recurs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitExpense {
    /// Amount per occurrence, in minor units.
    pub amount: MinorUnits,
    /// How often the amount is due.
    pub frequency: Frequency,
}

/// Everything the split depends on: the active expenses and the two partners' monthly incomes
/// (`None` while a partner has not entered theirs). Partner 1 and 2 are the members' slots.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SplitInput {
    /// Active expenses only; pending and archived ones do not count.
    pub expenses: Vec<SplitExpense>,
    /// Partner 1's income, if entered.
    pub income_1: Option<MinorUnits>,
    /// Partner 2's income, if entered.
    pub income_2: Option<MinorUnits>,
}

/// How the shares were divided, so an app can explain the numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitBasis {
    /// In proportion to incomes (both entered, sum above zero).
    Income,
    /// Equal halves: an income is missing, or both are zero.
    Equal,
}

/// The result of [`calculate`]: the monthly total, each partner's share and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Split {
    /// Sum of the raw amounts of weekly expenses (per week, not normalised).
    pub weekly_total: MinorUnits,
    /// Sum of the amounts of monthly expenses.
    pub monthly_total_raw: MinorUnits,
    /// Sum of the raw amounts of yearly expenses (per year, not normalised).
    pub yearly_total: MinorUnits,
    /// Everything normalised to one month, rounded once (rule 1).
    pub monthly_total: MinorUnits,
    /// Partner 1's monthly share.
    pub share_1: MinorUnits,
    /// Partner 2's monthly share; `share_1 + share_2 == monthly_total`.
    pub share_2: MinorUnits,
    /// Partner 1's percentage of the incomes (50 on the equal basis).
    pub ratio_1: u8,
    /// Partner 2's percentage; `ratio_1 + ratio_2 == 100`.
    pub ratio_2: u8,
    /// Whether shares follow incomes or are equal halves.
    pub basis: SplitBasis,
}

/// Computes the split of the couple's active expenses by the rules in the module documentation.
pub fn calculate(input: &SplitInput) -> Result<Split, SplitError> {
    let totals = Totals::of(&input.expenses)?;
    // Checked before dividing it, so `total × income` below stays within i128.
    let monthly_total = i128::from(to_minor(div_round_half_up(totals.per_year, 12))?.0);
    let weights = income_weights(input.income_1, input.income_2)?;
    let (share_1, share_2, ratio_1, ratio_2, basis) = match weights {
        Some((income_1, income_2)) => {
            let (share_1, share_2) = apportion(monthly_total, income_1, income_2);
            let (ratio_1, ratio_2) = apportion(100, income_1, income_2);
            (share_1, share_2, ratio_1, ratio_2, SplitBasis::Income)
        }
        None => {
            let (share_1, share_2) = apportion(monthly_total, 1, 1);
            (share_1, share_2, 50, 50, SplitBasis::Equal)
        }
    };
    Ok(Split {
        weekly_total: to_minor(totals.weekly)?,
        monthly_total_raw: to_minor(totals.monthly)?,
        yearly_total: to_minor(totals.yearly)?,
        monthly_total: to_minor(monthly_total)?,
        share_1: to_minor(share_1)?,
        share_2: to_minor(share_2)?,
        ratio_1: to_percent(ratio_1)?,
        ratio_2: to_percent(ratio_2)?,
        basis,
    })
}

/// The monthly amount of one expense, for showing next to the item: its exact monthly value
/// rounded half up to the minor unit (half away from zero for a negative amount).
///
/// Because [`calculate`] rounds once on the sum, the per-item amounts of several weekly or
/// yearly expenses may add up to a few minor units more or less than `monthly_total`; the total
/// is the amount that is paid. A result beyond `i64` saturates, which no amount within
/// [`crate::money::Currency::max_minor`] comes near.
pub fn monthly_amount(amount: MinorUnits, frequency: Frequency) -> MinorUnits {
    let per_year = i128::from(amount.0) * per_year_factor(frequency);
    let magnitude = div_round_half_up(per_year.abs(), 12);
    let monthly = if per_year < 0 { -magnitude } else { magnitude };
    MinorUnits(i64::try_from(monthly).unwrap_or(if monthly < 0 { i64::MIN } else { i64::MAX }))
}

/// What the couple owes for one month: the document's `contributions["YYYY-MM"]` entry, before
/// anyone has paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MonthlyContribution {
    /// The month it is for.
    pub month: Month,
    /// The whole monthly total.
    pub total_required: MinorUnits,
    /// Partner 1's part (their share).
    pub amount_1: MinorUnits,
    /// Partner 2's part; `amount_1 + amount_2 == total_required`.
    pub amount_2: MinorUnits,
}

/// The contribution due for `month` under `split`: the monthly total and each partner's share.
pub fn monthly_contribution(month: Month, split: &Split) -> MonthlyContribution {
    MonthlyContribution {
        month,
        total_required: split.monthly_total,
        amount_1: split.share_1,
        amount_2: split.share_2,
    }
}

/// A calendar month, the key of the document's `contributions` map, written `YYYY-MM`
/// (four-digit year 0000–9999, month 01–12). Ordered chronologically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    year: i32,
    month: u8,
}

const MIN_YEAR: i32 = 0;
const MAX_YEAR: i32 = 9999;
const MILLIS_PER_DAY: i64 = 86_400_000;

impl Month {
    /// A month from its year (0–9999) and month number (1–12).
    pub fn new(year: i32, month: u8) -> Result<Month, SplitError> {
        if (MIN_YEAR..=MAX_YEAR).contains(&year) && (1..=12).contains(&month) {
            Ok(Month { year, month })
        } else {
            Err(SplitError::InvalidMonth(format!("{year}-{month}")))
        }
    }

    /// Parses the document spelling `YYYY-MM` exactly (`2026-11`; not `2026-1` or `2026-11-01`).
    pub fn parse(s: &str) -> Result<Month, SplitError> {
        let invalid = || SplitError::InvalidMonth(s.to_string());
        let bytes = s.as_bytes();
        let well_formed = bytes.len() == 7
            && bytes[4] == b'-'
            && bytes[..4].iter().chain(&bytes[5..]).all(u8::is_ascii_digit);
        if !well_formed {
            return Err(invalid());
        }
        let year = s[..4].parse().map_err(|_| invalid())?;
        let month = s[5..].parse().map_err(|_| invalid())?;
        Month::new(year, month).map_err(|_| invalid())
    }

    /// The UTC month containing a Unix-milliseconds instant (the document's time format).
    /// Contributions are keyed by UTC month so both partners' devices agree whatever their time
    /// zones. Instants before year 0 or after year 9999 saturate to 0000-01 / 9999-12; no real
    /// clock produces them.
    pub fn from_unix_millis(millis: i64) -> Month {
        let (year, month) = civil_year_month(millis.div_euclid(MILLIS_PER_DAY));
        if year < i64::from(MIN_YEAR) {
            Month {
                year: MIN_YEAR,
                month: 1,
            }
        } else if year > i64::from(MAX_YEAR) {
            Month {
                year: MAX_YEAR,
                month: 12,
            }
        } else {
            // In range, so the cast cannot truncate.
            Month {
                year: year as i32,
                month,
            }
        }
    }

    /// Unix milliseconds of the first instant of the month (00:00 UTC on the 1st).
    pub fn start_unix_millis(&self) -> i64 {
        days_from_civil(i64::from(self.year), self.month) * MILLIS_PER_DAY
    }

    /// The year.
    pub fn year(&self) -> i32 {
        self.year
    }

    /// The month number, 1–12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// The month after this one, `None` after 9999-12.
    pub fn next(&self) -> Option<Month> {
        if self.month == 12 {
            Month::new(self.year + 1, 1).ok()
        } else {
            Month::new(self.year, self.month + 1).ok()
        }
    }

    /// The month before this one, `None` before 0000-01.
    pub fn previous(&self) -> Option<Month> {
        if self.month == 1 {
            Month::new(self.year - 1, 12).ok()
        } else {
            Month::new(self.year, self.month - 1).ok()
        }
    }
}

impl fmt::Display for Month {
    /// `YYYY-MM`, the document key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = SplitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Month::parse(s)
    }
}

impl Serialize for Month {
    /// As `YYYY-MM`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    /// From `YYYY-MM`, strictly.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Month::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Raw sums per frequency and the exact yearly sum, all in `i128`.
struct Totals {
    weekly: i128,
    monthly: i128,
    yearly: i128,
    per_year: i128,
}

impl Totals {
    fn of(expenses: &[SplitExpense]) -> Result<Totals, SplitError> {
        let mut totals = Totals {
            weekly: 0,
            monthly: 0,
            yearly: 0,
            per_year: 0,
        };
        for expense in expenses {
            if expense.amount.0 < 0 {
                return Err(SplitError::NegativeExpense);
            }
            let amount = i128::from(expense.amount.0);
            let raw = match expense.frequency {
                Frequency::Weekly => &mut totals.weekly,
                Frequency::Monthly => &mut totals.monthly,
                Frequency::Yearly => &mut totals.yearly,
            };
            *raw = raw.checked_add(amount).ok_or(SplitError::Overflow)?;
            totals.per_year = amount
                .checked_mul(per_year_factor(expense.frequency))
                .and_then(|per_year| totals.per_year.checked_add(per_year))
                .ok_or(SplitError::Overflow)?;
        }
        Ok(totals)
    }
}

/// How many times a year an expense of this frequency is due.
fn per_year_factor(frequency: Frequency) -> i128 {
    match frequency {
        Frequency::Weekly => 52,
        Frequency::Monthly => 12,
        Frequency::Yearly => 1,
    }
}

/// The incomes to divide by (as `i128`), or `None` for the equal basis (rule 3).
fn income_weights(
    income_1: Option<MinorUnits>,
    income_2: Option<MinorUnits>,
) -> Result<Option<(i128, i128)>, SplitError> {
    if [income_1, income_2]
        .iter()
        .flatten()
        .any(|income| income.0 < 0)
    {
        return Err(SplitError::NegativeIncome);
    }
    Ok(match (income_1, income_2) {
        (Some(a), Some(b)) if i128::from(a.0) + i128::from(b.0) > 0 => {
            Some((i128::from(a.0), i128::from(b.0)))
        }
        _ => None,
    })
}

/// Divides a non-negative `total` in proportion to non-negative weights `w1`, `w2` (sum > 0):
/// floors of the exact shares, then the leftover unit to the larger remainder, ties to the first.
///
/// Callers keep `total` and the weights below 2^63, so `total × w` fits `i128`.
fn apportion(total: i128, w1: i128, w2: i128) -> (i128, i128) {
    let sum = w1 + w2;
    let (q1, r1) = (total * w1 / sum, total * w1 % sum);
    let (q2, r2) = (total * w2 / sum, total * w2 % sum);
    let leftover = total - q1 - q2;
    // With two parts the leftover is 0 or 1.
    if leftover == 0 {
        (q1, q2)
    } else if r1 >= r2 {
        (q1 + leftover, q2)
    } else {
        (q1, q2 + leftover)
    }
}

/// `n / d` rounded half up, for `n >= 0` and `d > 0`.
fn div_round_half_up(n: i128, d: i128) -> i128 {
    (n + d / 2) / d
}

fn to_minor(value: i128) -> Result<MinorUnits, SplitError> {
    i64::try_from(value)
        .map(MinorUnits)
        .map_err(|_| SplitError::Overflow)
}

fn to_percent(value: i128) -> Result<u8, SplitError> {
    u8::try_from(value).map_err(|_| SplitError::Overflow)
}

/// Days since 1970-01-01 of the first day of `year`-`month` (proleptic Gregorian calendar).
///
/// Counts in 400-year eras that start on 1 March, so the leap day falls at the end of a
/// counting year and every month before it has a fixed offset.
fn days_from_civil(year: i64, month: u8) -> i64 {
    let month = i64::from(month);
    // Years counted from March: January and February belong to the previous one.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719 468 days separate 0000-03-01 from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The (year, month) of a day counted from 1970-01-01; the inverse of [`days_from_civil`].
fn civil_year_month(days: i64) -> (i64, u8) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    // month is 1..=12 by construction.
    (year, month as u8)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::money::Currency;

    fn expense(amount: i64, frequency: Frequency) -> SplitExpense {
        SplitExpense {
            amount: MinorUnits(amount),
            frequency,
        }
    }

    fn input(
        expenses: Vec<SplitExpense>,
        income_1: Option<i64>,
        income_2: Option<i64>,
    ) -> SplitInput {
        SplitInput {
            expenses,
            income_1: income_1.map(MinorUnits),
            income_2: income_2.map(MinorUnits),
        }
    }

    fn monthly(amount: i64) -> SplitExpense {
        expense(amount, Frequency::Monthly)
    }

    #[test]
    fn hundred_split_one_to_two_gives_the_leftover_cent_to_the_larger_remainder() {
        let split = calculate(&input(vec![monthly(10_000)], Some(100_000), Some(200_000))).unwrap();
        assert_eq!(split.monthly_total, MinorUnits(10_000));
        assert_eq!(split.share_1, MinorUnits(3_333));
        assert_eq!(split.share_2, MinorUnits(6_667));
        assert_eq!((split.ratio_1, split.ratio_2), (33, 67));
        assert_eq!(split.basis, SplitBasis::Income);
    }

    #[test]
    fn weekly_ten_is_43_33_a_month() {
        assert_eq!(
            monthly_amount(MinorUnits(1_000), Frequency::Weekly),
            MinorUnits(4_333)
        );
        let split = calculate(&input(vec![expense(1_000, Frequency::Weekly)], None, None)).unwrap();
        assert_eq!(split.monthly_total, MinorUnits(4_333));
        assert_eq!(split.weekly_total, MinorUnits(1_000));
    }

    #[test]
    fn yearly_1200_is_100_a_month() {
        assert_eq!(
            monthly_amount(MinorUnits(120_000), Frequency::Yearly),
            MinorUnits(10_000)
        );
        assert_eq!(
            monthly_amount(MinorUnits(120_000), Frequency::Monthly),
            MinorUnits(120_000)
        );
    }

    #[test]
    fn monthly_amount_rounds_half_up() {
        // 0.06 a year is half a cent a month: up. 0.05 a year is less than half: down.
        assert_eq!(
            monthly_amount(MinorUnits(6), Frequency::Yearly),
            MinorUnits(1)
        );
        assert_eq!(
            monthly_amount(MinorUnits(5), Frequency::Yearly),
            MinorUnits(0)
        );
        assert_eq!(
            monthly_amount(MinorUnits(-6), Frequency::Yearly),
            MinorUnits(-1)
        );
        assert_eq!(
            monthly_amount(MinorUnits(i64::MAX), Frequency::Weekly),
            MinorUnits(i64::MAX)
        );
    }

    #[test]
    fn mixed_frequencies_keep_raw_totals_and_normalise_the_sum() {
        let expenses = vec![
            expense(1_000, Frequency::Weekly),   // 10.00 a week
            expense(2_550, Frequency::Weekly),   // 25.50 a week
            monthly(50_000),                     // 500.00 a month
            expense(120_000, Frequency::Yearly), // 1200.00 a year
        ];
        let split = calculate(&input(expenses, Some(300_000), Some(100_000))).unwrap();
        assert_eq!(split.weekly_total, MinorUnits(3_550));
        assert_eq!(split.monthly_total_raw, MinorUnits(50_000));
        assert_eq!(split.yearly_total, MinorUnits(120_000));
        // 3550×52 + 50000×12 + 120000 = 904600 per year; / 12 = 75383.33 → 753.83.
        assert_eq!(split.monthly_total, MinorUnits(75_383));
        // 3:1 → 56537.25 and 18845.75: floors 56537 + 18845, the cent to partner 2 (.75 > .25).
        assert_eq!(split.share_1, MinorUnits(56_537));
        assert_eq!(split.share_2, MinorUnits(18_846));
        assert_eq!((split.ratio_1, split.ratio_2), (75, 25));
    }

    #[test]
    fn the_total_is_rounded_once_not_per_item() {
        let expenses = vec![expense(1, Frequency::Weekly); 3];
        let split = calculate(&input(expenses, None, None)).unwrap();
        // 3 × 0.01 × 52 / 12 = 0.13; per item each is 0.04 (0.0433), which would make 0.12.
        assert_eq!(split.monthly_total, MinorUnits(13));
        assert_eq!(
            monthly_amount(MinorUnits(1), Frequency::Weekly),
            MinorUnits(4)
        );
    }

    #[test]
    fn no_incomes_means_equal_halves_with_the_odd_cent_to_partner_1() {
        let split = calculate(&input(vec![monthly(10_001)], None, None)).unwrap();
        assert_eq!(split.basis, SplitBasis::Equal);
        assert_eq!(split.share_1, MinorUnits(5_001));
        assert_eq!(split.share_2, MinorUnits(5_000));
        assert_eq!((split.ratio_1, split.ratio_2), (50, 50));
    }

    #[test]
    fn both_incomes_zero_means_equal_halves() {
        let split = calculate(&input(vec![monthly(999)], Some(0), Some(0))).unwrap();
        assert_eq!(split.basis, SplitBasis::Equal);
        assert_eq!(
            (split.share_1, split.share_2),
            (MinorUnits(500), MinorUnits(499))
        );
    }

    #[test]
    fn one_income_missing_means_equal_halves_until_both_are_entered() {
        for (income_1, income_2) in [
            (Some(500_000), None),
            (None, Some(500_000)),
            (Some(0), None),
        ] {
            let split = calculate(&input(vec![monthly(10_000)], income_1, income_2)).unwrap();
            assert_eq!(split.basis, SplitBasis::Equal);
            assert_eq!(
                (split.share_1, split.share_2),
                (MinorUnits(5_000), MinorUnits(5_000))
            );
            assert_eq!((split.ratio_1, split.ratio_2), (50, 50));
        }
    }

    #[test]
    fn a_partner_with_zero_income_pays_nothing() {
        let split = calculate(&input(vec![monthly(10_000)], Some(0), Some(300_000))).unwrap();
        assert_eq!(split.basis, SplitBasis::Income);
        assert_eq!(
            (split.share_1, split.share_2),
            (MinorUnits(0), MinorUnits(10_000))
        );
        assert_eq!((split.ratio_1, split.ratio_2), (0, 100));
        let split = calculate(&input(vec![monthly(10_000)], Some(300_000), Some(0))).unwrap();
        assert_eq!(
            (split.share_1, split.share_2),
            (MinorUnits(10_000), MinorUnits(0))
        );
        assert_eq!((split.ratio_1, split.ratio_2), (100, 0));
    }

    #[test]
    fn equal_incomes_tie_goes_to_partner_1() {
        let split = calculate(&input(vec![monthly(101)], Some(4_000), Some(4_000))).unwrap();
        assert_eq!(split.basis, SplitBasis::Income);
        assert_eq!(
            (split.share_1, split.share_2),
            (MinorUnits(51), MinorUnits(50))
        );
        assert_eq!((split.ratio_1, split.ratio_2), (50, 50));
    }

    #[test]
    fn ratios_use_the_largest_remainder() {
        // 1/3 vs 2/3: 33.3 and 66.6 → 33 + 67.
        let split = calculate(&input(vec![], Some(100), Some(200))).unwrap();
        assert_eq!((split.ratio_1, split.ratio_2), (33, 67));
        // 2/3 vs 1/3 → 67 + 33.
        let split = calculate(&input(vec![], Some(200), Some(100))).unwrap();
        assert_eq!((split.ratio_1, split.ratio_2), (67, 33));
        // 1/8 vs 7/8: 12.5 and 87.5, a tie → partner 1 gets 13.
        let split = calculate(&input(vec![], Some(1), Some(7))).unwrap();
        assert_eq!((split.ratio_1, split.ratio_2), (13, 87));
        // A tiny income still rounds to 0 %, never below.
        let split = calculate(&input(vec![], Some(1), Some(1_000))).unwrap();
        assert_eq!((split.ratio_1, split.ratio_2), (0, 100));
        assert_eq!(split.monthly_total, MinorUnits(0));
        assert_eq!(
            (split.share_1, split.share_2),
            (MinorUnits(0), MinorUnits(0))
        );
    }

    #[test]
    fn jpy_example_has_no_decimals() {
        let jpy = Currency::parse("JPY").unwrap();
        let rent = jpy.to_minor_positive(Decimal::from(90_000)).unwrap();
        let food = jpy.to_minor_positive(Decimal::from(10_000)).unwrap();
        let expenses = vec![monthly(rent.0), expense(food.0, Frequency::Weekly)];
        let split = calculate(&input(expenses, Some(300_000), Some(200_000))).unwrap();
        // 90000 + 10000 × 52 / 12 = 90000 + 43333.33 → 133333 yen.
        assert_eq!(jpy.from_minor(split.monthly_total).to_string(), "133333");
        // 60 % = 79999.8 → 80000 (remainder .8 beats .2), 40 % = 53333.2 → 53333.
        assert_eq!(jpy.from_minor(split.share_1).to_string(), "80000");
        assert_eq!(jpy.from_minor(split.share_2).to_string(), "53333");
        assert_eq!((split.ratio_1, split.ratio_2), (60, 40));
    }

    #[test]
    fn kwd_example_keeps_three_decimals() {
        let kwd = Currency::parse("KWD").unwrap();
        let amount = |s: &str| kwd.to_minor_positive(s.parse().unwrap()).unwrap().0;
        let expenses = vec![
            expense(amount("1.001"), Frequency::Weekly),
            monthly(amount("250.5")),
        ];
        let split = calculate(&input(expenses, Some(amount("700")), Some(amount("1400")))).unwrap();
        // 1001 × 52 + 250500 × 12 = 3058052 per year; / 12 = 254837.67 → 254.838 KWD.
        assert_eq!(kwd.from_minor(split.monthly_total).to_string(), "254.838");
        // 1:2 → 84946 (rem 0) and 169892 (rem 0).
        assert_eq!(kwd.from_minor(split.share_1).to_string(), "84.946");
        assert_eq!(kwd.from_minor(split.share_2).to_string(), "169.892");
        assert_eq!(
            kwd.from_minor(monthly_amount(MinorUnits(1001), Frequency::Weekly))
                .to_string(),
            "4.338"
        );
    }

    #[test]
    fn no_expenses_cost_nothing() {
        let split = calculate(&SplitInput::default()).unwrap();
        assert_eq!(split.monthly_total, MinorUnits(0));
        assert_eq!(
            (split.share_1, split.share_2),
            (MinorUnits(0), MinorUnits(0))
        );
        assert_eq!(split.basis, SplitBasis::Equal);
    }

    #[test]
    fn negative_inputs_are_refused() {
        assert_eq!(
            calculate(&input(vec![monthly(-1)], None, None)),
            Err(SplitError::NegativeExpense)
        );
        assert_eq!(
            calculate(&input(vec![monthly(1)], Some(-5), Some(10))),
            Err(SplitError::NegativeIncome)
        );
        assert_eq!(
            calculate(&input(vec![monthly(1)], None, Some(-5))),
            Err(SplitError::NegativeIncome)
        );
    }

    #[test]
    fn results_beyond_i64_are_overflow_not_wrapped() {
        let huge = vec![monthly(i64::MAX), monthly(1)];
        assert_eq!(
            calculate(&input(huge, None, None)),
            Err(SplitError::Overflow)
        );
        // A weekly amount near i64::MAX fits raw but not normalised to a month.
        let weekly = vec![expense(i64::MAX, Frequency::Weekly)];
        assert_eq!(
            calculate(&input(weekly, None, None)),
            Err(SplitError::Overflow)
        );
        // The largest amounts a currency allows are far from the limit.
        let max = Currency::parse("CLF").unwrap().max_minor().0;
        let many = vec![expense(max, Frequency::Weekly); 1_000];
        assert!(calculate(&input(many, Some(max), Some(max))).is_ok());
    }

    #[test]
    fn split_serializes_for_the_api() {
        let split = calculate(&input(vec![monthly(10_000)], Some(1), Some(2))).unwrap();
        let json = serde_json::to_value(&split).unwrap();
        assert_eq!(json["share_1"], 3_333);
        assert_eq!(json["basis"], "income");
    }

    #[test]
    fn monthly_contribution_is_the_split_for_that_month() {
        let split = calculate(&input(vec![monthly(10_000)], Some(1), Some(2))).unwrap();
        let month = Month::parse("2026-11").unwrap();
        let contribution = monthly_contribution(month, &split);
        assert_eq!(
            contribution,
            MonthlyContribution {
                month,
                total_required: MinorUnits(10_000),
                amount_1: MinorUnits(3_333),
                amount_2: MinorUnits(6_667),
            }
        );
        let json = serde_json::to_value(&contribution).unwrap();
        assert_eq!(json["month"], "2026-11");
    }

    #[test]
    fn month_parses_and_displays_the_document_key() {
        let month = Month::parse("2026-11").unwrap();
        assert_eq!((month.year(), month.month()), (2026, 11));
        assert_eq!(month.to_string(), "2026-11");
        assert_eq!(Month::new(987, 3).unwrap().to_string(), "0987-03");
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-11",
            "2026-11-01",
            "2026/11",
            "+026-11",
            "２026-11",
            "",
        ] {
            assert_eq!(
                Month::parse(bad),
                Err(SplitError::InvalidMonth(bad.to_string())),
                "{bad:?}"
            );
        }
        assert!(Month::new(2026, 0).is_err());
        assert!(Month::new(10_000, 1).is_err());
        assert!(Month::new(-1, 1).is_err());
        assert!(serde_json::from_str::<Month>("\"2026-13\"").is_err());
    }

    #[test]
    fn months_order_and_step() {
        let dec = Month::parse("2025-12").unwrap();
        let jan = Month::parse("2026-01").unwrap();
        assert!(dec < jan);
        assert_eq!(dec.next(), Some(jan));
        assert_eq!(jan.previous(), Some(dec));
        assert_eq!(Month::parse("9999-12").unwrap().next(), None);
        assert_eq!(Month::parse("0000-01").unwrap().previous(), None);
    }

    #[test]
    fn month_of_unix_millis_is_the_utc_month() {
        assert_eq!(Month::from_unix_millis(0).to_string(), "1970-01");
        assert_eq!(Month::from_unix_millis(-1).to_string(), "1969-12");
        // 2024-02-29T23:59:59.999Z and one millisecond later.
        assert_eq!(
            Month::from_unix_millis(1_709_251_199_999).to_string(),
            "2024-02"
        );
        assert_eq!(
            Month::from_unix_millis(1_709_251_200_000).to_string(),
            "2024-03"
        );
        // 2026-11-25T02:00:00Z.
        assert_eq!(
            Month::from_unix_millis(1_795_572_000_000).to_string(),
            "2026-11"
        );
        // 2000-01-01T00:00:00Z.
        assert_eq!(
            Month::parse("2000-01").unwrap().start_unix_millis(),
            946_684_800_000
        );
        assert_eq!(Month::from_unix_millis(i64::MAX).to_string(), "9999-12");
        assert_eq!(Month::from_unix_millis(i64::MIN).to_string(), "0000-01");
    }

    fn any_expense() -> impl Strategy<Value = SplitExpense> {
        let frequency = prop::sample::select(Frequency::ALL.to_vec());
        (0_i64..=99_999_999_999_999, frequency)
            .prop_map(|(amount, frequency)| expense(amount, frequency))
    }

    fn any_income() -> impl Strategy<Value = Option<MinorUnits>> {
        prop::option::of(prop_oneof![
            Just(0_i64),
            1_i64..=1_000,
            0_i64..=99_999_999_999_999,
        ])
        .prop_map(|income| income.map(MinorUnits))
    }

    fn any_input() -> impl Strategy<Value = SplitInput> {
        (
            prop::collection::vec(any_expense(), 0..20),
            any_income(),
            any_income(),
        )
            .prop_map(|(expenses, income_1, income_2)| SplitInput {
                expenses,
                income_1,
                income_2,
            })
    }

    proptest! {
        #[test]
        fn shares_and_ratios_always_add_up(input in any_input()) {
            let split = calculate(&input).unwrap();
            prop_assert_eq!(split.share_1.0 + split.share_2.0, split.monthly_total.0);
            prop_assert_eq!(u32::from(split.ratio_1) + u32::from(split.ratio_2), 100);
            prop_assert!(split.share_1.0 >= 0 && split.share_2.0 >= 0);
        }

        #[test]
        fn monthly_total_is_the_exact_sum_rounded_once(input in any_input()) {
            let split = calculate(&input).unwrap();
            let per_year: i128 = input.expenses.iter()
                .map(|e| i128::from(e.amount.0) * per_year_factor(e.frequency))
                .sum();
            // |12 × total − per_year| ≤ 6, and exactly 6 only when rounding up.
            let error = 12 * i128::from(split.monthly_total.0) - per_year;
            prop_assert!((-5..=6).contains(&error), "error {}", error);
        }

        #[test]
        fn shares_are_within_half_a_unit_of_the_exact_proportion(input in any_input()) {
            let split = calculate(&input).unwrap();
            let total = i128::from(split.monthly_total.0);
            let (w1, w2) = match split.basis {
                SplitBasis::Income => (
                    i128::from(input.income_1.unwrap().0),
                    i128::from(input.income_2.unwrap().0),
                ),
                SplitBasis::Equal => (1, 1),
            };
            let sum = w1 + w2;
            for (share, w) in [(split.share_1, w1), (split.share_2, w2)] {
                // |share − total × w / sum| ≤ ½, i.e. |2 × (share × sum − total × w)| ≤ sum.
                let diff = i128::from(share.0) * sum - total * w;
                prop_assert!(2 * diff.abs() <= sum, "share {} w {} total {}", share.0, w, total);
            }
            if split.basis == SplitBasis::Income {
                for (ratio, w) in [(split.ratio_1, w1), (split.ratio_2, w2)] {
                    let diff = i128::from(ratio) * sum - 100 * w;
                    prop_assert!(2 * diff.abs() <= sum);
                }
            }
        }

        #[test]
        fn bigger_income_never_pays_less(input in any_input()) {
            let split = calculate(&input).unwrap();
            if let (Some(a), Some(b)) = (input.income_1, input.income_2) {
                if a > b {
                    prop_assert!(split.share_1 >= split.share_2);
                    prop_assert!(split.ratio_1 >= split.ratio_2);
                }
                if b > a {
                    prop_assert!(split.share_2 >= split.share_1);
                    prop_assert!(split.ratio_2 >= split.ratio_1);
                }
            }
        }

        #[test]
        fn a_raise_never_lowers_your_share(
            mut input in any_input(),
            income_1 in 0_i64..=99_999_999_999_999,
            income_2 in 0_i64..=99_999_999_999_999,
            raise in 1_i64..=1_000_000,
        ) {
            input.income_1 = Some(MinorUnits(income_1));
            input.income_2 = Some(MinorUnits(income_2));
            let before = calculate(&input).unwrap();
            let mut raised = input.clone();
            raised.income_1 = raised.income_1.map(|income| MinorUnits(income.0 + raise));
            let after = calculate(&raised).unwrap();
            prop_assert!(after.share_1 >= before.share_1 || before.basis == SplitBasis::Equal);
            prop_assert!(after.share_2 <= before.share_2 || before.basis == SplitBasis::Equal);
            prop_assert!(after.ratio_1 >= before.ratio_1 || before.basis == SplitBasis::Equal);
        }

        #[test]
        fn month_start_round_trips(year in 0_i32..=9999, month in 1_u8..=12) {
            let m = Month::new(year, month).unwrap();
            prop_assert_eq!(Month::from_unix_millis(m.start_unix_millis()), m);
            prop_assert_eq!(Month::parse(&m.to_string()), Ok(m));
            if let Some(previous) = m.previous() {
                prop_assert_eq!(Month::from_unix_millis(m.start_unix_millis() - 1), previous);
            }
            if let Some(next) = m.next() {
                let days = (next.start_unix_millis() - m.start_unix_millis()) / MILLIS_PER_DAY;
                prop_assert!((28..=31).contains(&days));
            }
        }
    }
}
