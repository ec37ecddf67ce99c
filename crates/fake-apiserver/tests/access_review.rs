//! SelfSubjectAccessReview / SelfSubjectRulesReview against policies the
//! project's `rbac/` does not exercise: RoleBindings and their reason text,
//! a binding to a missing role, `*/sub` against `resource/*`, resource names,
//! non-resource URLs, and the same answer the real request gets.

mod common;

use common::{client, hr_path, raw};
use fake_apiserver::{FakeApiServer, ServerConfig};
use serde_json::{Value, json};

const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const SSRR: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
const JSON: (&str, &str) = ("content-type", "application/json");

const POLICY: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: status-writer, namespace: apps}
rules:
  - apiGroups: ["helm.toolkit.fluxcd.io"]
    resources: ["*/status"]
    verbs: ["patch"]
  - apiGroups: ["helm.toolkit.fluxcd.io"]
    resources: ["helmreleases/*"]
    verbs: ["update"]
  - apiGroups: ["helm.toolkit.fluxcd.io"]
    resources: ["helmreleases"]
    verbs: ["get"]
    resourceNames: ["web"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: writers, namespace: apps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: status-writer}
subjects:
  - {kind: ServiceAccount, name: bot}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: metrics}
rules:
  - nonResourceURLs: ["/metrics", "/debug/*"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: metrics}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics}
subjects:
  - {kind: ServiceAccount, name: bot, namespace: apps}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dangling}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gone}
subjects:
  - {kind: Group, name: system:serviceaccounts:apps}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bot, namespace: apps}
"#;

const BOT: &str = "system:serviceaccount:apps:bot";

fn server() -> (FakeApiServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rbac.yaml"), POLICY).unwrap();
    let s = FakeApiServer::start(ServerConfig::new().rbac_dir(dir.path())).unwrap();
    s.apply_file(&common::fixture("helmreleases.yaml")).unwrap();
    (s, dir)
}

async fn review(c: &kube::Client, spec: Value) -> Value {
    let body = json!({"apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview", "spec": spec});
    let (code, answer) = raw(c, "POST", SSAR, &[JSON], Some(body)).await.unwrap();
    assert_eq!(code, 201, "{answer}");
    answer["status"].clone()
}

fn attrs(verb: &str, resource: &str, sub: &str, name: &str) -> Value {
    json!({"resourceAttributes": {"namespace": "apps", "verb": verb,
        "group": "helm.toolkit.fluxcd.io", "resource": resource,
        "subresource": sub, "name": name}})
}

#[tokio::test]
async fn a_review_follows_role_bindings_wildcards_and_names_like_the_real_authorizer() {
    let (s, _dir) = server();
    let c = client(&s, BOT).await;
    let via_role_binding = json!({"allowed": true, "reason":
        "RBAC: allowed by RoleBinding \"writers/apps\" of Role \"status-writer\" to ServiceAccount \"bot/apps\""});
    let missing = json!({"allowed": false, "reason":
        "RBAC: clusterrole.rbac.authorization.k8s.io \"gone\" not found"});
    assert_eq!(
        review(&c, attrs("patch", "helmreleases", "status", "")).await,
        via_role_binding,
        "*/status"
    );
    assert_eq!(
        review(&c, attrs("update", "helmreleases", "status", "")).await,
        missing,
        "helmreleases/* is not a subresource wildcard upstream"
    );
    assert_eq!(
        review(&c, attrs("get", "helmreleases", "", "web")).await,
        via_role_binding
    );
    assert_eq!(
        review(&c, attrs("get", "helmreleases", "", "")).await,
        missing,
        "resourceNames need a name"
    );
    let mut other_ns = attrs("patch", "helmreleases", "status", "");
    other_ns["resourceAttributes"]["namespace"] = json!("prod");
    assert_eq!(
        review(&c, other_ns).await,
        missing,
        "RoleBinding is per namespace"
    );

    for (path, allowed) in [
        ("/metrics", true),
        ("/debug/pprof", true),
        ("/debug", false),
    ] {
        let status = review(
            &c,
            json!({"nonResourceAttributes": {"verb": "get", "path": path}}),
        )
        .await;
        assert_eq!(status["allowed"], json!(allowed), "{path}: {status}");
    }

    // The real request gets the same answer as its review.
    let patch = |name: &str| {
        let c = c.clone();
        let path = format!("{}/status", hr_path("apps", name));
        async move {
            raw(
                &c,
                "PATCH",
                &path,
                &[common::MERGE],
                Some(json!({"status": {"failures": 1}})),
            )
            .await
            .unwrap()
            .0
        }
    };
    assert_eq!(patch("web").await, 200);
    let (code, _) = raw(
        &c,
        "PUT",
        &format!("{}/status", hr_path("apps", "web")),
        &[JSON],
        Some(s.helmrelease("apps", "web").unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(code, 403, "update on helmreleases/status is not granted");
    assert!(
        s.rbac_tally()
            .used
            .iter()
            .all(|(r, _)| r.file != "<bootstrap policy>"),
        "reviews and bootstrap roles stay out of the tally"
    );
}

#[tokio::test]
async fn a_rules_review_lists_what_applies_in_the_namespace() {
    let (s, _dir) = server();
    let c = client(&s, BOT).await;
    let body = json!({"apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview", "spec": {"namespace": "apps"}});
    let (code, answer) = raw(&c, "POST", SSRR, &[JSON], Some(body.clone()))
        .await
        .unwrap();
    assert_eq!(code, 201, "{answer}");
    let status = &answer["status"];
    assert_eq!(status["incomplete"], json!(false));
    assert_eq!(
        status["evaluationError"],
        json!("clusterrole.rbac.authorization.k8s.io \"gone\" not found")
    );
    let rules = status["resourceRules"].as_array().unwrap();
    assert!(rules.contains(&json!({"verbs": ["patch"],
        "apiGroups": ["helm.toolkit.fluxcd.io"], "resources": ["*/status"]})));
    assert!(rules.contains(
        &json!({"verbs": ["get"], "apiGroups": ["helm.toolkit.fluxcd.io"],
        "resources": ["helmreleases"], "resourceNames": ["web"]})
    ));
    assert!(
        status["nonResourceRules"]
            .as_array()
            .unwrap()
            .contains(&json!({"verbs": ["get"], "nonResourceURLs": ["/metrics", "/debug/*"]}))
    );

    let mut prod = body;
    prod["spec"]["namespace"] = json!("prod");
    let (_, answer) = raw(&c, "POST", SSRR, &[JSON], Some(prod)).await.unwrap();
    let rules = answer["status"]["resourceRules"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        !rules
            .iter()
            .any(|r| r["apiGroups"] == json!(["helm.toolkit.fluxcd.io"])),
        "the apps RoleBinding does not apply in prod: {rules:?}"
    );
}

#[tokio::test]
async fn a_review_needs_the_create_grant_and_reviews_only_create() {
    let (s, _dir) = server();
    let c = client(&s, BOT).await;
    let (code, _) = raw(&c, "GET", SSAR, &[], None).await.unwrap();
    assert_eq!(code, 403, "authorization comes first: list is not granted");
    let admin = client(&s, "admin").await;
    let (code, _) = raw(&admin, "GET", SSAR, &[], None).await.unwrap();
    assert_eq!(code, 405, "reviews are create-only");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rbac.yaml"), "").unwrap();
    let no_grants =
        FakeApiServer::start(ServerConfig::new().rbac_dir(dir.path()).user("nobody", &[])).unwrap();
    let c = client(&no_grants, "nobody").await;
    let status = review(
        &c,
        json!({"resourceAttributes": {"verb": "list", "resource": "secrets"}}),
    )
    .await;
    assert_eq!(status, json!({"allowed": false}));
    let logged: Vec<(String, u16)> = no_grants
        .requests()
        .into_iter()
        .map(|r| (r.resource.unwrap_or_default(), r.status))
        .collect();
    assert_eq!(logged, vec![("selfsubjectaccessreviews".to_owned(), 201)]);
}
