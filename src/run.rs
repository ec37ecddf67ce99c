//! One run: deadline, signals, list → storage → plan → guardrail → execute
//! → report.
//!
//! The whole run is bounded by `--timeout`: listing past it is a failed
//! list (exit 4), a storage read past it is `storage-unreadable` (exit 3),
//! an action not started by then stays `planned` and the run exits 3.
//! SIGTERM/SIGINT start nothing new; what this run suspended is resumed; the
//! report says what is known and the exit code is 143/130.

use chrono::Utc;
use tokio::time::Instant;

use crate::config::Config;
use crate::error::{Error, ListScope};
use crate::execute::Executor;
use crate::exit::ExitCode;
use crate::interrupt::Interrupt;
use crate::kube_io::{self, HelmReleases, ListFailure, Listed};
use crate::model::{DryRun, Reason};
use crate::plan::{Plan, plan, releases_needed, worth_keeping};
use crate::report::Report;

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
    let keep = worth_keeping(now, config);
    let listing = tokio::time::timeout_at(
        deadline,
        kube_io::list_helmreleases(
            &api,
            &config.namespaces,
            config.selector.as_deref(),
            &keep,
            &mut listed,
        ),
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

    let needed = releases_needed(&listed.candidates, now, config);
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
        error = %error.failure(),
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
