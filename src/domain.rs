//! The message domain: what a stored message is, and the rules and limits its fields
//! follow. The webhook body's parser ([`crate::sources::webhook::payload`]) and the query parser
//! ([`crate::query`]) both check against these rules, and storage takes the types.

/// Longest `text`, in Unicode scalar values (Rust `char`s), not bytes. Also the longest
/// search term: a longer one could match nothing.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Longest phone number: `+` then at most this many digits (E.164).
pub const MAX_PHONE_DIGITS: usize = 15;

/// A message that passed validation, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub message_id: String,
    pub from: String,
    pub to: String,
    /// As sent.
    pub ts: String,
    /// Sortable instant form of `ts` (see [`crate::timestamp::instant_key`]).
    pub ts_key: String,
    pub text: Option<String>,
}

impl NewMessage {
    /// `text` lower-cased for case-insensitive search (`q`); `None` when there is no text.
    pub fn folded_text(&self) -> Option<String> {
        self.text.as_deref().map(fold_case)
    }
}

/// The case folding shared by stored text and search terms.
pub fn fold_case(text: &str) -> String {
    text.to_lowercase()
}

/// `+` followed by 1 to [`MAX_PHONE_DIGITS`] ASCII digits.
pub fn is_phone(value: &str) -> bool {
    value.strip_prefix('+').is_some_and(|digits| {
        (1..=MAX_PHONE_DIGITS).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// What a phone number field must be, as its validation error says it.
pub fn phone_rule(field: &str) -> String {
    format!("{field} must be + followed by 1 to {MAX_PHONE_DIGITS} digits")
}

/// Whether `text` fits [`MAX_TEXT_CHARS`].
pub fn text_fits(text: &str) -> bool {
    text.chars().count() <= MAX_TEXT_CHARS
}

/// What a text field must be, as its validation error says it.
pub fn text_rule(field: &str) -> String {
    format!("{field} must be at most {MAX_TEXT_CHARS} characters")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_a_plus_and_one_to_fifteen_digits() {
        assert!(is_phone("+1"));
        assert!(is_phone(&format!("+{}", "9".repeat(15))));
        assert!(!is_phone(&format!("+{}", "9".repeat(16))));
        for bad in [
            "", "+", "1234", "++1", "+12a", "+１２", " +1", "+1 ", "+-1", "+1 555",
        ] {
            assert!(!is_phone(bad), "{bad:?}");
        }
        assert_eq!(
            phone_rule("from"),
            "from must be + followed by 1 to 15 digits"
        );
    }

    #[test]
    fn text_is_measured_in_characters() {
        assert!(text_fits(&"é".repeat(MAX_TEXT_CHARS)));
        assert!(!text_fits(&"😀".repeat(MAX_TEXT_CHARS + 1)));
        assert_eq!(fold_case("Größe ÉTÉ"), "größe été");
    }
}
