//! Go-style durations (`90s`, `10m`, `1h30m`, `1.5h`, `500ms`, `2d`), the notation of
//! Terraform's `timeouts` blocks: one parser for the protocol crate (`tfplug`) and the control
//! plane (`control`), which must not depend on each other.
use std::time::Duration;

/// Why a text is not a Go-style duration. Each message quotes the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty duration")]
    Empty,
    /// A number without a unit (`10`, `1h30`).
    #[error("missing unit in duration {text:?}")]
    MissingUnit { text: String },
    /// A unit without a number, or a sign (`m`, `-1h`).
    #[error("invalid duration {text:?}")]
    MissingNumber { text: String },
    /// Digits and dots that are not a number (`1.2.3s`).
    #[error("invalid number in duration {text:?}")]
    InvalidNumber { text: String },
    #[error("unknown unit {unit:?} in duration {text:?}")]
    UnknownUnit { unit: String, text: String },
    /// More seconds than a [`Duration`] holds.
    #[error("duration {text:?} is too long")]
    TooLong { text: String },
}

/// Parses a sequence of decimal numbers, each with a unit: `ms`, `s`, `m`, `h` or `d` (a day,
/// which Go lacks but users expect). Surrounding whitespace is ignored.
pub fn parse(text: &str) -> Result<Duration, ParseError> {
    let owned = || text.to_owned();
    let s = text.trim();
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| ParseError::MissingUnit { text: owned() })?;
        if number_len == 0 {
            return Err(ParseError::MissingNumber { text: owned() });
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| ParseError::InvalidNumber { text: owned() })?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            unit => {
                return Err(ParseError::UnknownUnit {
                    unit: unit.to_owned(),
                    text: owned(),
                });
            }
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| ParseError::TooLong { text: owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("30s", 30.0),
            ("10m", 600.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("500ms", 0.5),
            ("2d", 172_800.0),
            ("90s", 90.0),
            (" 1h ", 3600.0),
            ("1h1h", 7200.0),
        ];
        for (text, secs) in ok {
            assert_eq!(parse(text), Ok(Duration::from_secs_f64(secs)), "{text}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let bad = [
            ("", "empty duration"),
            ("  ", "empty duration"),
            ("10", "missing unit in duration \"10\""),
            ("1h30", "missing unit in duration \"1h30\""),
            ("m", "invalid duration \"m\""),
            ("-1h", "invalid duration \"-1h\""),
            ("1.2.3s", "invalid number in duration \"1.2.3s\""),
            ("10x", "unknown unit \"x\" in duration \"10x\""),
            ("1h-3m", "unknown unit \"h-\" in duration \"1h-3m\""),
            ("soon", "invalid duration \"soon\""),
            (
                "99999999999999999999999d",
                "duration \"99999999999999999999999d\" is too long",
            ),
        ];
        for (text, message) in bad {
            assert_eq!(
                parse(text).map_err(|e| e.to_string()),
                Err(message.to_owned()),
                "{text}"
            );
        }
    }
}
