//! Small statistics and formatting helpers for the tables.

use std::time::Duration;

pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    match xs.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2,
    }
}

pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

/// `5.61 s (5.58–5.70)`, or just the value for a single run.
pub fn wall(xs: &[Duration]) -> String {
    let med = median(xs.to_vec());
    match (xs.iter().min(), xs.iter().max()) {
        (Some(lo), Some(hi)) if xs.len() > 1 => {
            format!(
                "{} ({:.2}–{:.2})",
                secs(med),
                lo.as_secs_f64(),
                hi.as_secs_f64()
            )
        }
        _ => secs(med),
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// `10 000`
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_count_is_mean_of_middle_pair() {
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            median(vec![ms(4), ms(1), ms(3), ms(2)]),
            Duration::from_micros(2500)
        );
        assert_eq!(median(vec![ms(9), ms(1), ms(5)]), ms(5));
    }

    #[test]
    fn thousands_are_grouped_with_spaces() {
        assert_eq!(thousands(50_000), "50 000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1 000 000");
    }
}
