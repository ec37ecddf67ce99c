//! Recovery end to end: the stuck state is created by the helm-controller
//! model's own mechanism (its writes during an install, one of them lost),
//! the real binary runs, then the model reconciles — and the HelmRelease
//! ends Ready=True, stays so, and its dependent unblocks.

use crate::common::*;
use fake_apiserver::controller::{HelmControllerModel, Outcome, Reconciled, Trigger, is_ready_now};
use serde_json::json;

fn dependent(ns: &str, name: &str, on: &str) -> serde_json::Value {
    let mut hr = Hr::healthy(ns, name).build();
    hr["spec"]["dependsOn"] = json!([{"name": on}]);
    hr
}

fn ready_of(cluster: &Cluster, ns: &str, name: &str) -> (String, String) {
    let hr = cluster.hr(ns, name);
    let c = find_condition(&hr, "Ready").cloned().unwrap_or_default();
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        c["reason"].as_str().unwrap_or_default().to_string(),
    )
}

fn outcome_of(outcomes: &[Reconciled], name: &str) -> Option<Outcome> {
    outcomes
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.outcome.clone())
}

/// A user's `flux reconcile hr`: a new requestedAt value.
fn request_reconcile(cluster: &Cluster, ns: &str, name: &str, token: &str) {
    let mut hr = cluster.hr(ns, name);
    hr["metadata"]["annotations"][REQUESTED_AT] = json!(token);
    cluster.seed([hr]);
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

/// The dependent is seen blocked: a requested reconcile finds its dependency
/// not Ready; its dependency requeue keeps it blocked while `dep` stays stuck.
fn dependent_is_blocked(cluster: &Cluster, model: &mut HelmControllerModel, dep: &str) {
    request_reconcile(cluster, "apps", "web", "r1");
    let requested = model.reconcile_triggered(&cluster.server);
    assert_eq!(
        outcome_of(&requested, "web"),
        Some(Outcome::DependencyNotReady)
    );
    assert_eq!(outcome_of(&requested, dep), None, "{dep} not triggered");
    for _ in 0..3 {
        let again = model.reconcile_triggered(&cluster.server);
        assert_eq!(
            again
                .iter()
                .map(|r| (r.name.as_str(), r.trigger, r.wrote))
                .collect::<Vec<_>>(),
            vec![("web", Trigger::Requeue, false)],
            "only the dependency requeue runs, and changes nothing"
        );
    }
    assert_eq!(
        ready_of(cluster, "apps", "web"),
        ("False".into(), "DependencyNotReady".into())
    );
    assert_eq!(
        cluster.hr("apps", "web")["status"]["lastHandledReconcileAt"],
        "r1"
    );
    assert_eq!(ready_of(cluster, "apps", dep).0, "Unknown");
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
    // The controller handled db's install (the run whose last write was
    // lost); nothing triggers db again.
    model.mark_handled(&cluster.server);
    dependent_is_blocked(&cluster, &mut model, "db");

    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        json_report(&out)["actions"][0]["reason"],
        "deployed-but-unknown-ready"
    );

    // The product's status write triggers nothing; web's dependency requeue
    // finds db Ready and web reconciles.
    let after = model.reconcile_until_quiet(&cluster.server, 5);
    assert_eq!(
        outcome_of(&after, "db"),
        None,
        "a status write is no trigger"
    );
    assert_eq!(outcome_of(&after, "web"), Some(Outcome::InSync));
    assert_stays_ready(&cluster, &mut model, "apps", "db");
    assert_stays_ready(&cluster, &mut model, "apps", "web");
}

#[test]
fn lease_lost_mid_install_is_toggled_and_the_controller_upgrades_the_unmanaged_release() {
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
    model.mark_handled(&cluster.server);
    dependent_is_blocked(&cluster, &mut model, "db");

    let out = cluster.run(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        json_report(&out)["actions"][0]["reason"],
        "pending-install-but-deployed"
    );

    // The toggle changed the generation: the watch triggers db, which the
    // controller finds unmanaged (empty history) and upgrades; web's requeue
    // in the same pass then finds db Ready.
    let triggered = model.reconcile_triggered(&cluster.server);
    let db_run = triggered.iter().find(|r| r.name == "db").cloned();
    assert_eq!(
        db_run.map(|r| (r.trigger, r.outcome)),
        Some((Trigger::Generation, Outcome::Upgraded))
    );
    assert_eq!(outcome_of(&triggered, "web"), Some(Outcome::InSync));
    let db = cluster.hr("apps", "db");
    assert_eq!(db["status"]["history"][0]["version"], 2, "{db:#}");
    assert_eq!(db["status"]["history"][0]["status"], "deployed");
    let released = find_condition(&db, "Released").cloned().unwrap_or_default();
    assert_eq!(released["reason"], "UpgradeSucceeded");
    let storage: Vec<(String, String)> = cluster
        .server
        .list("v1", "secrets", Some("apps"))
        .iter()
        .filter(|s| s["metadata"]["labels"]["name"] == "db")
        .map(|s| {
            let l = &s["metadata"]["labels"];
            (
                l["version"].as_str().unwrap_or_default().to_string(),
                l["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        storage,
        vec![
            ("1".to_string(), "superseded".to_string()),
            ("2".to_string(), "deployed".to_string())
        ]
    );
    assert_stays_ready(&cluster, &mut model, "apps", "db");
    assert_stays_ready(&cluster, &mut model, "apps", "web");
}

#[test]
fn a_wrong_status_body_is_undone_by_the_model_and_the_right_one_stays() {
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
    tested["status"]["history"][0]["testHooks"] = json!({});
    tested["status"]["conditions"] = json!([
        condition("Ready", "True", "Forged", &ago(1)),
        condition("Released", "True", "InstallSucceeded", &ago(2)),
        condition("TestSuccess", "False", "TestFailed", &ago(2)),
    ]);
    cluster.seed([tested, helm_secret("apps", "tested", 1, "deployed")]);
    // The right shape: stays Ready.
    cluster.seed([
        Hr::healthy("apps", "right").build(),
        helm_secret("apps", "right", 1, "deployed"),
    ]);

    model.reconcile_all(&cluster.server);
    let db = cluster.hr("apps", "db");
    assert_eq!(ready_of(&cluster, "apps", "db").0, "Unknown", "{db:#}");
    assert_eq!(db["status"]["observedGeneration"], 2);
    assert_eq!(
        ready_of(&cluster, "apps", "tested"),
        ("False".into(), "TestFailed".into())
    );
    for _ in 0..2 {
        assert!(is_ready_now(&cluster.hr("apps", "right")));
        model.reconcile_all(&cluster.server);
    }
    assert_eq!(
        ready_of(&cluster, "apps", "right"),
        ("True".into(), "InstallSucceeded".into())
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
    model.mark_handled(&cluster.server);
    let held_before = cluster.hr("apps", "held");

    // Nothing changed generation or requestedAt: the watch sees nothing.
    assert!(model.reconcile_triggered(&cluster.server).is_empty());
    // A status-only write (a resourceVersion bump) is no trigger either.
    let mut db = cluster.hr("apps", "db");
    db["status"]["lastAttemptedGeneration"] = json!(1);
    db["metadata"]["labels"]["touched"] = json!("yes");
    cluster.seed([db]);
    assert!(model.reconcile_triggered(&cluster.server).is_empty());
    assert_eq!(ready_of(&cluster, "apps", "db").0, "Unknown");

    request_reconcile(&cluster, "apps", "held", "r1");
    request_reconcile(&cluster, "apps", "db", "r1");
    let again = model.reconcile_triggered(&cluster.server);
    assert_eq!(outcome_of(&again, "held"), Some(Outcome::Suspended));
    let held = cluster.hr("apps", "held");
    assert_eq!(
        held["status"]["conditions"], held_before["status"]["conditions"],
        "suspended: no condition written"
    );
    assert_eq!(held["status"]["lastHandledReconcileAt"], "r1");
    // The in-sync branch always summarises: a reconcile that runs restores
    // the lost Ready (the stuck mode lives on the missing trigger).
    assert_eq!(outcome_of(&again, "db"), Some(Outcome::InSync));
    assert!(is_ready_now(&cluster.hr("apps", "db")));
    // The same requestedAt again is no new request.
    request_reconcile(&cluster, "apps", "db", "r1");
    assert!(model.reconcile_triggered(&cluster.server).is_empty());
}
