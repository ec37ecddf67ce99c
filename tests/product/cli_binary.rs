//! The built binary, driven with assert_cmd: usage errors, every exit code
//! of SPEC §7, flags and their environment variables, the text summary line
//! and the JSON report.

use crate::common::*;
use fake_apiserver::Fault;
use predicates::prelude::*;
use serde_json::json;

#[test]
fn unknown_flag_is_exit_2_with_only_the_usage_error() {
    let cluster = Cluster::start();
    cluster
        .cmd()
        .arg("--no-such-flag")
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("--no-such-flag"));
    assert!(cluster.requests().is_empty(), "no request on bad usage");
}

#[test]
fn bad_duration_flag_and_variable_are_exit_2_naming_the_flag() {
    let cluster = Cluster::start();
    for (args, env) in [
        (vec!["--stuck-threshold", "5x"], None),
        (vec!["--timeout", "-3s"], None),
        (vec!["--suspend-wait", "soon"], None),
        (vec!["--max-actions", "ten"], None),
        (vec![], Some(("STUCK_HR_COOLDOWN", "half an hour"))),
        (vec!["--dry-run=maybe"], None),
        (vec!["-o", "yaml"], None),
    ] {
        let mut cmd = cluster.cmd();
        cmd.args(&args);
        if let Some((key, value)) = env {
            cmd.env(key, value);
        }
        let out = cmd.output().expect("runs");
        let stderr = usage_error(&out, &format!("{args:?} {env:?}"));
        let flag = args
            .first()
            .map(|f| f.split('=').next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| "--cooldown".to_owned());
        assert!(
            stderr.contains(&flag),
            "{args:?}: message names {flag}: {stderr}"
        );
        assert!(stderr.lines().count() <= 6, "a short message: {stderr}");
    }
    assert!(cluster.requests().is_empty());
}

#[test]
fn nothing_to_do_is_exit_0_with_the_summary_line() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    cluster
        .cmd()
        .assert()
        .code(0)
        .stdout("scanned=1 stuck=0 planned=0 acted=0 failed=0 guardrail=ok dry-run=none\n");
}

#[test]
fn text_report_lists_actions_then_skips_then_the_summary() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.seed([
        Hr::deployed_unknown("apps", "young", 1).build(),
        Hr::healthy("apps", "calm").build(),
        Hr::deployed_unknown("apps", "nosecret", 10).build(),
    ]);
    cluster
        .cmd()
        .args(["--suspend-wait", "1ms"])
        .assert()
        .code(0)
        .stdout(
            "apps/web correct-status deployed-but-unknown-ready succeeded\n\
         apps/nosecret skip helm-storage-disagrees\n\
         apps/young skip within-threshold\n\
         scanned=4 stuck=2 planned=1 acted=1 failed=0 guardrail=ok dry-run=none\n",
        );
}

#[test]
fn json_report_of_a_real_run() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.seed([
        Hr::deployed_unknown("apps", "db", 10).build(),
        helm_secret("apps", "db", 1, "pending-upgrade"),
    ]);
    let out = cluster.run(&["-o", "json", "-n", "apps"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        json_report(&out),
        json!({
            "dryRun": "none",
            "config": {"stuckThreshold": "5m", "maxActions": 10, "suspendWait": "5s",
                       "cooldown": "30m", "timeout": "90s", "namespaces": ["apps"], "selector": null},
            "counts": {"scanned": 2, "stuck": 2, "planned": 1, "acted": 1, "failed": 0},
            "guardrail": {"tripped": false, "candidates": 1, "maxActions": 10},
            "actions": [{"namespace": "apps", "name": "web", "branch": "correct-status",
                         "reason": "deployed-but-unknown-ready", "result": "succeeded", "error": null, "blocks": []}],
            "skipped": [{"namespace": "apps", "name": "db", "reason": "helm-storage-disagrees", "blocks": []}],
            "exitCode": 0
        })
    );
}

#[test]
fn every_flag_is_also_read_from_its_variable_and_the_flag_wins() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    let vars = [
        ("STUCK_HR_THRESHOLD", "30s"),
        ("STUCK_HR_MAX_ACTIONS", "3"),
        ("STUCK_HR_SUSPEND_WAIT", "1s"),
        ("STUCK_HR_COOLDOWN", "1h"),
        ("STUCK_HR_TIMEOUT", "20s"),
        ("STUCK_HR_DRY_RUN", "client"),
        ("STUCK_HR_NAMESPACES", "apps,other"),
        ("STUCK_HR_SELECTOR", "app"),
        ("STUCK_HR_OUTPUT", "json"),
        ("STUCK_HR_LOG_FORMAT", "json"),
    ];
    let out = cluster.cmd().envs(vars).output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(report["dryRun"], "client");
    assert_eq!(
        report["config"],
        json!({"stuckThreshold": "30s", "maxActions": 3, "suspendWait": "1s", "cooldown": "1h",
               "timeout": "20s", "namespaces": ["apps", "other"], "selector": "app"})
    );
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "JSON log line: {line}"
        );
    }
    assert!(cluster.hr_writes().is_empty(), "STUCK_HR_DRY_RUN=client");

    // Flags beat variables.
    let out = cluster
        .cmd()
        .envs(vars)
        .args([
            "-o",
            "text",
            "--dry-run=client",
            "--max-actions",
            "7",
            "-n",
            "apps",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).ends_with("guardrail=ok dry-run=client\n"),
        "{}",
        describe(&out)
    );

    // An empty STUCK_HR_DRY_RUN means none.
    let out = cluster
        .cmd()
        .env("STUCK_HR_DRY_RUN", "")
        .args(["-o", "json"])
        .output()
        .expect("runs");
    assert_eq!(json_report(&out)["dryRun"], "none", "{}", describe(&out));
}

#[test]
fn defaults_are_the_spec_defaults() {
    let cluster = Cluster::start();
    let out = cluster.run(&["-o", "json", "--dry-run"]);
    assert_eq!(
        json_report(&out)["config"],
        json!({"stuckThreshold": "5m", "maxActions": 10, "suspendWait": "5s", "cooldown": "30m",
               "timeout": "90s", "namespaces": [], "selector": null})
    );
}

#[test]
fn tripped_guardrail_is_exit_1() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "a"));
    cluster.seed(stuck_deployed("apps", "b"));
    cluster
        .cmd()
        .args(["--max-actions", "1"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "apps/a correct-status deployed-but-unknown-ready planned",
        ))
        .stdout(predicate::str::ends_with(
            "guardrail=tripped dry-run=none\n",
        ));
    // A client dry run exits 1 as well, and sends no Event.
    let dry = Cluster::start();
    dry.seed(stuck_deployed("apps", "a"));
    dry.seed(stuck_deployed("apps", "b"));
    dry.cmd()
        .args(["--max-actions", "1", "--dry-run"])
        .assert()
        .code(1);
    assert!(dry.events().is_empty());
}

#[test]
fn failed_action_is_exit_3() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.add_fault(Fault::on("PATCH", "helmreleases", None).respond(500));
    cluster
        .cmd()
        .assert()
        .code(3)
        .stdout(predicate::str::contains("failed=1"));
}

#[test]
fn unreadable_storage_is_exit_3() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.add_fault(Fault::on("GET", "secrets", None).respond(500));
    cluster
        .cmd()
        .assert()
        .code(3)
        .stdout(predicate::str::contains("apps/web skip storage-unreadable"));
    assert!(cluster.hr_writes().is_empty());
}

fn assert_list_failed(out: &std::process::Output, word: &str, hint: &str) {
    assert_eq!(out.status.code(), Some(4), "{}", describe(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("({word})")),
        "says {word}: {stderr}"
    );
    assert!(
        stderr.contains(hint),
        "says what to check ({hint}): {stderr}"
    );
    assert!(
        stdout(out).ends_with(" stuck=0 planned=0 acted=0 failed=0 guardrail=ok dry-run=none\n"),
        "the report is still printed: {}",
        describe(out)
    );
}

#[test]
fn forbidden_list_is_exit_4() {
    // A real RBAC denial: a known user with no binding.
    let cluster = Cluster::start_with(|c| c.user("nobody", &[]), "nobody");
    cluster.seed(stuck_deployed("apps", "web"));
    let out = cluster.run(&[]);
    assert_list_failed(&out, "forbidden", "ClusterRole");
    assert!(cluster.writes().is_empty());
}

#[test]
fn unauthorised_list_is_exit_4() {
    let cluster = Cluster::start_with(|c| c, "stranger");
    let out = cluster.run(&[]);
    assert_list_failed(&out, "unauthorised", "credentials");
}

#[test]
fn missing_crd_is_exit_4() {
    let cluster = Cluster::start();
    cluster.add_fault(Fault::on("GET", "helmreleases", None).respond(404));
    let out = cluster.run(&[]);
    assert_list_failed(&out, "not-served", "helm.toolkit.fluxcd.io/v2");
}

#[test]
fn one_failed_namespace_of_several_is_exit_4_and_nothing_is_acted_on() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("a", "web"));
    cluster.add_fault(
        Fault::on("GET", "helmreleases", None)
            .namespace("b")
            .respond(403),
    );
    let out = cluster.run(&["-n", "a", "-n", "b"]);
    assert_list_failed(&out, "forbidden", "ClusterRole");
    assert!(
        stdout(&out).starts_with("scanned=1 "),
        "what is known: {}",
        describe(&out)
    );
    assert!(cluster.writes().is_empty());
}

#[test]
fn unreachable_server_is_exit_4() {
    let cluster = Cluster::start();
    let (dir, kubeconfig) = cluster.stop_server();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("stuck-hr-recovery"))
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(["--timeout", "10s"])
        .output()
        .expect("runs");
    assert_list_failed(&out, "unreachable", "reachable");
}

#[test]
fn context_flag_picks_the_kubeconfig_context() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    cluster.cmd().args(["--context", "fake"]).assert().code(0);
    let out = cluster.run(&["--context", "nope"]);
    assert_list_failed(&out, "no-config", "--context");
}
