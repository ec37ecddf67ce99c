//! Branch B, **correct status**: `deployed-but-unknown-ready`.
//!
//! # Writes, in order
//!
//! 1. Merge patch of the object: `metadata.annotations` gets
//!    `stuck-hr-recovery.openova.io/auto-corrected-at: <now>`, with the
//!    `resourceVersion` the plan was decided on. A 409 here re-reads the
//!    object, decides again and writes at most once more.
//! 2. Merge patch of the **status subresource**, with the `resourceVersion`
//!    write 1 returned: the full `status.conditions` list ([`corrected_status`])
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
//! Each write goes through the write primitive ([`super::write`]): 429/503
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

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::write::{Budget, Sent, Write, annotation};
use super::{CHANGED_DURING_RUN, Executor, FirstWrite, OnConflict, Outcome, timestamp};
use crate::error::Error;
use crate::kube_io::helmreleases::Part;
use crate::model::{ActionResult, Branch, annotations};
use crate::view::HelmReleaseView;

/// The message of the Ready condition we write.
pub const READY_MESSAGE: &str =
    "auto-corrected from deployed-but-unknown-Ready by stuck-hr-recovery";
/// The reason of the Ready condition we write.
pub const READY_REASON: &str = "ReconciliationSucceeded";

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
    let outcome = match executor.send(&view, &rv, &status, Budget::Run).await {
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
        body: json!({"metadata": {"annotations": {annotations::AUTO_CORRECTED_AT: before}}}),
        landed: &put_back,
        step: |object, source| Error::RevertAnnotation { object, source },
    };
    let revert_error = match executor
        .send_while_ours(view, rv, &write, Budget::Cleanup, ours)
        .await
    {
        Sent::Applied(_) => {
            return Outcome::Done {
                result: ActionResult::RolledBack,
                error: Some(status_error.chain()),
            };
        }
        Sent::Conflict(..) => CHANGED_DURING_RUN.to_owned(),
        Sent::Failed(error) => error.chain(),
    };
    Outcome::failed(format!("{}; {revert_error}", status_error.chain()))
}

/// Write 1: the `auto-corrected-at` annotation.
pub fn annotation_patch(now: DateTime<Utc>) -> Value {
    json!({
        "metadata": {
            "annotations": {annotations::AUTO_CORRECTED_AT: timestamp(now)},
        },
    })
}

/// Write 2: the corrected status ([`corrected_status`]).
pub fn status_patch(view: &HelmReleaseView, now: DateTime<Utc>) -> Value {
    json!({"metadata": {}, "status": corrected_status(view, now)})
}

/// `<storage ns>/<release name>.v<version>` of history[0].
pub(super) fn release_label(view: &HelmReleaseView) -> String {
    let version = view
        .history
        .first()
        .and_then(|h| h.version)
        .unwrap_or_default();
    format!(
        "{}/{}.v{version}",
        view.storage_namespace(),
        view.release_name()
    )
}

/// `install` or `upgrade`, from history[0]'s `action`, else from the
/// history's length.
fn helm_action(view: &HelmReleaseView) -> &'static str {
    match view.history.first().and_then(|h| h.action.as_deref()) {
        Some("upgrade") => "upgrade",
        Some("install") => "install",
        _ if view.history.len() == 1 => "install",
        _ => "upgrade",
    }
}

/// Write 2's `status`: what helm-controller would have written after a
/// successful release, so its dependency check and kstatus read the object
/// as reconciled.
pub fn corrected_status(view: &HelmReleaseView, now: DateTime<Utc>) -> Value {
    let now = timestamp(now);
    let action = helm_action(view);
    let released_reason = match action {
        "install" => "InstallSucceeded",
        _ => "UpgradeSucceeded",
    };
    let first = view.history.first();
    let released_message = format!(
        "Helm {action} succeeded for release {} with chart {}@{} (recorded by stuck-hr-recovery)",
        release_label(view),
        first
            .and_then(|h| h.chart_name.as_deref())
            .unwrap_or_default(),
        first
            .and_then(|h| h.chart_version.as_deref())
            .unwrap_or_default(),
    );
    let released_since = view
        .condition("Released")
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let condition = |type_: &str, reason: &str, message: &str, since: &str| {
        let mut c = Map::new();
        c.insert("type".into(), type_.into());
        c.insert("status".into(), "True".into());
        if let Some(generation) = view.generation {
            c.insert("observedGeneration".into(), generation.into());
        }
        c.insert("lastTransitionTime".into(), since.into());
        c.insert("reason".into(), reason.into());
        c.insert("message".into(), message.into());
        Value::Object(c)
    };
    let ready = condition("Ready", READY_REASON, READY_MESSAGE, &now);
    let released = condition(
        "Released",
        released_reason,
        &released_message,
        &released_since,
    );

    let mut conditions = Vec::with_capacity(view.conditions_raw.len() + 2);
    let (mut has_ready, mut has_released) = (false, false);
    for raw in &view.conditions_raw {
        let type_ = raw.get("type").and_then(Value::as_str);
        let is_true = raw.get("status").and_then(Value::as_str) == Some("True");
        match type_ {
            Some("Ready") => {
                has_ready = true;
                conditions.push(ready.clone());
            }
            Some("Released") => {
                has_released = true;
                conditions.push(released.clone());
            }
            Some("Reconciling" | "Stalled") if is_true => {}
            _ => conditions.push(raw.clone()),
        }
    }
    if !has_ready {
        conditions.push(ready);
    }
    if !has_released {
        conditions.push(released);
    }
    let mut status = Map::new();
    status.insert("conditions".into(), Value::Array(conditions));
    if let Some(generation) = view.generation {
        status.insert("observedGeneration".into(), generation.into());
    }
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn view(conditions: Value, history: Value) -> HelmReleaseView {
        let json = json!({
            "metadata": {"namespace": "apps", "name": "web", "resourceVersion": "42", "generation": 3},
            "spec": {"targetNamespace": "prod"},
            "status": {"conditions": conditions, "history": history, "storageNamespace": "store"},
        });
        match HelmReleaseView::from_json(&json) {
            Ok(view) => view,
            Err(e) => panic!("fixture is malformed: {e}"),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn find<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
        status["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)
    }

    #[test]
    fn ready_and_released_become_true_and_reconciling_goes() {
        let v = view(
            json!([
                {"type": "Ready", "status": "Unknown", "reason": "Progressing", "lastTransitionTime": "2026-11-22T11:00:00Z"},
                {"type": "Reconciling", "status": "True", "reason": "Progressing", "lastTransitionTime": "2026-11-22T11:00:00Z"},
                {"type": "Stalled", "status": "False", "reason": "x", "lastTransitionTime": "2026-11-22T11:00:00Z"},
                {"type": "Stalled", "status": "True", "reason": "y", "lastTransitionTime": "2026-11-22T11:00:00Z"},
                {"type": "TestSuccess", "status": "True", "reason": "y", "lastTransitionTime": "2026-11-22T10:00:00Z"}
            ]),
            json!([{"version": 4, "status": "deployed", "action": "upgrade", "chartName": "podinfo", "chartVersion": "6.5.0"}]),
        );
        let status = corrected_status(&v, now());
        assert_eq!(status["observedGeneration"], 3);
        let types: Vec<_> = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["type"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(types, ["Ready", "Stalled", "TestSuccess", "Released"]);
        let ready = find(&status, "Ready").cloned().unwrap_or_default();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], READY_REASON);
        assert_eq!(ready["message"], READY_MESSAGE);
        assert_eq!(ready["lastTransitionTime"], "2026-11-22T12:00:00Z");
        assert_eq!(ready["observedGeneration"], 3);
        let released = find(&status, "Released").cloned().unwrap_or_default();
        assert_eq!(released["reason"], "UpgradeSucceeded");
        assert_eq!(
            released["message"],
            "Helm upgrade succeeded for release store/prod-web.v4 with chart podinfo@6.5.0 (recorded by stuck-hr-recovery)"
        );
    }

    #[test]
    fn released_true_keeps_its_transition_time_and_one_entry_history_is_an_install() {
        let v = view(
            json!([
                {"type": "Released", "status": "True", "reason": "InstallSucceeded", "lastTransitionTime": "2026-11-22T09:00:00Z"},
                {"type": "Ready", "status": "Unknown", "reason": "Progressing", "lastTransitionTime": "2026-11-22T11:00:00Z"}
            ]),
            json!([{"version": 1, "status": "deployed", "chartName": "c", "chartVersion": "1.0.0"}]),
        );
        let status = corrected_status(&v, now());
        let released = find(&status, "Released").cloned().unwrap_or_default();
        assert_eq!(released["lastTransitionTime"], "2026-11-22T09:00:00Z");
        assert_eq!(released["reason"], "InstallSucceeded");
        assert_eq!(status["conditions"][0]["type"], "Released", "order kept");
    }

    #[test]
    fn longer_history_without_action_is_an_upgrade() {
        let v = view(
            json!([{"type": "Ready", "status": "Unknown", "lastTransitionTime": "2026-11-22T11:00:00Z"}]),
            json!([
                {"version": 2, "status": "deployed", "chartName": "c", "chartVersion": "1.0.1"},
                {"version": 1, "status": "superseded", "chartName": "c", "chartVersion": "1.0.0"}
            ]),
        );
        let status = corrected_status(&v, now());
        assert_eq!(
            find(&status, "Released").map(|c| c["reason"].clone()),
            Some(json!("UpgradeSucceeded"))
        );
    }

    #[test]
    fn annotation_patch_stamps_its_own_time() {
        let patch = annotation_patch(now());
        assert_eq!(
            patch["metadata"]["annotations"][annotations::AUTO_CORRECTED_AT],
            "2026-11-22T12:00:00Z"
        );
    }
}
