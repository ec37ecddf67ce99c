//! The validated run configuration. The core (deciding, planning, reporting)
//! sees only this, never clap.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::model::DryRun;

/// Everything a run is configured with (SPEC §7). `Config::default()` holds
/// the SPEC defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long Ready must stay Unknown before a HelmRelease counts as stuck.
    pub stuck_threshold: Duration,
    /// Guardrail: more planned recoveries than this and none is acted on.
    pub max_actions: usize,
    /// Pause between branch A's suspend and resume (once per batch).
    pub suspend_wait: Duration,
    /// Minimum time between two corrections (or toggles) of one HelmRelease.
    pub cooldown: Duration,
    /// Deadline for the whole run.
    pub timeout: Duration,
    pub dry_run: DryRun,
    /// Namespaces to scan; empty means all.
    pub namespaces: Vec<String>,
    /// HelmRelease label selector.
    pub selector: Option<String>,
    /// Report format on stdout.
    pub output: OutputFormat,
    /// Log format on stderr.
    pub log_format: LogFormat,
    /// `--kubeconfig`; `None` means kubectl's choice (`KUBECONFIG`,
    /// in-cluster, `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; `None` means the current one (or in-cluster).
    pub context: Option<String>,
    /// `--events-addr`: notification-controller's event API (SPEC §10).
    pub events_addr: Option<hyper::Uri>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stuck_threshold: Duration::from_secs(5 * 60),
            max_actions: 10,
            suspend_wait: Duration::from_secs(5),
            cooldown: Duration::from_secs(30 * 60),
            timeout: Duration::from_secs(90),
            dry_run: DryRun::None,
            namespaces: Vec::new(),
            selector: None,
            output: OutputFormat::Text,
            log_format: LogFormat::Text,
            kubeconfig: None,
            context: None,
            events_addr: None,
        }
    }
}

/// `-o, --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One line per action and listed skip, then a summary line.
    #[default]
    Text,
    /// One JSON document (docs/report-schema.md).
    Json,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses a duration as the flags accept it: one or more `<whole
/// number><unit>` groups, largest unit first or not, with units `ms`, `s`,
/// `m`, `h`, `d` (e.g. `30s`, `5m`, `1h30m`, `500ms`, `1d`) — Go's
/// duration syntax, which Flux users know, without fractions, plus days (the
/// chart's schema admits them). Returns `None` for anything else
/// (empty, negative, a number without unit, spaces, an unknown unit, an
/// overflow).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60)?),
            "h" => Duration::from_secs(number.checked_mul(3600)?),
            "d" => Duration::from_secs(number.checked_mul(86_400)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
        rest = tail;
    }
    Some(total)
}

/// Formats a duration the way the flags accept it, in one canonical form: a
/// whole number of the largest unit (`h`, `m`, `s`, `ms`) that represents it
/// exactly — `5m`, `30s`, `90s` (not `1m30s`), `90m` for an hour and a half,
/// `2h`, `500ms`; zero is `0s`. Sub-millisecond precision is dropped. This
/// matches the SPEC §7 report example (`"timeout": "90s"`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit_ms, unit) in [(3_600_000, "h"), (60_000, "m"), (1000, "s")] {
        if ms.is_multiple_of(unit_ms) {
            return format!("{}{unit}", ms / unit_ms);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn every_formatted_duration_parses_back_to_itself(ms in 0u64..1_000_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Some(d));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = parse_duration(&text);
        }
    }

    #[test]
    fn defaults_are_the_spec_defaults() {
        let c = Config::default();
        assert_eq!(format_duration(c.stuck_threshold), "5m");
        assert_eq!(c.max_actions, 10);
        assert_eq!(format_duration(c.suspend_wait), "5s");
        assert_eq!(format_duration(c.cooldown), "30m");
        assert_eq!(format_duration(c.timeout), "90s");
        assert_eq!(c.dry_run, DryRun::None);
        assert!(c.namespaces.is_empty());
        assert_eq!(c.selector, None);
    }

    #[test]
    fn durations_format_in_one_compact_form() {
        let cases = [
            (0, "0s"),
            (30_000, "30s"),
            (90_000, "90s"),
            (300_000, "5m"),
            (5_400_000, "90m"),
            (7_200_000, "2h"),
            (3_601_000, "3601s"),
            (1_500, "1500ms"),
            (500, "500ms"),
            (86_400_000, "24h"),
            (1, "1ms"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_duration(Duration::from_millis(ms)), text);
        }
    }

    #[test]
    fn formatted_durations_parse_back_to_themselves() {
        for ms in [1, 500, 1000, 30_000, 90_000, 5_400_000, 93_784_005] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Some(d));
        }
    }

    #[test]
    fn durations_parse_as_the_flags_accept_them() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1h30m15s500ms"),
            Some(Duration::from_millis(5_415_500))
        );
        assert_eq!(parse_duration("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "5",
            "-5m",
            "abc",
            "5 parsecs",
            "m5",
            "1.5h",
            "1h 30m",
            " 5m",
            "5m ",
            "1us",
            "5min",
            "99999999999999999999h",
            "18446744073709551615h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
