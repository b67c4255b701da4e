//! Kubernetes quantities (`250m`, `1.5Gi`, `2e3`) as milli-units, rounded up
//! as `Quantity.MilliValue()` does: the HPA does all its arithmetic on
//! milli-values, so must we to give its answers.

/// `text` in milli-units, or a message saying what is wrong with it.
pub fn milli(text: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("quantity {text:?}: {why}");
    let s = text.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(bad("expected a number such as 500m, 2 or 1.5Gi"));
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits: i128 = format!("{whole}{frac}")
        .parse()
        .map_err(|_| bad("number too large"))?;
    // value = digits × 10^(exp10 − frac digits) × 1024^bin, times 1000 for milli.
    let mut exp10: i32 = 3 - i32::try_from(frac.len()).map_err(|_| bad("too many digits"))?;
    let mut bin: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => bin = 1,
        "Mi" => bin = 2,
        "Gi" => bin = 3,
        "Ti" => bin = 4,
        "Pi" => bin = 5,
        "Ei" => bin = 6,
        exponent if exponent.starts_with(['e', 'E']) => {
            let e: i32 = exponent[1..]
                .parse()
                .map_err(|_| bad("exponent must be an integer, as in 2e3"))?;
            exp10 += e;
        }
        _ => return Err(bad("unknown suffix; use m, k, M, G, T, Ki, Mi, Gi or Ti")),
    }
    let too_large = || bad("too large");
    let mut value = digits
        .checked_mul(1024_i128.checked_pow(bin).ok_or_else(too_large)?)
        .ok_or_else(too_large)?;
    if exp10 >= 0 {
        let scale = 10_i128
            .checked_pow(exp10.unsigned_abs())
            .ok_or_else(too_large)?;
        value = value.checked_mul(scale).ok_or_else(too_large)?;
    } else {
        let scale = 10_i128
            .checked_pow(exp10.unsigned_abs())
            .unwrap_or(i128::MAX);
        // Round away from zero, as Quantity does for milli-values.
        value = (value + scale - 1) / scale;
    }
    if negative {
        value = -value;
    }
    i64::try_from(value).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::milli;

    #[test]
    fn quantities_become_rounded_up_milli_values() {
        for (text, want) in [
            ("250m", 250),
            ("1", 1000),
            ("0.5", 500),
            ("1.5", 1500),
            ("0.3", 300),
            ("100n", 1),
            ("1500u", 2),
            ("2k", 2_000_000),
            ("128Mi", 134_217_728_000),
            ("1.5Gi", 1_610_612_736_000),
            ("1e3", 1_000_000),
            ("5E-1", 500),
            ("1M", 1_000_000_000),
            ("-250m", -250),
        ] {
            assert_eq!(milli(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn nonsense_is_named() {
        for text in ["", "abc", "1.2.3", "5Q", "1ex", "."] {
            let err = milli(text).expect_err(text);
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
    }
}
