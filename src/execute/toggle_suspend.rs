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
//! * Write 1 failed: nothing changed; result `failed`. When its answer was
//!   lost (connection error, timeout) the object is read again: if it
//!   carries this very write's marker, the write landed and the object is
//!   resumed with the rest of the batch — never left suspended.
//! * Every HelmRelease this run suspended is resumed by this run — also on
//!   SIGTERM/SIGINT and when the deadline cuts the wait short (the resume
//!   then gets [`CLEANUP_GRACE`]). A wait cut short gives result `failed`
//!   (the controller may not have seen the suspension), the object resumed.
//! * Write 3 never removes a suspension that is not ours: once the marker is
//!   gone, someone else took over (`changed-during-run`).
//!
//! # Errors
//!
//! * Write 3 still failing at the deadline: the HelmRelease stays suspended
//!   with our marker; result `failed`, exit 3; the next run resumes it
//!   (`interrupted-toggle`).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::events::EventReason;
use super::{CHANGED_DURING_RUN, CLEANUP_GRACE, Executor, FirstWrite, Outcome, bounded, timestamp};
use crate::decide::Decision;
use crate::error::{Error, ObjectName, is_transient};
use crate::kube_io::helmreleases::resource_version;
use crate::model::{Branch, DryRun, Reason, annotations};
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
            Suspended::Yes(view, rv) => match resume_after_wait(executor, &view, rv).await {
                Ok(()) => match wait {
                    WaitEnd::Elapsed => Outcome::succeeded(),
                    WaitEnd::Interrupted => Outcome::failed(
                        "interrupted: resumed before --suspend-wait elapsed".to_owned(),
                    ),
                    WaitEnd::Deadline => Outcome::failed(
                        "deadline: resumed before --suspend-wait elapsed".to_owned(),
                    ),
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
        publish(executor, view, &outcome).await;
        done.push((view, outcome));
    }
    done
}

async fn publish(executor: &Executor, view: &HelmReleaseView, outcome: &Outcome) {
    let (reason, note) = match outcome {
        Outcome::Done { error: None, .. } => (
            EventReason::StuckReleaseToggled,
            format!(
                "history says pending-install but Helm release {}/{} is deployed: suspended and resumed to make helm-controller look again",
                view.storage_namespace(),
                view.release_name()
            ),
        ),
        Outcome::Done {
            result,
            error: Some(error),
        } => (
            EventReason::StuckReleaseToggleFailed,
            format!("toggling spec.suspend failed ({result}): {error}"),
        ),
        Outcome::Redecided(_) | Outcome::NotStarted => return,
    };
    executor.events.publish(view, reason, note).await;
}

/// Write 1 for one HelmRelease.
async fn suspend(executor: &Executor, view: &HelmReleaseView) -> Suspended {
    if !executor.may_start() {
        return Suspended::No(Outcome::NotStarted);
    }
    let now = Utc::now();
    let object = ObjectName::new(&view.namespace, &view.name);
    let written = executor
        .first_write(view, Branch::ToggleSuspend, |view| {
            let object = object.clone();
            async move {
                executor
                    .patch(&view, &suspend_patch(&view.resource_version, now))
                    .await
                    .map_err(|source| Error::Suspend {
                        object,
                        source: Box::new(source),
                    })
            }
        })
        .await;
    match written {
        FirstWrite::Wrote(answer, view) => {
            let rv = executor.next_resource_version(&answer, &view).to_owned();
            tracing::info!(namespace = %view.namespace, name = %view.name, "suspended");
            Suspended::Yes(view, rv)
        }
        FirstWrite::Ended(outcome) => match landed(executor, view, now, &outcome).await {
            Some(rv) => Suspended::Yes(Box::new(view.clone()), rv),
            None => Suspended::No(outcome),
        },
    }
}

/// After a failed write 1: the object's `resourceVersion` now, when it is
/// suspended with this very write's marker (it landed although its answer
/// was lost).
async fn landed(
    executor: &Executor,
    view: &HelmReleaseView,
    now: DateTime<Utc>,
    outcome: &Outcome,
) -> Option<String> {
    let failed = matches!(
        outcome,
        Outcome::Done {
            result: crate::model::ActionResult::Failed,
            ..
        }
    );
    if !failed || executor.config.dry_run == DryRun::Server {
        return None;
    }
    let until = executor.deadline.max(Instant::now() + CLEANUP_GRACE);
    let object = executor
        .within(until, executor.api.get(&view.namespace, &view.name))
        .await
        .ok()?;
    let marker = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(annotations::SUSPENDED_AT))
        .and_then(Value::as_str);
    let ours = marker == Some(timestamp(now).as_str())
        && object.pointer("/spec/suspend") == Some(&Value::Bool(true));
    if !ours {
        return None;
    }
    tracing::info!(
        namespace = %view.namespace, name = %view.name,
        "the suspension landed although its answer was lost; resuming it with the batch"
    );
    resource_version(&object).map(str::to_owned)
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

/// Write 3, with the conflict rule of a later write: re-read and retry
/// while our marker is there, `changed-during-run` once it is gone — unless
/// the object carries this very resume's `toggled-at`: then an earlier
/// attempt of ours landed although its answer was lost.
async fn resume_after_wait(
    executor: &Executor,
    view: &HelmReleaseView,
    mut rv: String,
) -> Result<(), String> {
    let object = ObjectName::new(&view.namespace, &view.name);
    let now = Utc::now();
    loop {
        match resume_retrying(executor, view, &rv, now).await {
            Ok(_) => return Ok(()),
            Err(error) if error.is_conflict() && Instant::now() < executor.deadline => {
                let read = executor
                    .within(
                        executor.deadline,
                        executor.api.get(&view.namespace, &view.name),
                    )
                    .await
                    .map_err(|source| Error::ReadHelmRelease {
                        object: object.clone(),
                        source: Box::new(source),
                    });
                let fresh = read.map_err(|e| e.chain())?;
                let annotation = |key: &str| {
                    fresh
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(key))
                        .and_then(Value::as_str)
                };
                let ours = annotation(annotations::SUSPENDED_AT).is_some();
                if !ours && annotation(annotations::TOGGLED_AT) == Some(timestamp(now).as_str()) {
                    return Ok(());
                }
                match resource_version(&fresh) {
                    Some(new_rv) if ours => rv = new_rv.to_owned(),
                    _ => return Err(CHANGED_DURING_RUN.to_owned()),
                }
            }
            Err(error) => return Err(error.chain()),
        }
    }
}

/// Sends the resume patch (timestamps `now`) with `rv`, retrying transient
/// errors other than 409 with backoff until the deadline. The first attempt
/// may use [`CLEANUP_GRACE`] past the deadline. A 409 is returned to the
/// caller.
///
/// # Errors
/// [`Error::Resume`] with the last cause.
pub async fn resume_retrying(
    executor: &Executor,
    view: &HelmReleaseView,
    rv: &str,
    now: DateTime<Utc>,
) -> Result<Value, Error> {
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build();
    let mut until = executor.deadline.max(Instant::now() + CLEANUP_GRACE);
    loop {
        let body = resume_patch(rv, now);
        let source = match executor.patch_until(until, view, &body).await {
            Ok(answer) => return Ok(answer),
            Err(source) => source,
        };
        let retry =
            is_transient(&source) && !matches!(&source, kube::Error::Api(s) if s.code == 409);
        let error = Error::Resume {
            object: ObjectName::new(&view.namespace, &view.name),
            source: Box::new(source),
        };
        let delay = backoff.next().unwrap_or(Duration::from_secs(5));
        if !retry || Instant::now() + delay >= executor.deadline {
            return Err(error);
        }
        tracing::info!(
            namespace = %view.namespace, name = %view.name, error = %error.chain(),
            retry_in = ?delay, "resume failed; retrying"
        );
        tokio::time::sleep(delay).await;
        until = executor.deadline;
    }
}

/// Write 1: suspend with our marker.
pub fn suspend_patch(rv: &str, now: DateTime<Utc>) -> Value {
    json!({
        "metadata": {
            "resourceVersion": rv,
            "annotations": {annotations::SUSPENDED_AT: timestamp(now)},
        },
        "spec": {"suspend": true},
    })
}

/// Write 3 (and the `interrupted-toggle` repair): remove `spec.suspend` and
/// the marker, record `toggled-at`, request a reconcile.
pub fn resume_patch(rv: &str, now: DateTime<Utc>) -> Value {
    let now = timestamp(now);
    json!({
        "metadata": {
            "resourceVersion": rv,
            "annotations": {
                annotations::SUSPENDED_AT: null,
                annotations::TOGGLED_AT: now,
                annotations::RECONCILE_REQUESTED_AT: now,
            },
        },
        "spec": {"suspend": null},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_removes_suspend_and_marker_with_json_null() {
        let patch = resume_patch("9", Utc::now());
        assert_eq!(patch["spec"]["suspend"], Value::Null);
        assert!(
            patch["spec"]
                .as_object()
                .is_some_and(|s| s.contains_key("suspend"))
        );
        let annotations = &patch["metadata"]["annotations"];
        assert!(
            annotations
                .as_object()
                .is_some_and(|a| a.contains_key(annotations::SUSPENDED_AT))
        );
        assert_eq!(annotations[annotations::SUSPENDED_AT], Value::Null);
        assert_eq!(
            annotations[annotations::TOGGLED_AT],
            annotations[annotations::RECONCILE_REQUESTED_AT]
        );
        assert_eq!(patch["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn suspend_sets_spec_and_marker() {
        let patch = suspend_patch("3", Utc::now());
        assert_eq!(patch["spec"]["suspend"], true);
        assert!(patch["metadata"]["annotations"][annotations::SUSPENDED_AT].is_string());
    }
}
