//! Issue 19 point 6: the testbed works. A HelmRelease of ours, installed by
//! the real helm-controller from our chart repository through the real
//! source-controller, reaches Ready=True; the real kubectl lists it; and
//! `kubectl auth can-i` as the chart's ServiceAccount, with `rbac/` applied
//! as it ships, answers exactly what `rbac/` grants, verb by verb.

use std::process::Stdio;

use serde_json::{Value, json};
use testbed::Options;

use crate::support::{
    self, CONTROLLER_TIMEOUT, HR_API, SA_USER, describe, find_condition, kubectl, repo,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testbed_works() {
    let bed = support::start(Options::default()).await;
    let url = bed.chart_repo_url().expect("chart repository").to_owned();
    let ns = "apps";
    bed.ensure_namespace(ns).await.expect("namespace");
    bed.create(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"namespace": ns, "name": "charts"},
        "spec": {"url": url, "interval": "10m"},
    }))
    .await
    .expect("HelmRepository created");
    bed.create(json!({
        "apiVersion": HR_API,
        "kind": "HelmRelease",
        "metadata": {"namespace": ns, "name": "hello"},
        "spec": {
            "interval": "10m",
            "chart": {"spec": {"chart": "hello", "version": "0.1.0",
                "sourceRef": {"kind": "HelmRepository", "name": "charts"}}},
            "values": {"message": "from the testbed"},
        },
    }))
    .await
    .expect("HelmRelease created");

    // The real controllers install it: Ready=True, history[0] deployed.
    let hr = bed
        .wait("apps/hello Ready=True", CONTROLLER_TIMEOUT, async || {
            let hr = bed
                .get(HR_API, "HelmRelease", Some(ns), "hello")
                .await
                .map_err(|e| e.to_string())?
                .ok_or("HelmRelease gone")?;
            match find_condition(&hr, "Ready") {
                Some(c) if c["status"] == "True" => Ok(hr),
                _ => Err(format!("status: {}", hr["status"])),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(hr["status"]["history"][0]["status"], "deployed", "{hr:#}");
    assert_eq!(hr["status"]["history"][0]["chartName"], "hello", "{hr:#}");
    // Helm's own storage and the chart's ConfigMap are there.
    let secret = bed
        .get("v1", "Secret", Some(ns), "sh.helm.release.v1.hello.v1")
        .await
        .expect("readable")
        .expect("Helm release Secret v1 exists");
    assert_eq!(
        secret["metadata"]["labels"]["status"], "deployed",
        "{secret:#}"
    );
    assert_eq!(secret["metadata"]["labels"]["owner"], "helm", "{secret:#}");
    let cm = bed
        .get("v1", "ConfigMap", Some(ns), "hello-hello")
        .await
        .expect("readable")
        .expect("the chart's ConfigMap exists");
    assert_eq!(cm["data"]["message"], "from the testbed");

    // The real kubectl lists it, by short name and as JSON.
    let table = kubectl(&bed, &["get", "hr", "-A"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("apps") && l.contains("hello") && l.contains("True")),
        "kubectl get hr -A:\n{table}"
    );
    let list: Value = serde_json::from_str(&kubectl(
        &bed,
        &[
            "get",
            "helmreleases.helm.toolkit.fluxcd.io",
            "-A",
            "-o",
            "json",
        ],
    ))
    .expect("JSON list");
    let names: Vec<_> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap_or_default(),
                i["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(names, ["apps/hello"]);

    // helm-controller can be killed (a crash) and started again; the
    // release stays Ready.
    bed.kill_helm_controller();
    assert!(!bed.helm_controller_running());
    bed.start_helm_controller(None)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(bed.helm_controller_running());

    // `kubectl auth can-i` as the ServiceAccount matches rbac/ verb by verb.
    let sa = support::apply_rbac(&bed).await;
    let rules = rbac_rules();
    let verbs = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    // (group, resource, subresource): every resource of rbac/ and neighbours
    // it must not reach.
    let mut resources: Vec<(String, String, Option<String>)> = Vec::new();
    for (groups, res, _) in &rules {
        for g in groups {
            for r in res {
                let (r, sub) = match r.split_once('/') {
                    Some((r, s)) => (r.to_owned(), Some(s.to_owned())),
                    None => (r.clone(), None),
                };
                if !resources.contains(&(g.clone(), r.clone(), sub.clone())) {
                    resources.push((g.clone(), r, sub));
                }
            }
        }
    }
    for extra in [
        ("", "configmaps", None),
        ("", "events", None),
        ("", "namespaces", None),
        ("", "serviceaccounts", None),
        ("coordination.k8s.io", "leases", None),
        ("source.toolkit.fluxcd.io", "helmrepositories", None),
        ("source.toolkit.fluxcd.io", "helmcharts", None),
        ("helm.toolkit.fluxcd.io", "helmreleases", Some("finalizers")),
    ] {
        let extra = (
            extra.0.to_owned(),
            extra.1.to_owned(),
            extra.2.map(str::to_owned),
        );
        if !resources.contains(&extra) {
            resources.push(extra);
        }
    }
    let mut checks = Vec::new();
    for (group, resource, sub) in &resources {
        for verb in verbs {
            let full = match sub {
                Some(s) => format!("{resource}/{s}"),
                None => resource.clone(),
            };
            let expected = rules.iter().any(|(gs, rs, vs)| {
                gs.contains(group) && rs.contains(&full) && vs.iter().any(|v| v == verb)
            });
            // Namespaced, and across all namespaces for what the binary lists.
            checks.push((
                verb,
                group.clone(),
                resource.clone(),
                sub.clone(),
                Some("apps"),
                expected,
            ));
            if verb == "list" {
                checks.push((
                    verb,
                    group.clone(),
                    resource.clone(),
                    sub.clone(),
                    None,
                    expected,
                ));
            }
        }
    }
    let mut mismatches = Vec::new();
    let mut allowed = 0;
    for chunk in checks.chunks(8) {
        let mut running = Vec::new();
        for (verb, group, resource, sub, namespace, expected) in chunk {
            let qualified = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            let mut cmd = bed.kubectl_with(&sa.kubeconfig).expect("kubectl");
            cmd.args(["auth", "can-i", verb, &qualified]);
            if let Some(s) = sub {
                cmd.arg(format!("--subresource={s}"));
            }
            match namespace {
                Some(ns) => cmd.args(["-n", ns]),
                None => cmd.arg("--all-namespaces"),
            };
            let child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("kubectl runs");
            let label = format!(
                "{verb} {qualified}{} {}",
                sub.as_deref()
                    .map(|s| format!(" --subresource={s}"))
                    .unwrap_or_default(),
                namespace
                    .map(|n| format!("-n {n}"))
                    .unwrap_or("--all-namespaces".to_owned())
            );
            running.push((label, *expected, child));
        }
        for (label, expected, child) in running {
            let output = child.wait_with_output().expect("kubectl finishes");
            let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            let said_yes = match (output.status.code(), answer.as_str()) {
                (Some(0), "yes") => true,
                (Some(1), "no") => false,
                _ => panic!("kubectl auth can-i {label}: {}", describe(&output)),
            };
            if said_yes {
                allowed += 1;
            }
            if said_yes != expected {
                mismatches.push(format!(
                    "{label}: kubectl says {answer}, rbac/ says {expected}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "as {SA_USER}, kubectl auth can-i disagrees with rbac/:\n{}",
        mismatches.join("\n")
    );
    // Every verb rbac/ grants was asked and allowed (namespaced, and list
    // across all namespaces twice).
    let granted: usize = rules
        .iter()
        .map(|(gs, rs, vs)| gs.len() * rs.len() * vs.len())
        .sum();
    let granted_lists: usize = rules
        .iter()
        .map(|(gs, rs, vs)| gs.len() * rs.len() * vs.iter().filter(|v| *v == "list").count())
        .sum();
    assert_eq!(allowed, granted + granted_lists, "allowed answers");
    eprintln!(
        "can-i: {} checks, {allowed} allowed, all as rbac/ says",
        checks.len()
    );
}

/// The rules of `rbac/clusterrole.yaml`: (apiGroups, resources, verbs).
fn rbac_rules() -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
    let docs = testbed::read_yaml_docs(&repo().join("rbac/clusterrole.yaml")).expect("rbac/");
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole in rbac/clusterrole.yaml");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                strings(&r["apiGroups"]),
                strings(&r["resources"]),
                strings(&r["verbs"]),
            )
        })
        .collect()
}
