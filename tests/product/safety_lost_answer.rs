//! A write that lands although its answer is lost (what a real API server
//! does with a request whose client gave up) must not leave a HelmRelease
//! half done within the same run: the binary reads the object again and
//! recognises its own write. Regression tests for issue 4's matrix cells
//! "applied, answer lost" on a first write.

use std::sync::Arc;

use crate::common::safety::*;
use crate::common::*;
use serde_json::Value;

/// Fails `key` by applying it and dropping the connection; runs once.
fn run_losing_the_answer_of(key: &WriteKey) -> (Cluster, Value) {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    cluster.add_fault(
        key.fault()
            .hook(apply_then_lose_answer(Arc::downgrade(&cluster.server)))
            .drop_connection(),
    );
    let out = cluster.run(&fault_run_args());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
    cluster.assert_nothing_denied();
    (cluster, report)
}

fn first_patch(namespace: &str) -> WriteKey {
    WriteKey {
        method: "PATCH".into(),
        resource: "helmreleases".into(),
        subresource: None,
        namespace: namespace.into(),
        name: Some(HR_NAME.into()),
        nth: 1,
    }
}

#[test]
fn a_lost_answer_on_the_correction_annotation_goes_on_with_the_status() {
    let (cluster, report) = run_losing_the_answer_of(&first_patch(CORRECT_NS));
    let action = action_of(&report, CORRECT_NS, HR_NAME)
        .cloned()
        .unwrap_or_default();
    assert_eq!(action["result"], "succeeded", "{action}");
    let hr = cluster.hr(CORRECT_NS, HR_NAME);
    assert!(annotation(&hr, CORRECTED_AT).is_some());
    assert_eq!(
        find_condition(&hr, "Ready").map(|c| c["status"].clone()),
        Some(Value::from("True"))
    );
}

#[test]
fn a_lost_answer_on_the_suspend_still_resumes_in_the_same_run() {
    let (cluster, report) = run_losing_the_answer_of(&first_patch(TOGGLE_NS));
    let action = action_of(&report, TOGGLE_NS, HR_NAME)
        .cloned()
        .unwrap_or_default();
    assert_eq!(action["result"], "succeeded", "{action}");
    let hr = cluster.hr(TOGGLE_NS, HR_NAME);
    assert_eq!(hr["spec"].get("suspend"), None, "resumed: {hr}");
    assert_eq!(annotation(&hr, SUSPENDED_AT), None, "marker removed");
    assert!(annotation(&hr, TOGGLED_AT).is_some(), "toggled");
}

#[test]
fn a_lost_answer_on_an_interrupted_toggle_resume_is_reported_as_resumed() {
    let (cluster, report) = run_losing_the_answer_of(&first_patch(RESUME_NS));
    let action = action_of(&report, RESUME_NS, HR_NAME)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (action["branch"].clone(), action["result"].clone()),
        (Value::from("resume"), Value::from("succeeded")),
        "{report}"
    );
    assert!(
        cluster
            .events()
            .iter()
            .any(|(id, _, reason)| id == "resume/hr" && reason == "InterruptedToggleResumed"),
        "{:#?}",
        cluster.events()
    );
}

#[test]
fn a_lost_answer_on_a_marker_clear_is_reported_as_cleared() {
    let (_, report) = run_losing_the_answer_of(&first_patch(CLEAR_NS));
    let action = action_of(&report, CLEAR_NS, HR_NAME)
        .cloned()
        .unwrap_or_default();
    assert_eq!(action["result"], "succeeded", "{report}");
}

#[test]
fn a_lost_answer_on_the_status_is_a_correction_not_a_rollback() {
    let status = WriteKey {
        subresource: Some("status".into()),
        ..first_patch(CORRECT_NS)
    };
    let (cluster, report) = run_losing_the_answer_of(&status);
    let action = action_of(&report, CORRECT_NS, HR_NAME)
        .cloned()
        .unwrap_or_default();
    assert_eq!(action["result"], "succeeded", "{report}");
    let hr = cluster.hr(CORRECT_NS, HR_NAME);
    assert!(annotation(&hr, CORRECTED_AT).is_some());
    assert_eq!(
        find_condition(&hr, "Ready").map(|c| c["status"].clone()),
        Some(Value::from("True"))
    );
}

#[test]
fn a_lost_answer_on_the_revert_is_reported_as_rolled_back() {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    let status = WriteKey {
        subresource: Some("status".into()),
        ..first_patch(CORRECT_NS)
    };
    // The status patch fails, then the revert (the second main-resource
    // patch of that HelmRelease) lands but its answer is lost.
    cluster.add_fault(status.fault().respond(500));
    let revert = WriteKey {
        nth: 2,
        ..first_patch(CORRECT_NS)
    };
    cluster.add_fault(
        revert
            .fault()
            .hook(apply_then_lose_answer(Arc::downgrade(&cluster.server)))
            .drop_connection(),
    );
    let out = cluster.run(&fault_run_args());
    let report = json_report(&out);
    let action = action_of(&report, CORRECT_NS, HR_NAME)
        .cloned()
        .unwrap_or_default();
    assert_eq!(action["result"], "rolled-back", "{report}");
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let hr = cluster.hr(CORRECT_NS, HR_NAME);
    assert_eq!(annotation(&hr, CORRECTED_AT), None, "annotation put back");
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
    cluster.assert_nothing_denied();
}
