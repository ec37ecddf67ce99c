//! The pinned kubectl (client-go, Go's TLS, ALPN h2 + http/1.1) through the
//! proxy: it falls back to HTTP/1.1, trusts the proxy's leaf, and sees each
//! fault as a Go client sees it.

use fault_proxy::{Action, ActionKind, Outcome, Reply, Rule};

use crate::support::*;

const PATCH: &[&str] = &[
    "patch",
    "helmrelease",
    "podinfo",
    "-n",
    "apps",
    "--type",
    "merge",
    "-p",
];

fn patch_args(value: &str) -> Vec<String> {
    PATCH
        .iter()
        .map(|s| s.to_string())
        .chain([format!(
            r#"{{"metadata":{{"labels":{{"fault":"{value}"}}}}}}"#
        )])
        .collect()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn kubectl_works_through_the_proxy() {
    let s = setup();
    let k = Kubectl::new(&s.kubeconfig);
    let out = k.ok(&["get", "helmreleases", "-A", "-o", "name"]);
    assert!(
        out.contains("helmrelease.helm.toolkit.fluxcd.io/podinfo"),
        "{out}"
    );
    let log = s.proxy.requests();
    assert!(
        log.iter().any(|e| e.path == "/apis"),
        "discovery went through: {log:#?}"
    );
    assert!(log.iter().any(
        |e| e.path == "/apis/helm.toolkit.fluxcd.io/v2/helmreleases" && e.status() == Some(200)
    ));
    assert!(log.iter().all(|e| e.forwarded && e.rule.is_none()));
}

/// Go's verifier finds the issuer by the exact bytes of its name: a leaf
/// signed by a CA rcgen did not make must still chain.
#[test]
fn kubectl_trusts_a_leaf_signed_by_an_openssl_ca() {
    let s = setup_with(openssl_ca());
    let k = Kubectl::new(&s.kubeconfig);
    let out = k.ok(&["get", "helmreleases", "-n", "apps", "-o", "name"]);
    assert!(out.contains("podinfo"), "{out}");
}

#[test]
fn kubectl_patch_forward_then_504() {
    let s = setup();
    let rule = s.proxy.add_rule(
        Rule::new(Action::forward_then_timeout())
            .method("PATCH")
            .resource("helmreleases")
            .first(1),
    );
    let k = Kubectl::new(&s.kubeconfig);
    let err = k.fails(&args(&patch_args("k504")));
    assert!(err.contains("Timeout"), "{err}");
    assert_eq!(
        label(&s.fake).as_deref(),
        Some("k504"),
        "the write committed"
    );
    s.proxy.wait_fired(rule, 1, DEADLINE).unwrap();
    let ex = &s.proxy.requests_of(rule)[0];
    assert_eq!((ex.upstream_status, ex.status()), (Some(200), Some(504)));
    assert_eq!(
        s.fake
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count(),
        1,
        "not re-sent"
    );
}

#[test]
fn kubectl_patch_forward_then_drop() {
    let s = setup();
    let rule = s
        .proxy
        .add_rule(Rule::new(Action::ForwardThenDrop).method("PATCH").first(1));
    let k = Kubectl::new(&s.kubeconfig);
    let err = k.fails(&args(&patch_args("kdrop")));
    assert!(err.contains("EOF") || err.contains("connection"), "{err}");
    assert_eq!(
        label(&s.fake).as_deref(),
        Some("kdrop"),
        "the write committed"
    );
    s.proxy.wait_fired(rule, 1, DEADLINE).unwrap();
    assert_eq!(s.proxy.requests_of(rule)[0].outcome, Outcome::Dropped);
    assert_eq!(
        s.fake
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count(),
        1,
        "not re-sent"
    );
}

#[test]
fn kubectl_honours_429_retry_after() {
    let s = setup();
    let rule = s.proxy.add_rule(
        Rule::new(Action::Respond(Reply::too_many_requests(1)))
            .method("PATCH")
            .first(1),
    );
    let k = Kubectl::new(&s.kubeconfig);
    k.ok(&args(&patch_args("k429")));
    assert_eq!(s.proxy.fired(rule), 1);
    let patches: Vec<_> = s
        .proxy
        .requests()
        .into_iter()
        .filter(|e| e.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2, "{patches:#?}");
    assert_eq!(
        (patches[0].forwarded, patches[0].status()),
        (false, Some(429))
    );
    assert_eq!(
        (patches[1].forwarded, patches[1].status()),
        (true, Some(200))
    );
    assert_eq!(
        s.fake
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count(),
        1
    );
    assert_eq!(label(&s.fake).as_deref(), Some("k429"));
}

/// Issue 20's "hold the status PATCH, SIGKILL the client, drop the request",
/// and its variant where the request reaches the server after all.
#[test]
fn kubectl_killed_while_its_request_is_held() {
    let s = setup();
    let rule = s.proxy.add_rule(Rule::new(Action::Hold).method("PATCH"));
    let k = Kubectl::new(&s.kubeconfig);

    let mut child = k.spawn(&args(&patch_args("lost")));
    let held = s.proxy.wait_held(rule, DEADLINE).unwrap();
    let first = held.id;
    child.kill();
    s.proxy.wait_client_gone(held.id, DEADLINE).unwrap();
    assert!(!s.proxy.held()[0].client_connected);
    s.proxy.release(held.id, Action::Drop).unwrap();
    assert_eq!(label(&s.fake), None);

    let mut child = k.spawn(&args(&patch_args("late")));
    let held = s.proxy.wait_held(rule, DEADLINE).unwrap();
    child.kill();
    s.proxy.wait_client_gone(held.id, DEADLINE).unwrap();
    s.proxy.release(held.id, Action::Forward).unwrap();
    let log = s
        .proxy
        .wait_requests(DEADLINE, |log| {
            log.iter()
                .any(|e| e.id == held.id && e.upstream_status.is_some())
        })
        .unwrap();
    let ex = log.iter().find(|e| e.id == held.id).unwrap();
    assert_eq!(
        (ex.action, ex.forwarded, ex.upstream_status, &ex.outcome),
        (ActionKind::Forward, true, Some(200), &Outcome::ClientGone)
    );
    assert_eq!(
        label(&s.fake).as_deref(),
        Some("late"),
        "applied after its client died"
    );
    let first = log.iter().find(|e| e.id == first).unwrap();
    assert_eq!(
        (first.action, first.forwarded, &first.outcome),
        (ActionKind::Drop, false, &Outcome::ClientGone)
    );
}

/// kubectl's raw GET of a watch prints each event as it arrives.
#[test]
fn kubectl_watch_streams_through() {
    let (stub, proxy, kubeconfig) = stub_setup();
    let k = Kubectl::new(&kubeconfig);
    let (_watch, lines) = k.spawn_lines(&[
        "get",
        "--raw",
        "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases?watch=true",
    ]);
    proxy
        .wait_requests(DEADLINE, |log| {
            log.iter()
                .any(|e| e.watch && e.outcome == Outcome::Answered(200))
        })
        .unwrap();
    for n in 1..=3 {
        let line = format!(r#"{{"type":"MODIFIED","object":{{"n":{n}}}}}"#);
        assert_eq!(stub.send(&line), 1);
        let got = lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("no watch line {n}: {e}"));
        assert_eq!(got, line);
    }
    assert_eq!(proxy.requests().len(), 1, "one streamed watch");
}
