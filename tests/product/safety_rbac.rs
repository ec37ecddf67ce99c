//! Issue 4, point 5: RBAC parity. Across a representative set of runs
//! (every branch, a conflict's re-read, a tripped guardrail, a server dry
//! run, namespaces and a selector), the fake server enforcing `rbac/` as is
//! denies nothing, and every rule — every verb of every rule — of `rbac/`
//! allows at least one request (events `patch` excepted, SPEC §8: kube's
//! Recorder patches only a repeated Event). Without `helmreleases/status`
//! the run exits 3 and its report and logs name the denied permission.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::safety::*;
use crate::common::*;
use fake_apiserver::Fault;
use serde_json::Value;

fn rbac_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rbac"))
}

/// `group/resource:verb` for every verb of every rule of the ClusterRole.
fn granted() -> BTreeSet<String> {
    let text = std::fs::read_to_string(rbac_dir().join("clusterrole.yaml")).expect("clusterrole");
    let role: Value = serde_saphyr::from_str(&text).expect("clusterrole is YAML");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for group in rule["apiGroups"].as_array().into_iter().flatten() {
            for resource in rule["resources"].as_array().into_iter().flatten() {
                for verb in rule["verbs"].as_array().into_iter().flatten() {
                    granted.insert(format!(
                        "{}/{}:{}",
                        group.as_str().unwrap_or_default(),
                        resource.as_str().unwrap_or_default(),
                        verb.as_str().unwrap_or_default()
                    ));
                }
            }
        }
    }
    granted
}

/// Arms a scenario's faults on a fresh cluster and returns its arguments.
type Setup = dyn Fn(&Cluster) -> Vec<String>;

const EVENTS_PATCH: &str = "events.k8s.io/events:patch";

#[test]
fn rbac_as_is_denies_nothing_and_every_rule_is_used() {
    let ledger = RbacLedger::default();
    let scenarios: Vec<(&str, Box<Setup>)> = vec![
        (
            "every branch",
            Box::new(|_| fault_run_args().iter().map(|s| s.to_string()).collect()),
        ),
        (
            "409 on a first write: re-read",
            Box::new(|c| {
                c.add_fault(
                    Fault::on("PATCH", "helmreleases", None)
                        .namespace(CORRECT_NS)
                        .nth(1)
                        .respond(409),
                );
                fault_run_args().iter().map(|s| s.to_string()).collect()
            }),
        ),
        (
            "guardrail tripped",
            Box::new(|_| {
                ["-o", "json", "--max-actions", "1"]
                    .map(String::from)
                    .to_vec()
            }),
        ),
        (
            "server dry run",
            Box::new(|_| {
                ["-o", "json", "--dry-run=server"]
                    .map(String::from)
                    .to_vec()
            }),
        ),
        (
            "namespaces and selector",
            Box::new(|_| {
                [
                    "-o",
                    "json",
                    "-n",
                    CORRECT_NS,
                    "-n",
                    TOGGLE_NS,
                    "-l",
                    "app=hr",
                    "--suspend-wait",
                    SUSPEND_WAIT,
                ]
                .map(String::from)
                .to_vec()
            }),
        ),
    ];
    let runs = scenarios.len();
    for (name, setup) in scenarios {
        let cluster = Cluster::start();
        seed_every_branch(&cluster);
        let args = setup(&cluster);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cluster.run(&args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{name}: {}",
            describe(&out)
        );
        ledger.add(&cluster);
    }
    assert_eq!(ledger.denied(), Vec::<String>::new(), "nothing denied");
    assert_eq!(ledger.rules().len(), 4, "the tally names every rule");
    let unused = ledger.unused_rules();
    assert!(
        unused.is_empty(),
        "rules no run used (over-granting): {unused:#?}"
    );
    let used = ledger.verbs();
    let granted = granted();
    let unused_verbs: Vec<&String> = granted
        .iter()
        .filter(|g| !used.contains(*g) && g.as_str() != EVENTS_PATCH)
        .collect();
    assert!(
        unused_verbs.is_empty(),
        "verbs granted but never used: {unused_verbs:#?}; used: {used:#?}"
    );
    let needed: Vec<&String> = used.iter().filter(|u| !granted.contains(*u)).collect();
    assert!(needed.is_empty(), "used but not granted: {needed:#?}");
    println!("RBAC parity over {runs} runs: 0 denied; rule uses:");
    for (rule, n) in ledger.rules() {
        println!("  {n:>4}  {rule}");
    }
    println!(
        "  events patch used: {} (SPEC §8: only for a repeated Event)",
        used.contains(EVENTS_PATCH)
    );
}

#[test]
fn without_helmreleases_status_the_run_exits_3_and_names_the_permission() {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(rbac_dir()).expect("rbac/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("rbac file");
        let text = if path.ends_with("clusterrole.yaml") {
            let mut role: Value = serde_saphyr::from_str(&text).expect("YAML");
            if let Some(rules) = role["rules"].as_array_mut() {
                rules.retain(|r| r["resources"] != serde_json::json!(["helmreleases/status"]));
            }
            serde_saphyr::to_string(&role).expect("YAML")
        } else {
            text
        };
        std::fs::write(dir.path().join(path.file_name().expect("name")), text).expect("copy");
    }
    let cluster = cluster_with_rbac(dir.path());
    seed_every_branch(&cluster);
    let out = cluster.run(&fault_run_args());
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(report["exitCode"], 3);
    let action = action_of(&report, CORRECT_NS, HR_NAME)
        .cloned()
        .unwrap_or_default();
    assert_eq!(action["result"], "rolled-back", "{action}");
    let error = action["error"].as_str().unwrap_or_default();
    for word in ["forbidden", "patch", "helmreleases/status"] {
        assert!(error.contains(word), "report error names {word}: {error}");
    }
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("helmreleases/status") && logs.contains("forbidden"),
        "logs name the denied permission: {logs}"
    );
    let denied = cluster.server.rbac_tally().denied;
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert_eq!(denied[0].subresource.as_deref(), Some("status"));
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
    println!("without helmreleases/status: exit 3, correct-status rolled-back: {error}");
}
