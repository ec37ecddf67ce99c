//! Acceptance 3 (faults): respond N, nth/times, delay, drop, hooks, scenario files.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{MERGE, client, hr_path, raw, server};
use fake_apiserver::{Fault, RecordedRequest, faults::parse_scenario};
use serde_json::json;

fn status_patch() -> serde_json::Value {
    json!({"status": {"failures": 9}})
}

#[tokio::test]
async fn respond_fault_answers_a_real_status_and_applies_nothing() {
    let s = server();
    let before = s.helmrelease("apps", "web").unwrap();
    let c = client(&s, "admin").await;
    for (code, reason) in [
        (500, "InternalError"),
        (409, "Conflict"),
        (403, "Forbidden"),
        (404, "NotFound"),
        (422, "Invalid"),
    ] {
        s.clear_faults();
        s.add_fault(Fault::on("PATCH", "helmreleases", Some("status")).respond(code));
        let (got, st) = raw(
            &c,
            "PATCH",
            &format!("{}/status", hr_path("apps", "web")),
            &[MERGE],
            Some(status_patch()),
        )
        .await
        .unwrap();
        assert_eq!(
            (
                got,
                st["reason"].as_str(),
                st["kind"].as_str(),
                st["code"].as_u64()
            ),
            (code, Some(reason), Some("Status"), Some(code as u64))
        );
    }
    assert_eq!(s.helmrelease("apps", "web").unwrap(), before);
    // The main resource is not matched by a status fault.
    let (code, _) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    let faulted: Vec<u16> = s
        .requests()
        .iter()
        .filter(|r| r.subresource.is_some())
        .map(|r| r.status)
        .collect();
    assert_eq!(
        faulted,
        vec![500, 409, 403, 404, 422],
        "faulted requests are logged"
    );
}

#[tokio::test]
async fn retryable_codes_are_answered_and_kube_retries_them() {
    let s = server();
    let c = client(&s, "admin").await;
    for (code, reason) in [
        (429, "TooManyRequests"),
        (503, "ServiceUnavailable"),
        (504, "Timeout"),
    ] {
        s.clear_faults();
        s.clear_requests();
        s.add_fault(
            Fault::on("GET", "helmreleases", None)
                .times(1)
                .respond(code),
        );
        // kube's client retries 429/503/504 by itself, so the caller sees the retry's answer...
        let (got, _) = raw(&c, "GET", &hr_path("apps", "web"), &[], None)
            .await
            .unwrap();
        assert_eq!(got, 200);
        // ...and the log shows the injected answer first.
        let statuses: Vec<u16> = s.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![code, 200], "{reason}");
    }
    let st = fake_apiserver::ApiError::for_code(504, None, "").to_status();
    assert_eq!(
        (st["reason"].as_str(), st["code"].as_u64()),
        (Some("Timeout"), Some(504))
    );
}

#[tokio::test]
async fn nth_fault_fails_only_the_nth_matching_request_and_times_bounds_it() {
    let s = server();
    let c = client(&s, "admin").await;
    s.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .name("web")
            .nth(2)
            .respond(500),
    );
    s.add_fault(
        Fault::on("GET", "helmreleases", None)
            .namespace("data")
            .times(2)
            .respond(500),
    );
    let mut codes = Vec::new();
    for i in 0..4 {
        let (code, _) = raw(
            &c,
            "PATCH",
            &hr_path("apps", "web"),
            &[MERGE],
            Some(json!({"metadata": {"labels": {"i": i.to_string()}}})),
        )
        .await
        .unwrap();
        codes.push(code);
    }
    assert_eq!(codes, vec![200, 500, 200, 200]);
    let mut gets = Vec::new();
    for _ in 0..3 {
        gets.push(
            raw(&c, "GET", &hr_path("data", "db"), &[], None)
                .await
                .unwrap()
                .0,
        );
    }
    assert_eq!(gets, vec![500, 500, 200]);
    assert_eq!(
        raw(&c, "GET", &hr_path("apps", "web"), &[], None)
            .await
            .unwrap()
            .0,
        200,
        "other namespace not matched"
    );
}

#[tokio::test]
async fn delay_fault_delays_then_proceeds() {
    let s = server();
    let c = client(&s, "admin").await;
    s.add_fault(Fault::on("GET", "helmreleases", None).delay(Duration::from_millis(300)));
    let t = Instant::now();
    let (code, _) = raw(&c, "GET", &hr_path("apps", "web"), &[], None)
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn drop_fault_closes_the_connection_and_does_not_apply_the_write() {
    let s = server();
    let before = s.helmrelease("apps", "web").unwrap();
    let c = client(&s, "admin").await;
    s.add_fault(
        Fault::on("PATCH", "helmreleases", Some("status"))
            .times(1)
            .drop_connection(),
    );
    let err = raw(
        &c,
        "PATCH",
        &format!("{}/status", hr_path("apps", "web")),
        &[MERGE],
        Some(status_patch()),
    )
    .await;
    assert!(
        err.is_err(),
        "the client sees a transport error, not a Status: {err:?}"
    );
    assert_eq!(s.helmrelease("apps", "web").unwrap(), before);
    let logged = s
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        logged.status, 0,
        "a dropped request is logged with status 0"
    );
    // The fault fired once; the retry goes through.
    let (code, _) = raw(
        &c,
        "PATCH",
        &format!("{}/status", hr_path("apps", "web")),
        &[MERGE],
        Some(status_patch()),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
}

#[tokio::test]
async fn hook_runs_when_the_request_arrives_before_it_is_handled() {
    let s = Arc::new(server());
    let c = client(&s, "admin").await;
    let seen: Arc<Mutex<Vec<(RecordedRequest, serde_json::Value)>>> = Arc::default();
    let (seen2, s2) = (seen.clone(), Arc::downgrade(&s));
    s.add_fault(Fault::on("PATCH", "helmreleases", None).hook(Arc::new(
        move |r: &RecordedRequest| {
            let stored = s2
                .upgrade()
                .and_then(|s| s.helmrelease("apps", "web"))
                .unwrap_or_default();
            seen2.lock().unwrap().push((r.clone(), stored));
        },
    )));
    let (code, _) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0.body, Some(json!({"spec": {"suspend": true}})));
    assert!(
        seen[0].1["spec"].get("suspend").is_none(),
        "the hook ran before the write"
    );
    assert_eq!(
        s.helmrelease("apps", "web").unwrap()["spec"]["suspend"],
        true
    );
}

#[tokio::test]
async fn hook_combines_with_respond() {
    let s = server();
    let c = client(&s, "admin").await;
    let hits = Arc::new(Mutex::new(0));
    let h = hits.clone();
    s.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .respond(500)
            .hook(Arc::new(move |_| *h.lock().unwrap() += 1)),
    );
    assert_eq!(
        raw(
            &c,
            "PATCH",
            &hr_path("apps", "web"),
            &[MERGE],
            Some(json!({"spec": {"suspend": true}}))
        )
        .await
        .unwrap()
        .0,
        500
    );
    assert_eq!(*hits.lock().unwrap(), 1);
}

#[test]
fn scenario_file_faults_parse_with_each_action() {
    let faults = parse_scenario(
        r#"
- {method: PATCH, resource: helmreleases, subresource: status, namespace: apps, name: web, nth: 1, respond: 500}
- {method: GET, resource: secrets, delayMs: 250}
- {method: PATCH, resource: helmreleases, times: 2, drop: true}
"#,
    )
    .unwrap();
    assert_eq!(faults.len(), 3);
    assert_eq!(faults[0].action, fake_apiserver::FaultAction::Respond(500));
    assert_eq!(
        faults[1].action,
        fake_apiserver::FaultAction::Delay(Duration::from_millis(250))
    );
    assert_eq!(faults[2].action, fake_apiserver::FaultAction::Drop);
    assert!(
        parse_scenario("- {method: GET, resource: secrets, respond: 500, drop: true}").is_err()
    );
    assert!(parse_scenario("- {method: GET, resource: secrets, typo: 1}").is_err());
}
