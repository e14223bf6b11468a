//! The `timeouts` block: Terraform has no protocol support for it, so the framework adds the
//! block to resources that ask for it, validates its durations and enforces them.
use std::time::Duration;

use crate::schema::{Attribute, Block, NestedBlock};
use crate::value::{Type, Value};

/// The operations a `timeouts` block can bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Read,
    Update,
    Delete,
}

impl Operation {
    pub const ALL: [Operation; 4] = [Self::Create, Self::Read, Self::Update, Self::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// The `timeouts` block added to a resource's schema.
pub fn block(defaults: &crate::resource::TimeoutDefaults) -> NestedBlock {
    let attr = |op: Operation, default: Duration| {
        Attribute::optional(op.name(), Type::String).description(format!(
            "How long to wait for the resource to {} before giving up, as a duration such as \
             `30s`, `10m` or `1h30m`. Defaults to `{}`.",
            op.name(),
            format_duration(default)
        ))
    };
    NestedBlock::optional_single(
        "timeouts",
        Block::new(
            vec![
                attr(Operation::Create, defaults.create),
                attr(Operation::Read, defaults.read),
                attr(Operation::Update, defaults.update),
                attr(Operation::Delete, defaults.delete),
            ],
            vec![],
        )
        .description("Time limits for the operations on this resource. Changing them never replaces the resource."),
    )
}

/// The configured duration for `op` in an object holding a `timeouts` block, if set and valid.
pub fn configured(object: &Value, op: Operation) -> Option<Duration> {
    let text = object.get_attr("timeouts")?.get_attr(op.name())?.as_str()?;
    parse_duration(text).ok()
}

/// The longest timeout accepted: a limit beyond it is a mistake rather than a wish.
const LONGEST: Duration = Duration::from_secs(366 * 86_400);

/// A timeout that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(transparent)]
    Syntax(#[from] duration::ParseError),
    #[error("duration {text:?} is longer than a year")]
    TooLong { text: String },
}

/// Parses Go-style durations (`90s`, `10m`, `1h30m`, `1.5h`, `500ms`) of at most a year.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    match duration::parse(text) {
        Ok(d) if d <= LONGEST => Ok(d),
        Ok(_) | Err(duration::ParseError::TooLong { .. }) => Err(DurationError::TooLong {
            text: text.to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Renders a duration the way users write it (`20m`, `1h30m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_go_style_and_at_most_a_year() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("366d"), Ok(LONGEST));
        for (text, message) in [
            ("10x", "unknown unit \"x\" in duration \"10x\""),
            ("367d", "duration \"367d\" is longer than a year"),
            ("999999d", "duration \"999999d\" is longer than a year"),
            (
                "99999999999999999999999d",
                "duration \"99999999999999999999999d\" is longer than a year",
            ),
        ] {
            assert_eq!(
                parse_duration(text).map_err(|e| e.to_string()),
                Err(message.to_owned()),
                "{text}"
            );
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["20m", "1h30m", "45s", "0s", "2h"] {
            let d = parse_duration(text).unwrap_or_default();
            assert_eq!(format_duration(d), text);
        }
    }
}
