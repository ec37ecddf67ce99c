//! The helm-controller model against what the real controller showed
//! (issue 20 point 8; docs/helm-controller-source.md, tests/real/recovery.rs):
//! a lost Ready write with `Released` missing stays Unknown across interval
//! reconciles and a restart (the model's first sight); a stale
//! `pending-install` left by a killed controller is unlocked at the restart
//! and upgraded.

mod common;

use fake_apiserver::controller::{HelmControllerModel, Outcome, Trigger};
use fake_apiserver::{FakeApiServer, ServerConfig};
use serde_json::{Value, json};

fn empty_server() -> FakeApiServer {
    FakeApiServer::start(ServerConfig::new()).expect("server starts")
}

fn release(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"interval": "30s", "chart": {"spec": {"chart": "hello", "version": "0.1.0",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}},
    })
}

fn condition<'a>(hr: &'a Value, type_: &str) -> Option<&'a Value> {
    hr["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn storage(server: &FakeApiServer, ns: &str, name: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = server
        .list("v1", "secrets", Some(ns))
        .into_iter()
        .filter(|s| s["metadata"]["labels"]["name"] == name)
        .map(|s| {
            let l = &s["metadata"]["labels"];
            (
                l["version"].as_str().unwrap_or_default().to_owned(),
                l["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn released_missing_stays_unknown_across_intervals_and_a_restart() {
    let server = empty_server();
    let stuck = server
        .install_losing_conditions_write(release("apps", "web"), "2026-12-04T10:00:00Z")
        .expect("seeded");
    assert!(condition(&stuck, "Released").is_none(), "{stuck:#}");
    assert!(condition(&stuck, "Reconciling").is_none(), "{stuck:#}");
    assert_eq!(stuck["status"]["history"][0]["status"], "deployed");
    assert_eq!(stuck["status"]["observedGeneration"], 1);

    let mut model = HelmControllerModel::new();
    model.mark_handled(&server);
    for _ in 0..3 {
        let pass = model.reconcile_all(&server);
        assert_eq!(pass.len(), 1);
        assert_eq!(pass[0].trigger, Trigger::Interval);
        assert_eq!(pass[0].outcome, Outcome::InSync);
    }
    // A restarted controller sees every object for the first time.
    let mut restarted = HelmControllerModel::new();
    let pass = restarted.reconcile_triggered(&server);
    assert_eq!(pass[0].trigger, Trigger::FirstSight);
    let hr = server.helmrelease("apps", "web").expect("exists");
    let ready = condition(&hr, "Ready").expect("Ready");
    assert_eq!(ready["status"], "Unknown", "{hr:#}");
    assert!(condition(&hr, "Released").is_none(), "{hr:#}");
    assert_eq!(
        storage(&server, "apps", "web"),
        [("1".into(), "deployed".into())]
    );
}

#[test]
fn released_true_recorded_heals_on_the_next_reconcile() {
    let server = empty_server();
    server
        .install_losing_ready_write(release("apps", "db"), "2026-12-04T10:00:00Z")
        .expect("seeded");
    let mut model = HelmControllerModel::new();
    model.mark_handled(&server);
    assert!(model.reconcile_triggered(&server).is_empty());
    model.reconcile_all(&server);
    let hr = server.helmrelease("apps", "db").expect("exists");
    assert_eq!(condition(&hr, "Ready").unwrap()["status"], "True", "{hr:#}");
    assert_eq!(
        condition(&hr, "Ready").unwrap()["reason"],
        "InstallSucceeded"
    );
}

#[test]
fn a_stale_pending_install_is_unlocked_and_upgraded_at_the_restart() {
    let server = empty_server();
    let mut killed = release("apps", "kafka");
    killed["status"] = json!({
        "storageNamespace": "apps",
        "conditions": [
            {"type": "Reconciling", "status": "True", "reason": "Progressing",
             "message": "Running 'install' action with timeout of 5m0s",
             "lastTransitionTime": "2026-12-04T10:00:00Z", "observedGeneration": 1},
            {"type": "Ready", "status": "Unknown", "reason": "Progressing",
             "message": "Running 'install' action with timeout of 5m0s",
             "lastTransitionTime": "2026-12-04T10:00:00Z", "observedGeneration": 1},
        ],
    });
    server.apply(killed).expect("HelmRelease");
    server
        .apply(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"namespace": "apps", "name": "sh.helm.release.v1.kafka.v1",
                "labels": {"owner": "helm", "name": "kafka", "version": "1", "status": "pending-install"}},
            "data": {"release": "c3R1Yg=="},
        }))
        .expect("release Secret");

    let mut model = HelmControllerModel::new();
    let pass = model.reconcile_triggered(&server);
    assert_eq!(pass.len(), 1);
    assert_eq!(pass[0].outcome, Outcome::Unlocked);
    assert!(pass[0].wrote);
    assert_eq!(
        storage(&server, "apps", "kafka"),
        [
            ("1".into(), "failed".into()),
            ("2".into(), "deployed".into())
        ]
    );
    let hr = server.helmrelease("apps", "kafka").expect("exists");
    let ready = condition(&hr, "Ready").expect("Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("True"), &json!("UpgradeSucceeded")),
        "{hr:#}"
    );
    assert_eq!(hr["status"]["history"][0]["version"], 2);
    assert_eq!(hr["status"]["history"][0]["action"], "upgrade");
    assert!(condition(&hr, "Reconciling").is_none());
    // And it stays so.
    model.reconcile_all(&server);
    let hr = server.helmrelease("apps", "kafka").expect("exists");
    assert_eq!(condition(&hr, "Ready").unwrap()["status"], "True");
}
