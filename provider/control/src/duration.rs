//! Durations as users write them for job limits: Batch AI's `[d.]hh:mm:ss`, ISO 8601
//! (`P1DT2H30M`, `PT90S`) and Go style (`1h30m`, `90s`). Shared so the provider validates
//! exactly what agents enforce.
use std::time::Duration;

/// A text in none of the three notations. The message says what is accepted; the source, for
/// a text read as Go style, says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a duration; write \"1.12:00:00\" (d.hh:mm:ss), \"P1DT12H\" (ISO 8601) or \"36h\""
)]
pub struct ParseError {
    text: String,
    #[source]
    go: Option<::duration::ParseError>,
}

/// Parses any of the three notations.
pub fn parse(text: &str) -> Result<Duration, ParseError> {
    let s = text.trim();
    let error = |go| ParseError {
        text: text.to_owned(),
        go,
    };
    if s.starts_with('P') || s.starts_with('p') {
        parse_iso8601(s).ok_or_else(|| error(None))
    } else if s.contains(':') {
        parse_timespan(s).ok_or_else(|| error(None))
    } else {
        ::duration::parse(s).map_err(|e| error(Some(e)))
    }
}

/// `[d.]hh:mm:ss[.fff]`, as .NET's TimeSpan and Batch AI's `maxWallClockTime`.
fn parse_timespan(s: &str) -> Option<Duration> {
    let (days, clock) = match s.split_once('.') {
        Some((d, rest)) if rest.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, s),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let [h, m, sec] = parts.as_slice() else {
        return None;
    };
    let hours: u64 = h.parse().ok()?;
    let minutes: u64 = m.parse().ok()?;
    let seconds: f64 = sec.parse().ok()?;
    if minutes >= 60 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    let whole = days
        .checked_mul(86_400)?
        .checked_add(hours.checked_mul(3600)?)?
        .checked_add(minutes * 60)?;
    Duration::from_secs(whole).checked_add(Duration::from_secs_f64(seconds))
}

/// `PnDTnHnMnS` (weeks `nW` too); years and months are refused as ambiguous.
fn parse_iso8601(s: &str) -> Option<Duration> {
    let body = &s[1..];
    let (date, time) = match body.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut total = 0f64;
    let mut any = false;
    for (part, units) in [
        (date, &[('W', 604_800.0), ('D', 86_400.0)][..]),
        (
            time.unwrap_or(""),
            &[('H', 3600.0), ('M', 60.0), ('S', 1.0)][..],
        ),
    ] {
        let mut rest = part;
        while !rest.is_empty() {
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let value: f64 = rest[..end].parse().ok()?;
            let unit = rest[end..].chars().next()?.to_ascii_uppercase();
            let seconds = units.iter().find(|(u, _)| *u == unit)?.1;
            total += value * seconds;
            any = true;
            rest = &rest[end + 1..];
        }
    }
    if time == Some("") || !any {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Formats milliseconds as Batch AI did (`d.hh:mm:ss`, the day part only when there is one).
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let hms = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}.{hms}")
    } else {
        hms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notations() {
        let ok = [
            ("7.00:00:00", 7 * 86_400),
            ("01:30:00", 5400),
            ("1.12:00:00", 129_600),
            ("00:00:45", 45),
            ("P7D", 7 * 86_400),
            ("PT1H30M", 5400),
            ("P1DT12H", 129_600),
            ("P1W", 604_800),
            ("PT90S", 90),
            ("1h30m", 5400),
            ("90s", 90),
            ("2d", 172_800),
        ];
        for (text, secs) in ok {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        assert_eq!(
            parse("soon").map_err(|e| e.to_string()),
            Err(
                "\"soon\" is not a duration; write \"1.12:00:00\" (d.hh:mm:ss), \"P1DT12H\" (ISO 8601) or \"36h\""
                    .to_owned()
            )
        );
        for bad in [
            "",
            "soon",
            "1:2",
            "01:60:00",
            "P",
            "PT",
            "P1Y",
            "10",
            "1x",
            "-1h",
            "99999999999999999999999h",
            "P99999999999999999999999D",
            "18446744073709551615:00:00",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
