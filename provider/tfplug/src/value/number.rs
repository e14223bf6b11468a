//! Arbitrary-precision decimal numbers for cty `number` values, kept as canonical decimal text.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::ValueError;

/// How many zeros an exponent may add when it is expanded into plain decimal text.
///
/// The limit stops inputs such as `1e999999999` from turning a few bytes into gigabytes,
/// while leaving ample room for every finite `f64` (whose longest shortest-form text is about
/// 330 characters).
const MAX_EXPONENT_PADDING: i64 = 10_000;

/// Arbitrary-precision decimal number, kept as its canonical decimal text.
///
/// The canonical text has no exponent, no leading zeros in the integer part, no trailing zeros
/// in the fraction and no negative zero, so two equal numbers always have equal text and
/// equality and hashing can work on the text alone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Number(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Finite(String),
    PosInf,
    NegInf,
}

impl Number {
    /// The number equal to `i`.
    pub fn from_i64(i: i64) -> Number {
        Number(Repr::Finite(i.to_string()))
    }

    /// The number equal to `u`.
    pub fn from_u64(u: u64) -> Number {
        Number(Repr::Finite(u.to_string()))
    }

    /// The number equal to `f`, or `None` for NaN, which cty cannot represent.
    pub fn from_f64(f: f64) -> Option<Number> {
        if f.is_nan() {
            None
        } else if f == f64::INFINITY {
            Some(Number(Repr::PosInf))
        } else if f == f64::NEG_INFINITY {
            Some(Number(Repr::NegInf))
        } else {
            // Rust's `Display` for f64 is the shortest text that round-trips and never uses an
            // exponent, so 0.1 becomes "0.1" rather than its exact binary expansion.
            canonical_finite(&f.to_string())
                .ok()
                .map(|s| Number(Repr::Finite(s)))
        }
    }

    /// The number equal to a finite `f32`, using the shortest text that round-trips as an f32.
    pub(crate) fn from_f32(f: f32) -> Option<Number> {
        if f.is_finite() {
            canonical_finite(&f.to_string())
                .ok()
                .map(|s| Number(Repr::Finite(s)))
        } else {
            Number::from_f64(f64::from(f))
        }
    }

    /// Parses decimal text: optional sign, digits, optional fraction and optional exponent,
    /// or `inf`/`infinity` with an optional sign.
    pub fn parse(s: &str) -> Result<Number, ValueError> {
        let (negative, rest) = split_sign(s);
        if rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity") {
            return Ok(Number(if negative { Repr::NegInf } else { Repr::PosInf }));
        }
        canonical_finite(s).map(|c| Number(Repr::Finite(c)))
    }

    /// The value as an `i64` when it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        match &self.0 {
            Repr::Finite(s) if !s.contains('.') => s.parse().ok(),
            _ => None,
        }
    }

    /// The value as a `u64` when it is a non-negative integer in range.
    pub fn as_u64(&self) -> Option<u64> {
        match &self.0 {
            Repr::Finite(s) if !s.contains('.') => s.parse().ok(),
            _ => None,
        }
    }

    /// The nearest `f64`; values beyond its range become infinite.
    pub fn as_f64(&self) -> f64 {
        match &self.0 {
            // Canonical text always parses; NaN is only a fallback that cannot be reached.
            Repr::Finite(s) => s.parse().unwrap_or(f64::NAN),
            Repr::PosInf => f64::INFINITY,
            Repr::NegInf => f64::NEG_INFINITY,
        }
    }

    /// Whether the number is a whole number (infinities are not).
    pub fn is_integer(&self) -> bool {
        matches!(&self.0, Repr::Finite(s) if !s.contains('.'))
    }

    /// Whether the number is finite.
    pub fn is_finite(&self) -> bool {
        matches!(self.0, Repr::Finite(_))
    }

    /// Whether this is positive infinity.
    pub fn is_pos_infinity(&self) -> bool {
        matches!(self.0, Repr::PosInf)
    }

    /// Whether this is negative infinity.
    pub fn is_neg_infinity(&self) -> bool {
        matches!(self.0, Repr::NegInf)
    }

    /// The number as an `f64` when that `f64` is exactly this number.
    pub(crate) fn as_exact_f64(&self) -> Option<f64> {
        let f = self.as_f64();
        (Number::from_f64(f).as_ref() == Some(self)).then_some(f)
    }
}

fn split_sign(s: &str) -> (bool, &str) {
    if let Some(rest) = s.strip_prefix('-') {
        (true, rest)
    } else if let Some(rest) = s.strip_prefix('+') {
        (false, rest)
    } else {
        (false, s)
    }
}

/// Turns finite decimal text into canonical form.
fn canonical_finite(s: &str) -> Result<String, ValueError> {
    let invalid = |why: &str| ValueError::Number(format!("{s:?}: {why}"));
    let (negative, rest) = split_sign(s);
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || !all_digits(frac_part) || int_part.len() + frac_part.len() == 0 {
        return Err(invalid("not a decimal number"));
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let (exp_negative, digits) = split_sign(e);
            if digits.is_empty() || !all_digits(digits) {
                return Err(invalid("malformed exponent"));
            }
            let magnitude: i64 = digits.parse().map_err(|_| invalid("exponent too large"))?;
            if exp_negative { -magnitude } else { magnitude }
        }
    };

    let digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
    let leading = digits.iter().take_while(|&&d| d == b'0').count();
    let trailing = digits.iter().rev().take_while(|&&d| d == b'0').count();
    if leading == digits.len() {
        // Zero has one spelling whatever its sign or exponent.
        return Ok("0".to_owned());
    }
    let significant = &digits[leading..digits.len() - trailing];
    // The value is 0.<significant> x 10^point.
    let too_large = || invalid("exponent too large");
    let int_len = i64::try_from(int_part.len()).map_err(|_| too_large())?;
    let leading = i64::try_from(leading).map_err(|_| too_large())?;
    let sig_len = i64::try_from(significant.len()).map_err(|_| too_large())?;
    let point = int_len
        .checked_sub(leading)
        .and_then(|p| p.checked_add(exponent))
        .ok_or_else(too_large)?;
    if point > sig_len.saturating_add(MAX_EXPONENT_PADDING) || point < -MAX_EXPONENT_PADDING {
        return Err(too_large());
    }

    let mut out = String::with_capacity(significant.len() + 3);
    if negative {
        out.push('-');
    }
    let push_digits = |out: &mut String, d: &[u8]| out.extend(d.iter().map(|&b| char::from(b)));
    let zeros = |n: i64| "0".repeat(usize::try_from(n).unwrap_or(0));
    if point <= 0 {
        out.push_str("0.");
        out.push_str(&zeros(-point));
        push_digits(&mut out, significant);
    } else if point >= sig_len {
        push_digits(&mut out, significant);
        out.push_str(&zeros(point - sig_len));
    } else {
        let split = usize::try_from(point).map_err(|_| too_large())?;
        let (int_digits, frac_digits) = significant.split_at(split);
        push_digits(&mut out, int_digits);
        out.push('.');
        push_digits(&mut out, frac_digits);
    }
    Ok(out)
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Finite(s) => f.write_str(s),
            Repr::PosInf => f.write_str("inf"),
            Repr::NegInf => f.write_str("-inf"),
        }
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Number({self})")
    }
}

impl FromStr for Number {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Number, ValueError> {
        Number::parse(s)
    }
}

impl From<i64> for Number {
    fn from(i: i64) -> Number {
        Number::from_i64(i)
    }
}

impl From<u64> for Number {
    fn from(u: u64) -> Number {
        Number::from_u64(u)
    }
}

impl From<i32> for Number {
    fn from(i: i32) -> Number {
        Number::from_i64(i64::from(i))
    }
}

impl From<u32> for Number {
    fn from(u: u32) -> Number {
        Number::from_u64(u64::from(u))
    }
}

/// Compares canonical magnitudes, which never have leading integer or trailing fraction zeros.
fn cmp_magnitude(a: &str, b: &str) -> Ordering {
    let (a_int, a_frac) = a.split_once('.').unwrap_or((a, ""));
    let (b_int, b_frac) = b.split_once('.').unwrap_or((b, ""));
    a_int
        .len()
        .cmp(&b_int.len())
        .then_with(|| a_int.cmp(b_int))
        // Without trailing zeros, plain string order is numeric order for fractions.
        .then_with(|| a_frac.cmp(b_frac))
}

impl Ord for Number {
    fn cmp(&self, other: &Number) -> Ordering {
        match (&self.0, &other.0) {
            (Repr::NegInf, Repr::NegInf) | (Repr::PosInf, Repr::PosInf) => Ordering::Equal,
            (Repr::NegInf, _) | (_, Repr::PosInf) => Ordering::Less,
            (_, Repr::NegInf) | (Repr::PosInf, _) => Ordering::Greater,
            (Repr::Finite(a), Repr::Finite(b)) => {
                match (a.strip_prefix('-'), b.strip_prefix('-')) {
                    (Some(a), Some(b)) => cmp_magnitude(b, a),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => cmp_magnitude(a, b),
                }
            }
        }
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Number) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parse_canonicalises() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("+0.000", "0"),
            ("0e999999999999", "0"),
            ("1e3", "1000"),
            ("1E+3", "1000"),
            ("-2.50", "-2.5"),
            ("007.0100", "7.01"),
            ("1.5e-3", "0.0015"),
            ("12345e-2", "123.45"),
            ("0.000120e2", "0.012"),
            (".5", "0.5"),
            ("5.", "5"),
            ("1180591620717411303424", "1180591620717411303424"),
            ("-1e-1", "-0.1"),
            ("inf", "inf"),
            ("-Infinity", "-inf"),
            ("+INF", "inf"),
        ];
        for (input, want) in cases {
            assert_eq!(Number::parse(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn parse_rejects_garbage() {
        for input in [
            "", "-", ".", "e5", "1e", "1e+", "1.2.3", "0x10", "1_000", " 1", "1 ", "nan",
            "1e99999", "1e-99999", "--1", "1ee2", "١",
        ] {
            assert!(Number::parse(input).is_err(), "{input:?} should not parse");
        }
    }

    #[test]
    fn f64_conversions_use_shortest_text() {
        assert_eq!(Number::from_f64(0.1).unwrap().to_string(), "0.1");
        assert_eq!(Number::from_f64(-0.0).unwrap().to_string(), "0");
        assert_eq!(
            Number::from_f64(1e21).unwrap().to_string(),
            "1000000000000000000000"
        );
        assert_eq!(Number::from_f64(f64::INFINITY).unwrap().to_string(), "inf");
        assert!(Number::from_f64(f64::NAN).is_none());
        let tiny = Number::from_f64(f64::from_bits(1)).unwrap();
        assert_eq!(tiny.as_f64(), f64::from_bits(1));
        let huge = Number::from_f64(f64::MAX).unwrap();
        assert_eq!(huge.as_f64(), f64::MAX);
        assert!(huge.is_integer());
        assert_eq!(Number::from_f32(0.1).unwrap().to_string(), "0.1");
    }

    #[test]
    fn integer_accessors() {
        let n = Number::parse("9223372036854775807").unwrap();
        assert_eq!(n.as_i64(), Some(i64::MAX));
        let n = Number::parse("9223372036854775808").unwrap();
        assert_eq!(n.as_i64(), None);
        assert_eq!(n.as_u64(), Some(1 << 63));
        assert_eq!(Number::from(-1).as_u64(), None);
        assert_eq!(Number::parse("1.5").unwrap().as_i64(), None);
        assert!(!Number::parse("1.5").unwrap().is_integer());
        assert!(!Number::parse("inf").unwrap().is_integer());
        assert_eq!(
            Number::parse("2e0").unwrap().as_exact_f64(),
            Some(2.0),
            "exact f64"
        );
        assert_eq!(
            Number::parse("0.1000000000000000000001")
                .unwrap()
                .as_exact_f64(),
            None
        );
    }

    #[test]
    fn ordering_is_numeric() {
        let sorted = [
            "-inf", "-100", "-9.5", "-9.25", "-1", "-0.5", "0", "0.05", "0.5", "0.51", "0.6", "1",
            "9", "10", "10.5", "1e30", "inf",
        ];
        let nums: Vec<Number> = sorted.iter().map(|s| Number::parse(s).unwrap()).collect();
        for (i, a) in nums.iter().enumerate() {
            for (j, b) in nums.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }
}
