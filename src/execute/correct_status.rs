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
//! * Write 1 failed: nothing changed; result `failed`. When its answer was
//!   lost (connection error, timeout) the object is read again: if it
//!   carries this very write's annotation, the write landed and the
//!   correction goes on with write 2 — it is never left half done.
//! * Write 2 failed: the object is read back first; when it carries this
//!   very write's Ready (it landed although its answer was lost), the result
//!   is `succeeded` and nothing is rolled back.
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
//!   `already-corrected` for it (the annotation is newer than Ready's
//!   `lastTransitionTime`, SPEC §3), list it for a human, and never write to
//!   it again until Ready transitions anew (docs/safety.md).
//! * A 409 on write 2 is a failed step 2 (someone else changed the object
//!   between our writes): rolled back as above.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::events::EventReason;
use super::{CLEANUP_GRACE, Executor, FirstWrite, Outcome, timestamp};
use crate::error::{Error, ObjectName};
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
    let object = ObjectName::new(&view.namespace, &view.name);
    let annotated = executor
        .first_write(view, Branch::CorrectStatus, |view| {
            let object = object.clone();
            async move {
                executor
                    .patch(&view, &annotation_patch(&view, now))
                    .await
                    .map_err(|source| Error::PatchAnnotation {
                        object,
                        source: Box::new(source),
                    })
            }
        })
        .await;
    let (answer, view) = match annotated {
        FirstWrite::Wrote(answer, view) => (answer, view),
        FirstWrite::Ended(outcome) => match landed(executor, view, now, &outcome).await {
            Some(object) => (object, Box::new(view.clone())),
            None => return finish(executor, view, outcome).await,
        },
    };
    let rv = executor.next_resource_version(&answer, &view);
    let status = json!({
        "metadata": {"resourceVersion": rv},
        "status": corrected_status(&view, now),
    });
    let patched = executor
        .patch_status(&view, &status)
        .await
        .map_err(|source| Error::PatchStatus {
            object: object.clone(),
            source: Box::new(source),
        });
    let status_error = match patched {
        Ok(_) => return finish(executor, &view, Outcome::succeeded()).await,
        Err(error) => error,
    };
    if status_landed(executor, &view, now).await {
        return finish(executor, &view, Outcome::succeeded()).await;
    }
    let revert = json!({
        "metadata": {
            "resourceVersion": rv,
            "annotations": {
                annotations::AUTO_CORRECTED_AT: view.annotation(annotations::AUTO_CORRECTED_AT),
            },
        },
    });
    let until = executor
        .deadline
        .max(tokio::time::Instant::now() + CLEANUP_GRACE);
    let rolled_back = Outcome::Done {
        result: ActionResult::RolledBack,
        error: Some(status_error.chain()),
    };
    let outcome = match executor.patch_until(until, &view, &revert).await {
        Ok(_) => rolled_back,
        Err(_) if revert_landed(executor, &view, now).await => rolled_back,
        Err(source) => {
            let revert_error = Error::RevertAnnotation {
                object,
                source: Box::new(source),
            };
            Outcome::failed(format!(
                "{}; {}",
                status_error.chain(),
                revert_error.chain()
            ))
        }
    };
    finish(executor, &view, outcome).await
}

/// After a failed write 1: the object as it is now, when it carries this
/// very write's annotation (it landed although its answer was lost).
async fn landed(
    executor: &Executor,
    view: &HelmReleaseView,
    now: DateTime<Utc>,
    outcome: &Outcome,
) -> Option<Value> {
    let stamp = timestamp(now);
    let failed = matches!(
        outcome,
        Outcome::Done {
            result: ActionResult::Failed,
            ..
        }
    );
    if !failed || view.annotation(annotations::AUTO_CORRECTED_AT) == Some(stamp.as_str()) {
        return None;
    }
    let until = executor
        .deadline
        .max(tokio::time::Instant::now() + CLEANUP_GRACE);
    let object = executor
        .within(until, executor.api.get(&view.namespace, &view.name))
        .await
        .ok()?;
    let ours = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(annotations::AUTO_CORRECTED_AT))
        .and_then(Value::as_str)
        == Some(stamp.as_str());
    if ours {
        tracing::info!(
            namespace = %view.namespace, name = %view.name,
            "the annotation landed although its answer was lost; going on with the status"
        );
    }
    ours.then_some(object)
}

/// After a failed write 2: whether it landed although its answer was lost
/// (the object's Ready is this very write's), so there is nothing to roll
/// back.
async fn status_landed(executor: &Executor, view: &HelmReleaseView, now: DateTime<Utc>) -> bool {
    if executor.config.dry_run == crate::model::DryRun::Server {
        return false;
    }
    let until = executor
        .deadline
        .max(tokio::time::Instant::now() + CLEANUP_GRACE);
    let Ok(object) = executor
        .within(until, executor.api.get(&view.namespace, &view.name))
        .await
    else {
        return false;
    };
    let stamp = timestamp(now);
    let landed = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == "Ready"
                && c["status"] == "True"
                && c["message"] == READY_MESSAGE
                && c["lastTransitionTime"] == stamp.as_str()
        });
    if landed {
        tracing::info!(
            namespace = %view.namespace, name = %view.name,
            "the status landed although its answer was lost; nothing to roll back"
        );
    }
    landed
}

/// After a failed write 3: whether it landed although its answer was lost
/// (the object no longer carries this very write 1's annotation, and
/// carries the value it had before the run), so the rollback is done.
async fn revert_landed(executor: &Executor, view: &HelmReleaseView, now: DateTime<Utc>) -> bool {
    if executor.config.dry_run == crate::model::DryRun::Server {
        return false;
    }
    let until = tokio::time::Instant::now() + CLEANUP_GRACE;
    let Ok(object) = executor
        .within(until, executor.api.get(&view.namespace, &view.name))
        .await
    else {
        return false;
    };
    let current = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(annotations::AUTO_CORRECTED_AT))
        .and_then(Value::as_str);
    let landed = current != Some(timestamp(now).as_str())
        && current == view.annotation(annotations::AUTO_CORRECTED_AT);
    if landed {
        tracing::info!(
            namespace = %view.namespace, name = %view.name,
            "the annotation was put back although the answer was lost"
        );
    }
    landed
}

/// Publishes the action's Event and hands the outcome back.
async fn finish(executor: &Executor, view: &HelmReleaseView, outcome: Outcome) -> Outcome {
    match &outcome {
        Outcome::Done {
            result: ActionResult::Succeeded,
            ..
        } => {
            let note = format!(
                "Ready was Unknown although Helm release {} is deployed: status set to Ready=True, Released=True",
                release_label(view)
            );
            executor
                .events
                .publish(view, EventReason::StuckReleaseCorrected, note)
                .await;
        }
        Outcome::Done { result, error } => {
            let note = format!(
                "correcting the status failed ({result}): {}",
                error.as_deref().unwrap_or_default()
            );
            executor
                .events
                .publish(view, EventReason::StuckReleaseCorrectionFailed, note)
                .await;
        }
        Outcome::Redecided(_) | Outcome::NotStarted => {}
    }
    outcome
}

/// Write 1: the `auto-corrected-at` annotation.
pub fn annotation_patch(view: &HelmReleaseView, now: DateTime<Utc>) -> Value {
    json!({
        "metadata": {
            "resourceVersion": view.resource_version,
            "annotations": {annotations::AUTO_CORRECTED_AT: timestamp(now)},
        },
    })
}

/// `<storage ns>/<release name>.v<version>` of history[0].
fn release_label(view: &HelmReleaseView) -> String {
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
    fn annotation_patch_carries_the_decided_resource_version() {
        let v = view(json!([]), json!([]));
        let patch = annotation_patch(&v, now());
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(
            patch["metadata"]["annotations"][annotations::AUTO_CORRECTED_AT],
            "2026-11-22T12:00:00Z"
        );
    }
}
