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

/// Parses Go-style durations (`90s`, `10m`, `1h30m`, `1.5h`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        if number_len == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("invalid number in duration {text:?}"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            unit => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    if !total.is_finite() || total > 366.0 * 86400.0 {
        return Err(format!("duration {text:?} is longer than a year"));
    }
    Ok(Duration::from_secs_f64(total))
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
    fn durations() {
        let ok = [
            ("30s", 30.0),
            ("10m", 600.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("500ms", 0.5),
            ("2d", 172_800.0),
        ];
        for (text, secs) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        for bad in ["", "10", "m", "10x", "1h-3m", "999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
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
