//! The executor: owns every write, Event and per-object log line of a run.
//!
//! It takes the finished [`Plan`] and the [`Report`] built from it, runs the
//! actions the guardrail allows, and records what became of each one. One
//! file per remedy:
//!
//! * [`correct_status`] — branch B (annotate, patch status, roll back);
//! * [`toggle_suspend`] — branch A (suspend the batch, one wait, resume);
//! * [`repair`] — `interrupted-toggle` (resume) and `stale-marker` (clear);
//! * [`events`] — Events through kube's Recorder.
//!
//! Rules every remedy shares (SPEC §5), implemented here:
//!
//! * every write is a JSON merge patch carrying `metadata.resourceVersion`
//!   (the one decided on, or the one our previous write of the same action
//!   returned), sent with field manager `stuck-hr-recovery` and, for a server
//!   dry run, `dryRun=All`;
//! * a 409 on an action's first write: re-read, decide again, act at most
//!   once more ([`Executor::first_write`]); a second 409 is
//!   `changed-during-run`;
//! * nothing new starts after SIGTERM/SIGINT or past the deadline; what
//!   already started finishes its own clean-up (rollback, resume), which may
//!   use a short grace period past the deadline.

pub mod correct_status;
pub mod events;
pub mod repair;
pub mod toggle_suspend;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decide::{Decision, decide, storage_needed};
use crate::error::{Error, ObjectName};
use crate::kube_io::{HelmReleases, MAX_IN_FLIGHT, storage};
use crate::model::{ActionResult, Branch, Reason};
use crate::notify::Notifier;
use crate::plan::{Plan, PlannedItem};
use crate::report::Report;
use crate::view::HelmReleaseView;

use events::{EventReason, Events};

/// The error of an action whose first write met a second 409.
pub const CHANGED_DURING_RUN: &str = "changed-during-run";

/// How long clean-up writes (a rollback, a resume) may still try once the
/// run's deadline has passed: a HelmRelease left suspended or half-corrected
/// by this tool is worse than a run a few seconds late.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(5);

/// The run's deadline passed while a request was waiting for its answer.
#[derive(Debug, thiserror::Error)]
#[error("no answer before the run's deadline (--timeout)")]
pub struct DeadlineExceeded;

/// What became of one planned action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The action ran: succeeded, failed or rolled back.
    Done {
        result: ActionResult,
        error: Option<String>,
    },
    /// A 409 on the first write led to another decision, reported instead.
    Redecided(Decision),
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

    fn failed(error: String) -> Outcome {
        Outcome::Done {
            result: ActionResult::Failed,
            error: Some(error),
        }
    }
}

/// The result of an action's first write, after at most one re-decision.
enum FirstWrite {
    /// Written: the server's answer and the view the write was decided on.
    Wrote(Value, Box<HelmReleaseView>),
    /// Ended without a write of this action.
    Ended(Outcome),
}

/// Runs the plan's actions against the cluster.
pub struct Executor {
    api: HelmReleases,
    client: kube::Client,
    events: Events,
    config: Config,
    deadline: Instant,
    cancel: CancellationToken,
}

impl Executor {
    pub fn new(
        client: kube::Client,
        config: &Config,
        deadline: Instant,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            api: HelmReleases::new(client.clone(), config.dry_run),
            events: Events::new(client.clone(), config.dry_run)
                .until(deadline + CLEANUP_GRACE)
                .notify(Notifier::for_run(
                    config.events_addr.as_ref(),
                    config.dry_run,
                )),
            client,
            config: config.clone(),
            deadline,
            cancel,
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
            Some(self.events.publish(
                view,
                EventReason::RecoveryGuardrailTripped,
                format!(
                    "{} HelmReleases planned for recovery, more than --max-actions={}: acting on none of them; \
                     a cluster-wide outage would be masked by mass recovery ({})",
                    plan.guardrail.candidates, plan.guardrail.max_actions, item.decision.reason
                ),
            ))
        }));
        let (toggles, singles): (Vec<&PlannedItem>, Vec<&PlannedItem>) = plan
            .runnable()
            .partition(|i| i.decision.branch == Some(Branch::ToggleSuspend));
        let singles = bounded(singles.into_iter().map(|item| async move {
            let outcome = match (&item.view, item.decision.branch) {
                (Some(view), Some(branch)) => self.run_single(view, branch).await,
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

    async fn run_single(&self, view: &HelmReleaseView, branch: Branch) -> Outcome {
        match branch {
            Branch::CorrectStatus => correct_status::run(self, view).await,
            Branch::Resume => repair::resume(self, view).await,
            Branch::ClearMarker => repair::clear_marker(self, view).await,
            // Toggles run as one batch with one wait (`toggle_suspend::run_batch`).
            Branch::ToggleSuspend => Outcome::NotStarted,
        }
    }

    /// False once a signal arrived or the deadline passed: start nothing new.
    fn may_start(&self) -> bool {
        !self.cancel.is_cancelled() && Instant::now() < self.deadline
    }

    /// Waits for a request, but not past `until`.
    async fn within<T>(
        &self,
        until: Instant,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        match tokio::time::timeout_at(until, request).await {
            Ok(answer) => answer,
            Err(_) => Err(kube::Error::Service(Box::new(DeadlineExceeded))),
        }
    }

    /// Merge-patches the object, bounded by the run's deadline.
    async fn patch(&self, view: &HelmReleaseView, body: &Value) -> Result<Value, kube::Error> {
        self.patch_until(self.deadline, view, body).await
    }

    async fn patch_until(
        &self,
        until: Instant,
        view: &HelmReleaseView,
        body: &Value,
    ) -> Result<Value, kube::Error> {
        self.within(until, self.api.patch(&view.namespace, &view.name, body))
            .await
    }

    /// Merge-patches the status subresource, bounded by the run's deadline.
    async fn patch_status(
        &self,
        view: &HelmReleaseView,
        body: &Value,
    ) -> Result<Value, kube::Error> {
        self.within(
            self.deadline,
            self.api.patch_status(&view.namespace, &view.name, body),
        )
        .await
    }

    /// Re-reads one HelmRelease and decides it again (Helm storage re-read
    /// when the table needs it).
    async fn redecide(
        &self,
        view: &HelmReleaseView,
        until: Instant,
    ) -> Result<(Option<HelmReleaseView>, Decision), Error> {
        let object = ObjectName::new(&view.namespace, &view.name);
        let json = self
            .within(until, self.api.get(&view.namespace, &view.name))
            .await
            .map_err(|source| Error::ReadHelmRelease {
                object,
                source: Box::new(source),
            })?;
        let fresh = match HelmReleaseView::from_json(&json) {
            Ok(fresh) => fresh,
            Err(_) => return Ok((None, Decision::skip(Reason::Malformed))),
        };
        let now = Utc::now();
        let fact = match storage_needed(&fresh, now, &self.config) {
            Some(release) => Some(
                match self
                    .within(until, async {
                        storage::latest(&self.client, &release)
                            .await
                            .map_err(|e| kube::Error::Service(Box::new(e)))
                    })
                    .await
                {
                    Ok(fact) => fact,
                    Err(e) => crate::decide::StorageFact::Unreadable(e.to_string()),
                },
            ),
            None => None,
        };
        let decision = decide(&fresh, fact.as_ref(), now, &self.config);
        Ok((Some(fresh), decision))
    }

    /// An action's first write with SPEC §5's conflict rule: on a 409,
    /// re-read and decide again; when the decision is still `branch`, write
    /// once more (built from the fresh view); a second 409 is
    /// `changed-during-run`; another decision is reported instead.
    async fn first_write<F, Fut>(
        &self,
        view: &HelmReleaseView,
        branch: Branch,
        write: F,
    ) -> FirstWrite
    where
        F: Fn(HelmReleaseView) -> Fut,
        Fut: Future<Output = Result<Value, Error>>,
    {
        let error = match write(view.clone()).await {
            Ok(answer) => return FirstWrite::Wrote(answer, Box::new(view.clone())),
            Err(error) if error.is_conflict() => error,
            Err(error) => return FirstWrite::Ended(Outcome::failed(error.chain())),
        };
        tracing::info!(
            namespace = %view.namespace,
            name = %view.name,
            error = %error.chain(),
            "HelmRelease changed since it was read; deciding again"
        );
        let (fresh, decision) = match self.redecide(view, self.deadline).await {
            Ok((Some(fresh), decision)) if decision.branch == Some(branch) => (fresh, decision),
            Ok((_, decision)) => return FirstWrite::Ended(Outcome::Redecided(decision)),
            Err(error) => return FirstWrite::Ended(Outcome::failed(error.chain())),
        };
        tracing::debug!(reason = %decision.reason, "same outcome after re-reading; writing once more");
        match write(fresh.clone()).await {
            Ok(answer) => FirstWrite::Wrote(answer, Box::new(fresh)),
            Err(error) if error.is_conflict() => {
                FirstWrite::Ended(Outcome::failed(CHANGED_DURING_RUN.to_owned()))
            }
            Err(error) => FirstWrite::Ended(Outcome::failed(error.chain())),
        }
    }
}

impl Executor {
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

/// The timestamp form of every annotation and condition we write.
pub fn timestamp(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
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
            error = error.as_deref().unwrap_or_default(), "action not done"
        ),
        Outcome::Redecided(decision) => tracing::info!(
            namespace, name, branch, reason = %decision.reason,
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
        Outcome::Redecided(decision) => match decision.branch {
            Some(branch) => report.replace_action(namespace, name, branch, decision.reason),
            None => report.replace_with_skip(namespace, name, decision.reason),
        },
        Outcome::NotStarted => {}
    }
}
