//! Acceptance 3 (RBAC): the project's rbac/ folder enforced, denials shaped
//! like the real server's, and the tally of used rules.

mod common;

use common::{MERGE, SA, client, hr_path, raw, rbac_server};
use fake_apiserver::{FakeApiServer, ServerConfig};
use serde_json::json;

#[tokio::test]
async fn rbac_tally_counts_each_rule_and_records_every_denial() {
    let s = rbac_server();
    let c = client(&s, SA).await;
    assert_eq!(
        raw(
            &c,
            "GET",
            "/apis/helm.toolkit.fluxcd.io/v2/helmreleases?limit=10",
            &[],
            None
        )
        .await
        .unwrap()
        .0,
        200
    );
    assert_eq!(
        raw(&c, "GET", &hr_path("apps", "web"), &[], None)
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        raw(
            &c,
            "PATCH",
            &format!("{}/status", hr_path("apps", "web")),
            &[MERGE],
            Some(json!({"status": {"failures": 1}}))
        )
        .await
        .unwrap()
        .0,
        200
    );
    assert_eq!(
        raw(
            &c,
            "GET",
            "/api/v1/namespaces/apps/secrets?labelSelector=owner%3Dhelm",
            &[],
            None
        )
        .await
        .unwrap()
        .0,
        200
    );
    // Denied: get on a Secret (only list is granted), and a cluster-scope list of something not granted.
    let (code, st) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/apps/secrets/sh.helm.release.v1.web.v1",
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, 403);
    assert_eq!(
        st["message"],
        format!(
            "secrets \"sh.helm.release.v1.web.v1\" is forbidden: User \"{SA}\" cannot get resource \"secrets\" in API group \"\" in the namespace \"apps\""
        )
    );
    assert_eq!(
        st["details"],
        json!({"name": "sh.helm.release.v1.web.v1", "kind": "secrets"})
    );
    let (code, st) = raw(&c, "GET", "/apis/batch/v1/jobs", &[], None)
        .await
        .unwrap();
    assert_eq!(code, 403);
    assert_eq!(
        st["message"],
        format!(
            "jobs.batch is forbidden: User \"{SA}\" cannot list resource \"jobs\" in API group \"batch\" at the cluster scope"
        )
    );
    // Discovery needs no grant.
    assert_eq!(raw(&c, "GET", "/apis", &[], None).await.unwrap().0, 200);

    let tally = s.rbac_tally();
    let count = |resource: &str| {
        tally
            .used
            .iter()
            .find(|(r, _)| r.resources == [resource])
            .map(|(_, n)| *n)
            .unwrap()
    };
    assert_eq!(count("helmreleases"), 2);
    assert_eq!(count("helmreleases/status"), 1);
    assert_eq!(count("secrets"), 1);
    assert_eq!(count("events"), 0);
    assert_eq!(tally.unused().len(), 1);
    assert!(
        tally
            .used
            .iter()
            .all(|(r, _)| r.role == "stuck-hr-recovery" && r.file.ends_with("clusterrole.yaml"))
    );
    let denied: Vec<(String, Option<String>)> = tally
        .denied
        .iter()
        .map(|d| (d.verb.clone(), d.resource.clone()))
        .collect();
    assert_eq!(
        denied,
        vec![
            ("get".into(), Some("secrets".into())),
            ("list".into(), Some("jobs".into()))
        ]
    );
    assert!(tally.denied.iter().all(|d| d.status == 403));
}

#[tokio::test]
async fn status_patch_needs_the_status_subresource_grant() {
    let s = rbac_server();
    let c = client(&s, SA).await;
    // rbac/ grants patch on helmreleases/status but not get on it.
    let (code, st) = raw(
        &c,
        "GET",
        &format!("{}/status", hr_path("apps", "web")),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, 403);
    assert!(st["message"].as_str().unwrap().ends_with(r#"cannot get resource "helmreleases/status" in API group "helm.toolkit.fluxcd.io" in the namespace "apps""#));
}

#[tokio::test]
async fn role_bindings_are_namespaced_and_resource_names_restrict() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rbac.yaml"),
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: apps}
rules:
  - apiGroups: ["helm.toolkit.fluxcd.io"]
    resources: ["helmreleases"]
    verbs: ["get"]
    resourceNames: ["web"]
  - apiGroups: ["*"]
    resources: ["*"]
    verbs: ["list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: apps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
  - {kind: Group, name: readers, apiGroup: rbac.authorization.k8s.io}
"#,
    )
    .unwrap();
    let s = FakeApiServer::start(
        ServerConfig::new()
            .rbac_dir(dir.path())
            .user("alice", &["readers"]),
    )
    .unwrap();
    s.apply_file(&common::fixture("helmreleases.yaml")).unwrap();
    s.apply(common::hr("apps", "other")).unwrap();
    let c = client(&s, "alice").await;
    assert_eq!(
        raw(&c, "GET", &hr_path("apps", "web"), &[], None)
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        raw(&c, "GET", &hr_path("apps", "other"), &[], None)
            .await
            .unwrap()
            .0,
        403,
        "resourceNames"
    );
    assert_eq!(
        raw(&c, "GET", "/api/v1/namespaces/apps/secrets", &[], None)
            .await
            .unwrap()
            .0,
        200,
        "wildcards"
    );
    assert_eq!(
        raw(&c, "GET", "/api/v1/namespaces/data/secrets", &[], None)
            .await
            .unwrap()
            .0,
        403,
        "RoleBinding is namespaced"
    );
    assert_eq!(
        raw(&c, "GET", "/api/v1/secrets", &[], None)
            .await
            .unwrap()
            .0,
        403,
        "no cluster scope"
    );
    // The admin user bypasses RBAC.
    let admin = client(&s, "admin").await;
    assert_eq!(
        raw(&admin, "GET", "/api/v1/namespaces/data/secrets", &[], None)
            .await
            .unwrap()
            .0,
        200
    );
}
