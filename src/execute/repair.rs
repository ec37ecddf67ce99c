//! Repairs of this tool's own state; they always run, guardrail or not.
//!
//! # `interrupted-toggle` → resume
//!
//! **Writes:** one merge patch, the same as branch A's step 3
//! ([`resume_patch`](super::toggle_suspend::resume_patch)): `spec.suspend`
//! and our marker removed, `toggled-at` and `reconcile.fluxcd.io/requestedAt`
//! set, with the decided `resourceVersion`. This is the action's first
//! write: a 409 re-reads, decides again and writes at most once more.
//! Sent through the write primitive within the run's clean-up budget
//! (429/503 and what did not land are retried with backoff).
//!
//! **Guarantees:** on success the HelmRelease is resumed and the controller
//! asked to reconcile; Normal Event `InterruptedToggleResumed`.
//!
//! **Errors:** a failed resume leaves the object as it was (suspended, with
//! our marker); result `failed`, Warning Event `StuckReleaseToggleFailed`;
//! the next run tries again. A resume that landed although its answer did
//! not say so is recognised on a read-back by its own `toggled-at`: result
//! `succeeded`.
//!
//! # `stale-marker` → clear marker
//!
//! **Writes:** one merge patch setting our `suspended-at` marker to `null`,
//! with the decided `resourceVersion` (409: re-decide once). No Event.
//!
//! **Guarantees / Errors:** the object is either unchanged or without the
//! marker; nothing else is touched. A write whose answer did not say what
//! happened and whose read-back shows the marker gone is `succeeded`.

use chrono::Utc;
use serde_json::Value;

use super::toggle_suspend::{resume_write, resumed_by};
use super::writer::{Budget, Write};
use super::{Executor, FirstWrite, OnConflict, Outcome};
use crate::error::Error;
use crate::kube_io::helmreleases::Part;
use crate::model::{Branch, annotations};
use crate::patches::{annotation, clear_marker_patch, timestamp};
use crate::view::HelmReleaseView;

/// Finishes a toggle a killed run left suspended.
pub async fn resume(
    executor: &Executor,
    view: &HelmReleaseView,
    on_conflict: OnConflict,
) -> Outcome {
    let now = Utc::now();
    let stamp = timestamp(now);
    let landed = |object: &Value| resumed_by(object, &stamp);
    let write = resume_write(now, &landed);
    let outcome = one_write(
        executor,
        view,
        Branch::Resume,
        Budget::Cleanup,
        on_conflict,
        write,
    )
    .await;
    executor.publish(Branch::Resume, view, &outcome).await;
    outcome
}

/// Removes our marker from a HelmRelease that is not suspended.
pub async fn clear_marker(
    executor: &Executor,
    view: &HelmReleaseView,
    on_conflict: OnConflict,
) -> Outcome {
    let cleared = |object: &Value| annotation(object, annotations::SUSPENDED_AT).is_none();
    let write = Write {
        part: Part::Object,
        body: clear_marker_patch(),
        landed: &cleared,
        step: |object, source| Error::ClearMarker { object, source },
    };
    one_write(
        executor,
        view,
        Branch::ClearMarker,
        Budget::Run,
        on_conflict,
        write,
    )
    .await
}

/// A repair is one write, the action's first (none once the run may start
/// nothing new): its outcome.
async fn one_write(
    executor: &Executor,
    view: &HelmReleaseView,
    branch: Branch,
    budget: Budget,
    on_conflict: OnConflict,
    write: Write<'_>,
) -> Outcome {
    if !executor.may_start() {
        return Outcome::NotStarted;
    }
    let written = executor
        .first_write(view, branch, budget, on_conflict, |_| Write {
            part: write.part,
            body: write.body.clone(),
            landed: write.landed,
            step: write.step,
        })
        .await;
    match written {
        FirstWrite::Wrote(..) => Outcome::succeeded(),
        FirstWrite::Ended(outcome) => outcome,
    }
}
