//! `explain` walks the same table as `decide`: every row, and a sweep of
//! many HelmReleases, must come out the same through both.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::config::Config;
use crate::decide::{TABLE, decide, storage_needed};
use crate::patches::{corrected_status, with_resource_version};
use crate::plan::fixtures::{Helm, Hr, hr, minutes, now, seconds};

/// One HelmRelease per row of the table, in table order, with the Helm
/// storage a run would find.
fn one_per_row() -> Vec<(Reason, Hr, Helm)> {
    let stuck = || hr("apps", "web");
    vec![
        (
            Reason::Deleting,
            stuck().stuck_deployed(3).deleting(),
            Helm::deployed(3),
        ),
        (
            Reason::InterruptedToggle,
            stuck().stuck_pending_install().suspended().marker(),
            Helm::deployed(1),
        ),
        (
            Reason::StaleMarker,
            stuck().ready_true().marker(),
            Helm::NotRead,
        ),
        (
            Reason::Suspended,
            stuck().stuck_deployed(3).suspended(),
            Helm::deployed(3),
        ),
        (
            Reason::NoReadyCondition,
            stuck().no_ready_condition(),
            Helm::NotRead,
        ),
        (Reason::Ready, stuck().ready_true(), Helm::NotRead),
        (
            Reason::NotReady,
            stuck().ready_false_for(minutes(60)),
            Helm::NotRead,
        ),
        (
            Reason::BadTimestamp,
            stuck().ready_unknown_since("yesterday").history_deployed(3),
            Helm::deployed(3),
        ),
        (
            Reason::WithinThreshold,
            stuck().ready_unknown_for(seconds(30)).history_deployed(3),
            Helm::deployed(3),
        ),
        (
            Reason::AlreadyCorrected,
            stuck().stuck_deployed(3).corrected_ago(minutes(2)),
            Helm::deployed(3),
        ),
        (
            Reason::GenerationNotAttempted,
            stuck().stuck_deployed(3).generation(2),
            Helm::deployed(3),
        ),
        (
            Reason::Remediated,
            stuck().stuck_deployed(3).remediated(),
            Helm::deployed(3),
        ),
        (
            Reason::HelmStorageDisagrees,
            stuck().stuck_deployed(3),
            Helm::Latest(4, "pending-upgrade"),
        ),
        (
            Reason::DeployedButUnknownReady,
            stuck().stuck_deployed(3),
            Helm::deployed(3),
        ),
        (
            Reason::RecentlyToggled,
            stuck().stuck_pending_install().toggled_ago(minutes(3)),
            Helm::deployed(1),
        ),
        (
            Reason::PendingInstallButDeployed,
            stuck().stuck_pending_install(),
            Helm::deployed(1),
        ),
        (
            Reason::NoHelmRelease,
            stuck().stuck_pending_install(),
            Helm::NoRelease,
        ),
        (
            Reason::HelmReleasePending,
            stuck().stuck_pending_install(),
            Helm::Latest(1, "pending-install"),
        ),
        (
            Reason::StorageUnreadable,
            stuck().stuck_deployed(3),
            Helm::Unreadable,
        ),
        (
            Reason::UnknownStuckMode,
            stuck()
                .ready_unknown_for(minutes(6))
                .history_status("failed", 3),
            Helm::deployed(3),
        ),
    ]
}

/// Explains and decides one HelmRelease the way a run reads storage: only
/// when the table needs it.
fn both(hr: &Hr, helm: &Helm, config: &Config) -> (Explanation, crate::decide::Decision) {
    let view = hr.view();
    let fact = storage_needed(&view, now(), config).and(helm.fact());
    // A run hands `decide` no fact where storage was needed but the read
    // gave nothing; `explain` is handed the same.
    let explanation = explain(&view, fact.as_ref(), now(), config);
    let decision = decide(&view, fact.as_ref(), now(), config);
    (explanation, decision)
}

/// The rows explain shows are the table's, in order, up to the one decide
/// picks; only that last one matched.
fn assert_same_walk(e: &Explanation, d: crate::decide::Decision, case: &str) {
    assert_eq!(e.reason, d.reason, "{case}");
    assert_eq!(e.branch, d.branch.map_or("skip", Branch::as_str), "{case}");
    let tried: Vec<Reason> = e.rows.iter().map(|r| r.reason).collect();
    let expected: Vec<Reason> = TABLE
        .iter()
        .map(|row| row.reason)
        .take_while(|r| *r != d.reason)
        .chain([d.reason])
        .collect();
    assert_eq!(tried, expected, "{case}");
    let matched: Vec<bool> = e.rows.iter().map(|r| r.matched).collect();
    let mut only_last = vec![false; matched.len() - 1];
    only_last.push(true);
    assert_eq!(matched, only_last, "{case}");
    assert!(e.rows.iter().all(|r| !r.why.is_empty()), "{case}");
    assert_eq!(e.patches.is_empty(), d.branch.is_none(), "{case}");
}

#[test]
fn every_row_of_the_table_explains_as_decide_decides() {
    let config = Config::default();
    let mut seen = BTreeSet::new();
    for (reason, hr, helm) in one_per_row() {
        let (e, d) = both(&hr, &helm, &config);
        assert_eq!(
            d.reason, reason,
            "the fixture for {reason} decides {reason}"
        );
        assert_same_walk(&e, d, reason.as_str());
        seen.insert(reason);
    }
    let table: BTreeSet<Reason> = TABLE.iter().map(|row| row.reason).collect();
    assert_eq!(seen, table, "every row of the table is walked");
}

#[test]
fn the_table_is_spec_order_and_covers_every_decided_reason() {
    let table: Vec<Reason> = TABLE.iter().map(|row| row.reason).collect();
    let all: Vec<Reason> = Reason::ALL
        .into_iter()
        .filter(|r| *r != Reason::Malformed)
        .collect();
    assert_eq!(table, all);
    for row in &TABLE {
        assert_eq!(
            row.branch.is_some(),
            matches!(
                row.reason,
                Reason::InterruptedToggle
                    | Reason::StaleMarker
                    | Reason::DeployedButUnknownReady
                    | Reason::PendingInstallButDeployed
            ),
            "{}",
            row.reason
        );
        assert!(!row.when.is_empty());
    }
}

#[test]
fn a_sweep_of_helmreleases_explains_as_decide_decides() {
    let readies: [fn(Hr) -> Hr; 7] = [
        |h| h.ready_true(),
        |h| h.ready_false_for(minutes(9)),
        |h| h.no_ready_condition(),
        |h| h.ready_unknown_for(minutes(6)),
        |h| h.ready_unknown_for(minutes(5)),
        |h| h.ready_unknown_for(minutes(2)),
        |h| {
            h.ready_unknown_for(minutes(6))
                .reconciling_true_since("later")
        },
    ];
    let histories: [fn(Hr) -> Hr; 5] = [
        |h| h.history_empty(),
        |h| h.history_deployed(3),
        |h| h.history_pending_install(),
        |h| h.history_status("superseded", 2),
        |h| h.history_deployed(3).last_attempted_generation(7),
    ];
    let extras: [fn(Hr) -> Hr; 7] = [
        |h| h,
        |h| h.marker(),
        |h| h.suspended(),
        |h| h.marker().suspended(),
        |h| h.corrected_ago(minutes(40)),
        |h| h.toggled_ago(minutes(10)),
        |h| h.remediated().deleting(),
    ];
    let helms = [
        Helm::deployed(3),
        Helm::deployed(1),
        Helm::Latest(3, "pending-rollback"),
        Helm::Latest(3, "failed"),
        Helm::NoRelease,
        Helm::Unreadable,
    ];
    let config = Config::default();
    let mut cases = 0;
    for ready in readies {
        for history in histories {
            for extra in extras {
                for helm in &helms {
                    let hr = extra(history(ready(hr("apps", "web"))));
                    let (e, d) = both(&hr, helm, &config);
                    assert_same_walk(&e, d, &format!("{:#}", hr.json()));
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 7 * 5 * 7 * 6);
}

#[test]
fn helm_storage_is_read_only_when_the_decision_needs_it() {
    let config = Config::default();
    let healthy = hr("apps", "web").ready_true().view();
    assert_eq!(storage_needed(&healthy, now(), &config), None);
    let e = explain(&healthy, None, now(), &config);
    assert!(!e.facts.helm_storage.read);

    let stuck = hr("apps", "web").stuck_deployed(3).view();
    assert!(storage_needed(&stuck, now(), &config).is_some());
    let e = explain(&stuck, Helm::deployed(3).fact().as_ref(), now(), &config);
    assert!(e.facts.helm_storage.read);
    assert_eq!(
        e.facts.helm_storage.latest,
        Some(RevisionFact {
            version: 3,
            status: "deployed".to_string()
        })
    );
}

#[test]
fn a_correction_shows_the_annotation_then_the_status_patch() {
    let view = hr("apps", "web").stuck_deployed(3).view();
    let e = explain(
        &view,
        Helm::deployed(3).fact().as_ref(),
        now(),
        &Config::default(),
    );
    assert_eq!(e.branch, "correct-status");
    let subresources: Vec<&str> = e.patches.iter().map(|p| p.subresource).collect();
    assert_eq!(subresources, ["", "status"]);
    assert_eq!(
        e.patches[0].body,
        with_resource_version(annotation_patch(now()), &view.resource_version)
    );
    assert_eq!(
        e.patches[0].body["metadata"]["resourceVersion"],
        view.resource_version.as_str()
    );
    assert_eq!(e.patches[1].body["status"], corrected_status(&view, now()));
    assert_eq!(
        e.patches[1].body["metadata"]["resourceVersion"],
        FROM_PREVIOUS_ANSWER
    );
}

#[test]
fn a_toggle_shows_suspend_then_resume() {
    let view = hr("apps", "web").stuck_pending_install().view();
    let e = explain(
        &view,
        Helm::deployed(1).fact().as_ref(),
        now(),
        &Config::default(),
    );
    assert_eq!(e.branch, "toggle-suspend");
    assert_eq!(e.patches.len(), 2);
    assert_eq!(e.patches[0].body["spec"]["suspend"], true);
    assert_eq!(
        e.patches[0].body["metadata"]["resourceVersion"],
        view.resource_version.as_str()
    );
    assert_eq!(e.patches[1].body["spec"]["suspend"], Value::Null);
}

#[test]
fn the_json_document_has_the_spec_fields() {
    let view = hr("apps", "web").stuck_deployed(3).view();
    let e = explain(
        &view,
        Helm::Unreadable.fact().as_ref(),
        now(),
        &Config::default(),
    );
    let doc: Value = serde_json::from_str(&render_json(&e)).unwrap_or_default();
    for key in [
        "namespace",
        "name",
        "facts",
        "rows",
        "reason",
        "branch",
        "patches",
        "note",
    ] {
        assert!(doc.get(key).is_some(), "{key} in {doc:#}");
    }
    assert_eq!(doc["reason"], "storage-unreadable");
    assert_eq!(doc["branch"], "skip");
    assert_eq!(doc["patches"], Value::Array(Vec::new()));
    let last = &doc["rows"][doc["rows"].as_array().map_or(0, Vec::len) - 1];
    assert_eq!(last["reason"], "storage-unreadable");
    assert_eq!(last["matched"], true);
    assert!(
        last["why"]
            .as_str()
            .is_some_and(|w| w.contains("forbidden"))
    );
    assert_eq!(doc["facts"]["ready"]["status"], "Unknown");
    assert_eq!(doc["facts"]["ready"]["age"], "6m");
    assert_eq!(doc["facts"]["history0"]["version"], 3);
    assert_eq!(doc["facts"]["releaseName"], "web");
    assert_eq!(doc["facts"]["storageNamespace"], "apps");
    assert_eq!(doc["facts"]["helmStorage"]["error"], "forbidden");
}

#[test]
fn the_text_shows_each_row_tried_and_the_outcome() {
    let view = hr("apps", "web").ready_unknown_for(seconds(30)).view();
    let text = render_text(&explain(&view, None, now(), &Config::default()));
    assert!(text.contains("MATCH within-threshold"), "{text}");
    assert!(text.contains("no    deleting"), "{text}");
    assert!(text.contains("outcome: skip within-threshold"), "{text}");
    assert!(text.contains("threshold 5m (below it)"), "{text}");
    assert!(!text.contains("already-corrected"), "{text}");
}
