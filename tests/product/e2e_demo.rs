//! `scripts/demo` itself: the fake API server binary with its helm-controller
//! model on (`--helm-controller`), the real product binary, and the real
//! kubectl reading the after-state (the script writes `kubectl get hr -A -o
//! json` to `DEMO_AFTER_STATE`). Asserts the objects, not the script's text.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// `namespace/name` → HelmRelease, from the after-state.
fn after_state() -> BTreeMap<String, Value> {
    let dir = tempfile::tempdir().expect("temp dir");
    let after = dir.path().join("after.json");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/demo"))
        .env("DEMO_AFTER_STATE", &after)
        .current_dir(root)
        .output()
        .expect("scripts/demo runs");
    assert!(
        out.status.success(),
        "scripts/demo failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&after).expect("scripts/demo wrote DEMO_AFTER_STATE");
    let list: Value = serde_json::from_str(&text).expect("kubectl -o json");
    list["items"]
        .as_array()
        .expect("a List")
        .iter()
        .map(|hr| {
            let m = &hr["metadata"];
            (
                format!(
                    "{}/{}",
                    m["namespace"].as_str().unwrap(),
                    m["name"].as_str().unwrap()
                ),
                hr.clone(),
            )
        })
        .collect()
}

fn ready(hr: &Value) -> (String, String) {
    let c = hr["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap_or("-").to_string(),
        c["reason"].as_str().unwrap_or("-").to_string(),
    )
}

#[test]
fn the_demo_recovers_every_recoverable_helmrelease_and_unblocks_the_dependent_chain() {
    let hrs = after_state();
    assert_eq!(hrs.len(), 12, "{:?}", hrs.keys());
    // Not recoverable by this tool, and left as they were: a real failure,
    // an operator's suspension, Helm's own pending install, one within the
    // threshold, and the dependent of the pending install.
    let unrecoverable = [
        "infra/cert-manager",
        "monitoring/metrics",
        "data/kafka",
        "monitoring/grafana",
        "data/kafka-ui",
    ];
    for (name, hr) in &hrs {
        if unrecoverable.contains(&name.as_str()) {
            continue;
        }
        assert_eq!(ready(hr).0, "True", "{name}: {:#}", hr["status"]);
        assert_eq!(
            hr["status"]["observedGeneration"], hr["metadata"]["generation"],
            "{name}: Ready at its current generation"
        );
        assert!(
            !hr["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Reconciling" && c["status"] == "True"),
            "{name}: still Reconciling"
        );
    }
    // The dependent chain web → backend → podinfo (stuck) is unblocked: the
    // model reconciled both dependents once podinfo was corrected.
    for name in ["apps/backend", "apps/web"] {
        assert_eq!(
            ready(&hrs[name]),
            ("True".into(), "InstallSucceeded".into()),
            "{name}"
        );
    }
    // redis and loki were recovered by the model's upgrade of the release
    // their history did not show (revision 2), not by this tool's writes.
    for name in ["data/redis", "monitoring/loki"] {
        let hr = &hrs[name];
        assert_eq!(hr["status"]["history"][0]["version"], 2, "{name}");
        assert_eq!(
            ready(hr),
            ("True".into(), "UpgradeSucceeded".into()),
            "{name}"
        );
        assert_ne!(hr["spec"]["suspend"], Value::Bool(true), "{name}: resumed");
    }
    // The model is no rubber stamp: kafka-ui still waits for kafka.
    assert_eq!(
        ready(&hrs["data/kafka-ui"]),
        ("False".into(), "DependencyNotReady".into())
    );
    assert_eq!(ready(&hrs["data/kafka"]).0, "Unknown");
    assert_eq!(ready(&hrs["infra/cert-manager"]).0, "False");
}
