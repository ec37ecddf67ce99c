//! The fake API server where a client notices the difference (issue 11,
//! point 5), driven by the real kubectl 1.33: `--as` impersonates under
//! RBAC (the `impersonate` verb) or is refused with 403, never ignored;
//! `kubectl auth can-i` (SelfSubjectAccessReview) and `can-i --list`
//! (SelfSubjectRulesReview) are answered from the loaded `rbac/`.

use std::path::Path;
use std::process::{Command, Output};

use crate::chart_support::{kubectl_1_33, run};
use crate::common::*;

fn kubectl(dir: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    run(Command::new(kubectl_1_33())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(dir.join("kube-cache"))
        .args(args))
}

#[test]
fn kubectl_as_a_service_account_runs_with_its_rbac_not_as_admin() {
    let cluster = Cluster::start_with(|c| c, "admin");
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let admin = cluster.kubeconfig();

    let own = kubectl(dir.path(), admin, &["get", "configmaps", "-n", "apps"]);
    assert!(
        own.status.success(),
        "admin may list configmaps: {}",
        describe(&own)
    );

    let as_sa = kubectl(
        dir.path(),
        admin,
        &["get", "configmaps", "-n", "apps", "--as", SA_USER],
    );
    let stderr = String::from_utf8_lossy(&as_sa.stderr);
    assert!(
        !as_sa.status.success(),
        "the service account may not: {}",
        describe(&as_sa)
    );
    assert!(
        stderr.contains(&format!(
            "User \"{SA_USER}\" cannot list resource \"configmaps\""
        )),
        "{stderr}"
    );

    let granted = kubectl(
        dir.path(),
        admin,
        &[
            "get",
            "helmreleases",
            "-n",
            "apps",
            "--as",
            SA_USER,
            "-o",
            "name",
        ],
    );
    assert!(granted.status.success(), "{}", describe(&granted));
    assert!(String::from_utf8_lossy(&granted.stdout).contains("calm"));
    let users: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("helmreleases"))
        .map(|r| r.user)
        .collect();
    assert_eq!(
        users,
        vec![SA_USER.to_owned()],
        "logged as the impersonated user"
    );
}

#[test]
fn impersonation_without_the_impersonate_verb_is_403() {
    let cluster = Cluster::start_with(|c| c.user("alice", &[]), "alice");
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = kubectl(
        dir.path(),
        cluster.kubeconfig(),
        &[
            "get",
            "--raw",
            "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases",
            "--as",
            "admin",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr.contains("User \"alice\" cannot impersonate resource \"users\""),
        "{stderr}"
    );
    assert!(
        cluster.requests().iter().all(|r| r.status == 403),
        "nothing ran as admin"
    );
}

/// An `events.k8s.io/v1` Event as kube's Recorder writes it.
fn event(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name, "namespace": "apps"},
        "eventTime": "2026-12-03T12:00:00.000000Z",
        "type": "Normal", "reason": "Corrected", "action": "PatchStatus",
        "reportingController": "stuck-hr-recovery", "reportingInstance": "pod-1",
        "regarding": {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
                      "namespace": "apps", "name": "calm"},
        "note": "corrected",
    })
}

#[test]
fn an_events_k8s_io_event_missing_what_validate_event_create_requires_is_422() {
    let cluster = Cluster::start_with(|c| c, "admin");
    let dir = tempfile::tempdir().expect("temp dir");
    let create = |doc: &serde_json::Value| {
        let file = dir.path().join("event.json");
        std::fs::write(&file, doc.to_string()).expect("written");
        kubectl(
            dir.path(),
            cluster.kubeconfig(),
            &[
                "create",
                "--raw",
                "/apis/events.k8s.io/v1/namespaces/apps/events",
                "-f",
                file.to_str().expect("UTF-8 path"),
            ],
        )
    };
    let ok = create(&event("complete"));
    assert!(ok.status.success(), "{}", describe(&ok));

    let cases = [
        ("eventTime", "eventTime: Required value"),
        ("reportingController", "reportingController: Required value"),
        ("reportingInstance", "reportingInstance: Required value"),
        ("action", "action: Required value"),
        ("reason", "reason: Required value"),
        ("type", "type: Invalid value"),
    ];
    for (field, message) in cases {
        let mut doc = event(&format!("without-{}", field.to_lowercase()));
        doc.as_object_mut().expect("object").remove(field);
        let out = create(&doc);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{field}: {}", describe(&out));
        assert!(stderr.contains(message), "{field}: {stderr}");
    }
    let statuses: Vec<u16> = cluster.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![201, 422, 422, 422, 422, 422, 422]);
    assert_eq!(
        cluster.server.events().len(),
        1,
        "only the complete Event is stored"
    );
}

/// `kubectl auth can-i` with `args`: exit code and stdout.
fn can_i(dir: &Path, kubeconfig: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = kubectl(dir, kubeconfig, &all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Every `(verb, resource argument, subresource)` the project's ClusterRole
/// grants, read from `rbac/clusterrole.yaml`.
fn granted() -> Vec<(String, String, Option<String>)> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("rbac/clusterrole.yaml");
    let role: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(file).expect("rbac/clusterrole.yaml"))
            .expect("YAML");
    let mut out = Vec::new();
    for rule in role["rules"].as_array().expect("rules") {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                let (plural, sub) = match resource.split_once('/') {
                    Some((p, s)) => (p.to_owned(), Some(s.to_owned())),
                    None => (resource.clone(), None),
                };
                let arg = if group.is_empty() {
                    plural
                } else {
                    format!("{plural}.{group}")
                };
                for verb in strings("verbs") {
                    out.push((verb, arg.clone(), sub.clone()));
                }
            }
        }
    }
    assert!(!out.is_empty(), "the ClusterRole grants something");
    out
}

const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// The service account's answers, as `kubeconfig` reaches it (its own token,
/// or admin with `--as`): yes for exactly what `rbac/` grants, in any
/// namespace, and no for every other verb on the same resources and for what
/// it has no grant on at all.
fn assert_service_account_answers(dir: &Path, kubeconfig: &Path, extra: &[&str]) {
    let grants = granted();
    let mut resources: Vec<(String, Option<String>)> = grants
        .iter()
        .map(|(_, r, s)| (r.clone(), s.clone()))
        .collect();
    resources.dedup();
    for (resource, sub) in &resources {
        for verb in VERBS {
            let allowed = grants
                .iter()
                .any(|(v, r, s)| v == verb && r == resource && s == sub);
            let mut args = vec![verb, resource.as_str(), "-n", "apps"];
            if let Some(sub) = sub {
                args.extend(["--subresource", sub.as_str()]);
            }
            args.extend_from_slice(extra);
            let (code, out) = can_i(dir, kubeconfig, &args);
            let want = if allowed {
                (Some(0), "yes\n")
            } else {
                (Some(1), "no\n")
            };
            assert_eq!((code, out.as_str()), want, "can-i {args:?}");
        }
    }
    for args in [
        ["get", "configmaps", "-n", "apps"],
        ["create", "events", "-n", "apps"],
        ["get", "jobs.batch", "-n", "apps"],
        [
            "delete",
            "helmreleases.helm.toolkit.fluxcd.io",
            "-n",
            "flux-system",
        ],
    ] {
        let mut args = args.to_vec();
        args.extend_from_slice(extra);
        assert_eq!(
            can_i(dir, kubeconfig, &args),
            (Some(1), "no\n".to_owned()),
            "can-i {args:?}"
        );
    }
    // Non-resource URLs: the bootstrap discovery role every cluster has.
    let mut version = vec!["get", "/version"];
    version.extend_from_slice(extra);
    assert_eq!(
        can_i(dir, kubeconfig, &version),
        (Some(0), "yes\n".to_owned())
    );
    let mut metrics = vec!["get", "/metrics"];
    metrics.extend_from_slice(extra);
    assert_eq!(
        can_i(dir, kubeconfig, &metrics),
        (Some(1), "no\n".to_owned())
    );
}

#[test]
fn kubectl_auth_can_i_as_admin_says_yes() {
    let cluster = Cluster::start_with(|c| c, "admin");
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["delete", "helmreleases", "-n", "apps"][..],
        &["*", "*"][..],
        &["get", "secrets", "-A"][..],
        &["get", "/metrics"][..],
    ] {
        assert_eq!(
            can_i(dir.path(), cluster.kubeconfig(), args),
            (Some(0), "yes\n".to_owned()),
            "admin can-i {args:?}"
        );
    }
    let reviews: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("selfsubjectaccessreviews"))
        .collect();
    assert_eq!(reviews.len(), 4, "one review per question");
    assert!(
        reviews
            .iter()
            .all(|r| r.user == "admin" && r.status == 201 && r.verb == "create"),
        "{reviews:?}"
    );
    assert!(
        reviews[0]
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf")),
        "kubectl sends its reviews as protobuf: {:?}",
        reviews[0].content_type
    );
}

#[test]
fn kubectl_auth_can_i_as_the_service_account_by_its_own_token() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    assert_service_account_answers(dir.path(), cluster.kubeconfig(), &[]);
    let reviews: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("selfsubjectaccessreviews"))
        .collect();
    assert!(!reviews.is_empty());
    assert!(
        reviews.iter().all(|r| r.user == SA_USER && r.status == 201),
        "{reviews:?}"
    );
    cluster.assert_nothing_denied();
}

#[test]
fn kubectl_auth_can_i_with_as_reviews_the_impersonated_service_account() {
    let cluster = Cluster::start_with(|c| c, "admin");
    let dir = tempfile::tempdir().expect("temp dir");
    assert_service_account_answers(dir.path(), cluster.kubeconfig(), &["--as", SA_USER]);
    let users: std::collections::BTreeSet<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("selfsubjectaccessreviews"))
        .map(|r| r.user)
        .collect();
    assert_eq!(users, [SA_USER.to_owned()].into());
}

/// A SelfSubjectAccessReview sent as is, answered as kube-apiserver does.
fn review(dir: &Path, kubeconfig: &Path, spec: serde_json::Value) -> (Output, serde_json::Value) {
    let file = dir.join("review.json");
    let doc = serde_json::json!({"apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview", "spec": spec});
    std::fs::write(&file, doc.to_string()).expect("written");
    let out = kubectl(
        dir,
        kubeconfig,
        &[
            "create",
            "--raw",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "-f",
            file.to_str().expect("UTF-8 path"),
        ],
    );
    let body = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, body)
}

#[test]
fn a_self_subject_access_review_has_the_rbac_authorizers_status() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = serde_json::json!({"resourceAttributes": {"namespace": "apps", "verb": "patch",
        "group": "helm.toolkit.fluxcd.io", "resource": "helmreleases", "subresource": "status",
        "name": "web"}});
    let (out, body) = review(dir.path(), cluster.kubeconfig(), spec.clone());
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(body["kind"], "SelfSubjectAccessReview");
    assert_eq!(body["spec"], spec, "the spec is answered back");
    assert_eq!(
        body["status"],
        serde_json::json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"stuck-hr-recovery\" of ClusterRole \"stuck-hr-recovery\" to ServiceAccount \"stuck-hr-recovery/flux-system\""})
    );

    let (_, body) = review(
        dir.path(),
        cluster.kubeconfig(),
        serde_json::json!({"resourceAttributes": {"namespace": "apps", "verb": "delete",
            "group": "helm.toolkit.fluxcd.io", "resource": "helmreleases"}}),
    );
    assert_eq!(
        body["status"],
        serde_json::json!({"allowed": false}),
        "RBAC has no opinion: no reason, not denied"
    );

    let (_, body) = review(
        dir.path(),
        cluster.kubeconfig(),
        serde_json::json!({"nonResourceAttributes": {"verb": "get", "path": "/apis/batch"}}),
    );
    assert_eq!(
        body["status"],
        serde_json::json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"system:discovery\" of ClusterRole \"system:discovery\" to Group \"system:authenticated\""})
    );

    let (out, _) = review(dir.path(), cluster.kubeconfig(), serde_json::json!({}));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"),
        "{stderr}"
    );
    let statuses: Vec<u16> = cluster.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![201, 201, 201, 422]);
}

#[test]
fn kubectl_auth_can_i_list_shows_the_service_accounts_rules() {
    let cluster = Cluster::start_with(|c| c, "admin");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = kubectl(
        dir.path(),
        cluster.kubeconfig(),
        &["auth", "can-i", "--list", "-n", "apps", "--as", SA_USER],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let rows: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for row in [
        "helmreleases.helm.toolkit.fluxcd.io [] [] [get list patch]",
        "helmreleases.helm.toolkit.fluxcd.io/status [] [] [patch]",
        "secrets [] [] [list]",
        "events.events.k8s.io [] [] [create patch]",
        "selfsubjectaccessreviews.authorization.k8s.io [] [] [create]",
        "[/version] [] [get]",
    ] {
        assert!(rows.iter().any(|r| r == row), "{row:?} in {rows:#?}");
    }
    assert!(
        !rows
            .iter()
            .any(|r| r.starts_with("configmaps") || r.starts_with("*.*")),
        "{rows:#?}"
    );
    let reviews: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("selfsubjectrulesreviews"))
        .collect();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].user, SA_USER);
}
