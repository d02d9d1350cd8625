//! Domain types for user input ("parse, don't validate"): a handler turns raw request fields into
//! these types once, so an invalid email, name, country or income cannot travel further into the
//! server. Every `parse` returns the message that goes into the `validation_failed` details for
//! the field, e.g. `{"email": ["must be a valid email address"]}`. [`push`] holds the push
//! devices' (tokens, Web Push endpoints and keys).

pub mod push;

use std::fmt;
use std::net::Ipv6Addr;

use axum::http::Uri;

use rust_decimal::Decimal;
use splitsave_sync_core::money::{Currency, MinorUnits};

/// Longest email address accepted: the limit of the SMTP path (RFC 5321 with its errata).
pub const EMAIL_MAX_LEN: usize = 254;
/// Longest local part (before the `@`) allowed by RFC 5321.
const EMAIL_LOCAL_MAX_LEN: usize = 64;
/// Longest DNS label.
const DNS_LABEL_MAX_LEN: usize = 63;
/// Shortest password accepted, in characters.
pub const PASSWORD_MIN_CHARS: usize = 10;
/// Longest password accepted, in characters: long enough for any passphrase or password manager,
/// short enough that hashing cost stays bounded.
pub const PASSWORD_MAX_CHARS: usize = 128;
/// Longest display name, in characters.
pub const NAME_MAX_CHARS: usize = 100;
/// Longest avatar URL, in characters: what browsers and CDNs handle everywhere, and far more than
/// any picture's address needs.
pub const AVATAR_URL_MAX_CHARS: usize = 2048;
/// Longest host name (DNS).
const HOST_MAX_LEN: usize = 253;

/// A syntactically valid email address, trimmed and lower-cased so that `Ann@Example.com` and
/// `ann@example.com` are one account.
///
/// Accepted syntax: an ASCII local part of letters, digits and ``!#$%&'*+/=?^_`{|}~.-`` (no
/// leading, trailing or doubled dot, at most 64 characters), `@`, and a domain of at least two
/// dot-separated labels of letters, digits and inner hyphens whose last label is not all digits;
/// at most 254 characters in all. Quoted local parts, IP-literal domains and non-ASCII addresses
/// are refused: they are valid on paper but rare, and most mail systems mishandle them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses and normalises an email address (see the type's documentation for the syntax).
    pub fn parse(raw: &str) -> Result<Email, String> {
        const INVALID: &str = "must be a valid email address";
        let email = raw.trim().to_ascii_lowercase();
        if email.is_empty() {
            return Err("is required".into());
        }
        if email.len() > EMAIL_MAX_LEN {
            return Err(format!("must be at most {EMAIL_MAX_LEN} characters"));
        }
        let (local, domain) = email.split_once('@').ok_or_else(|| INVALID.to_string())?;
        if !valid_local_part(local) || !valid_domain(domain) {
            return Err(INVALID.into());
        }
        Ok(Email(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised address, by value.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_local_part(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~.-";
    !local.is_empty()
        && local.len() <= EMAIL_LOCAL_MAX_LEN
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c))
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let valid_label = |label: &&str| {
        !label.is_empty()
            && label.len() <= DNS_LABEL_MAX_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let top_level_not_numeric = labels
        .last()
        .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    labels.len() >= 2 && labels.iter().all(valid_label) && top_level_not_numeric
}

/// A new password that meets the policy: 10 to 128 characters (Unicode scalar values), any
/// characters. It is never trimmed, and its `Debug` output is redacted so it cannot end up in a
/// log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Checks the length policy.
    pub fn parse(raw: &str) -> Result<Password, String> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err("is required".into());
        }
        if chars < PASSWORD_MIN_CHARS {
            return Err(format!("must be at least {PASSWORD_MIN_CHARS} characters"));
        }
        if chars > PASSWORD_MAX_CHARS {
            return Err(format!("must be at most {PASSWORD_MAX_CHARS} characters"));
        }
        Ok(Password(raw.to_string()))
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A person's display name: trimmed, 1 to 100 characters, no control characters (they would
/// corrupt mails and notifications that show the name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    /// Trims and checks a display name.
    pub fn parse(raw: &str) -> Result<PersonName, String> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 {
            return Err("is required".into());
        }
        if chars > NAME_MAX_CHARS {
            return Err(format!("must be at most {NAME_MAX_CHARS} characters"));
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(PersonName(name.to_string()))
    }

    /// The trimmed name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trimmed name, by value.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An officially assigned ISO 3166-1 alpha-2 country code, stored upper-case (`"de"` is accepted
/// and becomes `"DE"`; user-assigned and reserved codes such as `"XK"` or `"UK"` are refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CountryCode(&'static str);

impl CountryCode {
    /// Parses a two-letter country code against the ISO 3166-1 list.
    pub fn parse(raw: &str) -> Result<CountryCode, String> {
        let code = raw.trim().to_ascii_uppercase();
        ISO_3166_ALPHA2
            .iter()
            .find(|known| **known == code)
            .map(|known| CountryCode(known))
            .ok_or_else(|| "must be an ISO 3166-1 alpha-2 country code such as \"US\"".to_string())
    }

    /// The upper-case code, e.g. `"US"`.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// A currency a user keeps their budget in: an upper-case ISO 4217 code with a minor unit, as
/// [`Currency::parse`] defines it (the same rule the partnership document applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CurrencyCode(Currency);

impl CurrencyCode {
    /// Parses an ISO 4217 code such as `"USD"` (upper-case only, see [`Currency::parse`]).
    pub fn parse(raw: &str) -> Result<CurrencyCode, String> {
        Currency::parse(raw)
            .map(CurrencyCode)
            .map_err(|_| "must be an upper-case ISO 4217 currency code such as \"USD\"".into())
    }

    /// The currency, with its minor unit.
    pub fn currency(&self) -> Currency {
        self.0
    }

    /// The three-letter code.
    pub fn as_str(&self) -> &'static str {
        self.0.code()
    }
}

/// A monthly income: zero or more, with no more decimals than the currency's minor unit and at
/// most ten integer digits. Kept as the exact decimal the user typed (normalised to the
/// currency's scale) together with its minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Income {
    amount: Decimal,
    minor: MinorUnits,
}

impl Income {
    /// Checks an income in the given currency.
    pub fn parse(amount: Decimal, currency: Currency) -> Result<Income, String> {
        let minor = currency
            .to_minor_non_negative(amount)
            .map_err(|e| e.to_string())?;
        Ok(Income {
            amount: currency.from_minor(minor),
            minor,
        })
    }

    /// The amount at the currency's scale (e.g. `4200.00` for USD).
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The amount in the currency's minor units.
    pub fn minor(&self) -> MinorUnits {
        self.minor
    }

    /// A stored income or allowance as the API shows it: at the scale of the user's currency
    /// `code` (exact, since neither ever has more decimals than its currency allows). The stored
    /// scale cannot be relied on: PostgreSQL's driver writes any zero as `0`, whatever its scale
    /// (SQLite kept `0.00`, so the two backends answered differently), and a change of currency
    /// leaves the stored amount as it was (`20000` in JPY is `20000.000` once the currency is
    /// KWD). A value that does not fit (none should) is shown as stored rather than rounded.
    pub fn shown(stored: Decimal, code: &str) -> Decimal {
        CurrencyCode::parse(code)
            .and_then(|c| Income::parse(stored, c.currency()))
            .map_or(stored, |a| a.amount())
    }
}

/// A personal allowance: the monthly amount a user keeps for themselves, in their own currency.
/// The same rule as [`Income`] (zero or more, no more decimals than the currency's minor unit, at
/// most ten integer digits), so that any amount the profile accepts as an income it accepts as an
/// allowance too; a type of its own so that one cannot be passed where the other is meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersonalAllowance(Income);

impl PersonalAllowance {
    /// Checks an allowance in the given currency.
    pub fn parse(amount: Decimal, currency: Currency) -> Result<PersonalAllowance, String> {
        Income::parse(amount, currency).map(PersonalAllowance)
    }

    /// The amount at the currency's scale (e.g. `150.00` for USD).
    pub fn amount(&self) -> Decimal {
        self.0.amount()
    }
}

/// The address of a user's picture: an absolute `https://` URL with a host, at most
/// [`AVATAR_URL_MAX_CHARS`] characters, stored with its scheme lower-cased and otherwise as given.
///
/// The partner's app loads it, so it must not be able to do anything but fetch a picture over
/// TLS: `http:` (readable and changeable on the way), `javascript:`, `data:` and every other
/// scheme, relative and scheme-relative (`//host/…`) references, and user info (`user:pass@`,
/// which leaks credentials and disguises the real host as `https://bank.example@evil.example`)
/// are refused. So are whitespace, control characters and anything outside RFC 3986's URL
/// characters (a backslash, which browsers read as `/`; quotes and angle brackets; non-ASCII,
/// which must be percent-encoded), and a `%` not followed by two hex digits. The host is a DNS
/// name (letters, digits, `-`, `_`, dot-separated non-empty labels) or a bracketed IPv6 address;
/// a port is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvatarUrl(String);

impl AvatarUrl {
    /// Checks an avatar URL as the client sent it (not trimmed: surrounding spaces are refused
    /// like inner ones, rather than guessed away).
    pub fn parse(raw: &str) -> Result<AvatarUrl, String> {
        const NOT_HTTPS: &str = "must be an absolute https:// URL";
        const SCHEME: &str = "https://";
        if raw.is_empty() {
            return Err("must not be empty (null removes the avatar)".into());
        }
        if raw.chars().count() > AVATAR_URL_MAX_CHARS {
            return Err(format!("must be at most {AVATAR_URL_MAX_CHARS} characters"));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace or control characters".into());
        }
        let Some(rest) = raw
            .get(..SCHEME.len())
            .filter(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
            .and_then(|_| raw.get(SCHEME.len()..))
        else {
            return Err(NOT_HTTPS.into());
        };
        if !url_characters_only(rest) {
            return Err(
                "must contain only URL characters (percent-encode any other, as %XX)".into(),
            );
        }
        let url = format!("{SCHEME}{rest}");
        let uri: Uri = url.parse().map_err(|_| NOT_HTTPS.to_string())?;
        let Some(authority) = uri.authority() else {
            return Err("must name a host".into());
        };
        if authority.as_str().contains('@') {
            return Err("must not contain a user name or password".into());
        }
        if !valid_host(authority.host()) {
            return Err("must name a host".into());
        }
        // `Uri` keeps whatever follows the host's `:` without reading it as a number.
        let port = &authority.as_str()[authority.host().len()..];
        if !port.is_empty() && !port.strip_prefix(':').is_some_and(valid_port) {
            return Err("must have a port of digits only, if any".into());
        }
        Ok(AvatarUrl(url))
    }

    /// The URL, scheme lower-cased.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL, by value.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Whether `text` holds only RFC 3986 URL characters (unreserved, reserved and `%`), each `%`
/// starting a two-hex-digit escape.
fn url_characters_only(text: &str) -> bool {
    const ALLOWED: &str = "-._~:/?#[]@!$&'()*+,;=%";
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        (b.is_ascii_alphanumeric() || ALLOWED.as_bytes().contains(&b))
            && (b != b'%'
                || bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)))
    })
}

/// Whether a URL's port is 1 to 5 digits of a number below 65536.
fn valid_port(port: &str) -> bool {
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok()
}

/// Whether a URL's host is a DNS name or a bracketed IPv6 address (an IPv4 address is a DNS-like
/// name of digits and dots, and passes as one).
fn valid_host(host: &str) -> bool {
    if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return literal.parse::<Ipv6Addr>().is_ok();
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= DNS_LABEL_MAX_LEN
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    !host.is_empty() && host.len() <= HOST_MAX_LEN && host.split('.').all(valid_label)
}

/// The day of the month a user is paid: a day `"1"` to `"31"` (in shorter months it falls on
/// the last day) or `"last"` for the last day of every month. Stored as that text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payday {
    /// A fixed day of the month, 1 to 31.
    Day(u8),
    /// The last day of each month.
    Last,
}

impl Payday {
    /// Parses `"1"`..`"31"` (no sign, no leading zeros beyond two digits such as `"05"`) or
    /// `"last"` (any case).
    pub fn parse(raw: &str) -> Result<Payday, String> {
        const INVALID: &str = "must be a day of the month from \"1\" to \"31\" or \"last\"";
        let value = raw.trim();
        if value.eq_ignore_ascii_case("last") {
            return Ok(Payday::Last);
        }
        if value.is_empty() || value.len() > 2 || !value.chars().all(|c| c.is_ascii_digit()) {
            return Err(INVALID.into());
        }
        match value.parse::<u8>() {
            Ok(day @ 1..=31) => Ok(Payday::Day(day)),
            _ => Err(INVALID.into()),
        }
    }
}

impl fmt::Display for Payday {
    /// The stored form: `"15"` or `"last"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payday::Day(day) => write!(f, "{day}"),
            Payday::Last => f.write_str("last"),
        }
    }
}

/// The officially assigned ISO 3166-1 alpha-2 codes (249).
const ISO_3166_ALPHA2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn good_emails_are_trimmed_and_lower_cased() {
        for (raw, expected) in [
            ("ann@example.com", "ann@example.com"),
            ("  Ann.Lee@Example.COM ", "ann.lee@example.com"),
            ("a+tag@sub.example.co.uk", "a+tag@sub.example.co.uk"),
            ("o'neil@xn--p1ai.xn--p1ai", "o'neil@xn--p1ai.xn--p1ai"),
            ("x_y-z@my-host.io", "x_y-z@my-host.io"),
        ] {
            assert_eq!(
                Email::parse(raw).map(Email::into_inner),
                Ok(expected.into()),
                "{raw}"
            );
        }
    }

    #[test]
    fn bad_emails_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        for raw in [
            "",
            "   ",
            "plainaddress",
            "@example.com",
            "ann@",
            "ann@@example.com",
            "ann@example",
            "ann@.example.com",
            "ann@example..com",
            "ann@-example.com",
            "ann@example-.com",
            "ann@example.123",
            ".ann@example.com",
            "ann.@example.com",
            "an..n@example.com",
            "ann lee@example.com",
            "ann@exa mple.com",
            "añn@example.com",
            "\"ann\"@example.com",
            "ann@[127.0.0.1]",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn email_length_limit_is_254_characters() {
        let domain = format!(
            "{}.{}.{}.com",
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63)
        );
        let local_len = EMAIL_MAX_LEN - 1 - domain.len();
        let at_limit = format!("{}@{domain}", "a".repeat(local_len));
        assert_eq!(at_limit.len(), 254);
        assert!(Email::parse(&at_limit).is_ok());
        let over = format!("{}@{domain}", "a".repeat(local_len + 1));
        assert_eq!(
            Email::parse(&over),
            Err("must be at most 254 characters".to_string())
        );
    }

    #[test]
    fn passwords_need_10_to_128_characters() {
        assert!(Password::parse("123456789").is_err());
        assert!(Password::parse("").is_err());
        assert!(Password::parse("1234567890").is_ok());
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        // Characters, not bytes: ten two-byte characters are enough, 129 are too many.
        assert!(Password::parse(&"é".repeat(10)).is_ok());
        assert!(Password::parse(&"é".repeat(129)).is_err());
        // Spaces are kept as typed.
        let spaced = Password::parse("  spaced out  ").map(|p| p.expose().to_string());
        assert_eq!(spaced, Ok("  spaced out  ".to_string()));
    }

    #[test]
    fn password_debug_output_hides_the_password() {
        let password = Password::parse("correct horse battery").map(|p| format!("{p:?}"));
        assert_eq!(password, Ok("Password(<redacted>)".to_string()));
    }

    #[test]
    fn names_are_trimmed_and_limited_to_100_characters() {
        assert_eq!(
            PersonName::parse("  Ann Lee ").map(PersonName::into_inner),
            Ok("Ann Lee".into())
        );
        assert!(PersonName::parse("Zoë").is_ok());
        assert!(PersonName::parse(&"n".repeat(100)).is_ok());
        assert!(PersonName::parse(&"n".repeat(101)).is_err());
        assert!(PersonName::parse("").is_err());
        assert!(PersonName::parse("   ").is_err());
        assert!(PersonName::parse("Ann\nLee").is_err());
    }

    #[test]
    fn country_codes_come_from_the_iso_list() {
        assert_eq!(CountryCode::parse("US").map(|c| c.as_str()), Ok("US"));
        assert_eq!(CountryCode::parse("de").map(|c| c.as_str()), Ok("DE"));
        assert_eq!(CountryCode::parse("AX").map(|c| c.as_str()), Ok("AX"));
        for bad in ["", "U", "USA", "UK", "XK", "ZZ", "EU", "1A", "u s"] {
            assert!(
                CountryCode::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn the_country_list_is_sorted_and_has_no_duplicates() {
        assert!(ISO_3166_ALPHA2.windows(2).all(|w| w[0] < w[1]));
        assert!(ISO_3166_ALPHA2
            .iter()
            .all(|c| c.len() == 2 && c.chars().all(|ch| ch.is_ascii_uppercase())));
    }

    #[test]
    fn currencies_are_upper_case_iso_4217_codes() {
        assert_eq!(CurrencyCode::parse("USD").map(|c| c.as_str()), Ok("USD"));
        assert_eq!(CurrencyCode::parse("JPY").map(|c| c.as_str()), Ok("JPY"));
        for bad in ["", "usd", "US", "USDD", "ABC", "XAU"] {
            assert!(
                CurrencyCode::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn incomes_are_non_negative_with_the_currency_decimals() {
        let dec = |s: &str| Decimal::from_str(s).expect("test decimal");
        let usd = Currency::USD;
        let jpy = Currency::parse("JPY").expect("JPY is known");
        let income = Income::parse(dec("4200.5"), usd).expect("valid income");
        assert_eq!(income.amount().to_string(), "4200.50");
        assert_eq!(income.minor(), MinorUnits(420_050));
        assert!(Income::parse(dec("0"), usd).is_ok());
        assert!(Income::parse(dec("-0.01"), usd).is_err());
        assert!(Income::parse(dec("10.005"), usd).is_err());
        assert!(Income::parse(dec("300000"), jpy).is_ok());
        assert!(Income::parse(dec("300000.5"), jpy).is_err());
        assert!(Income::parse(dec("10000000000"), usd).is_err());
    }

    #[test]
    fn allowances_follow_the_income_rule() {
        let dec = |s: &str| Decimal::from_str(s).expect("test decimal");
        let usd = Currency::USD;
        let jpy = Currency::parse("JPY").expect("JPY is known");
        let allowance = PersonalAllowance::parse(dec("150.5"), usd).expect("valid allowance");
        assert_eq!(allowance.amount().to_string(), "150.50");
        assert!(PersonalAllowance::parse(dec("0"), usd).is_ok());
        assert!(PersonalAllowance::parse(dec("-0.01"), usd).is_err());
        assert!(PersonalAllowance::parse(dec("10.005"), usd).is_err());
        assert!(PersonalAllowance::parse(dec("150.5"), jpy).is_err());
        assert!(PersonalAllowance::parse(dec("9999999999.99"), usd).is_ok());
        assert!(PersonalAllowance::parse(dec("10000000000"), usd).is_err());
    }

    #[test]
    fn allowances_are_shown_at_the_currency_scale() {
        let dec = |s: &str| Decimal::from_str(s).expect("test decimal");
        let shown = |amount: &str, code: &str| Income::shown(dec(amount), code);
        assert_eq!(shown("0", "USD").to_string(), "0.00");
        assert_eq!(shown("150.5", "USD").to_string(), "150.50");
        assert_eq!(shown("20000", "KWD").to_string(), "20000.000");
        assert_eq!(shown("150.00", "JPY").to_string(), "150");
        // What does not fit is shown as stored, never rounded.
        assert_eq!(shown("1.5", "JPY").to_string(), "1.5");
        assert_eq!(shown("1.5", "???").to_string(), "1.5");
    }

    #[test]
    fn avatar_urls_are_https_with_a_host() {
        for (raw, stored) in [
            (
                "https://cdn.example.com/a/ann.png",
                "https://cdn.example.com/a/ann.png",
            ),
            (
                "HTTPS://cdn.example.com/ann.png?s=64&v=2#top",
                "https://cdn.example.com/ann.png?s=64&v=2#top",
            ),
            ("https://example.com", "https://example.com"),
            (
                "https://img.example.com:8443/x",
                "https://img.example.com:8443/x",
            ),
            ("https://[2001:db8::1]/x.png", "https://[2001:db8::1]/x.png"),
            ("https://198.51.100.7/x.png", "https://198.51.100.7/x.png"),
            (
                "https://example.com/caf%C3%A9/a@b.png",
                "https://example.com/caf%C3%A9/a@b.png",
            ),
        ] {
            assert_eq!(
                AvatarUrl::parse(raw).map(AvatarUrl::into_inner),
                Ok(stored.to_string()),
                "{raw}"
            );
        }
    }

    #[test]
    fn avatar_urls_refuse_everything_but_https_to_a_host() {
        let at_limit = format!("https://example.com/{}", "a".repeat(2048 - 20));
        assert_eq!(at_limit.len(), 2048);
        assert!(AvatarUrl::parse(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            AvatarUrl::parse(&over),
            Err("must be at most 2048 characters".to_string())
        );
        for bad in [
            "",
            "http://example.com/a.png",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:image/png;base64,iVBORw0KGgo=",
            "/avatars/ann.png",
            "avatars/ann.png",
            "//example.com/a.png",
            "https:/example.com/a.png",
            "https:example.com",
            "https://",
            "https:///a.png",
            "https://:443/a.png",
            "https://user:pass@example.com/a.png",
            "https://user@example.com/a.png",
            "https://bank.example@evil.example/",
            " https://example.com/a.png",
            "https://example.com/a.png ",
            "https://example.com/a b.png",
            "https://example.com/a\tb.png",
            "https://example.com/a\nb.png",
            "https://example.com/\u{7f}",
            "https://example.com\\@evil.example/",
            "https://example.com/\"onerror=\"x",
            "https://example.com/<script>",
            "https://example.com/café.png",
            "https://bücher.example/a.png",
            "https://example.com/%zz",
            "https://example.com/%4",
            "https://exa mple.com/",
            "https://example..com/",
            "https://.example.com/",
            "https://[not-ipv6]/",
            "https://example.com:port/",
            "https://example.com:/a.png",
            "https://example.com:65536/a.png",
            "https://example.com:+1/a.png",
            "ftp://example.com/a.png",
            "wss://example.com/a.png",
        ] {
            assert!(AvatarUrl::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn payday_is_a_day_of_the_month_or_last() {
        assert_eq!(Payday::parse("1"), Ok(Payday::Day(1)));
        assert_eq!(Payday::parse("05"), Ok(Payday::Day(5)));
        assert_eq!(Payday::parse("31"), Ok(Payday::Day(31)));
        assert_eq!(Payday::parse("Last"), Ok(Payday::Last));
        assert_eq!(Payday::Last.to_string(), "last");
        assert_eq!(Payday::Day(15).to_string(), "15");
        for bad in ["", "0", "32", "-1", "+1", "1.5", "first", "005", "15th"] {
            assert!(Payday::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
