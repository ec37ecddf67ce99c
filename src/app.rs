//! One invocation, just below `main`: a run or an `explain`, each rendered
//! once for stdout, and the logging set up for either.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::cli::{Command, ExplainArgs};
use crate::config::{Config, LogFormat, OutputFormat};
use crate::exit::ExitCode;
use crate::explain::{self, run_explain};
use crate::interrupt::Interrupt;
use crate::report;
use crate::run::run;

/// What an invocation prints and how the process ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The report or explanation for stdout (empty when there is none).
    pub stdout: String,
    /// One error line for stderr, when the invocation could not finish.
    pub stderr: Option<String>,
    pub code: ExitCode,
}

/// Runs `command` (`None`: one run) with `config`.
pub async fn invoke(command: Option<Command>, config: &Config, interrupt: &Interrupt) -> Ending {
    match command {
        Some(Command::Explain(args)) => explain(&args, config).await,
        None => {
            let report = run(config, interrupt).await;
            let stdout = match config.output {
                OutputFormat::Text => report::render_text(&report),
                OutputFormat::Json => report::render_json(&report),
            };
            Ending {
                stdout,
                stderr: None,
                code: report.exit(),
            }
        }
    }
}

/// `explain`: why one HelmRelease gets its outcome; exit 0, or 4 when it
/// cannot be read (2 for a bad target, 3 when it is malformed).
async fn explain(args: &ExplainArgs, config: &Config) -> Ending {
    let failed = |message: String, code: ExitCode| Ending {
        stdout: String::new(),
        stderr: Some(message),
        code,
    };
    let target = match args.target(&config.namespaces) {
        Ok(target) => target,
        Err(message) => return failed(message.to_string(), ExitCode::Usage),
    };
    match run_explain(config, &target).await {
        Ok(explanation) => Ending {
            stdout: match config.output {
                OutputFormat::Text => explain::render_text(&explanation),
                OutputFormat::Json => explain::render_json(&explanation),
            },
            stderr: None,
            code: ExitCode::Success,
        },
        Err(error) => {
            let code = error.exit();
            failed(format!("{:#}", anyhow::Error::new(error)), code)
        }
    }
}

/// Logs to stderr in `format`; `RUST_LOG` overrides the levels. kube's own
/// per-request error lines are off: they repeat what our log line says.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}
