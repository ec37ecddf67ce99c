//! Branch B (correct status) end to end: the binary, as the rbac/ service
//! account, against the fake API server; asserted on the request log and
//! the objects' end state.

use crate::common::*;
use fake_apiserver::Fault;
use serde_json::json;

#[test]
fn deployed_history_with_unknown_ready_is_corrected_with_the_full_status() {
    let cluster = Cluster::start();
    cluster.seed([
        Hr::deployed_unknown("apps", "web", 10)
            .upgraded_to(2, "1.2.3")
            .build(),
        helm_secret("apps", "web", 1, "superseded"),
        helm_secret("apps", "web", 2, "deployed"),
    ]);
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let before = cluster.hr("apps", "web");

    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(
        report["actions"],
        json!([{"namespace": "apps", "name": "web", "branch": "correct-status",
                "reason": "deployed-but-unknown-ready", "result": "succeeded", "error": null,
                "blocks": []}])
    );
    assert_eq!(report["counts"]["acted"], 1);

    // Request log: annotation patch, then status patch, both with our field
    // manager and a resourceVersion precondition.
    let writes = cluster.hr_writes();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    let (annotate, status) = (&writes[0], &writes[1]);
    assert_eq!(annotate.method, "PATCH");
    assert_eq!(annotate.subresource, None);
    assert_eq!(
        annotate.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    let body = annotate.body.clone().unwrap_or_default();
    assert_eq!(
        body["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert!(body["metadata"]["annotations"][CORRECTED_AT].is_string());
    assert_eq!(status.subresource.as_deref(), Some("status"));
    for write in &writes {
        assert_eq!(write.field_manager.as_deref(), Some(FIELD_MANAGER));
        assert!(!write.dry_run);
        assert_eq!(write.user, SA_USER);
        assert_eq!(write.status, 200);
    }
    let status_body = status.body.clone().unwrap_or_default();
    assert!(
        status_body["metadata"]["resourceVersion"].is_string(),
        "status patch carries the resourceVersion the annotation patch returned"
    );
    assert_ne!(
        status_body["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );

    // End state: the full conditions list.
    let after = cluster.hr("apps", "web");
    let types: Vec<&str> = after["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["Ready", "Released", "TestSuccess"],
        "Reconciling True removed, others kept in order"
    );
    let ready = find_condition(&after, "Ready").cloned().unwrap_or_default();
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "ReconciliationSucceeded");
    assert_eq!(
        ready["message"],
        "auto-corrected from deployed-but-unknown-Ready by stuck-hr-recovery"
    );
    assert_eq!(ready["observedGeneration"], 1);
    let released = find_condition(&after, "Released")
        .cloned()
        .unwrap_or_default();
    assert_eq!(released["status"], "True");
    assert_eq!(released["reason"], "UpgradeSucceeded");
    assert_eq!(
        released["message"],
        "Helm upgrade succeeded for release apps/web.v2 with chart web@1.2.3 (recorded by stuck-hr-recovery)"
    );
    assert_eq!(
        released["lastTransitionTime"],
        find_condition(&before, "Released")
            .cloned()
            .unwrap_or_default()["lastTransitionTime"],
        "Released was already True: its transition time is kept"
    );
    assert_eq!(
        find_condition(&after, "TestSuccess"),
        find_condition(&before, "TestSuccess")
    );
    assert_eq!(after["status"]["observedGeneration"], 1);
    assert_eq!(after["status"]["history"], before["status"]["history"]);
    assert_eq!(
        annotation(&after, CORRECTED_AT),
        ready["lastTransitionTime"].as_str()
    );

    assert_eq!(
        cluster.events(),
        [(
            "apps/web".to_owned(),
            "Normal".to_owned(),
            "StuckReleaseCorrected".to_owned()
        )]
    );
    // Storage was read for the stuck one only, by label, in its namespace.
    let secret_lists: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("secrets"))
        .collect();
    assert_eq!(secret_lists.len(), 1, "{secret_lists:#?}");
    assert_eq!(secret_lists[0].namespace.as_deref(), Some("apps"));
    assert_eq!(
        secret_lists[0]
            .query
            .get("labelSelector")
            .map(String::as_str),
        Some("owner=helm,name=web")
    );
    cluster.assert_nothing_denied();
}

#[test]
fn failed_status_patch_removes_the_new_annotation_again() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.add_fault(
        Fault::on("PATCH", "helmreleases", Some("status"))
            .namespace("apps")
            .name("web")
            .respond(500),
    );

    let out = cluster.run(&[]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.contains("apps/web correct-status deployed-but-unknown-ready rolled-back error=patch status of HelmRelease apps/web"),
        "{text}"
    );
    let writes = cluster.hr_writes();
    assert_eq!(
        writes.len(),
        3,
        "annotate, status (500), revert: {writes:#?}"
    );
    assert_eq!(writes[1].status, 500);
    let revert = writes[2].body.clone().unwrap_or_default();
    assert_eq!(
        revert["metadata"]["annotations"][CORRECTED_AT],
        serde_json::Value::Null
    );
    assert_eq!(
        revert["metadata"]["resourceVersion"],
        writes[1].body.clone().unwrap_or_default()["metadata"]["resourceVersion"],
        "the revert carries the resourceVersion the annotation patch returned"
    );
    let after = cluster.hr("apps", "web");
    assert_eq!(annotation(&after, CORRECTED_AT), None, "annotation removed");
    assert_eq!(
        find_condition(&after, "Ready").cloned().unwrap_or_default()["status"],
        "Unknown"
    );
    assert_eq!(
        cluster.events(),
        [(
            "apps/web".to_owned(),
            "Warning".to_owned(),
            "StuckReleaseCorrectionFailed".to_owned()
        )]
    );
}

#[test]
fn failed_status_patch_restores_the_previous_annotation_value() {
    let cluster = Cluster::start();
    let previous = ago(24 * 60);
    cluster.seed([
        Hr::deployed_unknown("apps", "web", 10)
            .annotation(CORRECTED_AT, &previous)
            .build(),
        helm_secret("apps", "web", 1, "deployed"),
    ]);
    cluster.add_fault(Fault::on("PATCH", "helmreleases", Some("status")).respond(500));

    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(json_report(&out)["actions"][0]["result"], "rolled-back");
    let after = cluster.hr("apps", "web");
    assert_eq!(annotation(&after, CORRECTED_AT), Some(previous.as_str()));
}

#[test]
fn failed_rollback_is_failed_with_both_errors() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.add_fault(Fault::on("PATCH", "helmreleases", Some("status")).respond(500));
    // The first main-resource PATCH (annotation) succeeds, the second
    // (revert) is refused (403: final, not retried).
    cluster.add_fault(Fault::on("PATCH", "helmreleases", None).nth(2).respond(403));

    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let action = json_report(&out)["actions"][0].clone();
    assert_eq!(action["result"], "failed");
    let error = action["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("patch status of HelmRelease apps/web"),
        "{error}"
    );
    assert!(
        error.contains("revert annotation of HelmRelease apps/web"),
        "{error}"
    );
    assert!(annotation(&cluster.hr("apps", "web"), CORRECTED_AT).is_some());
}

#[test]
fn conflict_on_first_write_rereads_and_acts_once_more() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.add_fault(Fault::on("PATCH", "helmreleases", None).nth(1).respond(409));

    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json_report(&out)["actions"][0]["result"], "succeeded");
    let log: Vec<(String, Option<String>, u16)> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("helmreleases") && r.verb != "list")
        .map(|r| (r.verb, r.subresource, r.status))
        .collect();
    assert_eq!(
        log,
        [
            ("patch".to_owned(), None, 409),
            ("get".to_owned(), None, 200),
            ("patch".to_owned(), None, 200),
            ("patch".to_owned(), Some("status".to_owned()), 200),
        ]
    );
    let ready = find_condition(&cluster.hr("apps", "web"), "Ready").cloned();
    assert_eq!(ready.unwrap_or_default()["status"], "True");
}

#[test]
fn second_conflict_is_changed_during_run() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .times(2)
            .respond(409),
    );

    let out = cluster.run(&[]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        stdout(&out).contains(
            "apps/web correct-status deployed-but-unknown-ready failed error=changed-during-run"
        ),
        "{}",
        describe(&out)
    );
    let patches = cluster.hr_writes();
    assert_eq!(patches.len(), 2, "acted at most once more: {patches:#?}");
    assert!(patches.iter().all(|p| p.status == 409));
    let after = cluster.hr("apps", "web");
    assert_eq!(annotation(&after, CORRECTED_AT), None);
}

#[test]
fn conflict_that_made_it_ready_reports_no_action() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    // While the first write is in flight, helm-controller catches up: Ready
    // True. The write meets a 409; the re-decision is `ready`.
    let server = std::sync::Arc::downgrade(&cluster.server);
    let fixed = Hr::healthy("apps", "web").build();
    cluster.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .nth(1)
            .respond(409)
            .hook(std::sync::Arc::new(move |_| {
                if let Some(server) = server.upgrade() {
                    let _ = server.apply(fixed.clone());
                }
            })),
    );

    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(
        report["actions"],
        json!([]),
        "a ready outcome is counted, not listed"
    );
    assert_eq!(report["skipped"], json!([]));
    assert_eq!(
        report["counts"]["planned"], 1,
        "planned is fixed at plan time"
    );
    assert_eq!(cluster.hr_writes().len(), 1);
    assert!(cluster.events().is_empty());
}

#[test]
fn conflict_on_the_status_patch_is_rolled_back() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.add_fault(Fault::on("PATCH", "helmreleases", Some("status")).respond(409));

    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(json_report(&out)["actions"][0]["result"], "rolled-back");
    let verbs: Vec<(Option<String>, u16)> = cluster
        .hr_writes()
        .into_iter()
        .map(|w| (w.subresource, w.status))
        .collect();
    assert_eq!(
        verbs,
        [(None, 200), (Some("status".to_owned()), 409), (None, 200)],
        "no re-decision on a later write: annotate, status 409, revert"
    );
    assert_eq!(annotation(&cluster.hr("apps", "web"), CORRECTED_AT), None);
}
