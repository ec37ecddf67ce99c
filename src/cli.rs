//! Command-line flags (SPEC §7), each also read from its environment variable
//! (a flag beats its variable). [`Cli::into_config`] validates them into a
//! [`Config`]; nothing past this module sees clap.

use std::fmt;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, LogFormat, OutputFormat, parse_duration};
use crate::explain::Target;
use crate::label_selector::{check_selector, is_dns1123_label};
use crate::model::DryRun;

/// Finds Flux HelmReleases stuck in Ready=Unknown although Helm finished, and
/// safely nudges them back: a status correction when the controller recorded
/// the release but lost the Ready write, a suspend toggle when it never
/// caught up with an installed release.
#[derive(Debug, Clone, Parser)]
#[command(name = "stuck-hr-recovery", version, about, long_about = None)]
pub struct Cli {
    /// How long Ready must stay Unknown before a HelmRelease counts as stuck
    /// (e.g. 30s, 5m, 1h30m).
    #[arg(
        long,
        env = "STUCK_HR_THRESHOLD",
        value_parser = Checked::duration(),
        global = true,
        default_value = "5m",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub stuck_threshold: Duration,

    /// Guardrail: when more HelmReleases than this need a recovery, act on
    /// none of them and exit 1.
    #[arg(
        long,
        env = "STUCK_HR_MAX_ACTIONS",
        value_parser = Checked::count(),
        default_value = "10",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_actions: usize,

    /// Pause between suspending and resuming (once for the whole batch).
    #[arg(
        long,
        env = "STUCK_HR_SUSPEND_WAIT",
        value_parser = Checked::duration(),
        default_value = "5s",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub suspend_wait: Duration,

    /// Minimum time between two corrections of one HelmRelease.
    #[arg(
        long,
        env = "STUCK_HR_COOLDOWN",
        value_parser = Checked::duration(),
        global = true,
        default_value = "30m",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub cooldown: Duration,

    /// Deadline for the whole run.
    #[arg(
        long,
        env = "STUCK_HR_TIMEOUT",
        value_parser = Checked::duration(),
        global = true,
        default_value = "90s",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub timeout: Duration,

    /// Read and decide only (`client`, also the bare flag), or send every
    /// write with dryRun=All (`server`); `none` (or empty) acts for real
    /// [possible values: none, client, server]
    #[arg(
        long,
        env = "STUCK_HR_DRY_RUN",
        value_parser = dry_run_value,
        num_args = 0..=1,
        default_value = "none",
        default_missing_value = "client",
        value_name = "MODE"
    )]
    pub dry_run: DryRunArg,

    /// Only these namespaces (repeatable; the variable is comma-separated).
    /// Default: all namespaces.
    #[arg(
        short = 'n',
        long = "namespace",
        env = "STUCK_HR_NAMESPACES",
        global = true,
        value_delimiter = ',',
        value_name = "NAMESPACE"
    )]
    pub namespaces: Vec<String>,

    /// Only HelmReleases matching this label selector.
    #[arg(short = 'l', long, env = "STUCK_HR_SELECTOR", value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Report format on stdout.
    #[arg(
        short = 'o',
        long,
        env = "STUCK_HR_OUTPUT",
        global = true,
        value_enum,
        default_value = "text"
    )]
    pub output: FormatArg,

    /// Log format on stderr.
    #[arg(long, env = "STUCK_HR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: FormatArg,

    /// Kubeconfig file to use (default: as kubectl, `KUBECONFIG` with its
    /// files merged, else in-cluster, else `~/.kube/config`).
    #[arg(long, value_name = "PATH", global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// Kubeconfig context to use (default: the current one, or in-cluster).
    #[arg(long, value_name = "CONTEXT", global = true)]
    pub context: Option<String>,

    /// Also POST every Event as a Flux event to notification-controller's
    /// event API, e.g. http://notification-controller.flux-system.svc.cluster.local./
    #[arg(long, env = "STUCK_HR_EVENTS_ADDR", value_name = "URL")]
    pub events_addr: Option<String>,

    /// Without a subcommand: one run (list, decide, act, report).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--dry-run` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRunArg {
    /// Act for real.
    None,
    /// Read and decide only.
    Client,
    /// Send every write with `dryRun=All`.
    Server,
}

/// `--output` / `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Plain text.
    Text,
    /// JSON.
    Json,
}

/// A flag value that clap accepted as text but that is not valid. Exit 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// The flag, e.g. `--stuck-threshold`.
    pub flag: String,
    /// Its environment variable, e.g. `STUCK_HR_THRESHOLD`.
    pub env: String,
    pub value: String,
    /// What would have been accepted (and, for a selector, what is wrong).
    pub expected: String,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value {:?} for {} (or {}): expected {}",
            self.value, self.flag, self.env, self.expected
        )
    }
}

impl std::error::Error for UsageError {}

/// `--dry-run` / `STUCK_HR_DRY_RUN`: `none`, `client` or `server`; empty
/// means `none` (so an empty variable in a manifest is harmless).
fn dry_run_value(value: &str) -> Result<DryRunArg, String> {
    match value.trim() {
        "" | "none" => Ok(DryRunArg::None),
        "client" => Ok(DryRunArg::Client),
        "server" => Ok(DryRunArg::Server),
        _ => Err("expected none, client or server (empty means none)".to_string()),
    }
}

const DURATION_FORM: &str = "a positive duration such as 30s, 5m or 1h30m (units ms, s, m, h, d)";
const COUNT_FORM: &str = "a whole number, 0 or more";
const NAMESPACE_FORM: &str = "a namespace name (DNS-1123 label): at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit";

impl Cli {
    /// Validates the flags into a [`Config`].
    ///
    /// # Errors
    /// [`UsageError`] naming the flag, the value and the expected form for a
    /// duration that is zero, negative or not a duration, a `--max-actions`
    /// that is not a whole number, a namespace that is not a DNS-1123 label,
    /// or a label selector the API server would reject (naming the bad part).
    pub fn into_config(self) -> Result<Config, UsageError> {
        let namespaces: Vec<String> = self
            .namespaces
            .into_iter()
            .map(|n| n.trim().to_string())
            .collect();
        if namespaces.iter().any(String::is_empty) {
            return Err(UsageError {
                flag: "--namespace".into(),
                env: "STUCK_HR_NAMESPACES".into(),
                value: namespaces.join(","),
                expected: "namespace names without empty entries".into(),
            });
        }
        if let Some(bad) = namespaces.iter().find(|n| !is_dns1123_label(n)) {
            return Err(UsageError {
                flag: "--namespace".into(),
                env: "STUCK_HR_NAMESPACES".into(),
                value: bad.clone(),
                expected: NAMESPACE_FORM.into(),
            });
        }
        let selector = match self.selector {
            Some(s) if s.trim().is_empty() => None,
            other => other,
        };
        if let Some(selector) = &selector
            && let Err(problem) = check_selector(selector)
        {
            return Err(UsageError {
                flag: "--selector".into(),
                env: "STUCK_HR_SELECTOR".into(),
                value: selector.clone(),
                expected: format!("a label selector the API server accepts: {problem}"),
            });
        }
        Ok(Config {
            stuck_threshold: self.stuck_threshold,
            max_actions: self.max_actions,
            suspend_wait: self.suspend_wait,
            cooldown: self.cooldown,
            timeout: self.timeout,
            dry_run: match self.dry_run {
                DryRunArg::None => DryRun::None,
                DryRunArg::Client => DryRun::Client,
                DryRunArg::Server => DryRun::Server,
            },
            namespaces,
            selector,
            output: match self.output {
                FormatArg::Text => OutputFormat::Text,
                FormatArg::Json => OutputFormat::Json,
            },
            log_format: match self.log_format {
                FormatArg::Text => LogFormat::Text,
                FormatArg::Json => LogFormat::Json,
            },
            kubeconfig: self.kubeconfig.filter(|p| !p.as_os_str().is_empty()),
            context: self.context,
            events_addr: events_addr(self.events_addr.as_deref())?,
        })
    }
}

/// `--events-addr`: empty means none.
fn events_addr(value: Option<&str>) -> Result<Option<hyper::Uri>, UsageError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(addr) => crate::notify::parse_address(addr)
            .map(Some)
            .map_err(|_| UsageError {
                flag: "--events-addr".into(),
                env: "STUCK_HR_EVENTS_ADDR".into(),
                value: addr.to_string(),
                expected: "an http:// URL of notification-controller's event API, such as \
                           http://notification-controller.flux-system.svc.cluster.local./"
                    .into(),
            }),
    }
}

/// A clap value parser whose error names the flag, its environment
/// variable, the value and the expected form, as [`UsageError`] does.
#[derive(Clone, Copy)]
pub struct Checked<T> {
    parse: fn(&str) -> Option<T>,
    expected: &'static str,
}

impl Checked<Duration> {
    /// A positive duration (`30s`, `5m`, `1h30m`).
    pub fn duration() -> Self {
        Checked {
            parse: |value| parse_duration(value).filter(|d| !d.is_zero()),
            expected: DURATION_FORM,
        }
    }
}

impl Checked<usize> {
    /// A whole number, 0 or more.
    pub fn count() -> Self {
        Checked {
            parse: |value| {
                let trimmed = value.trim();
                let digits = !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit());
                digits.then(|| trimmed.parse().ok()).flatten()
            },
            expected: COUNT_FORM,
        }
    }
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Checked<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_string_lossy();
        (self.parse)(&text).ok_or_else(|| {
            let usage = UsageError {
                flag: arg
                    .and_then(clap::Arg::get_long)
                    .map(|long| format!("--{long}"))
                    .unwrap_or_default(),
                env: arg
                    .and_then(clap::Arg::get_env)
                    .map(|env| env.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                value: text.into_owned(),
                expected: self.expected.to_owned(),
            };
            clap::Error::raw(ErrorKind::ValueValidation, format!("{usage}\n")).with_cmd(cmd)
        })
    }
}

/// Subcommands (SPEC §10).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Explain why one HelmRelease gets its outcome: the facts, every rule
    /// tried, the outcome and the patches a run would send. Never writes.
    Explain(ExplainArgs),
}

/// `explain <namespace>/<name>` or `explain -n <namespace> <name>`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The HelmRelease: `<namespace>/<name>`, or `<name>` with `-n`.
    #[arg(value_name = "NAMESPACE/NAME")]
    pub target: String,
}

impl ExplainArgs {
    /// The HelmRelease to explain; `namespaces` are the `-n` values.
    ///
    /// # Errors
    /// A usage message (exit 2) when the namespace is missing, given twice
    /// differently, or a part is empty.
    pub fn target(&self, namespaces: &[String]) -> Result<Target, String> {
        let (namespace, name) = match (self.target.split_once('/'), namespaces) {
            (Some((ns, name)), []) => (ns.to_string(), name.to_string()),
            (Some((ns, name)), [n]) if n == ns => (ns.to_string(), name.to_string()),
            (Some(_), _) => {
                return Err(format!(
                    "explain {:?}: the namespace is given both in the name and by -n/STUCK_HR_NAMESPACES ({}); give it once",
                    self.target,
                    namespaces.join(",")
                ));
            }
            (None, [n]) => (n.clone(), self.target.clone()),
            (None, []) => {
                return Err(format!(
                    "explain {:?}: which namespace? write <namespace>/<name> or -n <namespace> <name>",
                    self.target
                ));
            }
            (None, many) => {
                return Err(format!(
                    "explain {:?}: one namespace, not {}: write <namespace>/<name>",
                    self.target,
                    many.join(",")
                ));
            }
        };
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return Err(format!(
                "explain {:?}: expected <namespace>/<name> with both parts non-empty",
                self.target
            ));
        }
        Ok(Target { namespace, name })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn explain_takes_namespace_slash_name_or_dash_n() {
        let parse = |args: &[&str]| -> Result<Target, String> {
            let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
            let namespaces = cli.namespaces.clone();
            match cli.command {
                Some(Command::Explain(a)) => a.target(&namespaces),
                None => Err("no subcommand".to_string()),
            }
        };
        let web = Ok(Target {
            namespace: "apps".to_string(),
            name: "web".to_string(),
        });
        assert_eq!(parse(&["x", "explain", "apps/web"]), web);
        assert_eq!(parse(&["x", "explain", "-n", "apps", "web"]), web);
        assert_eq!(parse(&["x", "-n", "apps", "explain", "web"]), web);
        assert_eq!(parse(&["x", "explain", "-n", "apps", "apps/web"]), web);
        for bad in [
            &["x", "explain", "web"][..],
            &["x", "explain", "-n", "other", "apps/web"],
            &["x", "explain", "-n", "a", "-n", "b", "web"],
            &["x", "explain", "/web"],
            &["x", "explain", "apps/"],
            &["x", "explain", "apps/web/x"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
