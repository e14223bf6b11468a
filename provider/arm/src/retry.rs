//! The retry and throttling rules, as pure functions: which answers are tried again, how long
//! ARM asks us to wait (`retry-after-ms`, `x-ms-retry-after-ms`, `Retry-After`), how much of the
//! throttling budget is left (`x-ms-ratelimit-remaining-resource`), and the backoff with jitter.
use std::hash::{BuildHasher as _, Hasher as _};
use std::time::{Duration, SystemTime};

use crate::error::ErrorDetail;

/// What to do with an answer or a failure to get one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A final answer (success or an error the caller gets).
    Done,
    /// Throttled (429): wait as ARM says, else back off, then try again.
    Throttled,
    /// A transient failure (408, 500, 502, 503, 504, a lost connection, a conflicting
    /// operation in progress): back off (or wait as ARM says) and try again.
    Transient,
}

impl Disposition {
    /// Why a retry waits, in the words of the deadline error.
    pub fn reason(self) -> &'static str {
        match self {
            Disposition::Throttled => "throttled (429)",
            Disposition::Transient | Disposition::Done => "retrying a transient failure",
        }
    }
}

/// How to treat an HTTP answer with `status` and `body`.
pub fn classify(status: u16, body: &[u8]) -> Disposition {
    match status {
        429 => Disposition::Throttled,
        408 | 500 | 502 | 503 | 504 => Disposition::Transient,
        409 if another_operation_in_progress(ErrorDetail::from_body(body).as_ref()) => {
            Disposition::Transient
        }
        _ => Disposition::Done,
    }
}

/// A 409 that means "wait for the operation already running on this resource": the code
/// `AnotherOperationInProgress`, or `OperationNotAllowed` whose message says so (Compute uses
/// both). Other conflicts (`RoleAssignmentExists`, a name taken) are final.
pub fn another_operation_in_progress(detail: Option<&ErrorDetail>) -> bool {
    let Some(detail) = detail else {
        return false;
    };
    let code = detail.code.as_deref().unwrap_or_default();
    if code.eq_ignore_ascii_case("AnotherOperationInProgress") {
        return true;
    }
    let message = detail
        .message
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    code.eq_ignore_ascii_case("OperationNotAllowed")
        && message.contains("another operation")
        && message.contains("in progress")
}

/// The wait a response asks for, from its headers: `retry-after-ms`, then
/// `x-ms-retry-after-ms` (milliseconds), then `Retry-After` (seconds, or an HTTP date, counted
/// from `now`). `header` looks a header up by lower-case name. `None` when none is present and
/// readable; a date in the past is a zero wait.
pub fn retry_after(header: impl Fn(&str) -> Option<String>, now: SystemTime) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = header(name).and_then(|v| v.trim().parse::<f64>().ok())
            && ms.is_finite()
            && ms >= 0.0
        {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = header("retry-after")?;
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Some(Duration::from_secs_f64(seconds));
    }
    let when = azure_core::time::parse_rfc7231(value).ok()?;
    let when = SystemTime::from(when);
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The smallest count in an `x-ms-ratelimit-remaining-resource` header:
/// `Microsoft.Compute/PutVMScaleSet3Min;107,Microsoft.Compute/PutVMScaleSet30Min;587` gives 107.
/// `None` when the header has no readable count.
pub fn ratelimit_remaining(value: &str) -> Option<u64> {
    value
        .split(',')
        .filter_map(|policy| policy.rsplit_once(';'))
        .filter_map(|(_, count)| count.trim().parse::<u64>().ok())
        .min()
}

/// The `attempt`th backoff (0 first): `initial * 2^attempt`, at most `max`, then jittered to a
/// random point in its upper half, so clients that failed together do not retry together.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let full = initial
        .checked_mul(1u32 << attempt.min(16))
        .unwrap_or(max)
        .min(max);
    let half = full / 2;
    half + half.mul_f64(random_unit())
}

/// A random number in [0, 1) from the standard library's randomly keyed hasher: jitter needs
/// no quality randomness, and this keeps a random-number crate out of the tree.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn retry_after_headers_in_order_of_precedence() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<Duration>);
        let cases: [Case; 10] = [
            (&[("retry-after", "7")], Some(Duration::from_secs(7))),
            (
                &[("retry-after", " 1200 ")],
                Some(Duration::from_secs(1200)),
            ),
            (&[("retry-after", "0.5")], Some(Duration::from_millis(500))),
            (
                &[("retry-after-ms", "250"), ("retry-after", "9")],
                Some(Duration::from_millis(250)),
            ),
            (
                &[("x-ms-retry-after-ms", "1500"), ("retry-after", "9")],
                Some(Duration::from_millis(1500)),
            ),
            (
                &[("retry-after-ms", "soon"), ("x-ms-retry-after-ms", "40")],
                Some(Duration::from_millis(40)),
            ),
            (
                &[("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")],
                Some(Duration::from_secs(30)),
            ),
            (
                &[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")],
                Some(Duration::ZERO),
            ),
            (&[("retry-after", "whenever")], None),
            (&[], None),
        ];
        for (pairs, want) in cases {
            assert_eq!(retry_after(headers(pairs), now), want, "{pairs:?}");
        }
    }

    #[test]
    fn ratelimit_headers_give_the_smallest_count() {
        let cases = [
            (
                "Microsoft.Compute/PutVMScaleSet3Min;107,Microsoft.Compute/PutVMScaleSet30Min;587",
                Some(107),
            ),
            ("Microsoft.Compute/HighCostGet3Min;2", Some(2)),
            ("Microsoft.Compute/A;9, Microsoft.Compute/B;0", Some(0)),
            ("garbage", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(ratelimit_remaining(value), want, "{value}");
        }
    }

    #[test]
    fn statuses_and_conflicts_classify() {
        let in_progress = br#"{"error":{"code":"AnotherOperationInProgress","message":"x"}}"#;
        let not_allowed = br#"{"error":{"code":"OperationNotAllowed","message":"Another operation is in progress on the scale set."}}"#;
        let not_allowed_other =
            br#"{"error":{"code":"OperationNotAllowed","message":"Quota exceeded."}}"#;
        let exists = br#"{"error":{"code":"RoleAssignmentExists","message":"exists"}}"#;
        let cases: [(u16, &[u8], Disposition); 14] = [
            (200, b"", Disposition::Done),
            (201, b"", Disposition::Done),
            (400, b"", Disposition::Done),
            (404, b"", Disposition::Done),
            (408, b"", Disposition::Transient),
            (429, b"", Disposition::Throttled),
            (500, b"", Disposition::Transient),
            (501, b"", Disposition::Done),
            (502, b"", Disposition::Transient),
            (503, b"", Disposition::Transient),
            (504, b"", Disposition::Transient),
            (409, in_progress, Disposition::Transient),
            (409, not_allowed, Disposition::Transient),
            (409, not_allowed_other, Disposition::Done),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                classify(status, body),
                want,
                "{status} {}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(classify(409, exists), Disposition::Done);
        assert_eq!(classify(409, b"not json"), Disposition::Done);
    }

    #[test]
    fn backoff_grows_stays_in_its_upper_half_and_is_capped() {
        let initial = Duration::from_secs(1);
        let max = Duration::from_secs(30);
        for attempt in 0..40 {
            let full = (initial * 2u32.pow(attempt.min(16))).min(max);
            let got = backoff(attempt, initial, max);
            assert!(
                got >= full / 2 && got <= full,
                "attempt {attempt}: {got:?} of {full:?}"
            );
        }
    }
}
