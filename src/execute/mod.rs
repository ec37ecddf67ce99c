//! The executor: owns every write, Event and per-object log line of a run.
//!
//! It takes the finished [`Plan`] and the [`Report`] built from it, runs the
//! actions the guardrail allows, and records what became of each one. One
//! file per remedy, each a short sequence of writes through [`Writer`]:
//!
//! * [`correct_status`] — branch B (annotate, patch status, roll back);
//! * [`toggle_suspend`] — branch A (suspend the batch, one wait, resume);
//! * [`repair`] — `interrupted-toggle` (resume) and `stale-marker` (clear);
//! * [`writer`] — the write primitive [`Writer`]: send, classify, read
//!   back, retry within a budget;
//! * [`events`] — Events through kube's Recorder, and every Event note.
//!
//! Rules every remedy shares (SPEC §5), implemented here:
//!
//! * every write is a JSON merge patch carrying `metadata.resourceVersion`
//!   (the one decided on, or the one our previous write of the same action
//!   returned), sent with field manager `stuck-hr-recovery` and, for a server
//!   dry run, `dryRun=All` — through [`Writer::send`] only;
//! * a 409 on an action's first write that is not our own write landing:
//!   decide again on the object read back, act at most once more
//!   ([`Executor::first_write`]); a second 409 is `changed-during-run`; a
//!   re-decision into a repair of our own state (`interrupted-toggle`,
//!   `stale-marker`) is carried out in the same run, a re-decision into
//!   another remedy is `failed`/`changed-during-run` (never `planned`);
//! * nothing new starts after SIGTERM/SIGINT or past the deadline; what
//!   already started finishes its own clean-up (rollback, resume) within the
//!   run's one clean-up budget ([`Budget::Cleanup`]).
//!
//! The patches themselves are built in [`crate::patches`] (pure).

pub mod correct_status;
pub mod events;
pub mod repair;
pub mod toggle_suspend;
pub mod writer;

use chrono::Utc;
use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decide::{Decision, StorageFact, decide, storage_needed};
use crate::failure::Failure;
use crate::interrupt::Interrupt;
use crate::kube_io::{Clients, HelmReleases, MAX_IN_FLIGHT, storage};
use crate::model::{ActionResult, Branch, Reason};
use crate::notify::Notifier;
use crate::plan::{Plan, PlannedItem};
use crate::report::Report;
use crate::view::HelmReleaseView;

use events::{EventReason, Events};
pub use writer::{Budget, CLEANUP_GRACE, DeadlineExceeded, SIGNAL_BUDGET, Writer};
use writer::{Sent, Write};

/// What became of one planned action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The action ran: succeeded, failed or rolled back.
    Done {
        result: ActionResult,
        error: Option<Failure>,
    },
    /// A 409 on the first write led to another decision, reported instead;
    /// with the result of that decision's action when it is one (carried
    /// out in the same run, or `changed-during-run`).
    Redecided(Decision, Option<Box<Outcome>>),
    /// Never started: the run was interrupted or out of time.
    NotStarted,
}

impl Outcome {
    fn succeeded() -> Outcome {
        Outcome::Done {
            result: ActionResult::Succeeded,
            error: None,
        }
    }

    fn failed(error: Failure) -> Outcome {
        Outcome::Done {
            result: ActionResult::Failed,
            error: Some(error),
        }
    }
}

/// The result of an action's first write, after at most one re-decision.
enum FirstWrite {
    /// Written: the server's answer (or the object read back that carries
    /// the write) and the view the write was decided on.
    Wrote(Value, Box<HelmReleaseView>),
    /// Ended without a write of this action.
    Ended(Outcome),
}

/// Whether a 409 on a first write may lead to a re-decision, or is final
/// (the action is itself the one write more a re-decision allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    Redecide,
    Fail,
}

/// Runs the plan's actions against the cluster.
pub struct Executor {
    writer: Writer,
    client: kube::Client,
    events: Events,
    config: Config,
    deadline: Instant,
    cancel: CancellationToken,
}

impl Executor {
    pub fn new(
        clients: &Clients,
        config: &Config,
        deadline: Instant,
        interrupt: &Interrupt,
    ) -> Self {
        let api = HelmReleases::new(clients.read.clone(), config.dry_run)
            .writing_with(clients.write.clone());
        Self {
            writer: Writer::new(api, deadline, interrupt),
            events: Events::new(clients.read.clone(), config.dry_run)
                .until(deadline + CLEANUP_GRACE)
                .notify(Notifier::for_run(
                    config.events_addr.as_ref(),
                    config.dry_run,
                )),
            client: clients.read.clone(),
            config: config.clone(),
            deadline,
            cancel: interrupt.token(),
        }
    }

    /// Runs every action the guardrail allows and records each outcome in
    /// the report. With a tripped guardrail, publishes
    /// `RecoveryGuardrailTripped` on each held-back candidate and runs only
    /// the repairs. Every toggle shares one wait. Returns how many runnable
    /// actions never started (a signal or the deadline came first); they
    /// stay `planned` in the report.
    pub async fn execute(&self, plan: &Plan, report: &mut Report) -> usize {
        let tripped = bounded(plan.held_back().filter_map(|item| {
            let view = item.view.as_ref()?;
            let note = events::guardrail_note(plan, item.decision.reason);
            Some(
                self.events
                    .publish(view, EventReason::RecoveryGuardrailTripped, note),
            )
        }));
        let (toggles, singles): (Vec<&PlannedItem>, Vec<&PlannedItem>) = plan
            .runnable()
            .partition(|i| i.decision.branch == Some(Branch::ToggleSuspend));
        let singles = bounded(singles.into_iter().map(|item| async move {
            let outcome = match (&item.view, item.decision.branch) {
                (Some(view), Some(branch)) => {
                    self.run_single(view, branch, OnConflict::Redecide).await
                }
                _ => Outcome::NotStarted,
            };
            log_outcome(&item.namespace, &item.name, item.decision, &outcome);
            (item, outcome)
        }));
        let toggle_views: Vec<&HelmReleaseView> =
            toggles.iter().filter_map(|i| i.view.as_ref()).collect();
        let (_, singles, toggled) = tokio::join!(
            tripped,
            singles,
            toggle_suspend::run_batch(self, toggle_views)
        );
        let mut not_started = 0;
        let outcomes = singles
            .into_iter()
            .map(|(item, outcome)| (item.namespace.as_str(), item.name.as_str(), outcome))
            .chain(
                toggled
                    .into_iter()
                    .map(|(view, outcome)| (view.namespace.as_str(), view.name.as_str(), outcome)),
            );
        for (namespace, name, outcome) in outcomes {
            not_started += usize::from(outcome == Outcome::NotStarted);
            record(report, namespace, name, outcome);
        }
        not_started
    }

    async fn run_single(
        &self,
        view: &HelmReleaseView,
        branch: Branch,
        on_conflict: OnConflict,
    ) -> Outcome {
        match branch {
            Branch::CorrectStatus => correct_status::run(self, view).await,
            Branch::Resume => repair::resume(self, view, on_conflict).await,
            Branch::ClearMarker => repair::clear_marker(self, view, on_conflict).await,
            // Toggles run as one batch with one wait (`toggle_suspend::run_batch`).
            Branch::ToggleSuspend => Outcome::NotStarted,
        }
    }

    /// False once a signal arrived or the deadline passed: start nothing new.
    fn may_start(&self) -> bool {
        !self.cancel.is_cancelled() && Instant::now() < self.deadline
    }

    /// Decides an object read back again (Helm storage re-read when the
    /// table needs it).
    async fn redecide(&self, json: &Value) -> (Option<HelmReleaseView>, Decision) {
        let fresh = match HelmReleaseView::from_json(json) {
            Ok(fresh) => fresh,
            Err(_) => return (None, Decision::skip(Reason::Malformed)),
        };
        let now = Utc::now();
        let fact = match storage_needed(&fresh, now, &self.config) {
            Some(release) => Some(
                match tokio::time::timeout_at(
                    self.deadline,
                    storage::latest(&self.client, &release),
                )
                .await
                {
                    Ok(Ok(fact)) => fact,
                    Ok(Err(e)) => StorageFact::Unreadable(e.failure()),
                    Err(_) => StorageFact::Unreadable(Failure::Deadline),
                },
            ),
            None => None,
        };
        let decision = decide(&fresh, fact.as_ref(), now, &self.config);
        (Some(fresh), decision)
    }

    /// An action's first write with SPEC §5's conflict rule: a 409 that is
    /// not our own write landing decides again on the object read back;
    /// when the decision is still `branch`, the write is sent once more
    /// (built from the fresh view); a second 409 is `changed-during-run`;
    /// another decision is carried out or reported ([`Executor::redecided`]).
    async fn first_write<'w>(
        &self,
        view: &HelmReleaseView,
        branch: Branch,
        budget: Budget,
        on_conflict: OnConflict,
        make: impl Fn(&HelmReleaseView) -> Write<'w>,
    ) -> FirstWrite {
        let object = match self
            .writer
            .send(view, &view.resource_version, &make(view), budget)
            .await
        {
            Sent::Applied(answer) => return FirstWrite::Wrote(answer, Box::new(view.clone())),
            Sent::Failed(error) => return FirstWrite::Ended(Outcome::failed(error.failure())),
            Sent::Conflict(_, _) if on_conflict == OnConflict::Fail => {
                return FirstWrite::Ended(Outcome::failed(Failure::ChangedDuringRun));
            }
            Sent::Conflict(object, error) => {
                tracing::info!(
                    namespace = %view.namespace, name = %view.name, error = %error.failure(),
                    "HelmRelease changed since it was read; deciding again"
                );
                object
            }
        };
        let fresh = match self.redecide(&object).await {
            (Some(fresh), decision) if decision.branch == Some(branch) => fresh,
            (fresh, decision) => {
                return FirstWrite::Ended(self.redecided(decision, fresh).await);
            }
        };
        tracing::debug!("same outcome after re-reading; writing once more");
        match self
            .writer
            .send(&fresh, &fresh.resource_version, &make(&fresh), budget)
            .await
        {
            Sent::Applied(answer) => FirstWrite::Wrote(answer, Box::new(fresh)),
            Sent::Conflict(..) => FirstWrite::Ended(Outcome::failed(Failure::ChangedDuringRun)),
            Sent::Failed(error) => FirstWrite::Ended(Outcome::failed(error.failure())),
        }
    }

    /// Another decision after a 409: a repair of our own state is carried
    /// out now (its 409 is final); another remedy is `changed-during-run`
    /// (the next run decides it afresh); a skip is reported as such.
    async fn redecided(&self, decision: Decision, fresh: Option<HelmReleaseView>) -> Outcome {
        let done = match (decision.branch, fresh) {
            (None, _) => None,
            (Some(branch @ (Branch::Resume | Branch::ClearMarker)), Some(fresh)) => {
                tracing::info!(
                    namespace = %fresh.namespace, name = %fresh.name, reason = %decision.reason,
                    "decided again: repairing our own state in this run"
                );
                Some(Box::pin(self.run_single(&fresh, branch, OnConflict::Fail)).await)
            }
            (Some(_), _) => Some(Outcome::failed(Failure::ChangedDuringRun)),
        };
        Outcome::Redecided(decision, done.map(Box::new))
    }

    /// Publishes the Event about one finished action (events::about).
    async fn publish(&self, branch: Branch, view: &HelmReleaseView, outcome: &Outcome) {
        if let Some((reason, note)) = events::about(branch, view, outcome) {
            self.events.publish(view, reason, note).await;
        }
    }

    /// The `resourceVersion` the next write of an action carries: the one
    /// our previous write returned — except in a server dry run, where
    /// nothing persisted and the object still has the one it was read with.
    fn next_resource_version<'a>(&self, answer: &'a Value, view: &'a HelmReleaseView) -> &'a str {
        match self.config.dry_run {
            crate::model::DryRun::Server => &view.resource_version,
            _ => crate::kube_io::helmreleases::resource_version(answer)
                .unwrap_or(&view.resource_version),
        }
    }
}

/// Runs `futures` in order, at most [`MAX_IN_FLIGHT`] at a time. More would
/// not go faster (every request already waits for one of that many client
/// slots) but would all hold memory at once: 1 000 branch-B actions started
/// together each kept their annotation patch's answer while queueing for
/// the status patch (peak RSS 66 MiB instead of 24 MiB).
async fn bounded<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    futures::stream::iter(futures)
        .buffered(MAX_IN_FLIGHT)
        .collect()
        .await
}

/// The per-object log line of one finished action.
fn log_outcome(namespace: &str, name: &str, planned: Decision, outcome: &Outcome) {
    let branch = planned.branch.map(|b| b.as_str()).unwrap_or_default();
    let reason = planned.reason.as_str();
    match outcome {
        Outcome::Done {
            result: result @ ActionResult::Succeeded,
            ..
        } => tracing::info!(namespace, name, branch, reason, result = %result, "action done"),
        Outcome::Done { result, error } => tracing::warn!(
            namespace, name, branch, reason, result = %result,
            error = error.as_ref().map(ToString::to_string).unwrap_or_default(),
            "action not done"
        ),
        Outcome::Redecided(decision, done) => tracing::info!(
            namespace, name, branch, reason = %decision.reason,
            result = ?done.as_deref(),
            "decided again after a conflict: reporting the new outcome"
        ),
        Outcome::NotStarted => tracing::info!(
            namespace,
            name,
            branch,
            reason,
            "not started: interrupted or out of time"
        ),
    }
}

/// Records one outcome in the report.
fn record(report: &mut Report, namespace: &str, name: &str, outcome: Outcome) {
    match outcome {
        Outcome::Done { result, error } => report.set_result(namespace, name, result, error),
        Outcome::Redecided(decision, done) => match decision.branch {
            Some(branch) => {
                report.replace_action(namespace, name, branch, decision.reason);
                let (result, error) = match done.map(|d| *d) {
                    Some(Outcome::Done { result, error }) => (result, error),
                    _ => (ActionResult::Failed, Some(Failure::ChangedDuringRun)),
                };
                report.set_result(namespace, name, result, error);
            }
            None => report.replace_with_skip(namespace, name, decision.reason),
        },
        Outcome::NotStarted => {}
    }
}
