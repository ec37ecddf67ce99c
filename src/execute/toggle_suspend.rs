//! Branch A, **toggle suspend**: `pending-install-but-deployed`.
//!
//! # Writes, in order
//!
//! 1. For every HelmRelease of the batch, concurrently: one merge patch sets
//!    `spec.suspend: true` and our marker
//!    `stuck-hr-recovery.openova.io/suspended-at: <now>`, with the decided
//!    `resourceVersion` (a 409 re-reads, decides again and writes at most
//!    once more).
//! 2. One wait of `--suspend-wait` for the whole batch (skipped in a server
//!    dry run; cut short by SIGTERM/SIGINT or the run's deadline).
//! 3. For every HelmRelease suspended in (1): one merge patch
//!    ([`resume_patch`]) removes `spec.suspend` (`null`, as `flux resume`
//!    does) and the marker, sets `toggled-at` and
//!    `reconcile.fluxcd.io/requestedAt` to now, with the `resourceVersion`
//!    write 1 returned. Transient errors (429, 5xx, connection) are retried
//!    with backoff until the deadline; a 409 re-reads the object and retries
//!    with the new `resourceVersion` while our marker is still there.
//!
//! Then a Normal Event `StuckReleaseToggled`, or a Warning Event
//! `StuckReleaseToggleFailed` (none in a dry run).
//!
//! # Guarantees
//!
//! * Write 1 failed: nothing changed; result `failed`. When its answer did
//!   not say what happened (504, connection lost, timeout, 409) the write
//!   primitive reads the object again: if it carries this very write's
//!   marker, the write landed and the object is resumed with the rest of the
//!   batch — never left suspended. A 409 re-decided into `interrupted-toggle`
//!   is resumed in this run.
//! * Every HelmRelease this run suspended is resumed by this run — also on
//!   SIGTERM/SIGINT (within [`super::SIGNAL_BUDGET`]) and when the deadline
//!   cuts the wait short (within the run's clean-up budget,
//!   [`super::CLEANUP_GRACE`] past it). A wait cut short gives result
//!   `failed` (the controller may not have seen the suspension), the object
//!   resumed.
//! * Write 3 never removes a suspension that is not ours: once the marker is
//!   gone, someone else took over (`changed-during-run`).
//!
//! # Errors
//!
//! * Write 3 still failing at the deadline: the HelmRelease stays suspended
//!   with our marker; result `failed`, exit 3; the next run resumes it
//!   (`interrupted-toggle`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::writer::{Budget, Sent, Write};
use super::{Executor, FirstWrite, OnConflict, Outcome, bounded};
use crate::decide::Decision;
use crate::error::Error;
use crate::failure::Failure;
use crate::kube_io::helmreleases::Part;
use crate::model::{Branch, DryRun, Reason, annotations};
use crate::patches::{annotation, resume_patch, suspend_patch, timestamp};
use crate::view::HelmReleaseView;

/// Why the batch's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitEnd {
    /// `--suspend-wait` elapsed (or was skipped for a server dry run).
    Elapsed,
    Interrupted,
    Deadline,
}

/// One HelmRelease after write 1.
enum Suspended {
    /// Suspended: the view it was decided on and the `resourceVersion`
    /// write 1 returned.
    Yes(Box<HelmReleaseView>, String),
    No(Outcome),
}

/// Runs branch A on the whole batch: suspend all, wait once, resume all.
pub async fn run_batch<'a>(
    executor: &Executor,
    views: Vec<&'a HelmReleaseView>,
) -> Vec<(&'a HelmReleaseView, Outcome)> {
    if views.is_empty() {
        return Vec::new();
    }
    let suspended = bounded(views.iter().map(|view| suspend(executor, view))).await;
    let any = suspended.iter().any(|s| matches!(s, Suspended::Yes(..)));
    let wait = if any {
        wait(executor).await
    } else {
        WaitEnd::Elapsed
    };
    let outcomes = bounded(suspended.into_iter().map(|s| async move {
        match s {
            Suspended::No(outcome) => outcome,
            Suspended::Yes(view, rv) => match resume(executor, &view, rv, Utc::now()).await {
                Ok(()) => match wait {
                    WaitEnd::Elapsed => Outcome::succeeded(),
                    WaitEnd::Interrupted => Outcome::failed(Failure::WaitInterrupted),
                    WaitEnd::Deadline => Outcome::failed(Failure::WaitCutByDeadline),
                },
                Err(error) => Outcome::failed(error),
            },
        }
    }))
    .await;
    let mut done = Vec::with_capacity(views.len());
    let planned = Decision::act(Reason::PendingInstallButDeployed, Branch::ToggleSuspend);
    for (view, outcome) in views.into_iter().zip(outcomes) {
        super::log_outcome(&view.namespace, &view.name, planned, &outcome);
        executor
            .publish(Branch::ToggleSuspend, view, &outcome)
            .await;
        done.push((view, outcome));
    }
    done
}

/// Write 1 for one HelmRelease.
async fn suspend(executor: &Executor, view: &HelmReleaseView) -> Suspended {
    if !executor.may_start() {
        return Suspended::No(Outcome::NotStarted);
    }
    let now = Utc::now();
    let stamp = timestamp(now);
    let landed = |object: &Value| {
        annotation(object, annotations::SUSPENDED_AT) == Some(stamp.as_str())
            && object.pointer("/spec/suspend") == Some(&Value::Bool(true))
    };
    let written = executor
        .first_write(
            view,
            Branch::ToggleSuspend,
            Budget::Run,
            OnConflict::Redecide,
            |_| Write {
                part: Part::Object,
                body: suspend_patch(now),
                landed: &landed,
                step: |object, source| Error::Suspend { object, source },
            },
        )
        .await;
    match written {
        FirstWrite::Wrote(answer, view) => {
            let rv = executor.next_resource_version(&answer, &view).to_owned();
            tracing::info!(namespace = %view.namespace, name = %view.name, "suspended");
            Suspended::Yes(view, rv)
        }
        FirstWrite::Ended(outcome) => Suspended::No(outcome),
    }
}

/// Step 2: one wait for the batch.
async fn wait(executor: &Executor) -> WaitEnd {
    if executor.config.dry_run == DryRun::Server {
        return WaitEnd::Elapsed;
    }
    tracing::info!(wait = ?executor.config.suspend_wait, "waiting once for the whole batch");
    tokio::select! {
        () = tokio::time::sleep(executor.config.suspend_wait) => WaitEnd::Elapsed,
        () = executor.cancel.cancelled() => WaitEnd::Interrupted,
        () = tokio::time::sleep_until(executor.deadline) => WaitEnd::Deadline,
    }
}

/// The resume write (timestamps `now`), recognised on a read-back by its
/// own `toggled-at` with the marker gone.
pub(super) fn resume_write(
    now: DateTime<Utc>,
    landed: &(dyn Fn(&Value) -> bool + Sync),
) -> Write<'_> {
    Write {
        part: Part::Object,
        body: resume_patch(now),
        landed,
        step: |object, source| Error::Resume { object, source },
    }
}

/// Whether `object` carries the resume stamped `stamp`.
pub(super) fn resumed_by(object: &Value, stamp: &str) -> bool {
    annotation(object, annotations::TOGGLED_AT) == Some(stamp)
        && annotation(object, annotations::SUSPENDED_AT).is_none()
}

/// Write 3, a later write of the action: retried within the clean-up
/// budget; a 409 re-reads the object and writes again while our marker is
/// there, `changed-during-run` once it is gone.
async fn resume(
    executor: &Executor,
    view: &HelmReleaseView,
    rv: String,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let stamp = timestamp(now);
    let landed = |object: &Value| resumed_by(object, &stamp);
    let ours = |object: &Value| annotation(object, annotations::SUSPENDED_AT).is_some();
    let write = resume_write(now, &landed);
    match executor
        .writer
        .send_while_ours(view, rv, &write, Budget::Cleanup, ours)
        .await
    {
        Sent::Applied(_) => Ok(()),
        Sent::Conflict(..) => Err(Failure::ChangedDuringRun),
        Sent::Failed(error) => Err(error.failure()),
    }
}
