//! Recovery end to end: the stuck state is created by the helm-controller
//! model's own mechanism, the real binary runs, then the model reconciles —
//! and the HelmRelease ends Ready=True, stays so, and its dependent unblocks.

mod common;

use common::*;
use fake_apiserver::controller::{HelmControllerModel, Outcome, is_ready_now};
use serde_json::json;

fn dependent(ns: &str, name: &str, on: &str) -> serde_json::Value {
    let mut hr = Hr::healthy(ns, name).build();
    hr["spec"]["dependsOn"] = json!([{"name": on}]);
    hr
}

fn ready_status(cluster: &Cluster, ns: &str, name: &str) -> String {
    find_condition(&cluster.hr(ns, name), "Ready")
        .and_then(|c| c["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn outcome_of(outcomes: &[(String, String, Outcome)], name: &str) -> Option<Outcome> {
    outcomes
        .iter()
        .find(|(_, n, _)| n == name)
        .map(|(_, _, o)| o.clone())
}

/// Asserts `name` is Ready now and after two more interval reconciles.
fn assert_stays_ready(cluster: &Cluster, model: &mut HelmControllerModel, ns: &str, name: &str) {
    for pass in 0..3 {
        assert!(
            is_ready_now(&cluster.hr(ns, name)),
            "{ns}/{name} not Ready at pass {pass}: {:#}",
            cluster.hr(ns, name)["status"]
        );
        model.reconcile_all(&cluster.server);
    }
}

#[test]
fn ready_write_lost_after_install_is_corrected_and_its_dependent_unblocks() {
    let cluster = Cluster::start();
    let mut model = HelmControllerModel::new();
    cluster
        .server
        .install_losing_ready_write(Hr::healthy("apps", "db").build(), &ago(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    cluster.seed([
        dependent("apps", "web", "db"),
        helm_secret("apps", "web", 1, "deployed"),
    ]);

    // The stuck mode as users meet it: every reconcile short-circuits, and
    // the dependent stays blocked.
    let first = model.reconcile_all(&cluster.server);
    assert_eq!(outcome_of(&first, "web"), Some(Outcome::DependencyNotReady));
    assert_eq!(ready_status(&cluster, "apps", "db"), "Unknown");
    assert_eq!(ready_status(&cluster, "apps", "web"), "False");

    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        json_report(&out)["actions"][0]["reason"],
        "deployed-but-unknown-ready"
    );

    model.reconcile_until_quiet(&cluster.server, 5);
    assert_stays_ready(&cluster, &mut model, "apps", "db");
    assert_stays_ready(&cluster, &mut model, "apps", "web");
}

#[test]
fn lease_lost_mid_install_is_toggled_and_the_controller_adopts_the_release() {
    let cluster = Cluster::start();
    let mut model = HelmControllerModel::new();
    cluster
        .server
        .install_losing_lease(Hr::healthy("apps", "db").build(), &ago(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    cluster.seed([
        dependent("apps", "web", "db"),
        helm_secret("apps", "web", 1, "deployed"),
    ]);
    // The controller already handled both (that run got stuck); a reconcile
    // requested on the dependent finds it blocked.
    model.mark_handled(&cluster.server);
    let mut web = cluster.hr("apps", "web");
    web["metadata"]["annotations"][REQUESTED_AT] = json!("now-1");
    cluster.seed([web]);
    let requested = model.reconcile_triggered(&cluster.server);
    assert_eq!(
        outcome_of(&requested, "web"),
        Some(Outcome::DependencyNotReady)
    );
    assert_eq!(outcome_of(&requested, "db"), None, "db not triggered");
    assert_eq!(ready_status(&cluster, "apps", "db"), "Unknown");

    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        json_report(&out)["actions"][0]["reason"],
        "pending-install-but-deployed"
    );

    // The toggle changed the generation: the watch triggers a reconcile.
    let triggered = model.reconcile_triggered(&cluster.server);
    assert_eq!(outcome_of(&triggered, "db"), Some(Outcome::Adopted));
    let db = cluster.hr("apps", "db");
    assert_eq!(db["status"]["history"][0]["status"], "deployed");
    model.reconcile_until_quiet(&cluster.server, 5);
    assert_stays_ready(&cluster, &mut model, "apps", "db");
    assert_stays_ready(&cluster, &mut model, "apps", "web");
}

#[test]
fn a_wrong_status_body_is_flipped_back_by_the_model() {
    let cluster = Cluster::start();
    let mut model = HelmControllerModel::new();
    // Ready=True but no Released condition and a stale observedGeneration:
    // a status the controller would not have written.
    let mut wrong = Hr::healthy("apps", "db").build();
    wrong["metadata"]["generation"] = json!(2);
    wrong["status"]["observedGeneration"] = json!(1);
    wrong["status"]["conditions"] = json!([condition("Ready", "True", "Forged", &ago(1))]);
    cluster.seed([wrong, helm_secret("apps", "db", 1, "deployed")]);
    // Tests enabled and failed: Ready must become False even though Released is True.
    let mut tested = Hr::healthy("apps", "tested").build();
    tested["spec"]["test"] = json!({"enable": true});
    tested["status"]["conditions"] = json!([
        condition("Ready", "True", "Forged", &ago(1)),
        condition("Released", "True", "InstallSucceeded", &ago(2)),
        condition("TestSuccess", "False", "TestFailed", &ago(2)),
    ]);
    cluster.seed([tested, helm_secret("apps", "tested", 1, "deployed")]);

    model.reconcile_all(&cluster.server);
    let db = cluster.hr("apps", "db");
    assert_eq!(
        find_condition(&db, "Ready").map(|c| c["status"].clone()),
        Some(json!("Unknown")),
        "{db:#}"
    );
    assert_eq!(db["status"]["observedGeneration"], 2);
    let tested = cluster.hr("apps", "tested");
    assert_eq!(
        find_condition(&tested, "Ready").map(|c| c["reason"].clone()),
        Some(json!("TestFailed")),
        "{tested:#}"
    );
}

#[test]
fn a_suspended_helmrelease_is_skipped_and_status_writes_do_not_trigger() {
    let cluster = Cluster::start();
    let mut model = HelmControllerModel::new();
    cluster.seed(stuck_deployed("apps", "db"));
    let suspended = Hr::deployed_unknown("apps", "held", 10)
        .suspend(true)
        .build();
    cluster.seed([suspended, helm_secret("apps", "held", 1, "deployed")]);
    let held_before = cluster.hr("apps", "held");

    let first = model.reconcile_triggered(&cluster.server);
    assert_eq!(outcome_of(&first, "held"), Some(Outcome::Suspended));
    assert_eq!(
        cluster.hr("apps", "held"),
        held_before,
        "suspended: nothing written"
    );
    // Nothing changed generation or requestedAt: the watch sees nothing.
    assert!(model.reconcile_triggered(&cluster.server).is_empty());

    let mut requested = cluster.hr("apps", "db");
    requested["metadata"]["annotations"][REQUESTED_AT] = json!("now-1");
    cluster.seed([requested]);
    let again = model.reconcile_triggered(&cluster.server);
    assert_eq!(outcome_of(&again, "db"), Some(Outcome::InSync));
    assert_eq!(outcome_of(&again, "held"), None);
    // In sync with the final Ready write lost: the stuck mode stays stuck.
    assert_eq!(ready_status(&cluster, "apps", "db"), "Unknown");
}
