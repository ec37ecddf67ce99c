//! Repairs of this tool's own state; they always run, guardrail or not.
//!
//! # `interrupted-toggle` → resume
//!
//! **Writes:** one merge patch, the same as branch A's step 3
//! ([`resume_patch`](super::toggle_suspend::resume_patch)): `spec.suspend`
//! and our marker removed, `toggled-at` and `reconcile.fluxcd.io/requestedAt`
//! set, with the decided `resourceVersion`. This is the action's first
//! write: a 409 re-reads, decides again and writes at most once more.
//! Transient errors are retried with backoff until the deadline.
//!
//! **Guarantees:** on success the HelmRelease is resumed and the controller
//! asked to reconcile; Normal Event `InterruptedToggleResumed`.
//!
//! **Errors:** a failed resume leaves the object as it was (suspended, with
//! our marker); result `failed`, Warning Event `StuckReleaseToggleFailed`;
//! the next run tries again. A resume that landed although its answer was
//! lost (its retry then meets a 409 or fails) is recognised on a read-back
//! by its own `toggled-at`: result `succeeded`.
//!
//! # `stale-marker` → clear marker
//!
//! **Writes:** one merge patch setting our `suspended-at` marker to `null`,
//! with the decided `resourceVersion` (409: re-decide once). No Event.
//!
//! **Guarantees / Errors:** the object is either unchanged or without the
//! marker; nothing else is touched. A failed write whose read-back shows the
//! marker gone (it landed although its answer was lost) is `succeeded`.

use chrono::Utc;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::events::EventReason;
use super::toggle_suspend::resume_retrying;
use super::{CLEANUP_GRACE, Executor, FirstWrite, Outcome, timestamp};
use crate::error::{Error, ObjectName};
use crate::model::{ActionResult, Branch, annotations};
use crate::view::HelmReleaseView;

/// Finishes a toggle a killed run left suspended.
pub async fn resume(executor: &Executor, view: &HelmReleaseView) -> Outcome {
    if !executor.may_start() {
        return Outcome::NotStarted;
    }
    let now = Utc::now();
    let written = executor
        .first_write(view, Branch::Resume, |view| async move {
            resume_retrying(executor, &view, &view.resource_version, now).await
        })
        .await;
    let outcome = match written {
        FirstWrite::Wrote(..) => Outcome::succeeded(),
        FirstWrite::Ended(outcome) if may_have_landed(&outcome) => {
            let stamp = timestamp(now);
            let ours = |object: &Value| {
                annotation(object, annotations::TOGGLED_AT) == Some(stamp.as_str())
                    && annotation(object, annotations::SUSPENDED_AT).is_none()
            };
            match read_back(executor, view).await {
                Some(object) if ours(&object) => Outcome::succeeded(),
                _ => outcome,
            }
        }
        FirstWrite::Ended(outcome) => outcome,
    };
    match &outcome {
        Outcome::Done { error: None, .. } => {
            let note = "resumed a suspension a killed stuck-hr-recovery run left behind".to_owned();
            executor
                .events
                .publish(view, EventReason::InterruptedToggleResumed, note)
                .await;
        }
        Outcome::Done {
            result,
            error: Some(error),
        } => {
            let note = format!("resuming the interrupted toggle failed ({result}): {error}");
            executor
                .events
                .publish(view, EventReason::StuckReleaseToggleFailed, note)
                .await;
        }
        Outcome::Redecided(_) | Outcome::NotStarted => {}
    }
    outcome
}

/// Removes our marker from a HelmRelease that is not suspended.
pub async fn clear_marker(executor: &Executor, view: &HelmReleaseView) -> Outcome {
    if !executor.may_start() {
        return Outcome::NotStarted;
    }
    let object = ObjectName::new(&view.namespace, &view.name);
    let written = executor
        .first_write(view, Branch::ClearMarker, |view| {
            let object = object.clone();
            async move {
                let body = json!({
                    "metadata": {
                        "resourceVersion": view.resource_version,
                        "annotations": {annotations::SUSPENDED_AT: null},
                    },
                });
                executor
                    .patch(&view, &body)
                    .await
                    .map_err(|source| Error::ClearMarker {
                        object,
                        source: Box::new(source),
                    })
            }
        })
        .await;
    match written {
        FirstWrite::Wrote(..) => Outcome::succeeded(),
        FirstWrite::Ended(outcome @ Outcome::Done { .. }) if may_have_landed(&outcome) => {
            match read_back(executor, view).await {
                Some(object) if annotation(&object, annotations::SUSPENDED_AT).is_none() => {
                    Outcome::succeeded()
                }
                _ => outcome,
            }
        }
        FirstWrite::Ended(outcome) => outcome,
    }
}

/// A first write that ended failed or re-decided may have landed with its
/// answer lost (and its retry then met our own change).
fn may_have_landed(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Redecided(_)
            | Outcome::Done {
                result: ActionResult::Failed,
                ..
            }
    )
}

/// The object as it is now, within the clean-up grace; `None` when it
/// cannot be read (or in a server dry run, where nothing persisted).
async fn read_back(executor: &Executor, view: &HelmReleaseView) -> Option<Value> {
    if executor.config.dry_run == crate::model::DryRun::Server {
        return None;
    }
    let until = executor.deadline.max(Instant::now() + CLEANUP_GRACE);
    executor
        .within(until, executor.api.get(&view.namespace, &view.name))
        .await
        .ok()
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}
