//! Flag parsing at the library level (SPEC §7): every flag and its
//! environment variable, flag beats variable, defaults, and bad values with a
//! message that names the flag and the expected form. The binary-level exit-2
//! tests run the built binary elsewhere.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use clap::{CommandFactory, Parser};
use stuck_hr_recovery::cli::{Cli, UsageError};
use stuck_hr_recovery::config::{Config, LogFormat, OutputFormat};
use stuck_hr_recovery::model::DryRun;

/// Every variable the CLI reads.
const VARS: [&str; 10] = [
    "STUCK_HR_THRESHOLD",
    "STUCK_HR_MAX_ACTIONS",
    "STUCK_HR_SUSPEND_WAIT",
    "STUCK_HR_COOLDOWN",
    "STUCK_HR_TIMEOUT",
    "STUCK_HR_DRY_RUN",
    "STUCK_HR_NAMESPACES",
    "STUCK_HR_SELECTOR",
    "STUCK_HR_OUTPUT",
    "STUCK_HR_LOG_FORMAT",
];

/// The process environment is shared by the tests of this binary: hold this
/// while setting variables and parsing.
static ENV: Mutex<()> = Mutex::new(());

/// Sets exactly `env` (clearing every other variable the CLI reads) for as
/// long as it lives.
struct Env<'a> {
    _lock: MutexGuard<'a, ()>,
}

impl Env<'_> {
    fn set(env: &[(&str, &str)]) -> Self {
        let lock = ENV.lock().unwrap_or_else(PoisonError::into_inner);
        for var in VARS {
            // SAFETY: every test that reads or writes these variables holds
            // the ENV lock, and nothing else in this binary touches them.
            unsafe { std::env::remove_var(var) };
        }
        for (k, v) in env {
            // SAFETY: as above.
            unsafe { std::env::set_var(k, v) };
        }
        Env { _lock: lock }
    }
}

impl Drop for Env<'_> {
    fn drop(&mut self) {
        for var in VARS {
            // SAFETY: the ENV lock is still held (dropped after this).
            unsafe { std::env::remove_var(var) };
        }
    }
}

/// Parses flags with the given environment into a config.
fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
    let _env = Env::set(env);
    let argv = std::iter::once("stuck-hr-recovery").chain(args.iter().copied());
    // clap's own errors: the message without its `error: ` prefix and
    // the closing pointer to --help.
    let cli = Cli::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        let text = text
            .split("\n\nFor more information")
            .next()
            .unwrap_or_default();
        text.trim_start_matches("error: ").trim_end().to_owned()
    })?;
    cli.into_config().map_err(|e| e.to_string())
}

fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
    match parse(args, env) {
        Ok(config) => config,
        Err(e) => panic!("{args:?} {env:?} was rejected: {e}"),
    }
}

fn rejection(args: &[&str], env: &[(&str, &str)]) -> String {
    match parse(args, env) {
        Ok(config) => panic!("{args:?} {env:?} was accepted as {config:?}"),
        Err(e) => e,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_command_definition_passes_clap_debug_assert() {
    Cli::command().debug_assert();
}

#[test]
fn no_flags_and_no_environment_give_the_spec_defaults() {
    assert_eq!(config(&[], &[]), Config::default());
    let c = Config::default();
    assert_eq!(c.stuck_threshold, secs(300));
    assert_eq!(c.max_actions, 10);
    assert_eq!(c.suspend_wait, secs(5));
    assert_eq!(c.cooldown, secs(1800));
    assert_eq!(c.timeout, secs(90));
    assert_eq!(c.dry_run, DryRun::None);
    assert!(c.namespaces.is_empty());
    assert_eq!(c.selector, None);
    assert_eq!(c.output, OutputFormat::Text);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.context, None);
}

#[test]
fn stuck_threshold_is_read_from_its_flag_and_its_variable() {
    assert_eq!(
        config(&["--stuck-threshold", "30s"], &[]).stuck_threshold,
        secs(30)
    );
    assert_eq!(
        config(&["--stuck-threshold=1h30m"], &[]).stuck_threshold,
        secs(5400)
    );
    let env = [("STUCK_HR_THRESHOLD", "10m")];
    assert_eq!(config(&[], &env).stuck_threshold, secs(600));
}

#[test]
fn max_actions_is_read_from_its_flag_and_its_variable() {
    assert_eq!(config(&["--max-actions", "3"], &[]).max_actions, 3);
    assert_eq!(config(&["--max-actions", "0"], &[]).max_actions, 0);
    assert_eq!(
        config(&[], &[("STUCK_HR_MAX_ACTIONS", "25")]).max_actions,
        25
    );
}

#[test]
fn suspend_wait_is_read_from_its_flag_and_its_variable() {
    assert_eq!(config(&["--suspend-wait", "2s"], &[]).suspend_wait, secs(2));
    let env = [("STUCK_HR_SUSPEND_WAIT", "1m")];
    assert_eq!(config(&[], &env).suspend_wait, secs(60));
}

#[test]
fn cooldown_is_read_from_its_flag_and_its_variable() {
    assert_eq!(config(&["--cooldown", "1h"], &[]).cooldown, secs(3600));
    assert_eq!(
        config(&[], &[("STUCK_HR_COOLDOWN", "45m")]).cooldown,
        secs(2700)
    );
}

#[test]
fn timeout_is_read_from_its_flag_and_its_variable() {
    assert_eq!(config(&["--timeout", "2m"], &[]).timeout, secs(120));
    assert_eq!(
        config(&[], &[("STUCK_HR_TIMEOUT", "300s")]).timeout,
        secs(300)
    );
}

#[test]
fn a_bare_dry_run_means_client() {
    assert_eq!(config(&["--dry-run"], &[]).dry_run, DryRun::Client);
    assert_eq!(
        config(&["--dry-run", "-n", "apps"], &[]).dry_run,
        DryRun::Client
    );
}

#[test]
fn dry_run_takes_none_client_or_server() {
    assert_eq!(config(&["--dry-run=none"], &[]).dry_run, DryRun::None);
    assert_eq!(config(&["--dry-run=client"], &[]).dry_run, DryRun::Client);
    assert_eq!(config(&["--dry-run=server"], &[]).dry_run, DryRun::Server);
    assert_eq!(
        config(&["--dry-run", "server"], &[]).dry_run,
        DryRun::Server
    );
}

#[test]
fn dry_run_is_read_from_its_variable_and_empty_means_none() {
    let dry = |v| config(&[], &[("STUCK_HR_DRY_RUN", v)]).dry_run;
    assert_eq!(dry("server"), DryRun::Server);
    assert_eq!(dry("client"), DryRun::Client);
    assert_eq!(dry("none"), DryRun::None);
    assert_eq!(dry(""), DryRun::None);
}

#[test]
fn namespace_is_repeatable() {
    let c = config(&["-n", "apps", "--namespace", "ops", "-n=db"], &[]);
    assert_eq!(c.namespaces, ["apps", "ops", "db"]);
}

#[test]
fn namespaces_are_read_comma_separated_from_their_variable() {
    let c = config(&[], &[("STUCK_HR_NAMESPACES", "apps,ops")]);
    assert_eq!(c.namespaces, ["apps", "ops"]);
}

#[test]
fn selector_is_read_from_its_flags_and_its_variable() {
    assert_eq!(
        config(&["-l", "team=a"], &[]).selector.as_deref(),
        Some("team=a")
    );
    let long = config(&["--selector", "tier in (web,db)"], &[]);
    assert_eq!(long.selector.as_deref(), Some("tier in (web,db)"));
    let env = config(&[], &[("STUCK_HR_SELECTOR", "team=b")]);
    assert_eq!(env.selector.as_deref(), Some("team=b"));
}

#[test]
fn output_is_read_from_its_flags_and_its_variable() {
    assert_eq!(config(&["-o", "json"], &[]).output, OutputFormat::Json);
    assert_eq!(config(&["--output=text"], &[]).output, OutputFormat::Text);
    let env = [("STUCK_HR_OUTPUT", "json")];
    assert_eq!(config(&[], &env).output, OutputFormat::Json);
}

#[test]
fn log_format_is_read_from_its_flag_and_its_variable() {
    assert_eq!(
        config(&["--log-format", "json"], &[]).log_format,
        LogFormat::Json
    );
    let env = [("STUCK_HR_LOG_FORMAT", "json")];
    assert_eq!(config(&[], &env).log_format, LogFormat::Json);
}

#[test]
fn context_is_read_from_its_flag() {
    let c = config(&["--context", "prod-eu"], &[]);
    assert_eq!(c.context.as_deref(), Some("prod-eu"));
}

#[test]
fn every_flag_beats_its_environment_variable() {
    let env = [
        ("STUCK_HR_THRESHOLD", "10m"),
        ("STUCK_HR_MAX_ACTIONS", "99"),
        ("STUCK_HR_SUSPEND_WAIT", "9s"),
        ("STUCK_HR_COOLDOWN", "9m"),
        ("STUCK_HR_TIMEOUT", "9m"),
        ("STUCK_HR_DRY_RUN", "server"),
        ("STUCK_HR_NAMESPACES", "from-env"),
        ("STUCK_HR_SELECTOR", "from=env"),
        ("STUCK_HR_OUTPUT", "json"),
        ("STUCK_HR_LOG_FORMAT", "json"),
    ];
    let args = [
        "--stuck-threshold=1m",
        "--max-actions=2",
        "--suspend-wait=1s",
        "--cooldown=1m",
        "--timeout=1m",
        "--dry-run",
        "-n",
        "from-flag",
        "-l",
        "from=flag",
        "-o",
        "text",
        "--log-format",
        "text",
    ];
    let c = config(&args, &env);
    assert_eq!(c.stuck_threshold, secs(60));
    assert_eq!(c.max_actions, 2);
    assert_eq!(c.suspend_wait, secs(1));
    assert_eq!(c.cooldown, secs(60));
    assert_eq!(c.timeout, secs(60));
    assert_eq!(c.dry_run, DryRun::Client);
    assert_eq!(c.namespaces, ["from-flag"]);
    assert_eq!(c.selector.as_deref(), Some("from=flag"));
    assert_eq!(c.output, OutputFormat::Text);
    assert_eq!(c.log_format, LogFormat::Text);
}

#[test]
fn bad_durations_are_usage_errors_naming_the_flag_and_the_form() {
    for flag in [
        "--stuck-threshold",
        "--suspend-wait",
        "--cooldown",
        "--timeout",
    ] {
        for bad in ["0s", "0", "-5m", "5", "soon", "5 parsecs", ""] {
            let message = rejection(&[flag, bad], &[]);
            assert!(message.contains(flag), "{flag} {bad:?}: {message}");
            assert!(
                message.contains("30s, 5m or 1h30m"),
                "{flag} {bad:?}: {message}"
            );
            assert!(
                message.contains(&format!("{bad:?}")),
                "{flag} {bad:?}: {message}"
            );
        }
    }
}

#[test]
fn a_bad_duration_from_the_environment_names_the_flag_and_the_variable() {
    let message = rejection(&[], &[("STUCK_HR_COOLDOWN", "forever")]);
    assert_eq!(
        message,
        "invalid value \"forever\" for --cooldown (or STUCK_HR_COOLDOWN): expected \
         a positive duration such as 30s, 5m or 1h30m (units ms, s, m, h, d)"
    );
}

#[test]
fn a_bad_max_actions_is_a_usage_error_naming_the_flag_and_the_form() {
    for bad in ["-1", "ten", "1.5", ""] {
        let message = rejection(&["--max-actions", bad], &[]);
        assert!(message.contains("--max-actions"), "{bad:?}: {message}");
        assert!(message.contains("a whole number"), "{bad:?}: {message}");
    }
}

#[test]
fn an_empty_namespace_is_a_usage_error() {
    let message = rejection(&[], &[("STUCK_HR_NAMESPACES", "apps,,ops")]);
    assert!(message.contains("--namespace"), "{message}");
}

#[test]
fn bad_choices_are_rejected_with_the_flag_and_the_possible_values() {
    let cases = [
        (vec!["--dry-run=maybe"], "--dry-run", "server"),
        (vec!["-o", "yaml"], "--output", "json"),
        (vec!["--log-format", "xml"], "--log-format", "json"),
    ];
    for (args, flag, possible) in cases {
        let message = rejection(&args, &[]);
        assert!(message.contains(flag), "{args:?}: {message}");
        assert!(message.contains(possible), "{args:?}: {message}");
    }
    let message = rejection(&[], &[("STUCK_HR_DRY_RUN", "yes")]);
    assert!(message.contains("--dry-run"), "{message}");
}

#[test]
fn an_unknown_flag_is_rejected() {
    let message = rejection(&["--max-action", "3"], &[]);
    assert!(message.contains("--max-action"), "{message}");
}

#[test]
fn usage_error_fields_name_flag_variable_value_and_form() {
    let _env = Env::set(&[]);
    let cli = Cli::try_parse_from(["stuck-hr-recovery", "-n", "Bad_NS"]);
    let err: Option<UsageError> = cli.ok().and_then(|c| c.into_config().err());
    let err = err.map(|e| (e.flag, e.env, e.value));
    assert_eq!(
        err,
        Some((
            "--namespace".to_owned(),
            "STUCK_HR_NAMESPACES".to_owned(),
            "Bad_NS".to_owned()
        ))
    );
}

#[test]
fn durations_and_counts_are_refused_by_their_clap_value_parsers() {
    let _env = Env::set(&[]);
    for args in [["--timeout", "0s"], ["--max-actions", "ten"]] {
        let argv = std::iter::once("stuck-hr-recovery").chain(args);
        let kind = Cli::try_parse_from(argv).err().map(|e| e.kind());
        assert_eq!(
            kind,
            Some(clap::error::ErrorKind::ValueValidation),
            "{args:?}"
        );
    }
}
