//! Resource quantities as the API server stores them: parsed from strings or JSON numbers and
//! written back in canonical form (`0.5` → `500m`, `1024Mi` → `1Gi`), so that every client reads
//! the same string a real cluster would give it.

/// The value in nano-units; 10^18 (exa) × 10^9 and 2^60 × 10^9 both fit in an i128.
const NANO: i128 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

const BINARY: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
const DECIMAL: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

pub const SYNTAX: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// The canonical string of a quantity given as a JSON string or number.
pub fn canonical(value: &serde_json::Value) -> Result<String, String> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(SYNTAX.into()),
    };
    let (nanos, format) = parse(text.trim()).ok_or_else(|| SYNTAX.to_string())?;
    Ok(format_quantity(nanos, format))
}

fn parse(s: &str) -> Option<(i128, Format)> {
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    // The value as digits × 10^-scale.
    let digits: String = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let scale = fraction.len() as i32;
    let (format, multiplier_pow2, exp10) =
        if let Some((_, p)) = BINARY.iter().find(|(name, _)| *name == suffix) {
            (Format::BinarySi, *p, 0)
        } else if let Some((_, e)) = DECIMAL.iter().find(|(name, _)| *name == suffix) {
            (Format::DecimalSi, 0, *e)
        } else if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
            (Format::DecimalExponent, 0, exp.parse::<i32>().ok()?)
        } else {
            return None;
        };
    // nanos = mantissa × 2^p × 10^(exp10 − scale + 9), rounded up as Kubernetes does when
    // precision below a nano-unit is lost.
    let value = mantissa.checked_mul(1i128.checked_shl(multiplier_pow2)?)?;
    let shift = exp10 - scale + 9;
    let nanos = if shift >= 0 {
        value.checked_mul(10i128.checked_pow(shift as u32)?)?
    } else {
        let divisor = 10i128.checked_pow((-shift) as u32)?;
        (value + divisor - 1) / divisor
    };
    Some((if negative { -nanos } else { nanos }, format))
}

fn format_quantity(nanos: i128, mut format: Format) -> String {
    if nanos == 0 {
        return "0".into();
    }
    if format == Format::BinarySi && (nanos.abs() < 1024 * NANO || nanos % NANO != 0) {
        // Small or fractional binary amounts read better, and stay exact, in decimal.
        format = Format::DecimalSi;
    }
    match format {
        Format::BinarySi => {
            let mut whole = nanos / NANO;
            let mut suffix = "";
            for (name, _) in BINARY {
                if whole % 1024 != 0 {
                    break;
                }
                whole /= 1024;
                suffix = name;
            }
            format!("{whole}{suffix}")
        }
        Format::DecimalSi | Format::DecimalExponent => {
            // The largest power of 1000 (at least nano) that keeps the mantissa whole.
            let mut mantissa = nanos;
            let mut exponent = -9;
            while exponent < 18 && mantissa % 1000 == 0 {
                mantissa /= 1000;
                exponent += 3;
            }
            if format == Format::DecimalExponent {
                if exponent == 0 {
                    format!("{mantissa}")
                } else {
                    format!("{mantissa}e{exponent}")
                }
            } else {
                let suffix = DECIMAL
                    .iter()
                    .find(|(_, e)| *e == exponent)
                    .map(|(name, _)| *name)
                    .unwrap_or("");
                format!("{mantissa}{suffix}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;
    use serde_json::json;

    #[test]
    fn quantities_take_the_form_kubernetes_stores() {
        for (input, expected) in [
            (json!(0.5), "500m"),
            (json!("0.5"), "500m"),
            (json!("1000m"), "1"),
            (json!("1500m"), "1500m"),
            (json!(2), "2"),
            (json!("1024Mi"), "1Gi"),
            (json!("1536Mi"), "1536Mi"),
            (json!("0.5Gi"), "512Mi"),
            (json!("1.5Gi"), "1536Mi"),
            (json!("512"), "512"),
            (json!("0.5Ki"), "512"),
            (json!("1.1Ki"), "1126400m"),
            (json!("1e3"), "1e3"),
            (json!("1E6"), "1e6"),
            (json!("1000k"), "1M"),
            (json!("1G"), "1G"),
            (json!(1073741824), "1073741824"),
            (json!("100Mi"), "100Mi"),
            (json!("+5"), "5"),
            (json!("-1.5"), "-1500m"),
            (json!("0.0000000001"), "1n"),
            (json!("0"), "0"),
            (json!("0Gi"), "0"),
        ] {
            assert_eq!(canonical(&input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in [
            json!("abc"),
            json!(""),
            json!("1x"),
            json!("1.2.3"),
            json!("Mi"),
            json!(true),
            json!("1e"),
            json!("99999999999999999999999999999999999Ei"),
        ] {
            assert!(canonical(&bad).is_err(), "{bad} was accepted");
        }
    }
}
