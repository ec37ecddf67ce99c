//! The shared part of the real-cluster tests: start a testbed, apply
//! `rbac/` as it ships, seed HelmReleases (status written as admin through
//! the status subresource) and Helm release Secrets, run the product
//! binary as its ServiceAccount, read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use testbed::{Options, ServiceAccountAccess, Testbed};

pub const HR_API: &str = "helm.toolkit.fluxcd.io/v2";
pub const SA_NAMESPACE: &str = "flux-system";
pub const SA_NAME: &str = "stuck-hr-recovery";
pub const SA_USER: &str = "system:serviceaccount:flux-system:stuck-hr-recovery";
pub const SUSPENDED_AT: &str = "stuck-hr-recovery.openova.io/suspended-at";
pub const TOGGLED_AT: &str = "stuck-hr-recovery.openova.io/toggled-at";
pub const CORRECTED_AT: &str = "stuck-hr-recovery.openova.io/auto-corrected-at";
pub const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

/// Starts a testbed; a missing binary fails the test (the error names
/// scripts/build-testbed). Prints how long the start took.
pub async fn start(options: Options) -> Testbed {
    let t = Instant::now();
    let bed = match Testbed::start(options).await {
        Ok(bed) => bed,
        Err(e) => panic!("testbed did not start: {e:#}"),
    };
    let timings = bed.timings();
    eprintln!(
        "testbed started in {:.1}s (etcd {:.1}s, kube-apiserver {:.1}s, CRDs {:.1}s, chart repo {:.1}s, \
         source-controller {:.1}s, helm-controller {:.1}s) at {}",
        t.elapsed().as_secs_f64(),
        timings.etcd.as_secs_f64(),
        timings.apiserver.as_secs_f64(),
        timings.crds.as_secs_f64(),
        timings.chart_repo.as_secs_f64(),
        timings.source_controller.as_secs_f64(),
        timings.helm_controller.as_secs_f64(),
        bed.path().display()
    );
    bed
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `rbac/` applied as it ships with the real kubectl (its namespace
/// created first), and a TokenRequest token for its ServiceAccount.
pub async fn apply_rbac(bed: &Testbed) -> ServiceAccountAccess {
    bed.ensure_namespace(SA_NAMESPACE)
        .await
        .expect("flux-system created");
    let output = bed
        .kubectl()
        .expect("kubectl")
        .args(["apply", "-f"])
        .arg(repo().join("rbac"))
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl apply -f rbac/: {}",
        describe(&output)
    );
    let sa = bed
        .service_account(SA_NAMESPACE, SA_NAME)
        .await
        .expect("ServiceAccount token");
    assert_eq!(sa.user, SA_USER);
    sa
}

/// Runs kubectl (admin) with `args`; asserts success; returns stdout.
pub fn kubectl(bed: &Testbed, args: &[&str]) -> String {
    let output = bed
        .kubectl()
        .expect("kubectl")
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The product binary with `kubeconfig`, no `STUCK_HR_*` from the
/// environment.
pub fn product(kubeconfig: &Path, home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_stuck-hr-recovery"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STUCK_HR_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .kill_on_drop(true);
    cmd
}

/// Runs the product to completion with `args`.
pub async fn run(bed: &Testbed, sa: &ServiceAccountAccess, args: &[&str]) -> Output {
    product(&sa.kubeconfig, bed.path())
        .args(args)
        .output()
        .await
        .expect("product binary runs")
}

pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The `-o json` report of a run.
pub fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("report is JSON ({e}): {}", describe(output)))
}

/// The action for `ns/name` in a report.
pub fn action<'a>(report: &'a Value, ns: &str, name: &str) -> &'a Value {
    report["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["namespace"] == ns && a["name"] == name)
        .unwrap_or_else(|| panic!("no action for {ns}/{name} in {report:#}"))
}

pub fn ago(minutes: i64) -> String {
    (Utc::now() - chrono::Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn condition(type_: &str, status: &str, reason: &str, at: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason,
           "message": format!("{type_} is {status}"), "lastTransitionTime": at,
           "observedGeneration": 1})
}

pub fn snapshot(ns: &str, name: &str, version: u64, status: &str) -> Value {
    json!({
        "name": name, "namespace": ns, "version": version, "status": status,
        "chartName": "hello", "chartVersion": "0.1.0", "appVersion": "0.1.0",
        "configDigest": "sha256:00", "digest": "sha256:00",
        "firstDeployed": ago(120), "lastDeployed": ago(120), "action": "install",
    })
}

/// A HelmRelease as a user writes it (spec only).
pub fn hr(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": HR_API,
        "kind": "HelmRelease",
        "metadata": {"namespace": ns, "name": name, "labels": {"app": name}},
        "spec": {
            "interval": "10m",
            "chart": {"spec": {"chart": "hello", "version": "0.1.0",
                "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": "flux-system"}}},
        },
    })
}

/// Healthy: Ready and Released True, history[0] deployed v1.
pub fn status_healthy(ns: &str, name: &str) -> Value {
    let at = ago(120);
    json!({
        "observedGeneration": 1, "lastAttemptedGeneration": 1, "storageNamespace": ns,
        "history": [snapshot(ns, name, 1, "deployed")],
        "conditions": [condition("Ready", "True", "InstallSucceeded", &at),
                       condition("Released", "True", "InstallSucceeded", &at)],
    })
}

/// Branch B: history[0] deployed v1, Ready Unknown for 10 minutes,
/// Released True.
pub fn status_deployed_unknown(ns: &str, name: &str) -> Value {
    let since = ago(10);
    json!({
        "observedGeneration": 1, "lastAttemptedGeneration": 1, "storageNamespace": ns,
        "history": [snapshot(ns, name, 1, "deployed")],
        "conditions": [condition("Ready", "Unknown", "Progressing", &since),
                       condition("Reconciling", "True", "Progressing", &since),
                       condition("Released", "True", "InstallSucceeded", &ago(120))],
    })
}

/// Branch A: no history, Ready Unknown for 10 minutes.
pub fn status_pending_install(ns: &str) -> Value {
    let since = ago(10);
    json!({
        "observedGeneration": 1, "lastAttemptedGeneration": 1, "storageNamespace": ns,
        "conditions": [condition("Reconciling", "True", "Progressing", &since),
                       condition("Ready", "Unknown", "Progressing", &since)],
    })
}

/// A Helm release Secret as Helm's storage labels it (payload a stub: the
/// product reads the labels).
pub fn helm_secret(ns: &str, release: &str, version: u64, status: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"namespace": ns, "name": format!("sh.helm.release.v1.{release}.v{version}"),
            "labels": {"owner": "helm", "name": release, "version": version.to_string(), "status": status}},
        "data": {"release": "c3R1Yg=="},
    })
}

/// Creates the HelmRelease `ns/name` and, when given, writes `status`
/// through the status subresource as admin. Returns the stored object.
pub async fn seed_hr(bed: &Testbed, ns: &str, name: &str, status: Option<Value>) -> Value {
    bed.ensure_namespace(ns).await.expect("namespace");
    let created = bed.create(hr(ns, name)).await.expect("HelmRelease created");
    match status {
        Some(status) => bed
            .merge_patch(
                HR_API,
                "HelmRelease",
                Some(ns),
                name,
                json!({"status": status}),
                true,
            )
            .await
            .expect("status written"),
        None => created,
    }
}

/// A stuck branch-B HelmRelease and its deployed release Secret.
pub async fn seed_deployed_unknown(bed: &Testbed, ns: &str, name: &str) {
    seed_hr(bed, ns, name, Some(status_deployed_unknown(ns, name))).await;
    bed.create(helm_secret(ns, name, 1, "deployed"))
        .await
        .expect("release Secret");
}

/// A stuck branch-A HelmRelease and its deployed release Secret.
pub async fn seed_pending_install(bed: &Testbed, ns: &str, name: &str) {
    seed_hr(bed, ns, name, Some(status_pending_install(ns))).await;
    bed.create(helm_secret(ns, name, 1, "deployed"))
        .await
        .expect("release Secret");
}

/// A HelmRelease read as admin.
pub async fn get_hr(bed: &Testbed, ns: &str, name: &str) -> Value {
    bed.get(HR_API, "HelmRelease", Some(ns), name)
        .await
        .expect("HelmRelease readable")
        .unwrap_or_else(|| panic!("HelmRelease {ns}/{name} exists"))
}

/// `namespace/name` → resourceVersion of every HelmRelease.
pub async fn hr_versions(bed: &Testbed) -> BTreeMap<String, String> {
    let api = bed.api(HR_API, "HelmRelease", None).await.expect("api");
    let mut out = BTreeMap::new();
    let mut params = kube::api::ListParams::default().limit(500);
    loop {
        let page = api.list_metadata(&params).await.expect("list HelmReleases");
        for item in &page.items {
            out.insert(
                format!(
                    "{}/{}",
                    item.metadata.namespace.as_deref().unwrap_or_default(),
                    item.metadata.name.as_deref().unwrap_or_default()
                ),
                item.metadata.resource_version.clone().unwrap_or_default(),
            );
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    out
}

/// The condition `type_` of an object.
pub fn find_condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

pub fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"]["annotations"][key].as_str()
}

/// Audit events of requests made by `user`.
pub fn audit_of(bed: &Testbed, user: &str) -> Vec<Value> {
    bed.audit_events()
        .expect("audit log readable")
        .into_iter()
        .filter(|e| e["user"]["username"] == user)
        .collect()
}

/// A poll deadline for things the real controllers do.
pub const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(180);
