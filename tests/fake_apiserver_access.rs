//! The fake API server where a client notices the difference (issue 11,
//! point 5), driven by the real kubectl 1.33: `--as` impersonates under
//! RBAC (the `impersonate` verb) or is refused with 403, never ignored.

mod chart_support;
mod common;

use std::path::Path;
use std::process::{Command, Output};

use chart_support::{kubectl_1_33, run};
use common::*;

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
