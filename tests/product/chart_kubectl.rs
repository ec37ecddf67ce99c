//! `kubectl create job --from=cronjob/<name>` works with what the chart
//! renders (issue 5, point 4): the rendered CronJob goes into the fake API
//! server, the real kubectl creates a Job from it, and the Job's pod
//! template is the CronJob's.
//!
//! kubectl 1.27–1.31 send the Job as JSON, so the one-step command runs as
//! is (kubectl 1.31). kubectl 1.32+ send it as protobuf, which the fake server
//! does not decode (docs/fake-apiserver.md), so with 1.33 the same code path
//! runs in two steps: `--dry-run=client -o json`, then `create -f`.

use std::path::Path;
use std::process::Command;

use fake_apiserver::{FakeApiServer, ServerConfig};
use serde_json::{Value, json};

use crate::chart_support::{
    NAMESPACE, RELEASE, Rendered, describe, kubectl_fixed, render, run, values_file,
};

/// Which kubectl makes the Job, and how.
#[derive(Clone, Copy)]
enum Kubectl {
    /// kubectl 1.31: `kubectl create job --from=cronjob/<name>`, one step.
    OneStep,
    /// kubectl 1.33: the same command with `--dry-run=client -o json`, then
    /// `kubectl create -f` (1.33 would POST protobuf).
    TwoSteps,
}

impl Kubectl {
    fn minor(self) -> &'static str {
        match self {
            Kubectl::OneStep => "1.31",
            Kubectl::TwoSteps => "1.33",
        }
    }
}

/// Runs the real fixed-version kubectl against `kubeconfig` with a fresh
/// discovery cache under `dir`.
fn kubectl(how: Kubectl, dir: &Path, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new(kubectl_fixed(how.minor()))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(dir.join("kube-cache"))
        .args(args))
}

/// Applies the rendered CronJob, runs `kubectl create job --from`, and
/// checks the Job against the CronJob; returns the Job.
fn create_job_from_cron_job(rendered: &Rendered, job_name: &str, how: Kubectl) -> Value {
    let cron = rendered.one("CronJob").clone();
    let cron_name = cron["metadata"]["name"]
        .as_str()
        .expect("CronJob name")
        .to_string();
    let server = FakeApiServer::start(ServerConfig::new()).expect("fake API server starts");
    server
        .apply(cron.clone())
        .expect("the fake API server accepts the rendered CronJob");

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    server
        .write_kubeconfig(&kubeconfig, "admin")
        .expect("kubeconfig written");

    let from = format!("--from=cronjob/{cron_name}");
    let create = ["create", "job", &from, job_name, "-n", NAMESPACE];
    let out = match how {
        Kubectl::OneStep => kubectl(how, dir.path(), &kubeconfig, &create),
        Kubectl::TwoSteps => {
            let built = kubectl(
                how,
                dir.path(),
                &kubeconfig,
                &[&create[..], &["--dry-run=client", "-o", "json"]].concat(),
            );
            assert!(
                built.status.success(),
                "kubectl create job {from} --dry-run=client failed:\n{}\nrequests:\n{}",
                describe(&built),
                request_summary(&server)
            );
            let manifest = dir.path().join("job.json");
            std::fs::write(&manifest, &built.stdout).expect("write the Job kubectl built");
            let path = manifest.to_str().expect("UTF-8 path");
            kubectl(
                how,
                dir.path(),
                &kubeconfig,
                &["create", "--validate=false", "-f", path],
            )
        }
    };
    assert!(
        out.status.success(),
        "kubectl {} creating the Job failed:\n{}\nrequests:\n{}",
        how.minor(),
        describe(&out),
        request_summary(&server)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("job.batch/{job_name} created")
    );

    let stored_cron = server
        .get("batch/v1", "cronjobs", Some(NAMESPACE), &cron_name)
        .expect("the CronJob is stored");
    let job = server
        .get("batch/v1", "jobs", Some(NAMESPACE), job_name)
        .expect("kubectl created the Job");

    let job_template = &cron["spec"]["jobTemplate"];
    // The pod template is the CronJob's, field for field (as rendered, and
    // as the server stored it). Go's encoder writes an unset
    // `creationTimestamp` as null; null and absent mean the same.
    let pod_template = without_nulls(&job["spec"]["template"]);
    assert_eq!(pod_template, job_template["spec"]["template"]);
    assert_eq!(
        pod_template,
        stored_cron["spec"]["jobTemplate"]["spec"]["template"]
    );
    // So are the Job-level settings that make a run safe.
    for field in [
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        assert_eq!(
            job["spec"][field], job_template["spec"][field],
            "Job spec.{field}"
        );
    }
    assert_eq!(
        job["metadata"]["labels"],
        job_template["metadata"]["labels"]
    );
    // kubectl marks a manual run and makes the CronJob its owner.
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "CronJob");
    assert_eq!(owner["name"], cron_name.as_str());
    assert_eq!(owner["uid"], stored_cron["metadata"]["uid"]);

    // What kubectl asked for: the CronJob, then one Job create.
    let requests = server.requests();
    let posts: Vec<_> = requests.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1, "one create: {requests:#?}");
    assert_eq!(
        posts[0].content_type.as_deref(),
        Some("application/json"),
        "the Job reached the server as JSON"
    );
    assert_eq!(
        posts[0].path,
        format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
    );
    assert!(
        requests.iter().any(|r| r.method == "GET"
            && r.path == format!("/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/{cron_name}")),
        "kubectl read the CronJob: {requests:#?}"
    );
    job
}

/// `value` with every null-valued object member removed, recursively.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// One line per request the server saw: method, path, content type, status.
fn request_summary(server: &FakeApiServer) -> String {
    server
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} -> {}",
                r.method,
                r.path,
                r.content_type.as_deref().unwrap_or("-"),
                r.status
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn kubectl_create_job_from_the_default_cron_job_copies_its_pod_template() {
    for how in [Kubectl::OneStep, Kubectl::TwoSteps] {
        let job = create_job_from_cron_job(&render(&[]), "stuck-hr-recovery-manual", how);
        assert_default_job(&job);
    }
}

fn assert_default_job(job: &Value) {
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"][0], "--stuck-threshold=5m");
    assert_eq!(
        job["spec"]["template"]["spec"]["serviceAccountName"],
        RELEASE
    );
}

#[test]
fn kubectl_create_job_from_a_fully_configured_cron_job_copies_its_pod_template() {
    let values = json!({
        "namespaces": ["apps", "infra"],
        "selector": "team=payments",
        "dryRun": "client",
        "output": "json",
        "timeout": "2m",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "platform-critical",
        "podAnnotations": {"example.com/scrape": "false"},
        "podLabels": {"team": "platform"},
        "imagePullSecrets": [{"name": "regcred"}]
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let file = values_file(dir.path(), "values.json", &values);
    let rendered = render(&["-f", file.to_str().expect("UTF-8 path")]);
    for how in [Kubectl::OneStep, Kubectl::TwoSteps] {
        let job = create_job_from_cron_job(&rendered, "manual-1", how);
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["priorityClassName"], "platform-critical");
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 180);
    }
}
