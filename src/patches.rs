//! The JSON merge patches a run sends, built from a view and a clock: pure,
//! so the executor sends them and `explain` shows them from one source.
//!
//! Every patch stamps its own RFC 3339 timestamp ([`timestamp`]), which is
//! how a read-back recognises it. `metadata.resourceVersion` is set per
//! attempt by the sender ([`with_resource_version`]).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::model::annotations;
use crate::view::HelmReleaseView;

/// The message of the Ready condition branch B writes.
pub const READY_MESSAGE: &str =
    "auto-corrected from deployed-but-unknown-Ready by stuck-hr-recovery";
/// The reason of the Ready condition branch B writes.
pub const READY_REASON: &str = "ReconciliationSucceeded";

/// The timestamp form of every annotation and condition we write.
pub fn timestamp(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `body` with `metadata.resourceVersion` set to `rv`.
pub fn with_resource_version(mut body: Value, rv: &str) -> Value {
    body["metadata"]["resourceVersion"] = Value::from(rv);
    body
}

/// An annotation of an object read as JSON.
pub fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Branch B, write 1: the `auto-corrected-at` annotation.
pub fn annotation_patch(now: DateTime<Utc>) -> Value {
    json!({
        "metadata": {
            "annotations": {annotations::AUTO_CORRECTED_AT: timestamp(now)},
        },
    })
}

/// Branch B, write 2: the corrected status ([`corrected_status`]).
pub fn status_patch(view: &HelmReleaseView, now: DateTime<Utc>) -> Value {
    json!({"metadata": {}, "status": corrected_status(view, now)})
}

/// Branch B, write 3 (only after write 2 failed): `auto-corrected-at` put
/// back as it was (`before`, or `null` to remove it).
pub fn revert_patch(before: Option<&str>) -> Value {
    json!({"metadata": {"annotations": {annotations::AUTO_CORRECTED_AT: before}}})
}

/// Branch A, write 1: suspend with our marker.
pub fn suspend_patch(now: DateTime<Utc>) -> Value {
    json!({
        "metadata": {
            "annotations": {annotations::SUSPENDED_AT: timestamp(now)},
        },
        "spec": {"suspend": true},
    })
}

/// Branch A, write 3 (and the `interrupted-toggle` repair): remove
/// `spec.suspend` and the marker, record `toggled-at`, request a reconcile.
pub fn resume_patch(now: DateTime<Utc>) -> Value {
    let now = timestamp(now);
    json!({
        "metadata": {
            "annotations": {
                annotations::SUSPENDED_AT: null,
                annotations::TOGGLED_AT: now,
                annotations::RECONCILE_REQUESTED_AT: now,
            },
        },
        "spec": {"suspend": null},
    })
}

/// The `stale-marker` repair: our marker set to `null`.
pub fn clear_marker_patch() -> Value {
    json!({"metadata": {"annotations": {annotations::SUSPENDED_AT: null}}})
}

/// `<storage ns>/<release name>.v<version>` of history[0].
pub fn release_label(view: &HelmReleaseView) -> String {
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
    fn a_revert_puts_back_the_previous_value_or_removes_the_annotation() {
        let back = revert_patch(Some("2026-11-21T12:00:00Z"));
        assert_eq!(
            back["metadata"]["annotations"][annotations::AUTO_CORRECTED_AT],
            "2026-11-21T12:00:00Z"
        );
        let removed = revert_patch(None);
        let annotations = &removed["metadata"]["annotations"];
        assert!(
            annotations
                .as_object()
                .is_some_and(|a| a.contains_key(annotations::AUTO_CORRECTED_AT))
        );
        assert_eq!(annotations[annotations::AUTO_CORRECTED_AT], Value::Null);
    }

    #[test]
    fn annotation_patch_stamps_its_own_time() {
        let patch = annotation_patch(now());
        assert_eq!(
            patch["metadata"]["annotations"][annotations::AUTO_CORRECTED_AT],
            "2026-11-22T12:00:00Z"
        );
    }

    #[test]
    fn resume_removes_suspend_and_marker_with_json_null() {
        let patch = resume_patch(Utc::now());
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
    }

    #[test]
    fn suspend_sets_spec_and_marker() {
        let patch = suspend_patch(Utc::now());
        assert_eq!(patch["spec"]["suspend"], true);
        assert!(patch["metadata"]["annotations"][annotations::SUSPENDED_AT].is_string());
    }
}
