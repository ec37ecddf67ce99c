//! Writes whose answers do not say what happened (issue 10, point 6):
//! apply-then-error, apply-then-drop, 429/503 with `Retry-After`, and a
//! concurrent writer that turns a resourceVersion precondition into a
//! genuine 409. Each with a real kube `Client`, kubectl, and scenario files
//! through the `fake-apiserver serve` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Kubectl, MERGE, hr_path, raw, server};
use fake_apiserver::faults::{OTHER_WRITER, parse_scenario};
use fake_apiserver::{FakeApiServer, Fault, FaultAction, RecordedRequest};
use serde_json::{Value, json};

const TIMEOUT_MESSAGE: &str =
    "Timeout: request did not complete within requested timeout - context deadline exceeded";
const CONFLICT_MESSAGE: &str = "Operation cannot be fulfilled on helmreleases.helm.toolkit.fluxcd.io \"web\": the object has been modified; please apply your changes to the latest version and try again";

/// A kube client for `user`; `retry` is kube's built-in retry (429/503/504).
async fn kube_client(s: &FakeApiServer, user: &str, retry: bool) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&s.kubeconfig(user)).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.default_retry = retry;
    kube::Client::try_from(cfg).unwrap()
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A merge patch setting `spec.suspend` with a resourceVersion precondition.
fn suspend_if(rv: &str) -> Value {
    json!({"metadata": {"resourceVersion": rv}, "spec": {"suspend": true}})
}

fn patches(s: &FakeApiServer) -> Vec<RecordedRequest> {
    s.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect()
}

/// (user, status, fault) of every PATCH in the log.
fn patch_log(s: &FakeApiServer) -> Vec<(String, u16, Option<String>)> {
    patches(s)
        .into_iter()
        .map(|r| (r.user, r.status, r.fault))
        .collect()
}

fn entry(user: &str, status: u16, fault: Option<&str>) -> (String, u16, Option<String>) {
    (user.to_string(), status, fault.map(str::to_string))
}

#[tokio::test]
async fn apply_then_timeout_commits_the_write_and_answers_the_real_504() {
    let s = server();
    let before = s.helmrelease("apps", "web").unwrap();
    let rv0 = rv(&before);
    let c = kube_client(&s, "admin", false).await;
    s.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .times(1)
            .apply_then_timeout(),
    );
    let (code, st) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(suspend_if(&rv0)),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            code,
            &st["kind"],
            &st["reason"],
            &st["code"],
            &st["message"]
        ),
        (
            504,
            &json!("Status"),
            &json!("Timeout"),
            &json!(504),
            &json!(TIMEOUT_MESSAGE)
        ),
        "{st}"
    );
    // The next GET shows the write landed: suspended, resourceVersion bumped.
    let (code, after) = raw(&c, "GET", &hr_path("apps", "web"), &[], None)
        .await
        .unwrap();
    assert_eq!((code, &after["spec"]["suspend"]), (200, &json!(true)));
    assert_ne!(rv(&after), rv0);
    assert_eq!(s.helmrelease("apps", "web").unwrap(), after);
    assert_eq!(
        patch_log(&s),
        vec![entry("admin", 504, Some("applied 200, answered 504"))]
    );
    // The same write re-sent (what a blind retry does) meets our own write.
    let (code, st) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(suspend_if(&rv0)),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, &st["reason"], &st["message"]),
        (409, &json!("Conflict"), &json!(CONFLICT_MESSAGE))
    );
}

#[tokio::test]
async fn with_kubes_default_retry_the_504_resend_meets_409() {
    let s = server();
    let rv0 = rv(&s.helmrelease("apps", "web").unwrap());
    let c = kube_client(&s, "admin", true).await;
    s.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .times(1)
            .apply_then_respond(504),
    );
    let (code, st) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(suspend_if(&rv0)),
    )
    .await
    .unwrap();
    // The caller never sees the 504: kube re-sent the PATCH by itself and
    // answers the re-send's 409 although the write is in.
    assert_eq!((code, &st["reason"]), (409, &json!("Conflict")));
    assert_eq!(
        s.helmrelease("apps", "web").unwrap()["spec"]["suspend"],
        true
    );
    assert_eq!(
        patch_log(&s),
        vec![
            entry("admin", 504, Some("applied 200, answered 504")),
            entry("admin", 409, None)
        ]
    );
}

#[tokio::test]
async fn apply_then_respond_passes_the_servers_own_refusal_through() {
    let s = server();
    let before = s.helmrelease("apps", "web").unwrap();
    let c = kube_client(&s, "admin", false).await;
    s.add_fault(Fault::on("PATCH", "helmreleases", None).apply_then_respond(503));
    // A stale precondition is refused by the store: nothing applied, the
    // client gets the real 409, not the fault's code.
    let (code, _) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(suspend_if(&format!("{}9", rv(&before)))),
    )
    .await
    .unwrap();
    assert_eq!(code, 409);
    assert_eq!(s.helmrelease("apps", "web").unwrap(), before);
    // A good one is applied and answered 503.
    let (code, st) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(suspend_if(&rv(&before))),
    )
    .await
    .unwrap();
    assert_eq!((code, &st["reason"]), (503, &json!("ServiceUnavailable")));
    assert_eq!(
        s.helmrelease("apps", "web").unwrap()["spec"]["suspend"],
        true
    );
}

#[tokio::test]
async fn apply_then_drop_commits_the_write_and_leaves_the_client_without_an_answer() {
    let s = server();
    let rv0 = rv(&s.helmrelease("apps", "web").unwrap());
    // kube's default retry on: a dropped connection is not retried by it.
    let c = kube_client(&s, "admin", true).await;
    s.add_fault(
        Fault::on("PATCH", "helmreleases", Some("status"))
            .times(1)
            .apply_then_drop(),
    );
    let path = format!("{}/status", hr_path("apps", "web"));
    let patch = json!({"metadata": {"resourceVersion": rv0}, "status": {"failures": 7}});
    let err = raw(&c, "PATCH", &path, &[MERGE], Some(patch.clone())).await;
    assert!(err.is_err(), "a transport error, not a Status: {err:?}");
    let (code, after) = raw(&c, "GET", &hr_path("apps", "web"), &[], None)
        .await
        .unwrap();
    assert_eq!((code, &after["status"]["failures"]), (200, &json!(7)));
    assert_ne!(rv(&after), rv0);
    assert_eq!(
        patch_log(&s),
        vec![entry("admin", 0, Some("applied 200, dropped"))]
    );
    let (code, st) = raw(&c, "PATCH", &path, &[MERGE], Some(patch))
        .await
        .unwrap();
    assert_eq!(
        (code, &st["reason"]),
        (409, &json!("Conflict")),
        "the re-send meets the landed write"
    );
}

#[tokio::test]
async fn retry_after_429_and_503_carry_the_header_and_change_nothing() {
    let s = server();
    let before = s.helmrelease("apps", "web").unwrap();
    let c = kube_client(&s, "admin", false).await;
    for (code, reason) in [(429, "TooManyRequests"), (503, "ServiceUnavailable")] {
        s.clear_faults();
        s.add_fault(Fault::on("PATCH", "helmreleases", None).respond_retry_after(code, 3));
        let req = http::Request::builder()
            .method("PATCH")
            .uri(hr_path("apps", "web"))
            .header(MERGE.0, MERGE.1)
            .body(kube::client::Body::from(
                serde_json::to_vec(&suspend_if(&rv(&before))).unwrap(),
            ))
            .unwrap();
        let resp = c.send(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), code);
        assert_eq!(resp.headers()["retry-after"], "3");
        let body: Value = serde_json::from_slice(
            &http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes(),
        )
        .unwrap();
        assert_eq!(
            (
                &body["kind"],
                &body["reason"],
                &body["details"]["retryAfterSeconds"]
            ),
            (&json!("Status"), &json!(reason), &json!(3)),
            "{body}"
        );
        // Through kube's typed error too.
        let err = raw(
            &c,
            "PATCH",
            &hr_path("apps", "web"),
            &[MERGE],
            Some(suspend_if(&rv(&before))),
        )
        .await
        .unwrap();
        assert_eq!(err.0, code);
    }
    assert_eq!(
        s.helmrelease("apps", "web").unwrap(),
        before,
        "nothing applied"
    );
    assert!(patches(&s).iter().all(|r| r.fault.is_none()));
}

#[tokio::test]
async fn kubes_default_retry_waits_retry_after_and_the_resend_applies_once() {
    let s = server();
    let rv0 = rv(&s.helmrelease("apps", "web").unwrap());
    let c = kube_client(&s, "admin", true).await;
    s.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .times(1)
            .respond_retry_after(429, 1),
    );
    let t = Instant::now();
    let (code, obj) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(suspend_if(&rv0)),
    )
    .await
    .unwrap();
    let waited = t.elapsed();
    // The precondition held on the re-send: the 429 had applied nothing.
    assert_eq!((code, &obj["spec"]["suspend"]), (200, &json!(true)));
    assert!(
        waited >= Duration::from_secs(1),
        "kube honoured Retry-After: {waited:?}"
    );
    let statuses: Vec<u16> = patches(&s).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200]);
}

#[tokio::test]
async fn plain_text_429_is_what_the_apf_filter_sends() {
    let s = server();
    let before = s.helmrelease("apps", "web").unwrap();
    let c = kube_client(&s, "admin", false).await;
    s.add_fault(Fault::on("PATCH", "helmreleases", None).respond_plain_retry_after(429, 2));
    let req = http::Request::builder()
        .method("PATCH")
        .uri(hr_path("apps", "web"))
        .header(MERGE.0, MERGE.1)
        .body(kube::client::Body::from(
            b"{\"spec\":{\"suspend\":true}}".to_vec(),
        ))
        .unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"Too many requests, please try again later.\n");
    // kube's typed API turns it into an Api error it could not parse.
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        c.clone(),
        "apps",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("helm.toolkit.fluxcd.io", "v2", "HelmRelease"),
            "helmreleases",
        ),
    );
    let err = api
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(st) => assert_eq!(
            (st.code, st.reason.as_str(), st.message.as_str()),
            (
                429,
                "Failed to parse error data",
                "Too many requests, please try again later."
            )
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.helmrelease("apps", "web").unwrap(), before);
}

#[tokio::test]
async fn a_concurrent_writer_turns_the_precondition_into_a_genuine_409() {
    let s = server();
    let rv0 = rv(&s.helmrelease("apps", "web").unwrap());
    let c = kube_client(&s, "admin", false).await;
    // Our first PATCH goes through; the other writer strikes before the second.
    s.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .nth(2)
            .concurrent_write(json!({"metadata": {"annotations": {"other": "was-here"}}})),
    );
    let (code, mid) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(json!({"metadata": {"resourceVersion": rv0, "annotations": {"ours": "1"}}})),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    let rv1 = rv(&mid);
    let (code, st) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(suspend_if(&rv1)),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, &st["reason"], &st["message"], &st["details"]["name"]),
        (
            409,
            &json!("Conflict"),
            &json!(CONFLICT_MESSAGE),
            &json!("web")
        ),
        "{st}"
    );
    let now = s.helmrelease("apps", "web").unwrap();
    assert_eq!(
        now["metadata"]["annotations"],
        json!({"ours": "1", "other": "was-here"})
    );
    assert!(
        now["spec"].get("suspend").is_none(),
        "our write did not land"
    );
    assert_ne!(rv(&now), rv1, "the other writer bumped the resourceVersion");
    let log = patches(&s);
    assert_eq!(
        patch_log(&s),
        vec![
            entry("admin", 200, None),
            entry(OTHER_WRITER, 200, Some("concurrent write by other-writer")),
            entry("admin", 409, None),
        ]
    );
    assert_eq!(log[1].field_manager.as_deref(), Some(OTHER_WRITER));
    let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Re-read and retry with the new resourceVersion: it lands, theirs is kept.
    let (code, done) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(suspend_if(&rv(&now))),
    )
    .await
    .unwrap();
    assert_eq!((code, &done["spec"]["suspend"]), (200, &json!(true)));
    assert_eq!(done["metadata"]["annotations"]["other"], "was-here");
}

#[tokio::test]
async fn a_concurrent_status_writer_conflicts_a_status_patch_and_a_put() {
    let s = server();
    let before = s.helmrelease("apps", "web").unwrap();
    let c = kube_client(&s, "admin", false).await;
    s.add_fault(
        Fault::on("PATCH", "helmreleases", Some("status"))
            .times(1)
            .concurrent_status_write(json!({"status": {"failures": 3}})),
    );
    let path = format!("{}/status", hr_path("apps", "web"));
    let (code, st) = raw(
        &c,
        "PATCH",
        &path,
        &[MERGE],
        Some(json!({"metadata": {"resourceVersion": rv(&before)}, "status": {"failures": 9}})),
    )
    .await
    .unwrap();
    assert_eq!((code, &st["message"]), (409, &json!(CONFLICT_MESSAGE)));
    let now = s.helmrelease("apps", "web").unwrap();
    assert_eq!(now["status"]["failures"], 3);
    let other = &patches(&s)[0];
    assert_eq!(
        (
            other.user.as_str(),
            other.subresource.as_deref(),
            other.path.as_str()
        ),
        (OTHER_WRITER, Some("status"), path.as_str())
    );
    // A PUT of the object as read before meets the same genuine conflict.
    s.add_fault(
        Fault::on("PUT", "helmreleases", None)
            .times(1)
            .concurrent_write(json!({"metadata": {"labels": {"x": "y"}}})),
    );
    let mut put = now.clone();
    put["spec"]["suspend"] = json!(true);
    let (code, _) = raw(
        &c,
        "PUT",
        &hr_path("apps", "web"),
        &[("content-type", "application/json")],
        Some(put),
    )
    .await
    .unwrap();
    assert_eq!(code, 409);
    assert_eq!(
        s.helmrelease("apps", "web").unwrap()["metadata"]["labels"]["x"],
        "y"
    );
}

#[test]
fn kubectl_sees_the_504_while_the_patch_landed() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.33");
    s.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .times(1)
            .apply_then_timeout(),
    );
    let err = k.fails(&[
        "patch",
        "helmrelease",
        "web",
        "-n",
        "apps",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    assert!(
        err.contains(&format!("Error from server (Timeout): {TIMEOUT_MESSAGE}")),
        "{err}"
    );
    let got = k.ok(&[
        "get",
        "helmrelease",
        "web",
        "-n",
        "apps",
        "-o",
        "jsonpath={.spec.suspend}",
    ]);
    assert_eq!(got, "true");
}

#[test]
fn kubectl_gets_no_answer_while_the_patch_landed_and_does_not_resend_it() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.33");
    s.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .times(1)
            .apply_then_drop(),
    );
    let err = k.fails(&[
        "patch",
        "helmrelease",
        "web",
        "-n",
        "apps",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    assert!(
        !err.contains("Error from server"),
        "no Status reached kubectl: {err}"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "helmrelease",
            "web",
            "-n",
            "apps",
            "-o",
            "jsonpath={.spec.suspend}"
        ]),
        "true"
    );
    assert_eq!(
        patch_log(&s),
        vec![entry("admin", 0, Some("applied 200, dropped"))],
        "client-go re-sends no PATCH after a lost connection"
    );
}

#[test]
fn kubectl_meets_the_concurrent_writers_409_and_honours_retry_after() {
    let s = server();
    let k = Kubectl::new(&s, "admin", "1.33");
    let rv0 = rv(&s.helmrelease("apps", "web").unwrap());
    s.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .times(1)
            .concurrent_write(json!({"spec": {"interval": "7m"}})),
    );
    let err = k.fails(&[
        "patch",
        "helmrelease",
        "web",
        "-n",
        "apps",
        "--type",
        "merge",
        "-p",
        &suspend_if(&rv0).to_string(),
    ]);
    assert!(
        err.contains(&format!("Error from server (Conflict): {CONFLICT_MESSAGE}")),
        "{err}"
    );
    let now = s.helmrelease("apps", "web").unwrap();
    assert_eq!(
        (&now["spec"]["interval"], now["spec"].get("suspend")),
        (&json!("7m"), None)
    );
    // client-go waits Retry-After and re-sends; the precondition still holds.
    s.clear_faults();
    s.add_fault(
        Fault::on("PATCH", "helmreleases", None)
            .times(1)
            .respond_retry_after(429, 1),
    );
    let t = Instant::now();
    k.ok(&[
        "patch",
        "helmrelease",
        "web",
        "-n",
        "apps",
        "--type",
        "merge",
        "-p",
        &suspend_if(&rv(&now)).to_string(),
    ]);
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    let statuses: Vec<u16> = patches(&s).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 409, 429, 200]);
    assert_eq!(
        s.helmrelease("apps", "web").unwrap()["spec"]["suspend"],
        true
    );
}

#[test]
fn scenario_keys_build_each_new_action() {
    let faults = parse_scenario(
        r#"
- {method: PATCH, resource: helmreleases, applyThenRespond: true}
- {method: PATCH, resource: helmreleases, applyThenRespond: 500}
- {method: PATCH, resource: helmreleases, applyThenDrop: true}
- {method: PATCH, resource: helmreleases, respond: 429, retryAfterSeconds: 4}
- {method: PATCH, resource: helmreleases, respond: 429, retryAfterSeconds: 4, plainText: true}
- {method: PATCH, resource: helmreleases, concurrentWrite: {spec: {suspend: false}}}
- {method: PATCH, resource: helmreleases, subresource: status, concurrentStatusWrite: {status: {failures: 1}}}
"#,
    )
    .unwrap();
    let actions: Vec<FaultAction> = faults.into_iter().map(|f| f.action).collect();
    let applies: Vec<bool> = actions.iter().map(FaultAction::applies).collect();
    assert_eq!(applies, vec![true, true, true, false, false, true, true]);
    assert_eq!(
        actions,
        vec![
            FaultAction::ApplyThenRespond(504),
            FaultAction::ApplyThenRespond(500),
            FaultAction::ApplyThenDrop,
            FaultAction::RespondRetryAfter {
                code: 429,
                seconds: 4
            },
            FaultAction::RespondPlainRetryAfter {
                code: 429,
                seconds: 4
            },
            FaultAction::ConcurrentWrite(json!({"spec": {"suspend": false}})),
            FaultAction::ConcurrentStatusWrite(json!({"status": {"failures": 1}})),
        ]
    );
    for bad in [
        "- {method: PATCH, resource: helmreleases, applyThenDrop: true, respond: 500}",
        "- {method: PATCH, resource: helmreleases, retryAfterSeconds: 1}",
        "- {method: PATCH, resource: helmreleases, respond: 429, plainText: true}",
        "- {method: PATCH, resource: helmreleases, concurrentWrite: [1]}",
    ] {
        assert!(parse_scenario(bad).is_err(), "{bad}");
    }
}

/// Kills the server binary if the test panics before it stops it.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The binary with a scenario file: each new fault on its own object.
#[tokio::test]
async fn scenario_file_faults_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(
        p("faults.yaml"),
        r#"faults:
- {method: PATCH, resource: helmreleases, namespace: apps, name: web, nth: 1, applyThenRespond: true}
- {method: PATCH, resource: helmreleases, namespace: apps, name: web, nth: 2, applyThenDrop: true}
- {method: PATCH, resource: helmreleases, namespace: data, name: db, nth: 1, respond: 503, retryAfterSeconds: 2}
- {method: PATCH, resource: helmreleases, namespace: data, name: db, nth: 2, concurrentWrite: {metadata: {annotations: {other: was-here}}}}
"#,
    )
    .unwrap();
    let mut child = Serve(
        Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
            .arg("serve")
            .arg("--seed")
            .arg(common::fixture("helmreleases.yaml"))
            .arg("--kubeconfig-out")
            .arg(p("kubeconfig"))
            .arg("--scenario")
            .arg(p("faults.yaml"))
            .arg("--request-log")
            .arg(p("requests.jsonl"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut url = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let kc = kube::config::Kubeconfig::read_from(p("kubeconfig")).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    let c = kube::Client::try_from(cfg).unwrap();
    let get = |ns: &'static str, name: &'static str| {
        let c = c.clone();
        async move {
            raw(&c, "GET", &hr_path(ns, name), &[], None)
                .await
                .unwrap()
                .1
        }
    };

    let web0 = get("apps", "web").await;
    let (code, st) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(suspend_if(&rv(&web0))),
    )
    .await
    .unwrap();
    assert_eq!((code, &st["message"]), (504, &json!(TIMEOUT_MESSAGE)));
    let web1 = get("apps", "web").await;
    assert_eq!(web1["spec"]["suspend"], true, "504 after commit");
    let dropped = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(json!({"metadata": {"resourceVersion": rv(&web1)}, "spec": {"suspend": false}})),
    )
    .await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(
        get("apps", "web").await["spec"]["suspend"],
        false,
        "drop after commit"
    );

    let db0 = get("data", "db").await;
    let (code, st) = raw(
        &c,
        "PATCH",
        &hr_path("data", "db"),
        &[MERGE],
        Some(suspend_if(&rv(&db0))),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, &st["details"]["retryAfterSeconds"]),
        (503, &json!(2))
    );
    assert_eq!(get("data", "db").await, db0, "503 applied nothing");
    let (code, st) = raw(
        &c,
        "PATCH",
        &hr_path("data", "db"),
        &[MERGE],
        Some(suspend_if(&rv(&db0))),
    )
    .await
    .unwrap();
    assert_eq!((code, &st["reason"]), (409, &json!("Conflict")));
    let db = get("data", "db").await;
    assert_eq!(
        (
            &db["metadata"]["annotations"]["other"],
            db["spec"].get("suspend")
        ),
        (&json!("was-here"), None)
    );

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.0.wait().unwrap().success(), "clean exit on SIGTERM");
    let log: Vec<Value> = std::fs::read_to_string(p("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["method"] == "PATCH")
        .collect();
    let got: Vec<(u64, &Value, &Value)> = log
        .iter()
        .map(|r| (r["status"].as_u64().unwrap(), &r["user"], &r["fault"]))
        .collect();
    let admin = json!("admin");
    assert_eq!(
        got,
        vec![
            (504, &admin, &json!("applied 200, answered 504")),
            (0, &admin, &json!("applied 200, dropped")),
            (503, &admin, &Value::Null),
            (
                200,
                &json!(OTHER_WRITER),
                &json!("concurrent write by other-writer")
            ),
            (409, &admin, &Value::Null),
        ]
    );
}
