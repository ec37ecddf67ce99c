//! One run: deadline, signals, list → storage → plan → guardrail → execute
//! → report.
//!
//! The whole run is bounded by `--timeout`: listing past it is a failed
//! list (exit 4), a storage read past it is `storage-unreadable` (exit 3),
//! an action not started by then stays `planned` and the run exits 3.
//! SIGTERM/SIGINT start nothing new; what this run suspended is resumed; the
//! report says what is known and the exit code is 143/130.

use std::sync::{Arc, OnceLock};

use chrono::Utc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, ListScope};
use crate::execute::Executor;
use crate::exit::ExitCode;
use crate::kube_io::{self, HelmReleases, ListFailure, Listed};
use crate::model::{DryRun, Reason};
use crate::plan::{Plan, plan};
use crate::report::Report;

/// The first SIGTERM/SIGINT of the run, and the token that tells every part
/// of the run to start nothing new.
#[derive(Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    signal: Arc<OnceLock<(ExitCode, Instant)>>,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a signal (the first one wins) and cancels the run.
    pub fn trigger(&self, code: ExitCode) {
        let _ = self.signal.set((code, Instant::now()));
        self.token.cancel();
    }

    /// The exit code of the signal received, if any.
    pub fn signal(&self) -> Option<ExitCode> {
        self.signal.get().map(|(code, _)| *code)
    }

    /// When the first signal arrived, if one did.
    pub fn signalled_at(&self) -> Option<Instant> {
        self.signal.get().map(|(_, at)| *at)
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Listens for SIGTERM and SIGINT in the background. The first signal
    /// cancels the run (what this run suspended is still resumed, for at
    /// most [`crate::execute::SIGNAL_BUDGET`]); a second one, of either
    /// kind, ends the process at once with its own exit code — what is left
    /// suspended is healed by the next run (`interrupted-toggle`).
    pub fn listen(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        for (kind, code) in [
            (SignalKind::terminate(), ExitCode::Terminated),
            (SignalKind::interrupt(), ExitCode::Interrupted),
        ] {
            match signal(kind) {
                Ok(mut stream) => {
                    let this = self.clone();
                    tokio::spawn(async move {
                        while stream.recv().await.is_some() {
                            if this.signal().is_some() {
                                tracing::warn!(
                                    exit_code = code.code(),
                                    "second signal: stopping at once; the next run resumes what is left suspended"
                                );
                                std::process::exit(code.code());
                            }
                            tracing::warn!(
                                exit_code = code.code(),
                                "signal received: starting nothing new, resuming what this run suspended"
                            );
                            this.trigger(code);
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "cannot listen for a signal"),
            }
        }
    }
}

/// Connects and runs; every failure ends up in the report's exit code.
pub async fn run(config: &Config, interrupt: &Interrupt) -> Report {
    let deadline = Instant::now() + config.timeout;
    let connected = tokio::time::timeout_at(
        deadline,
        kube_io::connect(config.kubeconfig.as_deref(), config.context.as_deref()),
    )
    .await;
    let clients = match connected {
        Ok(Ok(clients)) => clients,
        Ok(Err(error)) => return list_failed(&error, 0, config, interrupt),
        Err(_) => {
            let error = Error::ListTimedOut {
                scope: scope_of(config),
            };
            return list_failed(&error, 0, config, interrupt);
        }
    };
    run_with_client(clients, config, interrupt, deadline).await
}

/// Runs against a given client (the tests' seam).
pub async fn run_with_client(
    clients: kube_io::Clients,
    config: &Config,
    interrupt: &Interrupt,
    deadline: Instant,
) -> Report {
    let now = Utc::now();
    let client = clients.read.clone();
    let api = HelmReleases::new(client.clone(), config.dry_run);
    let cancel = interrupt.token();

    let mut listed = Listed::default();
    let listing = tokio::time::timeout_at(
        deadline,
        kube_io::list_helmreleases(&api, now, config, &mut listed),
    );
    let outcome = tokio::select! {
        listing = listing => Some(listing),
        () = cancel.cancelled() => None,
    };
    match outcome {
        Some(Ok(Ok(()))) => {}
        Some(Ok(Err(error))) => return list_failed(&error, listed.scanned, config, interrupt),
        Some(Err(_)) => {
            let error = Error::ListTimedOut {
                scope: scope_of(config),
            };
            return list_failed(&error, listed.scanned, config, interrupt);
        }
        None => return interrupted(listed.scanned, config, interrupt),
    }
    tracing::info!(
        scanned = listed.scanned,
        candidates = listed.candidates.len(),
        "HelmReleases listed"
    );

    let needed = kube_io::releases_needed(&listed.candidates, now, config);
    tracing::debug!(releases = needed.len(), "reading Helm storage");
    let facts = tokio::select! {
        facts = kube_io::read_storage(&client, needed, deadline) => facts,
        () = cancel.cancelled() => return interrupted(listed.scanned, config, interrupt),
    };

    let plan = plan(listed.scanned, listed.candidates, &facts, now, config)
        .with_blocks(&listed.dependents);
    let mut report = Report::from_plan(&plan, config);
    log_plan(&plan);
    if config.dry_run == DryRun::Client {
        report.finish(interrupt.signal());
        return report;
    }
    let executor = Executor::new(&clients, config, deadline, interrupt);
    let not_started = executor.execute(&plan, &mut report).await;
    if not_started > 0 && interrupt.signal().is_none() {
        tracing::warn!("the run's deadline (--timeout) passed before every action started");
        report.finish(Some(ExitCode::ActionsFailed));
    }
    report.finish(interrupt.signal());
    report
}

fn scope_of(config: &Config) -> ListScope {
    match config.namespaces.as_slice() {
        [] => ListScope::AllNamespaces,
        [one] => ListScope::Namespace(one.clone()),
        many => ListScope::Namespace(many.join(",")),
    }
}

/// Exit 4: says which failure it was and what to check.
fn list_failed(error: &Error, scanned: usize, config: &Config, interrupt: &Interrupt) -> Report {
    let failure = ListFailure::of(error);
    tracing::error!(
        failure = %failure,
        error = %error.chain(),
        "could not list HelmReleases ({failure}): nothing was acted on; {}",
        failure.hint()
    );
    Report::list_failed(scanned, config, interrupt.signal())
}

/// A signal arrived before anything was planned.
fn interrupted(scanned: usize, config: &Config, interrupt: &Interrupt) -> Report {
    let mut report = Report::from_plan(&Plan::empty(scanned, config), config);
    report.finish(interrupt.signal());
    report
}

fn log_plan(plan: &Plan) {
    for item in plan.skips() {
        let (namespace, name) = (item.namespace.as_str(), item.name.as_str());
        let reason = item.decision.reason.as_str();
        match item.decision.reason {
            // SPEC §3 "warn", and the skips listed so that a human looks.
            Reason::BadTimestamp => tracing::warn!(
                namespace,
                name,
                reason,
                "skip: Ready is Unknown but its lastTransitionTime (or Reconciling's) is missing or not RFC 3339"
            ),
            Reason::UnknownStuckMode => tracing::warn!(
                namespace,
                name,
                reason,
                "skip: stuck past the threshold in a way this tool does not recover; look at it"
            ),
            Reason::StorageUnreadable => tracing::warn!(
                namespace,
                name,
                reason,
                "skip: Helm storage could not be read; the run exits 3"
            ),
            _ => tracing::debug!(namespace, name, reason, "skip"),
        }
    }
    tracing::info!(
        scanned = plan.scanned,
        stuck = plan.stuck(),
        planned = plan.planned(),
        guardrail_tripped = plan.guardrail.tripped,
        "plan ready"
    );
    if plan.guardrail.tripped {
        tracing::warn!(
            candidates = plan.guardrail.candidates,
            max_actions = plan.guardrail.max_actions,
            "guardrail tripped: more recoveries planned than --max-actions; acting on none of them"
        );
    }
}
