//! The guardrail end to end: decided in the plan, never a counter in the
//! write loop. A property test over random small clusters (each a fresh fake
//! server, the real binary) shows the executor never writes to more than
//! `--max-actions` HelmReleases for the two recovery branches, writes
//! nothing for them when tripped (Warning Event on each candidate, exit 1),
//! and still runs the repairs.

use std::collections::BTreeSet;

use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};

#[derive(Debug, Clone)]
struct Shape {
    correct: usize,
    toggle: usize,
    interrupted: usize,
    stale: usize,
    healthy: usize,
    max_actions: usize,
}

fn shapes() -> impl Strategy<Value = Shape> {
    (
        0..5usize,
        0..4usize,
        0..3usize,
        0..3usize,
        0..4usize,
        0..7usize,
    )
        .prop_map(
            |(correct, toggle, interrupted, stale, healthy, max_actions)| Shape {
                correct,
                toggle,
                interrupted,
                stale,
                healthy,
                max_actions,
            },
        )
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn ns(i: usize) -> &'static str {
    ["apps", "infra"][i % 2]
}

fn check(shape: &Shape) -> Result<(), TestCaseError> {
    let cluster = Cluster::start();
    let (correct, toggle) = (names("fix", shape.correct), names("toggle", shape.toggle));
    let (interrupted, stale) = (
        names("half", shape.interrupted),
        names("stale", shape.stale),
    );
    for (i, name) in correct.iter().enumerate() {
        cluster.seed(stuck_deployed(ns(i), name));
    }
    for (i, name) in toggle.iter().enumerate() {
        cluster.seed(stuck_pending(ns(i), name));
    }
    for (i, name) in interrupted.iter().enumerate() {
        cluster.seed([Hr::interrupted_toggle(ns(i), name).build()]);
    }
    for (i, name) in stale.iter().enumerate() {
        cluster.seed([Hr::stale_marker(ns(i), name).build()]);
    }
    for (i, name) in names("calm", shape.healthy).iter().enumerate() {
        cluster.seed([Hr::healthy(ns(i), name).build()]);
    }
    let max = shape.max_actions.to_string();
    let out = cluster.run(&["--max-actions", &max, "--suspend-wait", "1ms", "-o", "json"]);

    let candidates = shape.correct + shape.toggle;
    let tripped = candidates > shape.max_actions;
    prop_assert_eq!(
        out.status.code(),
        Some(if tripped { 1 } else { 0 }),
        "{}",
        describe(&out)
    );
    let report = json_report(&out);
    prop_assert_eq!(&report["guardrail"]["tripped"], tripped);
    prop_assert_eq!(&report["guardrail"]["candidates"], candidates);
    prop_assert_eq!(&report["counts"]["planned"], candidates);

    let written: BTreeSet<String> = cluster
        .hr_writes()
        .into_iter()
        .filter_map(|w| w.name)
        .collect();
    let guarded: BTreeSet<String> = correct.iter().chain(&toggle).cloned().collect();
    let guarded_written = written.intersection(&guarded).count();
    prop_assert!(
        guarded_written <= shape.max_actions,
        "{guarded_written} > {}",
        shape.max_actions
    );
    if tripped {
        prop_assert_eq!(guarded_written, 0);
        let warned: BTreeSet<String> = cluster
            .events()
            .into_iter()
            .filter(|(_, type_, reason)| type_ == "Warning" && reason == "RecoveryGuardrailTripped")
            .map(|(object, _, _)| object.split('/').nth(1).unwrap_or_default().to_owned())
            .collect();
        prop_assert_eq!(&warned, &guarded);
        for action in report["actions"].as_array().into_iter().flatten() {
            if matches!(
                action["branch"].as_str(),
                Some("correct-status" | "toggle-suspend")
            ) {
                prop_assert_eq!(&action["result"], "planned");
            }
        }
    } else {
        prop_assert_eq!(guarded_written, candidates);
    }
    // Repairs always run.
    for (i, name) in interrupted.iter().enumerate() {
        prop_assert!(written.contains(name));
        let hr = cluster.hr(ns(i), name);
        prop_assert_eq!(hr["spec"].get("suspend"), None);
        prop_assert_eq!(annotation(&hr, SUSPENDED_AT), None);
    }
    for (i, name) in stale.iter().enumerate() {
        prop_assert!(written.contains(name));
        let hr = cluster.hr(ns(i), name);
        prop_assert_eq!(annotation(&hr, SUSPENDED_AT), None);
    }
    for action in report["actions"].as_array().into_iter().flatten() {
        if matches!(action["branch"].as_str(), Some("resume" | "clear-marker")) {
            prop_assert_eq!(&action["result"], "succeeded");
        }
    }
    cluster.assert_nothing_denied();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 20,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    })]

    #[test]
    fn executor_never_writes_more_recoveries_than_max_actions(shape in shapes()) {
        check(&shape)?;
    }
}

#[test]
fn one_over_the_limit_trips_and_repairs_still_run() {
    check(&Shape {
        correct: 2,
        toggle: 1,
        interrupted: 1,
        stale: 1,
        healthy: 1,
        max_actions: 2,
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn exactly_at_the_limit_acts_on_all() {
    check(&Shape {
        correct: 2,
        toggle: 1,
        interrupted: 0,
        stale: 0,
        healthy: 2,
        max_actions: 3,
    })
    .unwrap_or_else(|e| panic!("{e}"));
}
