//! Issue 4, point 6: malformed input. Arbitrary JSON and mutated valid
//! HelmReleases (the e2e harness's fixtures: healthy, both stuck modes,
//! both repairs; mutated with wrong types, removed fields, odd timestamps,
//! huge strings) go through the lister's page reader, `plan` and the report
//! renderers: no panic, each unreadable object is a reported `malformed`
//! skip, and the valid objects beside it are decided as before. One end to
//! end run shows the same with the real binary.

use std::collections::HashMap;

use crate::common::safety::*;
use crate::common::*;
use chrono::Utc;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use stuck_hr_recovery::config::Config;
use stuck_hr_recovery::decide::{LatestRevision, StorageFact};
use stuck_hr_recovery::kube_io::Listed;
use stuck_hr_recovery::model::{Branch, Reason};
use stuck_hr_recovery::plan::{Candidate, plan, releases_needed, worth_keeping};
use stuck_hr_recovery::report::{Report, render_json, render_text};

/// The valid objects mutations start from.
fn bases() -> Vec<Value> {
    vec![
        Hr::healthy("fuzz", "mut").build(),
        Hr::deployed_unknown("fuzz", "mut", 10).build(),
        Hr::deployed_unknown("fuzz", "mut", 10)
            .upgraded_to(3, "2.0.0")
            .annotation(CORRECTED_AT, &ago(45))
            .build(),
        Hr::pending_install("fuzz", "mut", 10)
            .annotation(TOGGLED_AT, &ago(40))
            .build(),
        Hr::interrupted_toggle("fuzz", "mut").build(),
        Hr::stale_marker("fuzz", "mut").build(),
    ]
    .into_iter()
    .map(|mut v| {
        // Listed objects carry these; the fixtures leave them to the server.
        v["metadata"]["resourceVersion"] = json!("7");
        v["metadata"]["uid"] = json!("00000000-0000-4000-8000-000000000007");
        v
    })
    .collect()
}

/// Two valid stuck branch-B HelmReleases that must still be corrected
/// whatever sits beside them.
fn keepers() -> Vec<Value> {
    ["keep-a", "keep-b"]
        .iter()
        .map(|name| {
            let mut v = Hr::deployed_unknown("fuzz", name, 10).build();
            v["metadata"]["resourceVersion"] = json!("8");
            v
        })
        .collect()
}

const ODD_TIMES: &[&str] = &[
    "",
    "noon",
    "2026-13-45T99:99:99Z",
    "2016-12-31T23:59:60Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2026-11-22T12:00:00+14:00",
    "2026-11-22T12:00:00.123456789123456789Z",
    "2026-11-22 12:00:00",
    "-1",
    "262143-12-31T23:59:59Z",
];

fn odd_time() -> impl Strategy<Value = Value> {
    prop::sample::select(ODD_TIMES).prop_map(|s| json!(s))
}

fn huge_string() -> impl Strategy<Value = Value> {
    (1usize..200_000, any::<char>()).prop_map(|(n, c)| json!(c.to_string().repeat(n)))
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::from),
        odd_time(),
        prop::sample::select(
            &[
                "True",
                "False",
                "Unknown",
                "deployed",
                "pending-install",
                "install",
                "upgrade"
            ][..]
        )
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    ".{0,12}",
                    prop::sample::select(
                        &[
                            "metadata",
                            "spec",
                            "status",
                            "name",
                            "namespace",
                            "conditions",
                            "history",
                            "type",
                            "status",
                            "lastTransitionTime",
                            "version",
                            "annotations",
                            "suspend"
                        ][..]
                    )
                    .prop_map(String::from),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One change at one place of the object.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Remove,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any_json().prop_map(Mutation::Replace),
        2 => odd_time().prop_map(Mutation::Replace),
        1 => huge_string().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
    ]
}

/// Every JSON pointer in `v`, the root excluded.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        _ => {}
    }
}

fn mutate(mut v: Value, picks: &[(usize, Mutation)]) -> Value {
    for (pick, m) in picks {
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        if all.is_empty() {
            break;
        }
        let p = &all[pick % all.len()];
        match m {
            Mutation::Replace(new) => {
                if let Some(slot) = v.pointer_mut(p) {
                    *slot = new.clone();
                }
            }
            Mutation::Remove => {
                let (parent, last) = p.rsplit_once('/').unwrap_or_default();
                let last = last.replace("~1", "/").replace("~0", "~");
                match v.pointer_mut(parent) {
                    Some(Value::Object(m)) => {
                        m.remove(&last);
                    }
                    Some(Value::Array(a)) => {
                        if let Ok(i) = last.parse::<usize>()
                            && i < a.len()
                        {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    v
}

/// Lists `items` as one page, plans with every needed release deployed at
/// v1, renders the report; checks the properties. Returns the reasons.
fn check_page(items: Vec<Value>) -> Result<(), TestCaseError> {
    let config = Config::default();
    let now = Utc::now();
    let n = items.len();
    let page = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let mut listed = Listed::default();
    prop_assert!(
        listed.add_text(&page.to_string(), &worth_keeping(now, &config)),
        "a page with items is a list"
    );
    prop_assert_eq!(listed.scanned, n);
    let malformed = listed
        .candidates
        .iter()
        .filter(|c| matches!(c, Candidate::Malformed(_)))
        .count();
    let facts: HashMap<_, _> = releases_needed(&listed.candidates, now, &config)
        .into_iter()
        .map(|r| {
            let fact = StorageFact::Latest(Some(LatestRevision {
                version: 1,
                status: "deployed".into(),
            }));
            (r, fact)
        })
        .collect();
    let plan = plan(listed.scanned, listed.candidates, &facts, now, &config);
    let malformed_skips = plan
        .items
        .iter()
        .filter(|i| i.decision.reason == Reason::Malformed)
        .count();
    prop_assert_eq!(
        malformed_skips,
        malformed,
        "each unreadable object is a malformed skip"
    );
    prop_assert!(
        plan.items
            .iter()
            .filter(|i| i.decision.reason == Reason::Malformed)
            .all(|i| i.decision.branch.is_none() && i.problem.is_some()),
        "a malformed object is never acted on and says why"
    );
    for keeper in ["keep-a", "keep-b"] {
        let item = plan
            .items
            .iter()
            .find(|i| i.namespace == "fuzz" && i.name == keeper);
        prop_assert_eq!(
            item.map(|i| i.decision.branch),
            Some(Some(Branch::CorrectStatus)),
            "{} still decided",
            keeper
        );
    }
    let report = Report::from_plan(&plan, &config);
    let rendered: Value = serde_json::from_str(&render_json(&report))
        .map_err(|e| TestCaseError::fail(format!("report is JSON: {e}")))?;
    let listed_malformed = rendered["skipped"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["reason"] == "malformed")
        .count();
    prop_assert_eq!(
        listed_malformed,
        malformed,
        "each malformed skip is reported"
    );
    let text = render_text(&report);
    prop_assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("scanned="))
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn mutated_helmreleases_never_panic_and_become_reported_skips(
        base in prop::sample::select(bases()),
        picks in prop::collection::vec((any::<usize>(), mutation()), 1..5),
    ) {
        let mut items = keepers();
        items.insert(1, mutate(base, &picks));
        check_page(items)?;
    }

    #[test]
    fn arbitrary_json_items_never_panic_and_become_reported_skips(
        junk in prop::collection::vec(any_json(), 1..4),
    ) {
        let mut items = keepers();
        items.extend(junk);
        check_page(items)?;
    }
}

/// Wrong types the view must refuse, each on its own beside two valid ones.
#[test]
fn known_wrong_types_are_each_a_malformed_skip() {
    let base = Hr::deployed_unknown("fuzz", "mut", 10)
        .annotation("team", "web")
        .suspend(false)
        .build();
    let cases: Vec<(&str, Value)> = vec![
        ("/metadata/annotations", json!({"x": 1})),
        ("/metadata/name", json!(7)),
        ("/metadata", json!("metadata")),
        ("/spec/suspend", json!("yes")),
        ("/status/conditions", json!({"type": "Ready"})),
        ("/status/conditions/0/status", json!(true)),
        ("/status/history", json!("deployed")),
        ("/status/history/0/version", json!("one")),
        ("/status/lastAttemptedGeneration", json!(1.5)),
    ];
    for (pointer, value) in cases {
        let mut v = base.clone();
        v["metadata"]["resourceVersion"] = json!("7");
        let slot = v
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("the fixture has {pointer}"));
        *slot = value.clone();
        let mut items = keepers();
        items.push(v.clone());
        let config = Config::default();
        let mut listed = Listed::default();
        listed.add_text(
            &json!({"items": items}).to_string(),
            &worth_keeping(Utc::now(), &config),
        );
        let bad = listed
            .candidates
            .iter()
            .filter(|c| matches!(c, Candidate::Malformed(_)))
            .count();
        assert_eq!(bad, 1, "{pointer} = {value} is malformed");
        check_page(keepers().into_iter().chain([v]).collect())
            .unwrap_or_else(|e| panic!("{pointer} = {value}: {e}"));
    }
}

/// End to end: the fake server stores an annotation that is not a string
/// (a real API server would refuse it; it stands for any object the view
/// cannot read). The run reports it as a `malformed` skip, writes nothing
/// to it, and acts on every other HelmRelease.
#[test]
fn a_malformed_helmrelease_in_the_list_is_a_reported_skip_and_the_run_goes_on() {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    let mut broken = Hr::deployed_unknown("broken", HR_NAME, 10).build();
    broken["metadata"]["annotations"] = json!({"team": 42});
    cluster.seed([broken, helm_secret("broken", HR_NAME, 1, "deployed")]);
    assert!(
        cluster.hr("broken", HR_NAME)["metadata"]["annotations"]["team"].is_number(),
        "the fake server stored the malformed object"
    );
    let out = cluster.run(&fault_run_args());
    let report = json_report(&out);
    assert_eq!(report["counts"]["scanned"], 6, "{}", describe(&out));
    assert_eq!(report["counts"]["acted"], 4, "{}", describe(&out));
    assert!(
        report["skipped"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["namespace"] == "broken"
                && s["name"] == HR_NAME
                && s["reason"] == "malformed"),
        "{}",
        describe(&out)
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("broken/hr is malformed") && logs.contains("metadata.annotations"),
        "the log names the object and the field: {logs}"
    );
    assert!(
        cluster
            .writes()
            .iter()
            .all(|w| w.namespace.as_deref() != Some("broken")),
        "nothing written about the malformed object"
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
    cluster.assert_nothing_denied();
}
