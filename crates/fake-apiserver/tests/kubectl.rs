//! Acceptance 1: real kubectl (pinned 1.33, and 1.27) against the fake server.
//! Missing kubectl fails these tests; it never skips them.

mod common;

use common::{Kubectl, SA, rbac_server, server};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("kubectl printed JSON")
}

#[test]
fn kubectl_gets_one_helmrelease_as_json() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.33");
    let hr = json(&k.ok(&["get", "helmrelease", "web", "-n", "apps", "-o", "json"]));
    assert_eq!(hr["metadata"]["name"], "web");
    assert_eq!(hr["status"]["conditions"][0]["status"], "Unknown");
    // The short name from discovery works too, and the table view prints the CRD's columns.
    let table = k.ok(&["get", "hr", "-n", "apps"]);
    assert!(table.contains("READY") && table.contains("web"), "{table}");
}

#[test]
fn kubectl_lists_helmreleases_across_namespaces_in_chunks() {
    let s = server();
    for i in 0..7 {
        s.apply(common::hr(&format!("ns-{i}"), &format!("hr-{i}")))
            .unwrap();
    }
    let k = Kubectl::new(&s, "admin", "1.33");
    let list = json(&k.ok(&["get", "helmreleases", "-A", "-o", "json", "--chunk-size=3"]));
    let names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(names.contains(&"apps/web".to_string()) && names.contains(&"ns-6/hr-6".to_string()));
    let lists: Vec<_> = s
        .requests()
        .into_iter()
        .filter(|r| r.verb == "list" && r.resource.as_deref() == Some("helmreleases"))
        .collect();
    assert_eq!(lists.len(), 3, "9 objects in chunks of 3 take 3 pages");
    assert!(lists[1].query.contains_key("continue"));
}

#[test]
fn kubectl_merge_patch_changes_spec_and_bumps_generation() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.33");
    let out = k.ok(&[
        "patch",
        "hr",
        "web",
        "-n",
        "apps",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    assert!(
        out.contains("helmrelease.helm.toolkit.fluxcd.io/web patched"),
        "{out}"
    );
    let hr = s.helmrelease("apps", "web").unwrap();
    assert_eq!(hr["spec"]["suspend"], true);
    assert_eq!(hr["metadata"]["generation"], 2);
    let patch = s
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.field_manager.as_deref(), Some("kubectl-patch"));
}

#[test]
fn kubectl_json_patch_applies_and_a_failed_test_op_is_rejected() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.33");
    k.ok(&["patch", "hr", "web", "-n", "apps", "--type=json", "-p",
        r#"[{"op":"test","path":"/spec/interval","value":"5m"},{"op":"replace","path":"/spec/interval","value":"7m"}]"#]);
    assert_eq!(
        s.helmrelease("apps", "web").unwrap()["spec"]["interval"],
        "7m"
    );
    let err = k.fails(&["patch", "hr", "web", "-n", "apps", "--type=json", "-p",
        r#"[{"op":"test","path":"/spec/interval","value":"5m"},{"op":"replace","path":"/spec/interval","value":"9m"}]"#]);
    assert!(
        err.contains("test failed") || err.contains("testing value"),
        "{err}"
    );
    assert_eq!(
        s.helmrelease("apps", "web").unwrap()["spec"]["interval"],
        "7m"
    );
}

#[test]
fn kubectl_status_subresource_patch_changes_only_status() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.33");
    let before = s.helmrelease("apps", "web").unwrap();
    k.ok(&["patch", "hr", "web", "-n", "apps", "--subresource=status", "--type=merge", "-p",
        r#"{"metadata":{"labels":{"sneaky":"yes"}},"spec":{"suspend":true},"status":{"observedGeneration":7}}"#]);
    let after = s.helmrelease("apps", "web").unwrap();
    assert_eq!(after["status"]["observedGeneration"], 7);
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
    assert_eq!(
        after["metadata"]["generation"],
        before["metadata"]["generation"]
    );
    assert_ne!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
}

#[test]
fn kubectl_stale_resource_version_is_a_conflict() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.33");
    let rv = s.helmrelease("apps", "web").unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    k.ok(&[
        "patch",
        "hr",
        "web",
        "-n",
        "apps",
        "--type=merge",
        "-p",
        r#"{"spec":{"interval":"6m"}}"#,
    ]);
    let patch = format!(r#"{{"metadata":{{"resourceVersion":"{rv}"}},"spec":{{"suspend":true}}}}"#);
    let err = k.fails(&[
        "patch",
        "hr",
        "web",
        "-n",
        "apps",
        "--type=merge",
        "-p",
        &patch,
    ]);
    assert!(err.contains(
        r#"Error from server (Conflict): Operation cannot be fulfilled on helmreleases.helm.toolkit.fluxcd.io "web": the object has been modified; please apply your changes to the latest version and try again"#
    ), "{err}");
    assert!(
        s.helmrelease("apps", "web").unwrap()["spec"]
            .get("suspend")
            .is_none()
    );
}

#[test]
fn kubectl_verb_missing_from_the_bound_role_is_forbidden() {
    let s = rbac_server();
    let k = Kubectl::new(&s, SA, "1.33");
    // Allowed by rbac/: list across namespaces, get, patch.
    k.ok(&["get", "hr", "-A", "-o", "json"]);
    k.ok(&[
        "patch",
        "hr",
        "web",
        "-n",
        "apps",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"a":"b"}}}"#,
    ]);
    // Not allowed: delete.
    let err = k.fails(&["delete", "hr", "web", "-n", "apps"]);
    assert!(err.contains(&format!(
        r#"Error from server (Forbidden): helmreleases.helm.toolkit.fluxcd.io "web" is forbidden: User "{SA}" cannot delete resource "helmreleases" in API group "helm.toolkit.fluxcd.io" in the namespace "apps""#
    )), "{err}");
    assert!(s.helmrelease("apps", "web").is_some());
    let tally = s.rbac_tally();
    assert_eq!(tally.denied.len(), 1);
    assert_eq!(tally.denied[0].verb, "delete");
}

#[test]
fn kubectl_schema_invalid_status_is_rejected_with_422() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.33");
    let before = s.helmrelease("apps", "web").unwrap();
    let no_message = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Succeeded","lastTransitionTime":"2026-11-22T10:00:00Z"}]}}"#;
    let err = k.fails(&[
        "patch",
        "hr",
        "web",
        "-n",
        "apps",
        "--subresource=status",
        "--type=merge",
        "-p",
        no_message,
    ]);
    assert!(
        err.contains(r#"The HelmRelease "web" is invalid"#)
            && err.contains("status.conditions[0].message: Required value"),
        "{err}"
    );
    let spaced_reason = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"all good","message":"m","lastTransitionTime":"2026-11-22T10:00:00Z"}]}}"#;
    let err = k.fails(&[
        "patch",
        "hr",
        "web",
        "-n",
        "apps",
        "--subresource=status",
        "--type=merge",
        "-p",
        spaced_reason,
    ]);
    assert!(err.contains(r#"status.conditions[0].reason: Invalid value: "all good": status.conditions[0].reason in body should match"#), "{err}");
    assert_eq!(
        s.helmrelease("apps", "web").unwrap(),
        before,
        "nothing persisted"
    );
    let statuses: Vec<u16> = s
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![422, 422]);
}

#[test]
fn kubectl_default_strategic_patch_on_a_custom_resource_is_415() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.33");
    let err = k.fails(&[
        "patch",
        "hr",
        "web",
        "-n",
        "apps",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    assert!(err.contains("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"), "{err}");
    let patch = s
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        (patch.status, patch.content_type.as_deref()),
        (415, Some("application/strategic-merge-patch+json"))
    );
    assert!(
        s.helmrelease("apps", "web").unwrap()["spec"]
            .get("suspend")
            .is_none()
    );
}

#[test]
fn kubectl_1_27_lists_and_patches_too() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.27");
    let list = json(&k.ok(&["get", "hr", "-A", "-o", "json"]));
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    k.ok(&[
        "patch",
        "hr",
        "web",
        "-n",
        "apps",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"failures":3}}"#,
    ]);
    assert_eq!(
        s.helmrelease("apps", "web").unwrap()["status"]["failures"],
        3
    );
}

#[test]
fn kubectl_creates_a_job_from_a_cronjob() {
    let s = server();
    s.apply_yaml(
        r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: recovery, namespace: flux-system}
spec:
  schedule: "*/2 * * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: main, image: example/stuck-hr-recovery:1.0.0}]
"#,
    )
    .unwrap();
    let k = Kubectl::new(&s, "admin", "1.33");
    // kubectl sends a typed Job as protobuf, which the fake refuses plainly (415)...
    let err = k.fails(&[
        "create",
        "job",
        "--from=cronjob/recovery",
        "manual-0",
        "-n",
        "flux-system",
    ]);
    assert!(
        err.contains("application/vnd.kubernetes.protobuf is not served by fake-apiserver"),
        "{err}"
    );
    // ...so the same Job is built by kubectl from the stored CronJob and sent as JSON.
    let built = k.ok(&[
        "create",
        "job",
        "--from=cronjob/recovery",
        "manual-1",
        "-n",
        "flux-system",
        "--dry-run=client",
        "-o",
        "json",
    ]);
    // No /openapi here, so kubectl's client-side schema check is off.
    k.ok_with_stdin(&["create", "--validate=false", "-f", "-"], &built);
    let job = s
        .get("batch/v1", "jobs", Some("flux-system"), "manual-1")
        .expect("job stored");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "example/stuck-hr-recovery:1.0.0"
    );
}

#[test]
fn kubectl_without_a_token_is_unauthorized() {
    let s = server();
    let k = Kubectl::new(&s, "nobody", "1.33");
    let err = k.fails(&["get", "hr", "-A"]);
    assert!(
        err.contains("Unauthorized") || err.contains("You must be logged in"),
        "{err}"
    );
    assert!(s.requests().iter().all(|r| r.status == 401));
}

#[test]
fn kubectl_shows_events_written_through_the_events_api() {
    let s = server();
    let uid = s.helmrelease("apps", "web").unwrap()["metadata"]["uid"].clone();
    s.apply(serde_json::json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "apps"},
        "eventTime": "2026-11-22T10:00:00.000000Z", "type": "Normal",
        "reason": "StuckReleaseCorrected", "note": "auto-corrected", "action": "CorrectStatus",
        "reportingController": "stuck-hr-recovery", "reportingInstance": "test",
        "regarding": {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "name": "web", "namespace": "apps", "uid": uid},
    }))
    .unwrap();
    let k = Kubectl::new(&s, "admin", "1.33");
    let events = k.ok(&["get", "events", "-n", "apps"]);
    assert!(events.contains("StuckReleaseCorrected"), "{events}");
    let described = k.ok(&["describe", "hr", "web", "-n", "apps"]);
    assert!(
        described.contains("StuckReleaseCorrected") && described.contains("auto-corrected"),
        "{described}"
    );
}
