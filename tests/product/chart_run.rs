//! What the chart renders is enough to run: the real binary, started with
//! exactly the container args the chart renders, as the chart's
//! ServiceAccount, against the fake API server enforcing exactly the RBAC
//! objects the chart renders (cluster-wide and namespaced mode). Nothing may
//! be denied, and the recoveries must happen.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fake_apiserver::{FakeApiServer, ServerConfig};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::chart_support::{NAMESPACE, RELEASE, Rendered, describe, render, values_file};
use crate::common::{Hr, find_condition, stuck_deployed, stuck_pending};
use stuck_hr_recovery::config::parse_duration;

/// A fake cluster whose RBAC is the chart's rendered RBAC.
struct ChartCluster {
    server: FakeApiServer,
    _dir: TempDir,
    kubeconfig: PathBuf,
}

impl ChartCluster {
    fn start(rendered: &Rendered) -> ChartCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let rbac = dir.path().join("rbac");
        std::fs::create_dir(&rbac).expect("rbac dir");
        std::fs::write(rbac.join("chart.yaml"), &rendered.yaml).expect("rendered RBAC written");
        let account = rendered.one("ServiceAccount");
        let sa_name = account["metadata"]["name"].as_str().expect("SA name");
        let sa_ns = account["metadata"]["namespace"]
            .as_str()
            .expect("SA namespace");
        let server = FakeApiServer::start(
            ServerConfig::new()
                .rbac_dir(&rbac)
                .service_account(sa_ns, sa_name),
        )
        .expect("fake API server starts");
        let kubeconfig = dir.path().join("kubeconfig");
        server
            .write_kubeconfig(
                &kubeconfig,
                &format!("system:serviceaccount:{sa_ns}:{sa_name}"),
            )
            .expect("kubeconfig written");
        ChartCluster {
            server,
            _dir: dir,
            kubeconfig,
        }
    }

    fn seed(&self, objects: impl IntoIterator<Item = Value>) {
        for object in objects {
            self.server.apply(object).expect("seed accepted");
        }
    }

    /// The binary with exactly the rendered container args, and no
    /// `STUCK_HR_*` variable from the test's environment.
    fn run(&self, rendered: &Rendered, home: &Path) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stuck-hr-recovery"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STUCK_HR_") {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("KUBERNETES_SERVICE_HOST")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", home)
            .args(rendered.args());
        crate::chart_support::run(&mut cmd)
    }

    fn hr(&self, ns: &str, name: &str) -> Value {
        self.server
            .helmrelease(ns, name)
            .unwrap_or_else(|| panic!("HelmRelease {ns}/{name} exists"))
    }
}

fn render_values(values: &Value) -> Rendered {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = values_file(dir.path(), "values.json", values);
    render(&["-f", file.to_str().expect("UTF-8 path")])
}

fn ready_status(hr: &Value) -> String {
    find_condition(hr, "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or("<none>")
        .to_string()
}

fn json_stdout(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", describe(out)))
}

fn seconds(text: &Value) -> Duration {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("a duration string, got {text}"));
    parse_duration(text).unwrap_or_else(|| panic!("{text} is not a duration"))
}

#[test]
fn a_run_with_the_charts_args_and_cluster_rbac_recovers_and_is_denied_nothing() {
    let rendered = render_values(&json!({
        "stuckThreshold": "2m",
        "maxActions": 5,
        "suspendWait": "1s",
        "cooldown": "45m",
        "timeout": "60s",
        "output": "json",
        "logFormat": "json"
    }));
    assert!(rendered.all("Role").is_empty());
    let cluster = ChartCluster::start(&rendered);
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.seed(stuck_pending("infra", "ingress"));
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let home = tempfile::tempdir().expect("home");

    let out = cluster.run(&rendered, home.path());

    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let tally = cluster.server.rbac_tally();
    assert!(
        tally.denied.is_empty(),
        "the chart's RBAC denied: {:#?}",
        tally.denied
    );
    assert!(
        tally.unused().is_empty(),
        "every rule the chart grants is used: unused {:#?}",
        tally.unused()
    );

    let report = json_stdout(&out);
    let config = &report["config"];
    assert_eq!(seconds(&config["stuckThreshold"]), Duration::from_secs(120));
    assert_eq!(config["maxActions"], 5);
    assert_eq!(seconds(&config["suspendWait"]), Duration::from_secs(1));
    assert_eq!(seconds(&config["cooldown"]), Duration::from_secs(45 * 60));
    assert_eq!(seconds(&config["timeout"]), Duration::from_secs(60));
    assert_eq!(config["namespaces"], json!([]));
    assert_eq!(report["dryRun"], "none");
    assert_eq!(report["counts"]["acted"], 2, "{report:#}");

    assert_eq!(ready_status(&cluster.hr("apps", "web")), "True");
    assert!(
        cluster.hr("infra", "ingress")["spec"]["suspend"].is_null(),
        "resumed after the toggle"
    );
    // Logs on stderr are JSON lines (logFormat=json).
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "a log line that is not JSON: {line}"
        );
    }
}

#[test]
fn a_run_in_namespaced_mode_stays_in_its_namespaces_and_is_denied_nothing() {
    let rendered = render_values(&json!({
        "rbac": {"namespaced": true},
        "namespaces": ["apps"],
        "suspendWait": "1s",
        "output": "json"
    }));
    assert!(rendered.all("ClusterRole").is_empty());
    let cluster = ChartCluster::start(&rendered);
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.seed(stuck_deployed("other", "elsewhere"));
    let home = tempfile::tempdir().expect("home");

    let out = cluster.run(&rendered, home.path());

    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let tally = cluster.server.rbac_tally();
    assert!(
        tally.denied.is_empty(),
        "the chart's Roles denied: {:#?}",
        tally.denied
    );
    assert_eq!(ready_status(&cluster.hr("apps", "web")), "True");
    assert_eq!(
        ready_status(&cluster.hr("other", "elsewhere")),
        "Unknown",
        "outside the listed namespaces nothing is touched"
    );
    let report = json_stdout(&out);
    assert_eq!(report["config"]["namespaces"], json!(["apps"]));
    for request in cluster.server.requests() {
        assert!(
            !request.path.contains("/namespaces/other/")
                && request.path != "/apis/helm.toolkit.fluxcd.io/v2/helmreleases",
            "a namespaced run only reads its namespaces: {} {}",
            request.method,
            request.path
        );
    }
}

#[test]
fn the_charts_service_account_is_the_one_the_binding_names() {
    let rendered = render(&[]);
    let account = rendered.one("ServiceAccount");
    assert_eq!(account["metadata"]["name"], RELEASE);
    assert_eq!(account["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rendered.one("ClusterRoleBinding")["subjects"][0],
        json!({"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE})
    );
}
