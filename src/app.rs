//! One invocation, just below `main`: a run or an `explain`, each rendered
//! once for stdout, and the logging set up for either.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::cli::{Command, ExplainArgs};
use crate::config::{Config, LogFormat, OutputFormat};
use crate::exit::ExitCode;
use chrono::Utc;

use crate::decide::{ReleaseRef, StorageFact, storage_needed};
use crate::error::{Error, ListScope, ObjectName};
use crate::explain::{self, Explanation, Target};
use crate::failure::Failure;
use crate::interrupt::Interrupt;
use crate::kube_io::{self, HelmReleases, ListFailure, storage};
use crate::model::DryRun;
use crate::report;
use crate::run::run;
use crate::view::{HelmReleaseView, MalformedObject};

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

/// Why `explain` could not explain.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The HelmRelease does not exist. Exit 4.
    #[error(
        "HelmRelease {namespace}/{name} not found: check the namespace and name \
         (kubectl get helmreleases.helm.toolkit.fluxcd.io -n {namespace})"
    )]
    NotFound { namespace: String, name: String },
    /// It could not be read. Exit 4.
    #[error("could not read HelmRelease {namespace}/{name} ({failure}): {hint}")]
    Read {
        namespace: String,
        name: String,
        failure: ListFailure,
        hint: &'static str,
        #[source]
        source: Error,
    },
    /// It could not be read into a view. Exit 3.
    #[error(transparent)]
    Malformed(MalformedObject),
}

impl ExplainError {
    pub fn exit(&self) -> ExitCode {
        match self {
            ExplainError::NotFound { .. } | ExplainError::Read { .. } => ExitCode::ListFailed,
            ExplainError::Malformed(_) => ExitCode::ActionsFailed,
        }
    }
}

/// Reads the HelmRelease (and its Helm storage when the decision needs it)
/// and explains it, all within `--timeout`. Never writes.
///
/// # Errors
/// [`ExplainError`]: not found, unreadable (with what to check), malformed.
async fn run_explain(config: &Config, target: &Target) -> Result<Explanation, ExplainError> {
    let read_error = |source: Error| ExplainError::Read {
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        failure: ListFailure::of(&source),
        hint: ListFailure::of(&source).hint(),
        source,
    };
    let deadline = tokio::time::Instant::now() + config.timeout;
    let timed_out = || {
        read_error(Error::ListTimedOut {
            scope: ListScope::Namespace(target.namespace.clone()),
        })
    };
    let client = tokio::time::timeout_at(
        deadline,
        kube_io::connect(config.kubeconfig.as_deref(), config.context.as_deref()),
    )
    .await
    .map_err(|_| timed_out())?
    .map_err(read_error)?
    .read;
    // Client dry run: explain never writes.
    let api = HelmReleases::new(client.clone(), DryRun::Client);
    let json = match tokio::time::timeout_at(deadline, api.get(&target.namespace, &target.name))
        .await
        .map_err(|_| timed_out())?
    {
        Ok(json) => json,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Err(ExplainError::NotFound {
                namespace: target.namespace.clone(),
                name: target.name.clone(),
            });
        }
        Err(source) => {
            return Err(read_error(Error::ReadHelmRelease {
                object: ObjectName::new(&target.namespace, &target.name),
                source: Box::new(source),
            }));
        }
    };
    let view = HelmReleaseView::from_json(&json).map_err(ExplainError::Malformed)?;
    let now = Utc::now();
    let fact = match storage_needed(&view, now, config) {
        None => None,
        Some(release) => Some(read_storage(&client, &release, deadline).await),
    };
    Ok(explain::explain(&view, fact.as_ref(), now, config))
}

async fn read_storage(
    client: &kube::Client,
    release: &ReleaseRef,
    deadline: tokio::time::Instant,
) -> StorageFact {
    match tokio::time::timeout_at(deadline, storage::latest(client, release)).await {
        Ok(Ok(fact)) => fact,
        Ok(Err(error)) => StorageFact::Unreadable(error.failure()),
        Err(_) => StorageFact::Unreadable(Failure::Deadline),
    }
}
