//! Branch B, **correct status**: `deployed-but-unknown-ready`.
//!
//! # Writes, in order
//!
//! 1. Merge patch of the object: `metadata.annotations` gets
//!    `stuck-hr-recovery.openova.io/auto-corrected-at: <now>`, with the
//!    `resourceVersion` the plan was decided on. A 409 here re-reads the
//!    object, decides again and writes at most once more.
//! 2. Merge patch of the **status subresource**, with the `resourceVersion`
//!    write 1 returned: the full `status.conditions` list
//!    ([`crate::patches::corrected_status`])
//!    — Ready and Released `True`, `Reconciling`/`Stalled` `True` removed,
//!    every other condition as it was — and `status.observedGeneration`.
//! 3. Only if write 2 failed: merge patch putting the annotation back as it
//!    was (its previous value, or `null` to remove it), with the
//!    `resourceVersion` write 1 returned.
//!
//! Then a Normal Event `StuckReleaseCorrected`, or on `rolled-back`/`failed`
//! a Warning Event `StuckReleaseCorrectionFailed` (none in a dry run).
//!
//! # Guarantees
//!
//! Each write goes through the write primitive ([`super::Writer`]): 429/503
//! are retried, and an answer that does not say what happened (504,
//! connection lost, timeout, 409) is settled by reading the object back.
//!
//! * Write 1 failed: nothing changed; result `failed`. When the object read
//!   back carries this very write's annotation, the write landed and the
//!   correction goes on with write 2 — it is never left half done.
//! * Write 2: when the object read back carries this very write's Ready
//!   (its `lastTransitionTime` is the write's stamp), the result is
//!   `succeeded` and nothing is rolled back.
//! * Write 3 met a 409 (someone else wrote the object — the usual reason
//!   for a 409 on write 2): re-read, and while the annotation still holds
//!   this run's value, write again with the new `resourceVersion`, within
//!   the run's clean-up budget.
//! * Write 2 failed and write 3 succeeded: the object is as it was before
//!   the run (apart from its `resourceVersion`); result `rolled-back`; the
//!   next run decides it afresh.
//! * The status is never written without the annotation that records it,
//!   so `already-corrected` always sees our correction.
//!
//! # Errors
//!
//! * Write 2 and write 3 both failed (or the process was killed between
//!   writes 1 and 2): the annotation stays although the status was not
//!   corrected. Result `failed`, both errors reported. Later runs decide
//!   `already-corrected` for it while the annotation is younger than the
//!   cooldown (SPEC §3); once the cooldown has passed, a run corrects it.
//! * A 409 on write 2 is a failed step 2 (someone else changed the object
//!   between our writes): rolled back as above.

use chrono::Utc;
use serde_json::Value;

use super::writer::{Budget, Sent, Write};
use super::{Executor, FirstWrite, OnConflict, Outcome};
use crate::error::Error;
use crate::failure::Failure;
use crate::kube_io::helmreleases::Part;
use crate::model::{ActionResult, Branch, annotations};
use crate::patches::{
    READY_MESSAGE, annotation, annotation_patch, revert_patch, status_patch, timestamp,
};
use crate::view::HelmReleaseView;

/// Runs branch B on one HelmRelease.
pub async fn run(executor: &Executor, view: &HelmReleaseView) -> Outcome {
    if !executor.may_start() {
        return Outcome::NotStarted;
    }
    let now = Utc::now();
    let stamp = timestamp(now);
    let annotated =
        |object: &Value| annotation(object, annotations::AUTO_CORRECTED_AT) == Some(stamp.as_str());
    let written = executor
        .first_write(
            view,
            Branch::CorrectStatus,
            Budget::Run,
            OnConflict::Redecide,
            |_| Write {
                part: Part::Object,
                body: annotation_patch(now),
                landed: &annotated,
                step: |object, source| Error::PatchAnnotation { object, source },
            },
        )
        .await;
    let (answer, view) = match written {
        FirstWrite::Wrote(answer, view) => (answer, view),
        FirstWrite::Ended(outcome) => {
            executor
                .publish(Branch::CorrectStatus, view, &outcome)
                .await;
            return outcome;
        }
    };
    let rv = executor.next_resource_version(&answer, &view).to_owned();
    let corrected = |object: &Value| {
        object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "Ready"
                    && c["status"] == "True"
                    && c["message"] == READY_MESSAGE
                    && c["lastTransitionTime"] == stamp.as_str()
            })
    };
    let status = Write {
        part: Part::Status,
        body: status_patch(&view, now),
        landed: &corrected,
        step: |object, source| Error::PatchStatus { object, source },
    };
    let outcome = match executor.writer.send(&view, &rv, &status, Budget::Run).await {
        Sent::Applied(_) => Outcome::succeeded(),
        Sent::Conflict(_, error) | Sent::Failed(error) => {
            revert(executor, &view, rv, &stamp, error).await
        }
    };
    executor
        .publish(Branch::CorrectStatus, &view, &outcome)
        .await;
    outcome
}

/// Write 3: puts the annotation back as it was before the run, retried
/// within the clean-up budget and, on a 409, with the new
/// `resourceVersion` while the annotation still holds `stamp`.
async fn revert(
    executor: &Executor,
    view: &HelmReleaseView,
    rv: String,
    stamp: &str,
    status_error: Error,
) -> Outcome {
    let before = view.annotation(annotations::AUTO_CORRECTED_AT);
    let put_back = |object: &Value| annotation(object, annotations::AUTO_CORRECTED_AT) == before;
    let ours = |object: &Value| annotation(object, annotations::AUTO_CORRECTED_AT) == Some(stamp);
    let write = Write {
        part: Part::Object,
        body: revert_patch(before),
        landed: &put_back,
        step: |object, source| Error::RevertAnnotation { object, source },
    };
    let revert_error = match executor
        .writer
        .send_while_ours(view, rv, &write, Budget::Cleanup, ours)
        .await
    {
        Sent::Applied(_) => {
            return Outcome::Done {
                result: ActionResult::RolledBack,
                error: Some(status_error.failure()),
            };
        }
        Sent::Conflict(..) => Failure::ChangedDuringRun,
        Sent::Failed(error) => error.failure(),
    };
    Outcome::failed(Failure::RevertFailed {
        status: Box::new(status_error.failure()),
        revert: Box::new(revert_error),
    })
}
