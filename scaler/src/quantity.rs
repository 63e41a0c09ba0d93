//! Kubernetes quantities (`resource.Quantity`) as metrics APIs serve them: decimal SI, canonical.
//!
//! Values are kept to milli-units, as metrics-server and KEDA do: a whole number is written with
//! the largest SI suffix that keeps it whole (`12`, `1500`, `2k`, `3M`), anything else in milli
//! units (`1500m`, `250m`). The HPA reads either form.

/// Decimal SI suffixes by power of 1000.
const SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];

/// `value` as a canonical quantity, rounded to the nearest milli-unit; `None` for NaN or ±∞.
pub fn format(value: f64) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    // i128 holds any f64 below 1.7e38 exactly enough; clamp far beyond any queue or backlog.
    let milli = (value * 1000.0).round().clamp(-1e36, 1e36) as i128;
    if milli % 1000 != 0 {
        return Some(format!("{milli}m"));
    }
    let mut whole = milli / 1000;
    let mut power = 0;
    while whole != 0 && whole % 1000 == 0 && power < SUFFIXES.len() - 1 {
        whole /= 1000;
        power += 1;
    }
    Some(format!("{whole}{}", SUFFIXES[power]))
}

/// Parse a decimal quantity (`12`, `1500m`, `2k`, `1.5`, `3M`, `1e3`); binary suffixes (`Ki`) too.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    // `E` is both the exa suffix and an exponent marker: `2E` is 2e18, `2E3` is 2000.
    if let Some(number) = text.strip_suffix('E') {
        return number.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| v * 1e18);
    }
    let split = text.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    number.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| v * multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_use_the_largest_suffix_that_keeps_them_whole() {
        assert_eq!(format(0.0).unwrap(), "0");
        assert_eq!(format(12.0).unwrap(), "12");
        assert_eq!(format(999.0).unwrap(), "999");
        assert_eq!(format(1000.0).unwrap(), "1k");
        assert_eq!(format(1500.0).unwrap(), "1500");
        assert_eq!(format(2_000_000.0).unwrap(), "2M");
        assert_eq!(format(-3000.0).unwrap(), "-3k");
    }

    #[test]
    fn fractions_are_milli_units_rounded() {
        assert_eq!(format(1.5).unwrap(), "1500m");
        assert_eq!(format(0.25).unwrap(), "250m");
        assert_eq!(format(0.0004).unwrap(), "0", "below half a milli-unit rounds to zero");
        assert_eq!(format(0.0006).unwrap(), "1m");
        assert_eq!(format(33.3333).unwrap(), "33333m");
    }

    #[test]
    fn non_finite_values_have_no_quantity() {
        assert!(format(f64::NAN).is_none());
        assert!(format(f64::INFINITY).is_none());
    }

    #[test]
    fn parse_reads_what_format_writes() {
        for v in [0.0, 1.0, 7.5, 12.0, 999.0, 1000.0, 1500.0, 2e6, 0.001, 86_400.0, 123_456.789] {
            let q = format(v).unwrap();
            let back = parse(&q).unwrap();
            assert!((back - v).abs() < 1e-3, "{v} -> {q} -> {back}");
        }
        assert_eq!(parse("1Ki"), Some(1024.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("2E"), Some(2e18));
        assert_eq!(parse("12x"), None);
        assert_eq!(parse(""), None);
    }
}
