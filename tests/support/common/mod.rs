//! The end-to-end harness: a fake API server enforcing `rbac/`, a kubeconfig
//! for the product's service account, the built binary, and small fixture
//! builders for HelmReleases and Helm release Secrets.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod safety;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use fake_apiserver::{FakeApiServer, Fault, RecordedRequest, ServerConfig};
use serde_json::{Value, json};
use stuck_hr_recovery::model::{ActionResult, Branch, Reason};
use stuck_hr_recovery::report::{ActionRecord, Report};
use tempfile::TempDir;

pub const SA_NAMESPACE: &str = "flux-system";
pub const SA_NAME: &str = "stuck-hr-recovery";
pub const SA_USER: &str = "system:serviceaccount:flux-system:stuck-hr-recovery";
pub const HR_API: &str = "helm.toolkit.fluxcd.io/v2";
pub const FIELD_MANAGER: &str = "stuck-hr-recovery";
pub const SUSPENDED_AT: &str = "stuck-hr-recovery.openova.io/suspended-at";
pub const TOGGLED_AT: &str = "stuck-hr-recovery.openova.io/toggled-at";
pub const CORRECTED_AT: &str = "stuck-hr-recovery.openova.io/auto-corrected-at";
pub const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

/// A fake cluster and a kubeconfig for the product's service account.
pub struct Cluster {
    pub server: Arc<FakeApiServer>,
    dir: TempDir,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// A fresh server enforcing `rbac/`, with the binary's service account.
    pub fn start() -> Cluster {
        Cluster::start_with(|config| config, SA_USER)
    }

    /// A fresh server enforcing `rbac/`, configured further by `extra`, and
    /// a kubeconfig for `user`.
    pub fn start_with(extra: impl FnOnce(ServerConfig) -> ServerConfig, user: &str) -> Cluster {
        let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("rbac");
        let server = FakeApiServer::start(extra(
            ServerConfig::new()
                .rbac_dir(rbac)
                .service_account(SA_NAMESPACE, SA_NAME),
        ))
        .expect("fake API server starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        server
            .write_kubeconfig(&kubeconfig, user)
            .expect("kubeconfig written");
        Cluster {
            server: Arc::new(server),
            dir,
            kubeconfig,
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Seeds objects (not logged as requests).
    pub fn seed(&self, objects: impl IntoIterator<Item = Value>) -> &Self {
        for object in objects {
            self.server.apply(object).expect("seed object accepted");
        }
        self
    }

    /// The binary, pointed at this cluster, with no `STUCK_HR_*` variable
    /// from the environment and a short suspend wait.
    pub fn cmd(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.std_cmd())
    }

    /// The same as a plain `std::process::Command` (for signals).
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("stuck-hr-recovery"));
        self.configure(&mut cmd);
        cmd
    }

    fn configure(&self, cmd: &mut std::process::Command) {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STUCK_HR_") {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("KUBERNETES_SERVICE_HOST")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env_remove("RUST_LOG");
    }

    /// Stops the server; the kubeconfig now points at a closed port.
    pub fn stop_server(self) -> (TempDir, PathBuf) {
        drop(self.server);
        (self.dir, self.kubeconfig)
    }

    /// Runs the binary with `args` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("binary runs")
    }

    pub fn hr(&self, ns: &str, name: &str) -> Value {
        self.server
            .helmrelease(ns, name)
            .unwrap_or_else(|| panic!("HelmRelease {ns}/{name} exists"))
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    /// Every request that is not a GET/LIST/discovery.
    pub fn writes(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch" | "discovery"))
            .collect()
    }

    /// Writes to HelmReleases (main resource and status), in arrival order.
    pub fn hr_writes(&self) -> Vec<RecordedRequest> {
        let mut writes: Vec<_> = self
            .writes()
            .into_iter()
            .filter(|r| r.resource.as_deref() == Some("helmreleases"))
            .collect();
        writes.sort_by_key(|r| r.seq);
        writes
    }

    /// Events as `(namespace/name regarding, type, reason)`.
    pub fn events(&self) -> Vec<(String, String, String)> {
        let mut events: Vec<_> = self
            .server
            .events()
            .into_iter()
            .map(|e| {
                (
                    format!(
                        "{}/{}",
                        e["regarding"]["namespace"].as_str().unwrap_or_default(),
                        e["regarding"]["name"].as_str().unwrap_or_default()
                    ),
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        events.sort();
        events
    }

    pub fn add_fault(&self, fault: Fault) {
        self.server.add_fault(fault);
    }

    /// Asserts the server's RBAC denied nothing this run asked for.
    pub fn assert_nothing_denied(&self) {
        let denied = self.server.rbac_tally().denied;
        assert!(denied.is_empty(), "RBAC denied: {denied:#?}");
    }
}

/// Exit status, stdout and stderr of a finished run, for messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts a usage error (exit 2, no report on stdout) and returns stderr.
pub fn usage_error(output: &Output, context: &str) -> String {
    assert_eq!(
        output.status.code(),
        Some(2),
        "{context}: {}",
        describe(output)
    );
    assert!(
        output.stdout.is_empty(),
        "{context}: no report on bad usage: {}",
        describe(output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// stdout of a run.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The JSON report of a `-o json` run.
pub fn json_report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("report is JSON ({e}): {}", describe(output)))
}

/// RFC 3339 UTC, seconds.
pub fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn ago(minutes: i64) -> String {
    ts(Utc::now() - Duration::minutes(minutes))
}

/// A HelmRelease fixture, healthy by default; chain to make it stuck.
#[derive(Debug, Clone)]
pub struct Hr {
    pub json: Value,
}

impl Hr {
    /// Healthy: Ready and Released True, history[0] deployed v1.
    pub fn healthy(ns: &str, name: &str) -> Hr {
        let at = ago(120);
        Hr {
            json: json!({
                "apiVersion": HR_API,
                "kind": "HelmRelease",
                "metadata": {"namespace": ns, "name": name, "generation": 1,
                             "labels": {"app": name}},
                "spec": {
                    "interval": "10m",
                    "chart": {"spec": {"chart": name, "version": "1.0.0",
                        "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": "flux-system"}}},
                },
                "status": {
                    "observedGeneration": 1,
                    "lastAttemptedGeneration": 1,
                    "storageNamespace": ns,
                    "history": [snapshot(ns, name, 1, "deployed", Some("install"))],
                    "conditions": [
                        condition("Ready", "True", "InstallSucceeded", &at),
                        condition("Released", "True", "InstallSucceeded", &at),
                    ],
                },
            }),
        }
    }

    /// Branch B: history[0] deployed v`version`, Ready Unknown for
    /// `minutes`, Released True (pair it with [`helm_secret`] at `version`).
    pub fn deployed_unknown(ns: &str, name: &str, minutes: i64) -> Hr {
        let since = ago(minutes);
        let mut hr = Hr::healthy(ns, name);
        hr.json["status"]["conditions"] = json!([
            condition("Ready", "Unknown", "Progressing", &since),
            condition("Reconciling", "True", "Progressing", &since),
            condition("Released", "True", "InstallSucceeded", &ago(120)),
            condition("TestSuccess", "True", "TestSucceeded", &ago(119)),
        ]);
        hr
    }

    /// Branch A: history empty, Ready Unknown for `minutes` (pair it with a
    /// deployed [`helm_secret`]).
    pub fn pending_install(ns: &str, name: &str, minutes: i64) -> Hr {
        let since = ago(minutes);
        let mut hr = Hr::healthy(ns, name);
        if let Some(status) = hr.json["status"].as_object_mut() {
            status.remove("history");
        }
        hr.json["status"]["conditions"] = json!([
            condition("Reconciling", "True", "Progressing", &since),
            condition("Ready", "Unknown", "Progressing", &since),
        ]);
        hr
    }

    /// Repair `interrupted-toggle`: our marker and `spec.suspend: true`.
    pub fn interrupted_toggle(ns: &str, name: &str) -> Hr {
        Hr::pending_install(ns, name, 10)
            .annotation(SUSPENDED_AT, &ago(3))
            .suspend(true)
    }

    /// Repair `stale-marker`: our marker without `spec.suspend`.
    pub fn stale_marker(ns: &str, name: &str) -> Hr {
        Hr::healthy(ns, name).annotation(SUSPENDED_AT, &ago(3))
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Hr {
        self.json["metadata"]["annotations"][key] = json!(value);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Hr {
        self.json["metadata"]["labels"][key] = json!(value);
        self
    }

    pub fn suspend(mut self, on: bool) -> Hr {
        self.json["spec"]["suspend"] = json!(on);
        self
    }

    /// history[0] becomes an `upgrade` at `version` with `chart_version`.
    pub fn upgraded_to(mut self, version: u64, chart_version: &str) -> Hr {
        let ns = self.json["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = self.json["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut top = snapshot(&ns, &name, version, "deployed", Some("upgrade"));
        top["chartVersion"] = json!(chart_version);
        let previous = snapshot(&ns, &name, version - 1, "superseded", Some("install"));
        self.json["status"]["history"] = json!([top, previous]);
        self
    }

    pub fn build(self) -> Value {
        self.json
    }
}

pub fn condition(type_: &str, status: &str, reason: &str, at: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason,
           "message": format!("{type_} is {status}"), "lastTransitionTime": at,
           "observedGeneration": 1})
}

pub fn snapshot(ns: &str, name: &str, version: u64, status: &str, action: Option<&str>) -> Value {
    let mut s = json!({
        "name": name, "namespace": ns, "version": version, "status": status,
        "chartName": name, "chartVersion": "1.0.0", "appVersion": "1.0.0",
        "configDigest": "sha256:00", "digest": "sha256:00",
        "firstDeployed": ago(120), "lastDeployed": ago(120),
    });
    if let Some(action) = action {
        s["action"] = json!(action);
    }
    s
}

/// A Helm release Secret `sh.helm.release.v1.<release>.v<version>` (labels
/// are what the product reads; the payload is a stub).
pub fn helm_secret(ns: &str, release: &str, version: u64, status: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "namespace": ns,
            "name": format!("sh.helm.release.v1.{release}.v{version}"),
            "labels": {"owner": "helm", "name": release, "version": version.to_string(), "status": status},
        },
        "data": {"release": "c3R1Yg=="},
    })
}

/// A stuck branch-B HelmRelease with its deployed Helm Secret.
pub fn stuck_deployed(ns: &str, name: &str) -> Vec<Value> {
    vec![
        Hr::deployed_unknown(ns, name, 10).build(),
        helm_secret(ns, name, 1, "deployed"),
    ]
}

/// A stuck branch-A HelmRelease with its deployed Helm Secret.
pub fn stuck_pending(ns: &str, name: &str) -> Vec<Value> {
    vec![
        Hr::pending_install(ns, name, 10).build(),
        helm_secret(ns, name, 1, "deployed"),
    ]
}

/// Annotation `key` of an object, if set.
pub fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"]["annotations"][key].as_str()
}

/// The condition of `type_` of an object.
pub fn find_condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The typed report a run printed with `-o json` (panics, showing the run,
/// when there is none).
pub fn report(output: &Output) -> Report {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", describe(output)))
}

impl Cluster {
    /// Runs the binary with `args` and `-o json` (unless `args` sets `-o`):
    /// the output and its typed report.
    pub fn run_report(&self, args: &[&str]) -> (Output, Report) {
        let json: &[&str] = if args.contains(&"-o") {
            &[]
        } else {
            &["-o", "json"]
        };
        let args: Vec<&str> = json.iter().chain(args).copied().collect();
        let output = self.run(&args);
        let report = report(&output);
        (output, report)
    }
}

/// The action about `namespace/name` (panics, listing the report's actions,
/// when there is none).
pub fn action<'a>(report: &'a Report, namespace: &str, name: &str) -> &'a ActionRecord {
    report
        .actions
        .iter()
        .find(|a| a.namespace == namespace && a.name == name)
        .unwrap_or_else(|| panic!("no action for {namespace}/{name}: {:#?}", report.actions))
}

/// Asserts what became of the action about `namespace/name`.
pub fn assert_action(
    report: &Report,
    namespace: &str,
    name: &str,
    expected: (Branch, Reason, ActionResult),
) {
    let a = action(report, namespace, name);
    assert_eq!(
        (a.branch, a.reason, a.result),
        expected,
        "{namespace}/{name}: {a:#?}"
    );
}

/// The HelmRelease carries no suspension of ours: `spec.suspend` removed,
/// no marker, `toggled-at` set (a resume landed).
pub fn assert_resumed(hr: &Value) {
    assert_eq!(hr["spec"].get("suspend"), None, "still suspended: {hr}");
    assert_eq!(annotation(hr, SUSPENDED_AT), None, "marker left: {hr}");
    assert!(annotation(hr, TOGGLED_AT).is_some(), "no toggled-at: {hr}");
}
