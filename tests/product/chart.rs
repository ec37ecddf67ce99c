//! The Helm chart, checked with the real helm (3.18.0) and the offline
//! Kubernetes 1.33 schemas (issue 5, points 1–3). Tools come from
//! `scripts/install-tools`; a missing one fails the test.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use crate::chart_support::{
    NAMESPACE, RELEASE, Rendered, assert_helm_lint_strict_is_clean, describe, helm_template,
    read_yaml, render, repo_root, run, strings, tool, values_file,
};
use stuck_hr_recovery::cli::Cli;
use stuck_hr_recovery::config::{Config, LogFormat, OutputFormat};
use stuck_hr_recovery::model::DryRun;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A value for every key of values.yaml, each different from its default
/// where a different value is possible (a test below checks the key set
/// matches values.yaml, so a new value cannot be forgotten here).
fn every_value_set() -> Value {
    let mut values = json!({
        "enabled": true,
        "nameOverride": "hr-recovery",
        "fullnameOverride": "platform-hr-recovery",
        "stuckThreshold": "10m",
        "maxActions": 3,
        "suspendWait": "15s",
        "cooldown": "1h",
        "timeout": "2m",
        "dryRun": "server",
        "namespaces": ["apps", "infra"],
        "selector": "team in (payments,web),tier!=canary",
        "output": "json",
        "logFormat": "json",
        "schedule": "*/5 * * * *",
        "startingDeadlineSeconds": 90,
        "activeDeadlineSeconds": 300,
        "ttlSecondsAfterFinished": 600,
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 5,
        "image": {
            "repository": "registry.example.com/platform/stuck-hr-recovery",
            "tag": "0.1.0-rc.1",
            "digest": DIGEST,
            "pullPolicy": "Always"
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {
            "create": true,
            "name": "recovery-bot",
            "annotations": {"example.com/owner": "platform"}
        },
        "rbac": {"create": true, "namespaced": false},
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "256Mi"}
        },
        "nodeSelector": {"kubernetes.io/os": "linux", "node-role.example.com/infra": "true"},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                        ]
                    }]
                }
            }
        },
        "priorityClassName": "platform-critical",
        "podAnnotations": {"example.com/scrape": "false"},
        "podLabels": {"team": "platform"},
        "podSecurityContext": {
            "runAsNonRoot": true,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        }
    });
    values["eventsAddr"] = json!("http://notification-controller.flux-system.svc.cluster.local./");
    values
}

/// Renders with `values` written to a values file.
fn render_with(values: &Value) -> Rendered {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = values_file(dir.path(), "values.json", values);
    render(&["-f", file.to_str().expect("UTF-8 path")])
}

fn template_error(extra: &[&str]) -> String {
    match helm_template(extra) {
        Ok(rendered) => panic!(
            "helm template {extra:?} should have failed, rendered:\n{}",
            rendered.yaml
        ),
        Err(stderr) => stderr,
    }
}

/// Parses the rendered container args with the product's own CLI.
fn config_from_args(args: &[String]) -> Config {
    let cli = Cli::try_parse_from(
        std::iter::once("stuck-hr-recovery".to_string()).chain(args.iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("the binary's CLI rejects the chart's args {args:?}: {e}"));
    cli.into_config()
        .unwrap_or_else(|e| panic!("the binary's CLI rejects the chart's args {args:?}: {e}"))
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

// ---- lint ------------------------------------------------------------------

#[test]
fn helm_lint_strict_is_clean() {
    assert_helm_lint_strict_is_clean("helm");
}

#[test]
fn helm_lint_strict_is_clean_with_every_value_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = values_file(dir.path(), "values.json", &every_value_set());
    let out = run(Command::new(tool("helm"))
        .args(["lint", "--strict", "-f"])
        .arg(&file)
        .arg(repo_root().join("chart")));
    assert!(
        out.status.success(),
        "helm lint --strict failed:\n{}",
        describe(&out)
    );
}

#[test]
fn chart_yaml_files_pass_yamllint() {
    // Templates are not YAML until rendered; the plain YAML files are linted.
    let chart = repo_root().join("chart");
    let out = run(Command::new(tool("yamllint"))
        .args([
            "-d",
            "{extends: default, rules: {line-length: {max: 120}, document-start: disable}}",
            "--strict",
        ])
        .arg(chart.join("Chart.yaml"))
        .arg(chart.join("values.yaml")));
    assert!(out.status.success(), "yamllint failed:\n{}", describe(&out));
}

// ---- what is rendered ------------------------------------------------------

#[test]
fn defaults_render_service_account_cluster_rbac_and_cron_job() {
    let rendered = render(&[]);
    assert_eq!(
        rendered.kinds(),
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "CronJob"
        ]
    );
    for doc in &rendered.docs {
        assert_eq!(doc["metadata"]["name"], RELEASE, "name of {doc}");
    }
    let binding = rendered.one("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], RELEASE);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
    );
    assert_eq!(rendered.pod_spec()["serviceAccountName"], RELEASE);
}

#[test]
fn cron_job_runs_every_two_minutes_one_at_a_time_without_retries() {
    let rendered = render(&[]);
    let spec = &rendered.one("CronJob")["spec"];
    assert_eq!(spec["schedule"], "*/2 * * * *");
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    assert_eq!(spec["startingDeadlineSeconds"], 60);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 3);
    let job = &spec["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"], 0);
    assert_eq!(job["ttlSecondsAfterFinished"], 3600);
    assert_eq!(job["template"]["spec"]["restartPolicy"], "Never");
}

#[test]
fn active_deadline_is_derived_above_the_default_timeout() {
    let rendered = render(&[]);
    let job = &rendered.one("CronJob")["spec"]["jobTemplate"]["spec"];
    // --timeout=90s, plus 60 s for the pod to start and the run to clean up.
    assert_eq!(job["activeDeadlineSeconds"], 150);
}

#[test]
fn active_deadline_follows_a_longer_timeout() {
    let rendered = render(&["--set", "timeout=1h30m"]);
    let job = &rendered.one("CronJob")["spec"]["jobTemplate"]["spec"];
    assert_eq!(job["activeDeadlineSeconds"], 90 * 60 + 60);
    assert!(rendered.args().contains(&"--timeout=1h30m".to_string()));
}

#[test]
fn active_deadline_not_above_timeout_fails_rendering() {
    for deadline in ["90", "60"] {
        let err = template_error(&[
            "--set",
            "timeout=90s",
            "--set",
            &format!("activeDeadlineSeconds={deadline}"),
        ]);
        assert!(
            err.contains(&format!(
                "activeDeadlineSeconds ({deadline}) must be above timeout (90s = 90s)"
            )),
            "unexpected error: {err}"
        );
    }
    let ok = render(&["--set", "timeout=90s", "--set", "activeDeadlineSeconds=91"]);
    assert_eq!(
        ok.one("CronJob")["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"],
        91
    );
}

#[test]
fn zero_duration_fails_rendering_as_the_binary_would_refuse_it() {
    let err = template_error(&["--set", "suspendWait=0s"]);
    assert!(
        err.contains("suspendWait must be above zero"),
        "unexpected error: {err}"
    );
}

// ---- args ------------------------------------------------------------------

#[test]
fn default_args_are_the_spec_defaults() {
    let args = render(&[]).args();
    assert_eq!(
        args,
        [
            "--stuck-threshold=5m",
            "--max-actions=10",
            "--suspend-wait=5s",
            "--cooldown=30m",
            "--timeout=90s",
            "--dry-run=none",
            "--output=text",
            "--log-format=text",
        ]
    );
    // The binary reads them as SPEC §7's defaults.
    assert_eq!(config_from_args(&args), Config::default());
}

#[test]
fn every_value_set_renders_exactly_the_chosen_args() {
    let args = render_with(&every_value_set()).args();
    assert_eq!(
        args,
        [
            "--stuck-threshold=10m",
            "--max-actions=3",
            "--suspend-wait=15s",
            "--cooldown=1h",
            "--timeout=2m",
            "--dry-run=server",
            "--namespace=apps",
            "--namespace=infra",
            "--selector=team in (payments,web),tier!=canary",
            "--output=json",
            "--log-format=json",
            "--events-addr=http://notification-controller.flux-system.svc.cluster.local./",
        ]
    );
    let config = config_from_args(&args);
    assert_eq!(
        config,
        Config {
            stuck_threshold: minutes(10),
            max_actions: 3,
            suspend_wait: Duration::from_secs(15),
            cooldown: minutes(60),
            timeout: minutes(2),
            dry_run: DryRun::Server,
            namespaces: vec!["apps".into(), "infra".into()],
            selector: Some("team in (payments,web),tier!=canary".into()),
            output: OutputFormat::Json,
            log_format: LogFormat::Json,
            kubeconfig: None,
            context: None,
            events_addr: "http://notification-controller.flux-system.svc.cluster.local./"
                .parse()
                .ok(),
        }
    );
}

#[test]
fn each_flag_value_reaches_the_args_on_its_own() {
    let cases: [(&str, &str); 11] = [
        ("stuckThreshold=1h30m", "--stuck-threshold=1h30m"),
        ("maxActions=0", "--max-actions=0"),
        ("suspendWait=1m", "--suspend-wait=1m"),
        ("cooldown=2h", "--cooldown=2h"),
        ("timeout=3m", "--timeout=3m"),
        ("dryRun=client", "--dry-run=client"),
        ("namespaces={team-a}", "--namespace=team-a"),
        ("selector=app=web", "--selector=app=web"),
        ("output=json", "--output=json"),
        ("logFormat=json", "--log-format=json"),
        (
            "eventsAddr=http://notification-controller.flux-system.svc.cluster.local./",
            "--events-addr=http://notification-controller.flux-system.svc.cluster.local./",
        ),
    ];
    for (set, flag) in cases {
        let args = render(&["--set", set]).args();
        assert!(
            args.contains(&flag.to_string()),
            "--set {set}: {flag} missing from {args:?}"
        );
        config_from_args(&args);
    }
}

#[test]
fn every_value_set_reaches_the_rendered_objects() {
    let values = every_value_set();
    let rendered = render_with(&values);
    let name = "platform-hr-recovery";
    let cron = rendered.one("CronJob");
    assert_eq!(cron["metadata"]["name"], name);
    let spec = &cron["spec"];
    assert_eq!(spec["schedule"], "*/5 * * * *");
    assert_eq!(spec["startingDeadlineSeconds"], 90);
    assert_eq!(spec["successfulJobsHistoryLimit"], 1);
    assert_eq!(spec["failedJobsHistoryLimit"], 5);
    let job = &spec["jobTemplate"]["spec"];
    assert_eq!(job["activeDeadlineSeconds"], 300);
    assert_eq!(job["ttlSecondsAfterFinished"], 600);

    let template = &job["template"];
    assert_eq!(
        template["metadata"]["annotations"],
        values["podAnnotations"]
    );
    assert_eq!(template["metadata"]["labels"]["team"], "platform");
    assert_eq!(
        template["metadata"]["labels"]["app.kubernetes.io/name"],
        "hr-recovery"
    );

    let pod = rendered.pod_spec();
    assert_eq!(pod["serviceAccountName"], "recovery-bot");
    assert_eq!(pod["priorityClassName"], "platform-critical");
    assert_eq!(pod["imagePullSecrets"], values["imagePullSecrets"]);
    assert_eq!(pod["nodeSelector"], values["nodeSelector"]);
    assert_eq!(pod["tolerations"], values["tolerations"]);
    assert_eq!(pod["affinity"], values["affinity"]);
    assert_eq!(pod["securityContext"], values["podSecurityContext"]);

    let container = rendered.container();
    assert_eq!(
        container["image"],
        format!("registry.example.com/platform/stuck-hr-recovery@{DIGEST}")
    );
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["resources"], values["resources"]);
    assert_eq!(container["securityContext"], values["securityContext"]);

    let account = rendered.one("ServiceAccount");
    assert_eq!(account["metadata"]["name"], "recovery-bot");
    assert_eq!(
        account["metadata"]["annotations"],
        values["serviceAccount"]["annotations"]
    );
    assert_eq!(rendered.one("ClusterRole")["metadata"]["name"], name);
    let binding = rendered.one("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], name);
    assert_eq!(binding["subjects"][0]["name"], "recovery-bot");
}

/// Leaf paths of a values tree: maps that the schema types as objects of
/// this chart (`additionalProperties: false` with `properties`) are entered,
/// everything else is a leaf.
fn value_paths(values: &Value, schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Some(map) = values.as_object() else {
        return;
    };
    for (key, value) in map {
        let path = format!("{prefix}{key}");
        let node = &schema["properties"][key];
        let ours = node["additionalProperties"] == false
            && node["properties"].is_object()
            && path != "resources";
        if ours && value.is_object() {
            value_paths(value, node, &format!("{path}."), out);
        } else {
            out.insert(path);
        }
    }
}

fn chart_schema() -> Value {
    let text = std::fs::read_to_string(repo_root().join("chart/values.schema.json"))
        .expect("schema readable");
    serde_json::from_str(&text).expect("schema is JSON")
}

#[test]
fn every_value_set_fixture_covers_every_key_of_values_yaml() {
    let schema = chart_schema();
    let mut defaults = BTreeSet::new();
    value_paths(
        &read_yaml(&repo_root().join("chart/values.yaml")),
        &schema,
        "",
        &mut defaults,
    );
    let mut fixture = BTreeSet::new();
    value_paths(&every_value_set(), &schema, "", &mut fixture);
    assert_eq!(
        fixture, defaults,
        "every_value_set() must set every key of values.yaml"
    );
}

#[test]
fn schema_declares_exactly_the_keys_of_values_yaml() {
    let schema = chart_schema();
    let values = read_yaml(&repo_root().join("chart/values.yaml"));
    let declared: BTreeSet<&String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .collect();
    let present: BTreeSet<&String> = values
        .as_object()
        .expect("values is a map")
        .keys()
        .collect();
    assert_eq!(declared, present);
    assert_eq!(schema["additionalProperties"], false);
}

// ---- enabled -----------------------------------------------------------------

#[test]
fn enabled_false_renders_nothing() {
    let rendered = render(&["--set", "enabled=false"]);
    assert!(
        rendered.docs.is_empty(),
        "expected no manifests, got:\n{}",
        rendered.yaml
    );
    // Even in namespaced mode, and with a file rather than --set.
    let mut values = every_value_set();
    values["enabled"] = json!(false);
    values["rbac"]["namespaced"] = json!(true);
    let rendered = render_with(&values);
    assert!(
        rendered.docs.is_empty(),
        "expected no manifests, got:\n{}",
        rendered.yaml
    );
}

#[test]
fn enabled_true_renders_everything() {
    assert_eq!(render(&["--set", "enabled=true"]).docs.len(), 4);
}

// ---- image -------------------------------------------------------------------

#[test]
fn default_image_is_pinned_to_the_app_version() {
    let chart = read_yaml(&repo_root().join("chart/Chart.yaml"));
    let image = render(&[]).container()["image"].clone();
    let app_version = chart["appVersion"].as_str().expect("appVersion");
    assert_eq!(
        image,
        format!("ghcr.io/openova/stuck-hr-recovery:{app_version}")
    );
}

#[test]
fn empty_tag_without_digest_fails_with_a_clear_message() {
    let err = template_error(&["--set", "image.tag="]);
    assert!(
        err.contains("image.tag is empty and image.digest is not set"),
        "unexpected error: {err}"
    );
    assert!(
        err.contains("never falls back to 'latest'"),
        "unexpected error: {err}"
    );
}

#[test]
fn latest_tag_is_refused() {
    let err = template_error(&["--set", "image.tag=latest"]);
    assert!(
        err.contains("image.tag 'latest' is refused"),
        "unexpected error: {err}"
    );
}

#[test]
fn digest_wins_over_tag_and_allows_an_empty_tag() {
    let digest = format!("image.digest={DIGEST}");
    for extra in [
        vec!["--set", &digest],
        vec!["--set", &digest, "--set", "image.tag="],
    ] {
        let image = render(&extra).container()["image"].clone();
        assert_eq!(image, format!("ghcr.io/openova/stuck-hr-recovery@{DIGEST}"));
    }
}

// ---- schema --------------------------------------------------------------------

fn assert_schema_rejects(set: &str, expected: &str) {
    let err = template_error(&["--set", set]);
    assert!(
        err.contains("don't meet the specifications of the schema") && err.contains(expected),
        "--set {set}: expected a schema error mentioning {expected:?}, got: {err}"
    );
}

#[test]
fn schema_rejects_wrong_types() {
    assert_schema_rejects("maxActions=ten", "maxActions");
    assert_schema_rejects("enabled=yes", "enabled");
    assert_schema_rejects("namespaces=apps", "namespaces");
    assert_schema_rejects("startingDeadlineSeconds=soon", "startingDeadlineSeconds");
    assert_schema_rejects("rbac.namespaced=maybe", "rbac.namespaced");
}

#[test]
fn schema_rejects_values_outside_their_vocabulary() {
    assert_schema_rejects("dryRun=all", "dryRun");
    assert_schema_rejects("output=yaml", "output");
    assert_schema_rejects("logFormat=logfmt", "logFormat");
    assert_schema_rejects("stuckThreshold=5 minutes", "stuckThreshold");
    assert_schema_rejects("timeout=500ms", "timeout");
    assert_schema_rejects("maxActions=-1", "maxActions");
    // The CronJob controller looks every 10 s: a shorter starting deadline
    // can skip every run.
    assert_schema_rejects("startingDeadlineSeconds=5", "startingDeadlineSeconds");
    assert_schema_rejects("image.digest=sha256:abc", "image.digest");
    assert_schema_rejects("image.pullPolicy=Sometimes", "image.pullPolicy");
}

#[test]
fn schema_rejects_unknown_keys() {
    assert_schema_rejects(
        "maxAction=3",
        "Additional property maxAction is not allowed",
    );
    assert_schema_rejects(
        "image.version=1",
        "Additional property version is not allowed",
    );
    assert_schema_rejects(
        "rbac.clusterWide=true",
        "Additional property clusterWide is not allowed",
    );
    assert_schema_rejects(
        "serviceAccount.automount=false",
        "Additional property automount is not allowed",
    );
}

// ---- RBAC ----------------------------------------------------------------------

fn rbac_dir_rules() -> Value {
    read_yaml(&repo_root().join("rbac/clusterrole.yaml"))["rules"].clone()
}

#[test]
fn rendered_cluster_role_rules_equal_the_rbac_dir() {
    let rendered = render(&[]);
    assert_eq!(rendered.one("ClusterRole")["rules"], rbac_dir_rules());
}

#[test]
fn rendered_service_account_and_binding_match_the_rbac_dir() {
    let rendered = render(&[]);
    let sa = read_yaml(&repo_root().join("rbac/serviceaccount.yaml"));
    let binding = read_yaml(&repo_root().join("rbac/clusterrolebinding.yaml"));
    let account = rendered.one("ServiceAccount");
    assert_eq!(account["metadata"]["name"], sa["metadata"]["name"]);
    assert_eq!(
        account["metadata"]["namespace"],
        sa["metadata"]["namespace"]
    );
    assert_eq!(
        rendered.one("ClusterRoleBinding")["subjects"],
        binding["subjects"]
    );
    assert_eq!(
        rendered.one("ClusterRoleBinding")["roleRef"],
        binding["roleRef"]
    );
}

#[test]
fn namespaced_mode_grants_roles_in_each_namespace_and_scopes_the_run() {
    let rendered = render(&[
        "--set",
        "rbac.namespaced=true",
        "--set",
        "namespaces={apps,infra}",
    ]);
    assert!(
        rendered.all("ClusterRole").is_empty(),
        "no ClusterRole in namespaced mode"
    );
    assert!(rendered.all("ClusterRoleBinding").is_empty());
    let roles = rendered.all("Role");
    let bindings = rendered.all("RoleBinding");
    let ns_of = |docs: &[&Value]| -> Vec<String> {
        docs.iter()
            .map(|d| {
                d["metadata"]["namespace"]
                    .as_str()
                    .expect("namespace")
                    .to_string()
            })
            .collect()
    };
    assert_eq!(ns_of(&roles), ["apps", "infra"]);
    assert_eq!(ns_of(&bindings), ["apps", "infra"]);
    for role in &roles {
        assert_eq!(role["rules"], rbac_dir_rules());
    }
    for binding in &bindings {
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RELEASE})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
        );
    }
    let args = rendered.args();
    let scoped: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("--namespace="))
        .collect();
    assert_eq!(scoped, ["--namespace=apps", "--namespace=infra"]);
    assert_eq!(config_from_args(&args).namespaces, ["apps", "infra"]);
}

#[test]
fn namespaced_mode_without_namespaces_fails_rendering() {
    let err = template_error(&["--set", "rbac.namespaced=true"]);
    assert!(
        err.contains("rbac.namespaced=true needs a non-empty namespaces list"),
        "unexpected error: {err}"
    );
}

#[test]
fn rbac_and_service_account_can_be_brought_along() {
    let rendered = render(&[
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=existing",
    ]);
    assert_eq!(rendered.kinds(), ["CronJob"]);
    assert_eq!(rendered.pod_spec()["serviceAccountName"], "existing");
    let err = template_error(&["--set", "serviceAccount.create=false"]);
    assert!(
        err.contains("serviceAccount.name is required"),
        "unexpected error: {err}"
    );
}

// ---- Kubernetes schemas and Pod Security ----------------------------------------

/// `kubernetes-validate --strict` of every rendered manifest against the
/// schemas of one Kubernetes version.
fn assert_validates_against_kubernetes(rendered: &Rendered, version: &str, what: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered.yaml).expect("write rendered manifests");
    let out = run(Command::new(tool("kubernetes-validate"))
        .args(["-k", version, "--strict"])
        .arg(&file));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what}: kubernetes-validate -k {version} failed:\n{text}"
    );
    assert!(
        !text.contains("ERROR") && !text.contains("WARN"),
        "{what}: kubernetes-validate -k {version}:\n{text}"
    );
    let passed = text
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    assert_eq!(
        passed,
        rendered.docs.len(),
        "{what}: every manifest must pass against {version}:\n{text}"
    );
}

fn rendered_variants() -> Vec<(&'static str, Rendered)> {
    vec![
        ("defaults", render(&[])),
        ("every value set", render_with(&every_value_set())),
        (
            "namespaced mode",
            render(&[
                "--set",
                "rbac.namespaced=true",
                "--set",
                "namespaces={apps,infra}",
            ]),
        ),
    ]
}

#[test]
fn every_rendered_manifest_validates_against_kubernetes_1_33() {
    for (what, rendered) in rendered_variants() {
        assert_validates_against_kubernetes(&rendered, "1.33.0", what);
    }
}

#[test]
fn every_rendered_manifest_validates_against_the_oldest_and_newest_supported_kubernetes() {
    // Chart.yaml says kubeVersion >=1.25; the newest schemas on hand are 1.37.
    for version in ["1.25.0", "1.37.0"] {
        for (what, rendered) in rendered_variants() {
            assert_validates_against_kubernetes(&rendered, version, what);
        }
    }
}

/// The `restricted` Pod Security Standard (which includes `baseline`),
/// checked field by field on a pod spec.
fn assert_restricted(pod: &Value) {
    // baseline: host namespaces, host ports, privileged, host paths, sysctls.
    for field in ["hostNetwork", "hostPID", "hostIPC", "hostUsers"] {
        assert!(
            pod[field].is_null()
                || (field == "hostUsers" && pod[field] == true)
                || pod[field] == false,
            "pod.{field} = {}",
            pod[field]
        );
    }
    assert!(pod["securityContext"]["sysctls"].is_null(), "no sysctls");
    if let Some(volumes) = pod["volumes"].as_array() {
        for v in volumes {
            assert!(v["hostPath"].is_null(), "hostPath volume {v}");
        }
    }

    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "pod runAsNonRoot");
    assert!(
        psc["runAsUser"].as_u64().is_some_and(|u| u > 0),
        "pod runAsUser numeric, non-zero"
    );
    assert!(
        psc["runAsGroup"].as_u64().is_some_and(|g| g > 0),
        "pod runAsGroup numeric, non-zero"
    );
    assert_eq!(
        psc["seccompProfile"]["type"], "RuntimeDefault",
        "pod seccomp"
    );
    assert_eq!(
        pod["automountServiceAccountToken"], true,
        "the run needs its token"
    );

    let containers = pod["containers"].as_array().expect("containers");
    let init = pod["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in containers.iter().chain(init.iter()) {
        let sc = &c["securityContext"];
        let name = &c["name"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}: runAsNonRoot");
        assert!(
            sc["runAsUser"].as_u64().is_some_and(|u| u > 0),
            "{name}: runAsUser"
        );
        assert!(
            sc["runAsGroup"].as_u64().is_some_and(|g| g > 0),
            "{name}: runAsGroup"
        );
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{name}: readOnlyRootFilesystem"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{name}: allowPrivilegeEscalation"
        );
        assert!(
            sc["privileged"].is_null() || sc["privileged"] == false,
            "{name}: privileged"
        );
        assert_eq!(
            sc["capabilities"]["drop"],
            json!(["ALL"]),
            "{name}: capabilities.drop"
        );
        assert!(
            sc["capabilities"]["add"].is_null(),
            "{name}: capabilities.add"
        );
        assert_eq!(
            sc["seccompProfile"]["type"], "RuntimeDefault",
            "{name}: seccomp"
        );
        assert!(sc["procMount"].is_null(), "{name}: procMount");
        assert!(sc["windowsOptions"].is_null(), "{name}: windowsOptions");
        if let Some(ports) = c["ports"].as_array() {
            for p in ports {
                assert!(p["hostPort"].is_null(), "{name}: hostPort");
            }
        }
    }
}

#[test]
fn default_pod_spec_meets_the_restricted_pod_security_profile() {
    assert_restricted(render(&[]).pod_spec());
}

#[test]
fn pod_spec_with_every_value_set_still_meets_the_restricted_profile() {
    assert_restricted(render_with(&every_value_set()).pod_spec());
}

#[test]
fn restricted_profile_check_catches_a_weakened_pod() {
    // The check above must fail when a single field is weakened.
    let weakened = [
        (
            "securityContext.allowPrivilegeEscalation=true",
            "allowPrivilegeEscalation",
        ),
        (
            "securityContext.readOnlyRootFilesystem=false",
            "readOnlyRootFilesystem",
        ),
        ("podSecurityContext.runAsNonRoot=false", "pod runAsNonRoot"),
        (
            "podSecurityContext.seccompProfile.type=Unconfined",
            "pod seccomp",
        ),
        (
            "securityContext.capabilities.drop=null",
            "capabilities.drop",
        ),
    ];
    for (set, field) in weakened {
        let rendered = render(&["--set", set]);
        let pod = rendered.pod_spec().clone();
        let panic = std::panic::catch_unwind(|| assert_restricted(&pod));
        let message = panic
            .err()
            .and_then(|p| p.downcast::<String>().ok())
            .unwrap_or_else(|| panic!("--set {set} should break the restricted profile"));
        assert!(message.contains(field), "--set {set}: {message}");
    }
}

#[test]
fn container_runs_the_binary_with_args_only() {
    // No command override: the image's ENTRYPOINT is the binary.
    let rendered = render(&[]);
    let container = rendered.container();
    assert!(container["command"].is_null(), "no command override");
    // Flags are args; the only variable is the pod name (chart_pod.rs).
    assert_eq!(container["env"].as_array().map(Vec::len), Some(1));
    assert_eq!(strings(&container["args"]).len(), 8);
}
