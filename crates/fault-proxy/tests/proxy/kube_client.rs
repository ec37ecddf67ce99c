//! Each action, seen by a kube-rs client (rustls) through the proxy, and
//! checked against the fake server's own state and request log.

use fault_proxy::{Action, ActionKind, Outcome, Reply, Rule};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn unmatched_requests_are_forwarded_and_recorded() {
    let s = setup();
    let c = client(&s.kubeconfig).await;
    let a = send(
        &c,
        "GET",
        &format!("{}?resourceVersion=0", hr_path("apps", "podinfo")),
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.body["metadata"]["name"], "podinfo");
    let a = send(&c, "GET", &hr_path("apps", "missing"), None)
        .await
        .unwrap();
    assert_eq!(a.status, 404, "the upstream's refusal passes through");

    let log = s.proxy.requests();
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, hr_path("apps", "podinfo"));
    assert_eq!(log[0].query.as_deref(), Some("resourceVersion=0"));
    assert_eq!(log[0].resource.as_deref(), Some("helmreleases"));
    assert_eq!(log[0].name.as_deref(), Some("podinfo"));
    assert_eq!((log[0].rule, log[0].action), (None, ActionKind::Forward));
    assert!(log[0].forwarded);
    assert_eq!(log[0].upstream_status, Some(200));
    assert_eq!(log[0].outcome, Outcome::Answered(200));
    assert_eq!(log[1].status(), Some(404));
    // The token passed through: the server saw the admin.
    assert!(s.fake.requests().iter().all(|r| r.user == "admin"));
}

#[tokio::test]
async fn rustls_trusts_a_leaf_signed_by_an_openssl_ca() {
    let s = setup_with(openssl_ca());
    let c = client(&s.kubeconfig).await;
    let a = send(&c, "GET", &hr_path("apps", "podinfo"), None)
        .await
        .unwrap();
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn forward_then_504_commits_and_hides_the_answer() {
    let s = setup();
    let rule = s.proxy.add_rule(
        Rule::new(Action::forward_then_timeout())
            .method("PATCH")
            .resource("helmreleases")
            .main_resource()
            .first(1),
    );
    let c = client(&s.kubeconfig).await;
    let a = patch_label(&c, "504").await.unwrap();
    assert_eq!(a.status, 504);
    assert_eq!(a.body["kind"], "Status");
    assert_eq!(a.body["reason"], "Timeout");
    assert_eq!(a.body["code"], 504);
    assert_eq!(
        label(&s.fake).as_deref(),
        Some("504"),
        "the write committed"
    );

    s.proxy.wait_fired_async(rule, 1, DEADLINE).await.unwrap();
    let ex = &s.proxy.requests_of(rule)[0];
    assert!(ex.forwarded);
    assert_eq!(ex.upstream_status, Some(200));
    assert_eq!(ex.outcome, Outcome::Answered(504));
    assert!(ex.body.contains("\"fault\":\"504\""), "{}", ex.body);

    // first(1): the next write is answered by the server.
    let a = patch_label(&c, "second").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(s.proxy.stats(rule).matched, 2);
    assert_eq!(s.proxy.fired(rule), 1);
}

#[tokio::test]
async fn forward_then_drop_commits_and_closes_the_connection() {
    let s = setup();
    let rule = s.proxy.add_rule(
        Rule::new(Action::ForwardThenDrop)
            .method("PATCH")
            .name("podinfo")
            .nth(1),
    );
    let c = client(&s.kubeconfig).await;
    let err = patch_label(&c, "dropped").await.unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "a connection error, not an answer: {err:?}"
    );
    assert_eq!(
        label(&s.fake).as_deref(),
        Some("dropped"),
        "the write committed"
    );
    s.proxy.wait_fired_async(rule, 1, DEADLINE).await.unwrap();
    let ex = &s.proxy.requests_of(rule)[0];
    assert_eq!(
        (ex.forwarded, ex.upstream_status, &ex.outcome),
        (true, Some(200), &Outcome::Dropped)
    );
    // The client connects anew and goes on.
    assert_eq!(patch_label(&c, "after").await.unwrap().status, 200);
}

#[tokio::test]
async fn respond_429_is_not_forwarded_and_carries_retry_after() {
    let s = setup();
    let rule = s.proxy.add_rule(
        Rule::new(Action::Respond(Reply::too_many_requests(7)))
            .method("PATCH")
            .first(1),
    );
    let apf = s.proxy.add_rule(
        Rule::new(Action::Respond(Reply::apf_rejected(2)))
            .method("PATCH")
            .nth(2),
    );
    let c = client(&s.kubeconfig).await;
    let a = patch_label(&c, "429").await.unwrap();
    assert_eq!(a.status, 429);
    assert_eq!(a.headers["retry-after"], "7");
    assert_eq!(a.body["kind"], "Status");
    assert_eq!(a.body["reason"], "TooManyRequests");
    assert_eq!(a.body["details"]["retryAfterSeconds"], 7);

    // `rule` no longer selects the second PATCH; `apf` does (its 2nd match).
    let a = patch_label(&c, "apf").await.unwrap();
    assert_eq!(a.status, 429);
    assert_eq!(a.headers["retry-after"], "2");
    assert_eq!(a.text, "Too many requests, please try again later.\n");
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    assert_eq!(label(&s.fake), None, "nothing applied");
    assert!(
        s.fake.requests().iter().all(|r| r.method != "PATCH"),
        "the server never saw a PATCH"
    );
    assert_eq!((s.proxy.fired(rule), s.proxy.fired(apf)), (1, 1));
    for ex in s.proxy.requests() {
        assert!(!ex.forwarded);
        assert_eq!(ex.upstream_status, None);
        assert_eq!(ex.status(), Some(429));
    }
}

#[tokio::test]
async fn conflict_and_internal_error_by_body_and_occurrence() {
    let s = setup();
    // The 2nd status PATCH that carries `history` gets 500; every status
    // PATCH carrying Ready=True gets a 409.
    let history = s.proxy.add_rule(
        Rule::new(Action::Respond(Reply::internal_error()))
            .method("PATCH")
            .subresource("status")
            .body_contains("history")
            .nth(2),
    );
    let ready = s.proxy.add_rule(
        Rule::new(Action::Respond(Reply::conflict()))
            .method("PATCH")
            .subresource("status")
            .when(|r| {
                r.body_json()
                    .and_then(|v| v.pointer("/status/conditions").cloned())
                    .and_then(|c| c.as_array().cloned())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|x| x["type"] == "Ready" && x["status"] == "True")
                    })
            }),
    );
    let c = client(&s.kubeconfig).await;
    let status_path = format!("{}/status", hr_path("apps", "podinfo"));
    let history_patch =
        |n: u64| json!({"status": {"lastAttemptedRevision": format!("history-{n}")}});
    let mut codes = Vec::new();
    for n in 1..=3 {
        let a = send(&c, "PATCH", &status_path, Some(history_patch(n)))
            .await
            .unwrap();
        codes.push(a.status);
    }
    assert_eq!(codes, [200, 500, 200]);
    let ready_patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "reason": "InstallSucceeded", "message": "ok", "lastTransitionTime": "2026-12-04T10:00:00Z"}]}});
    let a = send(&c, "PATCH", &status_path, Some(ready_patch))
        .await
        .unwrap();
    assert_eq!(a.status, 409);
    assert_eq!(a.body["reason"], "Conflict");
    assert_eq!(a.body["details"]["name"], "podinfo");
    let hr = s.fake.helmrelease("apps", "podinfo").unwrap();
    assert_eq!(hr["status"]["conditions"][0]["status"], "Unknown");
    assert_eq!(hr["status"]["lastAttemptedRevision"], "history-3");
    assert_eq!(
        (s.proxy.stats(history).matched, s.proxy.fired(history)),
        (3, 1)
    );
    assert_eq!(s.proxy.fired(ready), 1);
    // The main resource is not the status subresource.
    assert_eq!(patch_label(&c, "main").await.unwrap().status, 200);
}

#[tokio::test]
async fn hold_then_release_forwards() {
    let s = setup();
    let rule = s.proxy.add_rule(Rule::new(Action::Hold).method("PATCH"));
    let c = client(&s.kubeconfig).await;
    let task = tokio::spawn({
        let c = c.clone();
        async move { patch_label(&c, "held").await }
    });
    let held = s.proxy.wait_held_async(rule, DEADLINE).await.unwrap();
    assert_eq!(held.request.method, "PATCH");
    assert!(held.client_connected);
    assert!(held.request.body_text().contains("held"));
    assert_eq!(label(&s.fake), None, "not forwarded while held");
    assert!(s.fake.requests().iter().all(|r| r.method != "PATCH"));
    assert_eq!(s.proxy.requests()[0].outcome, Outcome::Held);

    s.proxy.release(held.id, Action::Forward).unwrap();
    let a = task.await.unwrap().unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(label(&s.fake).as_deref(), Some("held"));
    assert!(s.proxy.held().is_empty());
    assert!(s.proxy.release(held.id, Action::Forward).is_err());
}

#[tokio::test]
async fn hold_then_release_drops_or_answers() {
    let s = setup();
    let rule = s.proxy.add_rule(Rule::new(Action::Hold).method("PATCH"));
    let c = client(&s.kubeconfig).await;

    let task = tokio::spawn({
        let c = c.clone();
        async move { patch_label(&c, "one").await }
    });
    let held = s.proxy.wait_held_async(rule, DEADLINE).await.unwrap();
    s.proxy.release(held.id, Action::Drop).unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");
    assert_eq!(label(&s.fake), None, "dropped unforwarded");

    let task = tokio::spawn({
        let c = c.clone();
        async move { patch_label(&c, "two").await }
    });
    let held = s.proxy.wait_held_async(rule, DEADLINE).await.unwrap();
    s.proxy
        .release(held.id, Action::ForwardThenRespond(Reply::timeout()))
        .unwrap();
    assert_eq!(task.await.unwrap().unwrap().status, 504);
    assert_eq!(label(&s.fake).as_deref(), Some("two"));

    let log = s.proxy.requests();
    assert_eq!(log[0].outcome, Outcome::Dropped);
    assert_eq!(log[0].action, ActionKind::Drop);
    assert_eq!(log[1].action, ActionKind::ForwardThenRespond);
    assert_eq!(log[1].upstream_status, Some(200));
}

/// Each event reaches the client while the watch stays open: the proxy
/// streams, it does not buffer.
#[tokio::test]
async fn a_watch_streams_through() {
    use futures::StreamExt;
    use kube::api::{Api, DynamicObject, WatchEvent, WatchParams};
    use kube::discovery::ApiResource;

    let (stub, proxy, kubeconfig) = stub_setup();
    let c = client(&kubeconfig).await;
    let ar = ApiResource {
        group: "helm.toolkit.fluxcd.io".into(),
        version: "v2".into(),
        api_version: HR_API.into(),
        kind: "HelmRelease".into(),
        plural: "helmreleases".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(c, "apps", &ar);
    let mut stream = api
        .watch(&WatchParams::default().timeout(60), "0")
        .await
        .unwrap()
        .boxed();
    // The watch is open (its head answered) before anything is sent.
    proxy
        .wait_requests_async(DEADLINE, |log| {
            log.iter()
                .any(|e| e.watch && e.outcome == Outcome::Answered(200))
        })
        .await
        .unwrap();
    for n in 1..=3 {
        let event = json!({"type": "MODIFIED", "object": {"apiVersion": HR_API, "kind": "HelmRelease",
            "metadata": {"name": "podinfo", "namespace": "apps", "resourceVersion": n.to_string(),
                "labels": {"fault": format!("w{n}")}}}});
        assert_eq!(stub.send(&event.to_string()), 1, "one open watch upstream");
        let ev = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("an event within the deadline")
            .expect("stream open")
            .unwrap();
        match ev {
            WatchEvent::Modified(o) => {
                assert_eq!(o.metadata.labels.unwrap()["fault"], format!("w{n}"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let log = proxy.requests();
    assert_eq!(log.len(), 1, "one long-lived request: {log:#?}");
    assert!(log[0].watch);
    assert_eq!(log[0].outcome, Outcome::Answered(200));
}

#[tokio::test]
async fn rules_change_at_run_time() {
    let s = setup();
    let c = client(&s.kubeconfig).await;
    let delay = s.proxy.add_rule(
        Rule::new(Action::Delay(std::time::Duration::from_millis(50)))
            .method("GET")
            .occurrence(fault_proxy::Occurrence::Range {
                from: 2,
                count: Some(2),
            }),
    );
    let refuse = s
        .proxy
        .add_rule(Rule::new(Action::Respond(Reply::status(503).retry_after(1))).method("GET"));
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            send(&c, "GET", &hr_path("apps", "podinfo"), None)
                .await
                .unwrap()
                .status,
        );
    }
    // 1st: refused; 2nd and 3rd: delayed then forwarded; 4th: refused.
    assert_eq!(codes, [503, 200, 200, 503]);
    assert_eq!(s.proxy.fired(delay), 2);
    assert_eq!(
        s.proxy.stats(refuse),
        fault_proxy::RuleStats {
            matched: 4,
            fired: 2
        }
    );
    let actions: Vec<_> = s.proxy.requests().iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            ActionKind::Respond,
            ActionKind::Delay,
            ActionKind::Delay,
            ActionKind::Respond
        ]
    );

    s.proxy.remove_rule(refuse);
    assert_eq!(
        send(&c, "GET", &hr_path("apps", "podinfo"), None)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        s.proxy.stats(refuse).matched,
        4,
        "a removed rule counts no more"
    );
    s.proxy.clear_rules();
    s.proxy.clear_requests();
    assert!(s.proxy.requests().is_empty());

    // A wait that cannot be met fails at its deadline, saying what it saw.
    let err = s
        .proxy
        .wait_fired_async(refuse, 10, std::time::Duration::from_millis(100))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("rule 2 to fire 10 times"), "{err}");
}

#[test]
fn kubeconfig_through_refuses_client_certificates() {
    let s = setup();
    let (cert, key) = s.fake.client_certificate("admin").unwrap();
    use base64::Engine;
    let b64 = |p: &str| base64::engine::general_purpose::STANDARD.encode(p);
    let kc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": s.fake.url(), "certificate-authority-data": b64(s.fake.ca_pem())}}],
        "users": [{"name": "cert-user", "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "cert-user"}}],
        "current-context": "c",
    });
    let err = s
        .proxy
        .kubeconfig_through(&kc.to_string())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cert-user") && err.contains("client certificate"),
        "{err}"
    );
    // The token kubeconfig points at the proxy, with the proxy's CA.
    assert!(s.kubeconfig.contains(&s.proxy.url()));
    assert!(!s.kubeconfig.contains(&s.fake.url()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_and_large_answers_pass_whole() {
    let s = setup();
    s.fake
        .apply_all((0..500).map(|i| hr(&format!("ns{}", i % 10), &format!("hr{i}"))))
        .unwrap();
    let c = client(&s.kubeconfig).await;
    let lists = (0..16).map(|_| {
        let c = c.clone();
        tokio::spawn(async move {
            send(
                &c,
                "GET",
                "/apis/helm.toolkit.fluxcd.io/v2/helmreleases",
                None,
            )
            .await
            .unwrap()
        })
    });
    for l in lists {
        let a = l.await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.body["items"].as_array().unwrap().len(), 501);
    }
    let log = s.proxy.requests();
    assert_eq!(log.len(), 16);
    assert!(log.iter().all(|e| e.status() == Some(200) && e.forwarded));
}
