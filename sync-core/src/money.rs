//! Exact money: a partnership's [`Currency`] and amounts as integer [`MinorUnits`].
//!
//! The document stores every amount as an integer count of the currency's minor unit (cents for
//! USD, yen for JPY, fils for KWD), so a goal's saved amount can be an Automerge counter and two
//! offline additions add up exactly. Rust code at the edges (JSON, SQL) speaks
//! [`rust_decimal::Decimal`]; this module is the one place where the two meet. No floating point
//! is used anywhere.
//!
//! # Rules for amounts
//!
//! * An amount may not have more decimals than its currency's minor unit allows: `1.005` USD is
//!   refused rather than rounded, because silently rounding what a partner typed changes what they
//!   agreed to. Trailing zeros do not count: `150.000` JPY is `150` and is accepted.
//! * Amounts are limited to at most ten integer digits (absolute value below 10^10 major units),
//!   the range of the relational `DECIMAL(12,2)`-scale columns that mirror the document.
//! * Expenses, goals, contributions and thresholds must be positive
//!   ([`Currency::to_minor_positive`]); incomes and saved amounts may be zero
//!   ([`Currency::to_minor_non_negative`]).
//!
//! # Currency codes
//!
//! [`Currency::parse`] accepts only the canonical upper-case spelling (`"USD"`, not `"usd"`):
//! the code is stored in the document and compared as text by every client, so allowing one
//! spelling only keeps a partnership from ever carrying two. Codes must be in the built-in ISO
//! 4217 table; codes without a minor unit (precious metals such as `XAU`, `XDR`, test codes) are
//! not currencies a couple budgets in and are refused.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an amount or a currency code was refused. Each variant is a distinct message a user can
/// act on, so validation layers map them to field errors one to one.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum MoneyError {
    /// The code is not an upper-case ISO 4217 code with a minor unit.
    #[error("unknown currency code {0:?}: expected an upper-case ISO 4217 code such as \"USD\"")]
    UnknownCurrency(String),
    /// The amount has more decimals than the currency's minor unit.
    #[error("too many decimals: this currency allows at most {max}")]
    TooManyDecimals {
        /// The currency's exponent: the most decimals an amount may have.
        max: u32,
    },
    /// The amount's absolute value is 10^10 major units or more.
    #[error("amount too large: at most 10 integer digits are allowed")]
    TooLarge,
    /// Zero or negative where only a positive amount makes sense.
    #[error("amount must be greater than zero")]
    NotPositive,
    /// Negative where zero or more is required.
    #[error("amount must not be negative")]
    Negative,
}

/// Integer minor units of the partnership currency, as stored in the document (`1234` USD minor
/// units are 12.34 USD). Amounts travel as this type, never as a bare `i64`, so a major-unit
/// value cannot be mistaken for a minor-unit one.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MinorUnits(pub i64);

impl MinorUnits {
    /// Zero of any currency.
    pub const ZERO: MinorUnits = MinorUnits(0);

    /// Sum, or `None` on `i64` overflow (callers turn that into their own error instead of
    /// wrapping around).
    pub fn checked_add(self, other: MinorUnits) -> Option<MinorUnits> {
        self.0.checked_add(other.0).map(MinorUnits)
    }

    /// Difference, or `None` on `i64` overflow.
    pub fn checked_sub(self, other: MinorUnits) -> Option<MinorUnits> {
        self.0.checked_sub(other.0).map(MinorUnits)
    }
}

impl fmt::Display for MinorUnits {
    /// The raw integer, as written in the document; use [`Currency::from_minor`] for a
    /// human-readable decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Largest number of integer digits an amount may have (`DECIMAL(12,2)` scale: 10 digits before
/// the point).
const MAX_INTEGER_DIGITS: u32 = 10;

/// An ISO 4217 currency with its minor-unit exponent (USD 2, JPY 0, KWD 3, CLF 4).
///
/// Only values from the built-in table exist, so holding a `Currency` means the code is known
/// and the exponent is right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

impl Currency {
    /// US dollar: the default currency of a new partnership.
    pub const USD: Currency = Currency {
        code: "USD",
        exponent: 2,
    };

    /// Parses a currency code. Only the canonical upper-case spelling of a code in the ISO 4217
    /// table is accepted (`"usd"` is refused, see the module documentation).
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        ISO_4217
            .iter()
            .find(|(known, _)| *known == code)
            .map(|&(code, exponent)| Currency { code, exponent })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))
    }

    /// Every known currency, in the table's order (for generated client code and pickers).
    pub fn all() -> impl Iterator<Item = Currency> {
        ISO_4217
            .iter()
            .map(|&(code, exponent)| Currency { code, exponent })
    }

    /// The three-letter code, e.g. `"USD"`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Number of decimals of the minor unit (2 for USD: 100 cents to the dollar).
    pub fn exponent(&self) -> u32 {
        u32::from(self.exponent)
    }

    /// Converts a decimal amount to minor units, exactly.
    ///
    /// Refuses an amount with more decimals than the exponent once trailing zeros are dropped
    /// ([`MoneyError::TooManyDecimals`]; checked first) and one whose absolute value is 10^10
    /// major units or more ([`MoneyError::TooLarge`]). Negative amounts and zero are converted;
    /// use [`Currency::to_minor_positive`] or [`Currency::to_minor_non_negative`] for user input.
    pub fn to_minor(&self, amount: Decimal) -> Result<MinorUnits, MoneyError> {
        let amount = amount.normalize();
        let exponent = self.exponent();
        if amount.scale() > exponent {
            return Err(MoneyError::TooManyDecimals { max: exponent });
        }
        let mantissa = amount.mantissa();
        let minor = pow10(exponent - amount.scale())
            .and_then(|factor| mantissa.checked_mul(factor))
            .ok_or(MoneyError::TooLarge)?;
        if minor.abs() > i128::from(self.max_minor().0) {
            return Err(MoneyError::TooLarge);
        }
        i64::try_from(minor)
            .map(MinorUnits)
            .map_err(|_| MoneyError::TooLarge)
    }

    /// Like [`Currency::to_minor`], and also refuses zero and negative amounts
    /// ([`MoneyError::NotPositive`]): expenses, goal targets, contributions and thresholds.
    pub fn to_minor_positive(&self, amount: Decimal) -> Result<MinorUnits, MoneyError> {
        let minor = self.to_minor(amount)?;
        if minor.0 <= 0 {
            return Err(MoneyError::NotPositive);
        }
        Ok(minor)
    }

    /// Like [`Currency::to_minor`], and also refuses negative amounts ([`MoneyError::Negative`])
    /// while allowing zero: incomes and saved amounts.
    pub fn to_minor_non_negative(&self, amount: Decimal) -> Result<MinorUnits, MoneyError> {
        let minor = self.to_minor(amount)?;
        if minor.0 < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(minor)
    }

    /// Converts minor units back to a decimal whose scale is the exponent, so JSON shows the
    /// currency's usual form: 1234 USD minor units are `12.34`, 500 JPY are `500`, 5 USD minor
    /// units are `0.05`.
    pub fn from_minor(&self, minor: MinorUnits) -> Decimal {
        Decimal::new(minor.0, self.exponent())
    }

    /// Largest allowed absolute value in minor units: 10^10 major units less one minor unit
    /// (999 999 999 999 for USD).
    pub fn max_minor(&self) -> MinorUnits {
        // At most 10^(10 + 4) - 1: always fits an i64.
        let limit = 10_i64.pow(MAX_INTEGER_DIGITS + self.exponent());
        MinorUnits(limit - 1)
    }
}

impl Default for Currency {
    /// [`Currency::USD`], the default of a new partnership.
    fn default() -> Self {
        Currency::USD
    }
}

impl fmt::Display for Currency {
    /// The code, e.g. `USD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    /// As its code, the document and JSON spelling.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    /// From its code; unknown codes are refused.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// 10^exp as i128, `None` when it would not fit.
fn pow10(exp: u32) -> Option<i128> {
    10_i128.checked_pow(exp)
}

/// ISO 4217 list one: every code that has a minor unit, with its exponent.
///
/// Funds codes with a minor unit (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW) are included;
/// codes whose minor unit is "N.A." (XAG, XAU, XBA–XBD, XDR, XPD, XPT, XSU, XTS, XUA, XXX) are
/// not. Codes withdrawn recently (ANG, BGN, CUC, HRK, SLL, ZWL) stay accepted, because a
/// partnership created while they were current keeps its currency in its document and must go on
/// parsing; their successors (XCG, EUR, SLE, ZWG) are here too.
const ISO_4217: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HRK", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SLL", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
    ("ZWL", 2),
];

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;

    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn table_is_sorted_unique_upper_case_with_sane_exponents() {
        for pair in ISO_4217.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (code, exponent) in ISO_4217 {
            assert_eq!(code.len(), 3);
            assert!(code.bytes().all(|b| b.is_ascii_uppercase()), "{code}");
            assert!(*exponent <= 4, "{code}");
        }
        assert!(ISO_4217.len() >= 150);
    }

    #[test]
    fn known_exponents() {
        for code in ["USD", "EUR", "GBP", "CHF", "INR", "BRL", "HUF", "IDR"] {
            assert_eq!(cur(code).exponent(), 2, "{code}");
        }
        for code in [
            "JPY", "KRW", "CLP", "ISK", "VND", "XAF", "XOF", "UGX", "PYG", "XPF",
        ] {
            assert_eq!(cur(code).exponent(), 0, "{code}");
        }
        for code in ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"] {
            assert_eq!(cur(code).exponent(), 3, "{code}");
        }
        assert_eq!(cur("CLF").exponent(), 4);
        assert_eq!(cur("UYW").exponent(), 4);
    }

    #[test]
    fn usd_constant_matches_the_table() {
        assert_eq!(Currency::parse("USD"), Ok(Currency::USD));
        assert_eq!(Currency::USD.code(), "USD");
        assert_eq!(Currency::default(), Currency::USD);
    }

    #[test]
    fn unknown_lower_case_and_metal_codes_are_refused() {
        for code in [
            "usd", "Usd", "ABC", "", "US", "USDD", " USD", "XAU", "XDR", "XXX",
        ] {
            assert_eq!(
                Currency::parse(code),
                Err(MoneyError::UnknownCurrency(code.to_string())),
                "{code:?}"
            );
        }
    }

    #[test]
    fn currency_serializes_as_its_code() {
        let json = serde_json::to_string(&cur("KWD")).unwrap();
        assert_eq!(json, "\"KWD\"");
        assert_eq!(serde_json::from_str::<Currency>(&json).unwrap(), cur("KWD"));
        assert!(serde_json::from_str::<Currency>("\"kwd\"").is_err());
    }

    #[test]
    fn usd_converts_both_ways() {
        let usd = Currency::USD;
        assert_eq!(usd.to_minor(dec("12.34")), Ok(MinorUnits(1234)));
        assert_eq!(usd.to_minor(dec("12.3")), Ok(MinorUnits(1230)));
        assert_eq!(usd.to_minor(dec("12")), Ok(MinorUnits(1200)));
        assert_eq!(usd.to_minor(dec("0.05")), Ok(MinorUnits(5)));
        assert_eq!(usd.to_minor(dec("-7.50")), Ok(MinorUnits(-750)));
        assert_eq!(usd.from_minor(MinorUnits(1234)).to_string(), "12.34");
        assert_eq!(usd.from_minor(MinorUnits(5)).to_string(), "0.05");
        assert_eq!(usd.from_minor(MinorUnits(1200)).to_string(), "12.00");
        assert_eq!(usd.from_minor(MinorUnits(-750)).to_string(), "-7.50");
    }

    #[test]
    fn jpy_has_no_decimals() {
        let jpy = cur("JPY");
        assert_eq!(jpy.to_minor(dec("500")), Ok(MinorUnits(500)));
        assert_eq!(jpy.from_minor(MinorUnits(500)).to_string(), "500");
        assert_eq!(
            jpy.to_minor(dec("1.50")),
            Err(MoneyError::TooManyDecimals { max: 0 })
        );
        // Trailing zeros are not decimals.
        assert_eq!(jpy.to_minor(dec("150.000")), Ok(MinorUnits(150)));
    }

    #[test]
    fn kwd_has_three_decimals() {
        let kwd = cur("KWD");
        assert_eq!(kwd.to_minor(dec("1.234")), Ok(MinorUnits(1234)));
        assert_eq!(kwd.to_minor(dec("1.5")), Ok(MinorUnits(1500)));
        assert_eq!(kwd.from_minor(MinorUnits(1500)).to_string(), "1.500");
        assert_eq!(
            kwd.to_minor(dec("1.2345")),
            Err(MoneyError::TooManyDecimals { max: 3 })
        );
    }

    #[test]
    fn too_many_decimals_are_refused_not_rounded() {
        assert_eq!(
            Currency::USD.to_minor(dec("1.005")),
            Err(MoneyError::TooManyDecimals { max: 2 })
        );
        assert_eq!(
            Currency::USD.to_minor(dec("1.0050")),
            Err(MoneyError::TooManyDecimals { max: 2 }),
            "a trailing zero does not hide a third decimal"
        );
        assert_eq!(Currency::USD.to_minor(dec("1.0000")), Ok(MinorUnits(100)));
    }

    #[test]
    fn limits_are_exact_at_the_boundary() {
        let usd = Currency::USD;
        assert_eq!(usd.max_minor(), MinorUnits(999_999_999_999));
        assert_eq!(usd.to_minor(dec("9999999999.99")), Ok(usd.max_minor()));
        assert_eq!(
            usd.to_minor(dec("-9999999999.99")),
            Ok(MinorUnits(-999_999_999_999))
        );
        assert_eq!(usd.to_minor(dec("10000000000")), Err(MoneyError::TooLarge));
        assert_eq!(usd.to_minor(dec("-10000000000")), Err(MoneyError::TooLarge));
        let jpy = cur("JPY");
        assert_eq!(jpy.max_minor(), MinorUnits(9_999_999_999));
        assert_eq!(jpy.to_minor(dec("9999999999")), Ok(jpy.max_minor()));
        assert_eq!(jpy.to_minor(dec("10000000000")), Err(MoneyError::TooLarge));
        let clf = cur("CLF");
        assert_eq!(clf.max_minor(), MinorUnits(99_999_999_999_999));
        assert_eq!(clf.to_minor(dec("9999999999.9999")), Ok(clf.max_minor()));
        assert_eq!(
            usd.to_minor(Decimal::MAX),
            Err(MoneyError::TooLarge),
            "far beyond i64 is refused, not wrapped"
        );
    }

    #[test]
    fn positive_refuses_zero_and_negative() {
        let usd = Currency::USD;
        assert_eq!(usd.to_minor_positive(dec("0.01")), Ok(MinorUnits(1)));
        assert_eq!(
            usd.to_minor_positive(dec("0")),
            Err(MoneyError::NotPositive)
        );
        assert_eq!(
            usd.to_minor_positive(dec("-0.00")),
            Err(MoneyError::NotPositive)
        );
        assert_eq!(
            usd.to_minor_positive(dec("-1")),
            Err(MoneyError::NotPositive)
        );
        // Decimals are checked before the sign.
        assert_eq!(
            usd.to_minor_positive(dec("-1.001")),
            Err(MoneyError::TooManyDecimals { max: 2 })
        );
    }

    #[test]
    fn non_negative_allows_zero_only() {
        let usd = Currency::USD;
        assert_eq!(usd.to_minor_non_negative(dec("0")), Ok(MinorUnits(0)));
        assert_eq!(usd.to_minor_non_negative(dec("0.00")), Ok(MinorUnits(0)));
        assert_eq!(usd.to_minor_non_negative(dec("3.10")), Ok(MinorUnits(310)));
        assert_eq!(
            usd.to_minor_non_negative(dec("-0.01")),
            Err(MoneyError::Negative)
        );
    }

    #[test]
    fn minor_units_arithmetic_and_display() {
        assert_eq!(
            MinorUnits(2).checked_add(MinorUnits(3)),
            Some(MinorUnits(5))
        );
        assert_eq!(MinorUnits(i64::MAX).checked_add(MinorUnits(1)), None);
        assert_eq!(
            MinorUnits(2).checked_sub(MinorUnits(3)),
            Some(MinorUnits(-1))
        );
        assert_eq!(MinorUnits(i64::MIN).checked_sub(MinorUnits(1)), None);
        assert_eq!(MinorUnits(-1234).to_string(), "-1234");
        assert_eq!(serde_json::to_string(&MinorUnits(1234)).unwrap(), "1234");
        assert_eq!(
            serde_json::from_str::<MinorUnits>("1234").unwrap(),
            MinorUnits(1234)
        );
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        prop::sample::select(ISO_4217.to_vec())
            .prop_map(|(code, exponent)| Currency { code, exponent })
    }

    proptest! {
        #[test]
        fn minor_units_round_trip_through_decimal(currency in any_currency(), raw in any::<i64>()) {
            let max = currency.max_minor().0;
            let minor = MinorUnits(raw % (max + 1));
            let decimal = currency.from_minor(minor);
            prop_assert_eq!(decimal.scale(), currency.exponent());
            prop_assert_eq!(currency.to_minor(decimal), Ok(minor));
        }

        #[test]
        fn decimals_round_trip_through_minor_units(
            currency in any_currency(),
            mantissa in -99_999_999_999_999_i64..=99_999_999_999_999,
            scale in 0_u32..=6,
        ) {
            let amount = Decimal::new(mantissa, scale);
            match currency.to_minor(amount) {
                Ok(minor) => prop_assert_eq!(currency.from_minor(minor), amount),
                Err(MoneyError::TooManyDecimals { max }) => {
                    prop_assert_eq!(max, currency.exponent());
                    prop_assert!(amount.normalize().scale() > max);
                }
                Err(MoneyError::TooLarge) => {
                    prop_assert!(amount.abs() >= Decimal::new(10_000_000_000, 0));
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
