//! Branch A (toggle suspend) and the repairs end to end: one batch, one
//! wait, resume bodies, retries, SIGTERM/SIGINT during the wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use fake_apiserver::Fault;
use serde_json::{Value, json};
use stuck_hr_recovery::model::{ActionResult, Branch, Reason};

fn is_suspend(body: &Value) -> bool {
    body["spec"]["suspend"] == json!(true)
}

fn is_resume(body: &Value) -> bool {
    body["spec"]
        .as_object()
        .is_some_and(|s| s.contains_key("suspend"))
        && body["spec"]["suspend"].is_null()
}

#[test]
fn batch_is_suspended_then_waited_once_then_resumed() {
    let cluster = Cluster::start();
    for name in ["a", "b", "c"] {
        cluster.seed(stuck_pending("apps", name));
    }
    let started = Instant::now();
    let out = cluster.run(&["--suspend-wait", "2s", "-o", "json"]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "one wait for the batch, not one per HelmRelease: {elapsed:?}"
    );
    let report = json_report(&out);
    for action in report["actions"].as_array().into_iter().flatten() {
        assert_eq!(action["branch"], "toggle-suspend");
        assert_eq!(action["reason"], "pending-install-but-deployed");
        assert_eq!(action["result"], "succeeded");
    }
    assert_eq!(report["counts"]["acted"], 3);

    let writes = cluster.hr_writes();
    assert_eq!(writes.len(), 6, "{writes:#?}");
    let bodies: Vec<Value> = writes
        .iter()
        .map(|w| w.body.clone().unwrap_or_default())
        .collect();
    assert!(bodies[..3].iter().all(is_suspend), "all suspends first");
    assert!(bodies[3..].iter().all(is_resume), "then all resumes");
    for (write, body) in writes.iter().zip(&bodies) {
        assert_eq!(write.field_manager.as_deref(), Some(FIELD_MANAGER));
        assert_eq!(
            write.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert!(body["metadata"]["resourceVersion"].is_string());
        assert_eq!(write.status, 200);
    }
    for body in &bodies[..3] {
        assert!(body["metadata"]["annotations"][SUSPENDED_AT].is_string());
    }
    for body in &bodies[3..] {
        let annotations = &body["metadata"]["annotations"];
        assert!(
            annotations
                .as_object()
                .is_some_and(|a| a.contains_key(SUSPENDED_AT))
        );
        assert!(
            annotations[SUSPENDED_AT].is_null(),
            "marker removed with JSON null"
        );
        assert!(annotations[TOGGLED_AT].is_string());
        assert!(annotations[REQUESTED_AT].is_string());
    }
    // Each resume carries the resourceVersion its suspend returned.
    for name in ["a", "b", "c"] {
        let mine: Vec<_> = writes
            .iter()
            .filter(|w| w.name.as_deref() == Some(name))
            .collect();
        assert_eq!(mine.len(), 2);
        let hr = cluster.hr("apps", name);
        assert_eq!(hr["spec"].get("suspend"), None, "spec.suspend removed");
        assert_eq!(annotation(&hr, SUSPENDED_AT), None);
        assert!(annotation(&hr, TOGGLED_AT).is_some());
        assert_eq!(annotation(&hr, REQUESTED_AT), annotation(&hr, TOGGLED_AT));
    }
    assert_eq!(
        cluster.events(),
        ["a", "b", "c"].map(|n| (
            format!("apps/{n}"),
            "Normal".to_owned(),
            "StuckReleaseToggled".to_owned()
        ))
    );
    cluster.assert_nothing_denied();
}

/// SPEC §5: a 500 is a failed write, never sent again — a resume included.
/// The run reports the toggle `failed` (exit 3) and the next run resumes
/// the suspension it left (`interrupted-toggle`).
#[test]
fn a_resume_answered_500_is_not_sent_again_and_the_next_run_resumes() {
    let cluster = Cluster::start();
    cluster.seed(stuck_pending("apps", "web"));
    // PATCH 1 = suspend, PATCH 2 = the resume, answered 500.
    cluster.add_fault(Fault::on("PATCH", "helmreleases", None).nth(2).respond(500));

    let out = cluster.run(&["--suspend-wait", "1s"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        stdout(&out).contains("apps/web toggle-suspend pending-install-but-deployed failed error=resume HelmRelease apps/web"),
        "{}",
        describe(&out)
    );
    let statuses: Vec<u16> = cluster.hr_writes().iter().map(|w| w.status).collect();
    assert_eq!(statuses, [200, 500], "the resume is not sent again");

    let (out, report) = cluster.run_report(&["--suspend-wait", "1s"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_action(
        &report,
        "apps",
        "web",
        (
            Branch::Resume,
            Reason::InterruptedToggle,
            ActionResult::Succeeded,
        ),
    );
    assert_resumed(&cluster.hr("apps", "web"));
}

#[test]
fn resume_conflict_rereads_and_retries_while_the_marker_is_ours() {
    let cluster = Cluster::start();
    cluster.seed(stuck_pending("apps", "web"));
    cluster.add_fault(Fault::on("PATCH", "helmreleases", None).nth(2).respond(409));

    let out = cluster.run(&["--suspend-wait", "1s"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let log: Vec<(String, u16)> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("helmreleases") && r.verb != "list")
        .map(|r| (r.verb, r.status))
        .collect();
    assert_eq!(
        log,
        [
            ("patch".into(), 200),
            ("patch".into(), 409),
            ("get".into(), 200),
            ("patch".into(), 200)
        ]
    );
    assert_eq!(cluster.hr("apps", "web")["spec"].get("suspend"), None);
}

#[test]
fn failed_suspend_changes_nothing_and_warns() {
    let cluster = Cluster::start();
    cluster.seed(stuck_pending("apps", "web"));
    cluster.add_fault(Fault::on("PATCH", "helmreleases", None).respond(500));

    let out = cluster.run(&["--suspend-wait", "30s"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(stdout(&out).contains("apps/web toggle-suspend pending-install-but-deployed failed error=suspend HelmRelease apps/web"));
    assert_eq!(
        cluster.events(),
        [(
            "apps/web".to_owned(),
            "Warning".to_owned(),
            "StuckReleaseToggleFailed".to_owned()
        )]
    );
}

/// Runs the binary with a 60 s suspend wait and sends `signal` as soon as
/// the server sees the suspend patch (from a fault hook; no sleeping).
fn signal_during_wait(signal: &str, expected_code: i32) {
    let cluster = Cluster::start();
    cluster.seed(stuck_pending("apps", "web"));
    cluster.seed(stuck_pending("apps", "other"));
    let pid = Arc::new(AtomicU32::new(0));
    let hook_pid = Arc::clone(&pid);
    let signal_name = signal.to_owned();
    cluster.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .name("web")
            .nth(1)
            .hook(Arc::new(move |_| {
                let pid = hook_pid.load(Ordering::SeqCst);
                let _ = std::process::Command::new("kill")
                    .arg(format!("-{signal_name}"))
                    .arg(pid.to_string())
                    .status();
            })),
    );
    let started = Instant::now();
    let child = cluster
        .std_cmd()
        .args(["--suspend-wait", "60s", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary starts");
    pid.store(child.id(), Ordering::SeqCst);
    let out = child.wait_with_output().expect("binary ends");
    assert_eq!(out.status.code(), Some(expected_code), "{}", describe(&out));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the wait was cut short"
    );

    let report = json_report(&out);
    assert_eq!(report["exitCode"], expected_code);
    for name in ["web", "other"] {
        let hr = cluster.hr("apps", name);
        assert_eq!(hr["spec"].get("suspend"), None, "{name} resumed");
        assert_eq!(annotation(&hr, SUSPENDED_AT), None, "{name} marker removed");
    }
    let resumes = cluster
        .hr_writes()
        .iter()
        .filter(|w| w.body.as_ref().is_some_and(is_resume))
        .count();
    let suspends = cluster
        .hr_writes()
        .iter()
        .filter(|w| w.body.as_ref().is_some_and(is_suspend))
        .count();
    assert_eq!(
        resumes, suspends,
        "everything this run suspended was resumed"
    );
}

#[test]
fn sigterm_during_the_wait_resumes_and_exits_143() {
    signal_during_wait("TERM", 143);
}

#[test]
fn sigint_during_the_wait_resumes_and_exits_130() {
    signal_during_wait("INT", 130);
}

#[test]
fn interrupted_toggle_is_resumed_and_stale_marker_cleared() {
    let cluster = Cluster::start();
    cluster.seed([
        Hr::interrupted_toggle("apps", "half").build(),
        Hr::stale_marker("apps", "stale").build(),
    ]);
    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(
        report["actions"],
        json!([
            {"namespace": "apps", "name": "half", "branch": "resume", "reason": "interrupted-toggle", "result": "succeeded", "error": null, "blocks": []},
            {"namespace": "apps", "name": "stale", "branch": "clear-marker", "reason": "stale-marker", "result": "succeeded", "error": null, "blocks": []}
        ])
    );
    let half = cluster.hr("apps", "half");
    assert_eq!(half["spec"].get("suspend"), None);
    assert_eq!(annotation(&half, SUSPENDED_AT), None);
    assert!(annotation(&half, REQUESTED_AT).is_some());
    let stale = cluster.hr("apps", "stale");
    assert_eq!(annotation(&stale, SUSPENDED_AT), None);
    assert_eq!(
        annotation(&stale, TOGGLED_AT),
        None,
        "clear-marker touches nothing else"
    );
    assert_eq!(
        cluster.events(),
        [(
            "apps/half".to_owned(),
            "Normal".to_owned(),
            "InterruptedToggleResumed".to_owned()
        )],
        "clear-marker emits no Event"
    );
    // No Helm storage read for repairs.
    assert!(
        !cluster
            .requests()
            .iter()
            .any(|r| r.resource.as_deref() == Some("secrets"))
    );
}

#[test]
fn sigterm_while_listing_starts_nothing_and_exits_143() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    let pid = Arc::new(AtomicU32::new(0));
    let hook_pid = Arc::clone(&pid);
    cluster.add_fault(
        Fault::on("GET", "helmreleases", None)
            .delay(Duration::from_secs(20))
            .hook(Arc::new(move |_| {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(hook_pid.load(Ordering::SeqCst).to_string())
                    .status();
            })),
    );
    let child = cluster
        .std_cmd()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary starts");
    pid.store(child.id(), Ordering::SeqCst);
    let out = child.wait_with_output().expect("binary ends");
    assert_eq!(out.status.code(), Some(143), "{}", describe(&out));
    assert!(
        stdout(&out).ends_with("guardrail=ok dry-run=none\n"),
        "report printed: {}",
        describe(&out)
    );
    assert!(cluster.hr_writes().is_empty());
}

#[test]
fn a_resume_that_landed_but_lost_its_answer_is_not_a_failure() {
    let cluster = Cluster::start();
    cluster.seed(stuck_pending("apps", "web"));
    // The resume (PATCH 2) is applied, but its answer is lost; the read-back
    // shows our own toggled-at, so it is never sent again.
    let server = Arc::downgrade(&cluster.server);
    cluster.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .nth(2)
            .drop_connection()
            .hook(Arc::new(move |r| {
                if let (Some(server), Some(body)) = (server.upgrade(), r.body.clone()) {
                    let mut hr = server.helmrelease("apps", "web").unwrap_or_default();
                    merge(&mut hr, &body);
                    let _ = server.apply(hr);
                }
            })),
    );
    let out = cluster.run(&["--suspend-wait", "1ms", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        json_report(&out)["actions"][0]["result"],
        "succeeded",
        "{}",
        describe(&out)
    );
    let statuses: Vec<u16> = cluster.hr_writes().iter().map(|w| w.status).collect();
    assert_eq!(statuses, [200, 0], "no blind re-send of an applied write");
}

/// RFC 7386 JSON merge patch, for a hook that applies a write by hand.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}
