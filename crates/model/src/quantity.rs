//! Kubernetes resource quantities: `100m` and `0.5` CPUs, `64Mi` and `1G`
//! bytes, `129e6`, `5` pods.
//!
//! A quantity is an unsigned decimal number followed by an optional suffix:
//! binary (`Ki` `Mi` `Gi` `Ti` `Pi` `Ei`, powers of 1024), decimal (`n` `u`
//! `m` `k` `M` `G` `T` `P` `E`, powers of 1000) or a decimal exponent
//! (`e3`, `E-2`). Parsing is exact (no floating point) and checked: a value
//! that overflows `i64`, or is finer than the unit it is parsed into (a
//! millicore, a byte), is an error rather than a rounded number.

/// Millicores in one CPU.
const MILLIS_PER_CPU: i64 = 1000;
/// Decimal exponent of the millicore unit relative to a whole CPU.
const MILLI_EXPONENT: i32 = 3;
/// Most significant digits accepted (an `i128` holds 38).
const MAX_DIGITS: usize = 30;
/// Largest magnitude of an `e<n>` exponent.
const MAX_EXPONENT: i32 = 64;
/// Binary suffixes with their powers of two, largest first.
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ei", 60),
    ("Pi", 50),
    ("Ti", 40),
    ("Gi", 30),
    ("Mi", 20),
    ("Ki", 10),
];
/// Decimal suffixes with their powers of ten.
const DECIMAL_SUFFIXES: [(&str, i32); 9] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

/// An exact quantity: `digits * multiplier * 10^exp10`.
struct Quantity {
    digits: i128,
    multiplier: i128,
    exp10: i32,
}

fn parse_quantity(s: &str) -> Result<Quantity, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.starts_with('-') {
        return Err("must not be negative".into());
    }
    let body = s.strip_prefix('+').unwrap_or(s);
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(split);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if frac_part.contains('.') {
        return Err("must be a number with at most one decimal point".into());
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err("must start with a number (e.g. '100m', '0.5', '64Mi')".into());
    }
    // Trailing zeros of the fraction and leading zeros overall carry no value.
    let frac_part = frac_part.trim_end_matches('0');
    let significant = format!("{int_part}{frac_part}");
    let significant = significant.trim_start_matches('0');
    if significant.len() > MAX_DIGITS {
        return Err(format!("must have at most {MAX_DIGITS} significant digits"));
    }
    let digits = significant
        .bytes()
        .try_fold(0i128, |n, b| {
            n.checked_mul(10)?.checked_add(i128::from(b - b'0'))
        })
        .ok_or("is too large")?;
    let (multiplier, suffix_exp10) = suffix_scale(suffix)?;
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| "has too many decimals")?;
    let exp10 = suffix_exp10
        .checked_sub(frac_len)
        .ok_or("has too many decimals")?;
    Ok(Quantity {
        digits,
        multiplier,
        exp10,
    })
}

/// The multiplier and power of ten a suffix stands for.
fn suffix_scale(suffix: &str) -> Result<(i128, i32), String> {
    if suffix.is_empty() {
        return Ok((1, 0));
    }
    if let Some((_, shift)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok((1i128 << shift, 0));
    }
    if let Some((_, exp)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok((1, *exp));
    }
    if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
        if let Ok(exp) = exp.parse::<i32>() {
            if exp.abs() <= MAX_EXPONENT {
                return Ok((1, exp));
            }
            return Err(format!("exponent must be at most {MAX_EXPONENT}"));
        }
    }
    Err(format!(
        "unknown suffix {suffix:?} (use Ki, Mi, Gi, Ti, Pi, Ei, m, k, M, G, T, P, E or e<n>)"
    ))
}

impl Quantity {
    /// The value in units of `10^-shift` (shift 3: millis), if it is whole
    /// and fits an `i64`.
    fn scaled(&self, shift: i32, unit: &str) -> Result<i64, String> {
        let n = self
            .digits
            .checked_mul(self.multiplier)
            .ok_or("is too large")?;
        let exp = self.exp10.checked_add(shift).ok_or("is too large")?;
        let value = if exp >= 0 {
            10i128
                .checked_pow(exp.unsigned_abs())
                .and_then(|p| n.checked_mul(p))
                .ok_or("is too large")?
        } else {
            match 10i128.checked_pow(exp.unsigned_abs()) {
                Some(d) if n % d == 0 => n / d,
                None if n == 0 => 0,
                _ => return Err(format!("must be a whole number of {unit}")),
            }
        };
        i64::try_from(value).map_err(|_| "is too large".to_string())
    }
}

/// CPU in millicores: `100m` → 100, `0.5` → 500, `2` → 2000. Finer than a
/// millicore (`0.0001`) is an error.
pub fn parse_cpu_millis(s: &str) -> Result<i64, String> {
    parse_quantity(s)?.scaled(MILLI_EXPONENT, "millicores (1m)")
}

/// Bytes (or any count): `128974848`, `129e6`, `129M`, `123Mi`, `1.5Gi`.
/// Sub-unit suffixes (`m`, `u`, `n`) are rejected, as are fractions of a
/// byte.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    // Only the sub-unit suffixes end in one of these letters.
    if s.ends_with(['m', 'u', 'n']) {
        return Err("suffixes m, u and n (fractions) are not allowed here".into());
    }
    parse_quantity(s)?.scaled(0, "whole units")
}

/// A quantity of the named resource: millicores for `cpu`, a plain count
/// (bytes for `memory` and `ephemeral-storage`) for everything else.
pub fn parse(resource_name: &str, s: &str) -> Result<i64, String> {
    if resource_name == "cpu" {
        parse_cpu_millis(s)
    } else {
        parse_bytes(s)
    }
}

/// Millicores as Kubernetes writes them: `2` for whole CPUs, else `1500m`.
pub fn format_cpu(millis: i64) -> String {
    if millis % MILLIS_PER_CPU == 0 {
        (millis / MILLIS_PER_CPU).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Bytes with the largest binary suffix that divides them exactly:
/// 67108864 → `64Mi`, 1500 → `1500`.
pub fn format_bytes(b: i64) -> String {
    if b == 0 {
        return "0".into();
    }
    BINARY_SUFFIXES
        .iter()
        .find(|(_, shift)| b % (1i64 << shift) == 0)
        .map_or_else(
            || b.to_string(),
            |(suffix, shift)| format!("{}{suffix}", b / (1i64 << shift)),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_good() {
        for (input, want) in [
            ("100m", 100),
            ("0.5", 500),
            ("2", 2000),
            ("1.5", 1500),
            ("0", 0),
            ("0m", 0),
            (".25", 250),
            ("1.000", 1000),
            ("+3", 3000),
            ("1k", 1_000_000),
            ("1e-3", 1),
            ("2e3", 2_000_000),
            ("1000000n", 1),
            ("1000u", 1),
            ("0.0000", 0),
        ] {
            assert_eq!(parse_cpu_millis(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn cpu_bad() {
        for input in [
            "",
            "-1",
            "-100m",
            "abc",
            "1x",
            "0.0001",
            "1.5m",
            "1..2",
            ".",
            "m",
            "1e",
            "1e999",
            "1 ",
            " 1",
            "1Ei",
            "99999999999999999999",
            "1.2.3",
            "1n",
        ] {
            assert!(parse_cpu_millis(input).is_err(), "{input:?} should fail");
        }
    }

    #[test]
    fn bytes_good() {
        for (input, want) in [
            ("0", 0),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("129M", 129_000_000),
            ("123Mi", 128_974_848),
            ("1.5Gi", 1_610_612_736),
            ("1k", 1000),
            ("1Ki", 1024),
            ("1G", 1_000_000_000),
            ("2Ti", 2 << 40),
            ("1Pi", 1 << 50),
            ("7Ei", 7 << 60),
            ("1E", 1_000_000_000_000_000_000),
            ("1.5k", 1500),
            ("1E3", 1000),
        ] {
            assert_eq!(parse_bytes(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn bytes_bad() {
        for input in [
            "", "-1", "-1Gi", "1m", "1000m", "1u", "1n", "1K", "1kb", "1Gb", "abc", "0.5",
            "1.0001k", "8Ei", "10E", "1e19", "1e-1", "Mi", "1 Gi",
        ] {
            assert!(parse_bytes(input).is_err(), "{input:?} should fail");
        }
    }

    #[test]
    fn parse_by_resource() {
        assert_eq!(parse("cpu", "250m"), Ok(250));
        assert_eq!(parse("memory", "64Mi"), Ok(64 << 20));
        assert_eq!(parse("pods", "110"), Ok(110));
        assert_eq!(parse("ephemeral-storage", "1Gi"), Ok(1 << 30));
        assert!(parse("memory", "250m").is_err());
        assert!(parse("pods", "1.5").is_err());
    }

    #[test]
    fn formatting() {
        for (millis, want) in [(1500, "1500m"), (2000, "2"), (0, "0"), (100, "100m")] {
            assert_eq!(format_cpu(millis), want);
        }
        for (bytes, want) in [
            (67_108_864, "64Mi"),
            (1024, "1Ki"),
            (1536, "1536"),
            (1500, "1500"),
            (0, "0"),
            (3 << 30, "3Gi"),
            (1 << 60, "1Ei"),
            (i64::MAX, "9223372036854775807"),
        ] {
            assert_eq!(format_bytes(bytes), want);
        }
        for b in [0, 1, 1024, 1_610_612_736, 7 << 60] {
            assert_eq!(parse_bytes(&format_bytes(b)), Ok(b));
        }
    }
}
