//! Issue 4, point 4: the guardrail end to end. 11 candidates across both
//! branches: no write to any of them, a Warning Event
//! `RecoveryGuardrailTripped` on each, exit 1 — while the repairs
//! (`interrupted-toggle`, `stale-marker`) still run. Exactly 10: all acted.

use std::collections::BTreeSet;

use crate::common::safety::*;
use crate::common::*;
use serde_json::Value;

/// `corrections` branch-B and `toggles` branch-A HelmReleases in `apps`,
/// plus one of each repair.
fn cluster_with(corrections: usize, toggles: usize) -> (Cluster, BTreeSet<String>) {
    let cluster = Cluster::start();
    let mut candidates = BTreeSet::new();
    for i in 0..corrections {
        let name = format!("b{i}");
        cluster.seed(stuck_deployed("apps", &name));
        candidates.insert(format!("apps/{name}"));
    }
    for i in 0..toggles {
        let name = format!("a{i}");
        cluster.seed(stuck_pending("apps", &name));
        candidates.insert(format!("apps/{name}"));
    }
    cluster.seed([
        Hr::interrupted_toggle(RESUME_NS, HR_NAME).build(),
        Hr::stale_marker(CLEAR_NS, HR_NAME).build(),
        Hr::healthy(HEALTHY_NS, HR_NAME).build(),
    ]);
    (cluster, candidates)
}

fn repairs() -> BTreeSet<String> {
    [RESUME_NS, CLEAR_NS]
        .iter()
        .map(|ns| format!("{ns}/{HR_NAME}"))
        .collect()
}

#[test]
fn eleven_candidates_across_both_branches_trip_the_guardrail_and_repairs_still_run() {
    let (cluster, candidates) = cluster_with(6, 5);
    let out = cluster.run(&fault_run_args());
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(report["exitCode"], 1);
    assert_eq!(report["guardrail"]["tripped"], true);
    assert_eq!(report["guardrail"]["candidates"], 11);
    assert_eq!(report["counts"]["planned"], 11);
    assert_eq!(report["counts"]["acted"], 2, "the two repairs");

    // Not one write to a candidate; the only HelmRelease writes are the
    // repairs'.
    let written: BTreeSet<String> = cluster
        .hr_writes()
        .iter()
        .map(|w| {
            format!(
                "{}/{}",
                w.namespace.as_deref().unwrap_or_default(),
                w.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(written, repairs(), "HelmRelease writes: only the repairs");
    for id in &candidates {
        let (ns, name) = id.split_once('/').unwrap_or_default();
        let action = action_of(&report, ns, name).cloned().unwrap_or_default();
        assert_eq!(action["result"], "planned", "{id}: {action}");
    }
    for ns in [RESUME_NS, CLEAR_NS] {
        let action = action_of(&report, ns, HR_NAME).cloned().unwrap_or_default();
        assert_eq!(action["result"], "succeeded", "{ns}: {action}");
    }

    // One Warning RecoveryGuardrailTripped per candidate, and no other
    // Event about a candidate.
    let events = cluster.events();
    let tripped: BTreeSet<String> = events
        .iter()
        .filter(|(_, type_, reason)| type_ == "Warning" && reason == "RecoveryGuardrailTripped")
        .map(|(id, _, _)| id.clone())
        .collect();
    assert_eq!(tripped, candidates);
    let tripped_count = events
        .iter()
        .filter(|(_, _, r)| r == "RecoveryGuardrailTripped")
        .count();
    assert_eq!(tripped_count, 11, "one per candidate: {events:#?}");
    assert!(
        events
            .iter()
            .filter(|(id, _, _)| candidates.contains(id))
            .all(|(_, _, r)| r == "RecoveryGuardrailTripped"),
        "{events:#?}"
    );
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
    for id in &candidates {
        let (ns, name) = id.split_once('/').unwrap_or_default();
        let hr = cluster.hr(ns, name);
        assert_eq!(annotation(&hr, CORRECTED_AT), None, "{id} untouched");
        assert_eq!(hr["spec"].get("suspend"), None, "{id} untouched");
    }
    cluster.assert_nothing_denied();
    println!(
        "guardrail: 11 candidates (6 correct-status, 5 toggle-suspend) -> exit 1, 0 candidate writes, 11 Warning Events, 2 repairs done"
    );
}

#[test]
fn eleven_candidates_and_no_repair_mean_zero_helmrelease_writes() {
    let cluster = Cluster::start();
    for i in 0..6 {
        cluster.seed(stuck_deployed("apps", &format!("b{i}")));
    }
    for i in 0..5 {
        cluster.seed(stuck_pending("apps", &format!("a{i}")));
    }
    let out = cluster.run(&fault_run_args());
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(cluster.hr_writes().len(), 0, "{:#?}", cluster.hr_writes());
    let writes = cluster.writes();
    assert_eq!(writes.len(), 11, "one Event per candidate: {writes:#?}");
    assert!(
        writes
            .iter()
            .all(|w| w.resource.as_deref() == Some("events"))
    );
    cluster.assert_nothing_denied();
}

#[test]
fn exactly_ten_candidates_are_all_acted_on() {
    let (cluster, candidates) = cluster_with(5, 5);
    let out = cluster.run(&fault_run_args());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(report["guardrail"]["tripped"], false);
    assert_eq!(report["guardrail"]["candidates"], 10);
    assert_eq!(
        report["counts"]["acted"], 12,
        "ten recoveries and two repairs"
    );
    for id in &candidates {
        let (ns, name) = id.split_once('/').unwrap_or_default();
        let action = action_of(&report, ns, name).cloned().unwrap_or_default();
        assert_eq!(action["result"], "succeeded", "{id}: {action}");
        let hr = cluster.hr(ns, name);
        let corrected =
            find_condition(&hr, "Ready").map(|c| c["status"].clone()) == Some(Value::from("True"));
        let toggled = annotation(&hr, TOGGLED_AT).is_some();
        assert!(corrected || toggled, "{id} acted on: {hr}");
    }
    assert!(
        !cluster
            .events()
            .iter()
            .any(|(_, _, r)| r == "RecoveryGuardrailTripped")
    );
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
    cluster.assert_nothing_denied();
}

/// With `--max-actions 0` the first candidate trips it; a client dry run
/// still exits 1 and writes nothing at all, not even an Event.
#[test]
fn a_client_dry_run_trips_the_same_guardrail_without_a_write() {
    let (cluster, _) = cluster_with(1, 0);
    let out = cluster.run(&["-o", "json", "--max-actions", "0", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(cluster.writes().len(), 0, "{:#?}", cluster.writes());
}
