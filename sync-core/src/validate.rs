//! Input validation shared by operations (client and server) and enforcement.

use crate::money::{Currency, MinorUnits};
use crate::policy::limits;

/// A rejected input, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The input field (`name`, `amount`, ...).
    pub field: &'static str,
    /// Why, for people.
    pub message: String,
}

impl ValidationError {
    /// A new error.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Trims and checks a name: 1–200 characters, no control characters.
pub fn name(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    text(field, raw, limits::NAME_MAX)
}

/// Checks a message text: 1–4000 characters after trimming.
pub fn message_text(raw: &str) -> Result<String, ValidationError> {
    text("text", raw, limits::MESSAGE_MAX)
}

fn text(field: &'static str, raw: &str, max: usize) -> Result<String, ValidationError> {
    let t = raw.trim();
    let n = t.chars().count();
    if n == 0 {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if n > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t.to_string())
}

/// Checks an optional note (approval message): ≤ 4000 characters; empty becomes `None`.
pub fn note(raw: Option<&str>) -> Result<Option<String>, ValidationError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => text("message", t, limits::MESSAGE_MAX).map(Some),
    }
}

/// Checks a positive amount within the currency's limit.
pub fn positive_amount(
    field: &'static str,
    amount: MinorUnits,
    currency: &Currency,
) -> Result<MinorUnits, ValidationError> {
    if amount.0 <= 0 {
        return Err(ValidationError::new(field, "must be greater than zero"));
    }
    if amount > currency.max_minor() {
        return Err(ValidationError::new(field, "is too large"));
    }
    Ok(amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("name", "  Rent ").unwrap(), "Rent");
        assert!(name("name", "   ").is_err());
        assert!(name("name", &"x".repeat(201)).is_err());
        assert!(name("name", &"é".repeat(200)).is_ok());
        assert!(name("name", "a\u{0}b").is_err());
    }

    #[test]
    fn amounts_must_be_positive_and_bounded() {
        let usd = Currency::USD;
        assert!(positive_amount("amount", MinorUnits(0), &usd).is_err());
        assert!(positive_amount("amount", MinorUnits(-5), &usd).is_err());
        assert!(positive_amount("amount", usd.max_minor(), &usd).is_ok());
        assert!(positive_amount("amount", MinorUnits(usd.max_minor().0 + 1), &usd).is_err());
    }
}
