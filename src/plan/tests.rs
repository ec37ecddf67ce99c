//! The SPEC §3 decision table, row by row, its edges, and the guardrail —
//! all through `plan`.

use serde_json::json;

use super::fixtures::{Helm, ahead, cluster, decided, decided_with, hr, minutes, now, seconds};
use crate::config::Config;
use crate::decide::{Decision, ReleaseRef, StorageFact, storage_needed};
use crate::model::{Branch, Reason, annotations};

fn skip(reason: Reason) -> Decision {
    Decision::skip(reason)
}

fn correct_status() -> Decision {
    Decision::act(Reason::DeployedButUnknownReady, Branch::CorrectStatus)
}

fn toggle_suspend() -> Decision {
    Decision::act(Reason::PendingInstallButDeployed, Branch::ToggleSuspend)
}

// ---- the rows, in table order ----

#[test]
fn a_deleting_helmrelease_is_skipped_even_when_stuck_and_marked() {
    let hr = hr("apps", "web")
        .stuck_deployed(3)
        .suspended()
        .marker()
        .deleting();
    assert_eq!(decided(hr, Helm::deployed(3)), skip(Reason::Deleting));
}

#[test]
fn our_marker_on_a_suspended_helmrelease_is_resumed() {
    let hr = hr("apps", "web")
        .stuck_pending_install()
        .suspended()
        .marker();
    assert_eq!(
        decided(hr, Helm::NotRead),
        Decision::act(Reason::InterruptedToggle, Branch::Resume)
    );
}

#[test]
fn our_marker_on_a_resumed_helmrelease_is_cleared_even_when_ready() {
    let hr = hr("apps", "web").ready_true().marker();
    assert_eq!(
        decided(hr, Helm::NotRead),
        Decision::act(Reason::StaleMarker, Branch::ClearMarker)
    );
}

#[test]
fn an_operator_suspension_is_never_touched() {
    let hr = hr("apps", "web").stuck_deployed(3).suspended();
    assert_eq!(decided(hr, Helm::deployed(3)), skip(Reason::Suspended));
}

#[test]
fn a_helmrelease_without_ready_condition_is_skipped() {
    let hr = hr("apps", "web").no_ready_condition().history_deployed(3);
    assert_eq!(
        decided(hr, Helm::deployed(3)),
        skip(Reason::NoReadyCondition)
    );
}

#[test]
fn a_ready_helmrelease_is_counted_but_not_listed() {
    let plan = cluster()
        .with(
            hr("apps", "web").ready_true().history_deployed(3),
            Helm::NotRead,
        )
        .plan(&Config::default());
    assert_eq!(plan.scanned, 1);
    assert!(plan.items.is_empty());
    assert_eq!(plan.skips().count(), 0);
    assert_eq!(plan.stuck(), 0);
}

#[test]
fn a_failed_helmrelease_is_left_to_helm_controller_remediation() {
    let hr = hr("apps", "web")
        .ready_false_for(minutes(60))
        .history_deployed(3);
    assert_eq!(decided(hr, Helm::deployed(3)), skip(Reason::NotReady));
}

#[test]
fn an_unparseable_ready_transition_time_is_a_bad_timestamp() {
    let hr = hr("apps", "web")
        .ready_unknown_since("yesterday")
        .history_deployed(3);
    assert_eq!(decided(hr, Helm::deployed(3)), skip(Reason::BadTimestamp));
}

#[test]
fn a_missing_ready_transition_time_is_a_bad_timestamp() {
    let hr = hr("apps", "web")
        .ready_unknown_without_time()
        .history_deployed(3);
    assert_eq!(decided(hr, Helm::deployed(3)), skip(Reason::BadTimestamp));
}

#[test]
fn a_ready_transition_time_of_the_wrong_type_is_a_bad_timestamp() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(6))
        .history_deployed(3)
        .field(
            &["status", "conditions"],
            json!([{"type": "Ready", "status": "Unknown", "reason": "Progressing",
                    "message": "", "lastTransitionTime": 12345}]),
        );
    assert_eq!(decided(hr, Helm::deployed(3)), skip(Reason::BadTimestamp));
}

#[test]
fn an_unparseable_reconciling_transition_time_is_a_bad_timestamp() {
    let hr = hr("apps", "web")
        .stuck_deployed(3)
        .reconciling_true_since("soon");
    assert_eq!(decided(hr, Helm::deployed(3)), skip(Reason::BadTimestamp));
}

#[test]
fn a_reconciling_condition_that_is_not_true_does_not_need_a_good_timestamp() {
    let hr =
        hr("apps", "web")
            .stuck_deployed(3)
            .with_condition("Reconciling", "False", "not a time");
    assert_eq!(decided(hr, Helm::deployed(3)), correct_status());
}

#[test]
fn ready_unknown_for_less_than_the_threshold_is_within_threshold() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(4))
        .history_deployed(3);
    assert_eq!(
        decided(hr, Helm::deployed(3)),
        skip(Reason::WithinThreshold)
    );
}

#[test]
fn a_correction_past_the_cooldown_is_tried_again_even_after_ready_last_changed() {
    // Corrected 40m ago (cooldown 30m), Ready Unknown since 50m: SPEC §3's
    // `already-corrected` is the cooldown alone, so a correction a killed
    // run left half done (annotation written, status not) is finished now.
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(50))
        .history_deployed(3)
        .corrected_ago(minutes(40));
    assert_eq!(decided(hr, Helm::deployed(3)), correct_status());
}

#[test]
fn a_correction_younger_than_the_cooldown_is_already_corrected_before_or_after_ready() {
    for corrected in [minutes(10), minutes(29)] {
        for ready in [minutes(6), minutes(50)] {
            let hr = hr("apps", "web")
                .ready_unknown_for(ready)
                .history_deployed(3)
                .corrected_ago(corrected);
            assert_eq!(
                decided(hr, Helm::deployed(3)),
                skip(Reason::AlreadyCorrected),
                "corrected {corrected:?} ago, Ready Unknown for {ready:?}"
            );
        }
    }
}

#[test]
fn a_correction_before_ready_last_changed_and_past_the_cooldown_is_corrected_again() {
    // Corrected 40m ago, then Ready changed again (Unknown since 35m): a new
    // episode, past the 30m cooldown.
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(35))
        .history_deployed(3)
        .corrected_ago(minutes(40));
    assert_eq!(decided(hr, Helm::deployed(3)), correct_status());
}

#[test]
fn a_correction_younger_than_the_cooldown_is_already_corrected_even_before_ready_changed() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(6))
        .history_deployed(3)
        .corrected_ago(minutes(30) - seconds(1));
    assert_eq!(
        decided(hr, Helm::deployed(3)),
        skip(Reason::AlreadyCorrected)
    );
}

#[test]
fn a_correction_exactly_one_cooldown_old_and_before_ready_changed_is_corrected_again() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(6))
        .history_deployed(3)
        .corrected_ago(minutes(30));
    assert_eq!(decided(hr, Helm::deployed(3)), correct_status());
}

#[test]
fn an_unparseable_corrected_at_annotation_counts_as_absent() {
    let hr = hr("apps", "web")
        .stuck_deployed(3)
        .annotated(annotations::AUTO_CORRECTED_AT, "2026-01-01 11:59:00");
    assert_eq!(decided(hr, Helm::deployed(3)), correct_status());
}

#[test]
fn an_unattempted_generation_is_left_to_the_controller() {
    let hr = hr("apps", "web")
        .stuck_deployed(3)
        .generation(2)
        .last_attempted_generation(1);
    assert_eq!(
        decided(hr, Helm::deployed(3)),
        skip(Reason::GenerationNotAttempted)
    );
}

#[test]
fn a_missing_last_attempted_generation_differs_from_any_generation() {
    let hr = hr("apps", "web")
        .stuck_deployed(3)
        .no_last_attempted_generation();
    assert_eq!(
        decided(hr, Helm::deployed(3)),
        skip(Reason::GenerationNotAttempted)
    );
}

#[test]
fn a_remediated_helmrelease_is_left_to_helm_controller_remediation() {
    let hr = hr("apps", "web").stuck_deployed(3).remediated();
    assert_eq!(decided(hr, Helm::deployed(3)), skip(Reason::Remediated));
}

#[test]
fn deployed_history_without_a_release_secret_means_helm_storage_disagrees() {
    let hr = hr("apps", "web").stuck_deployed(3);
    assert_eq!(
        decided(hr, Helm::NoRelease),
        skip(Reason::HelmStorageDisagrees)
    );
}

#[test]
fn deployed_history_with_helm_pending_upgrade_means_helm_storage_disagrees() {
    let hr = hr("apps", "web").stuck_deployed(3);
    assert_eq!(
        decided(hr, Helm::Latest(4, "pending-upgrade")),
        skip(Reason::HelmStorageDisagrees)
    );
}

#[test]
fn deployed_history_with_helm_storage_one_revision_ahead_means_helm_storage_disagrees() {
    let hr = hr("apps", "web").stuck_deployed(3);
    assert_eq!(
        decided(hr, Helm::deployed(4)),
        skip(Reason::HelmStorageDisagrees)
    );
}

#[test]
fn deployed_history_ahead_of_helm_storage_means_helm_storage_disagrees() {
    let hr = hr("apps", "web").stuck_deployed(3);
    assert_eq!(
        decided(hr, Helm::deployed(2)),
        skip(Reason::HelmStorageDisagrees)
    );
}

#[test]
fn deployed_history_with_unknown_ready_is_corrected() {
    let hr = hr("apps", "web").stuck_deployed(3);
    assert_eq!(decided(hr, Helm::deployed(3)), correct_status());
}

#[test]
fn a_toggle_younger_than_the_cooldown_is_not_repeated() {
    let hr = hr("apps", "web")
        .stuck_pending_install()
        .toggled_ago(minutes(10));
    assert_eq!(
        decided(hr, Helm::deployed(1)),
        skip(Reason::RecentlyToggled)
    );
}

#[test]
fn a_toggle_exactly_one_cooldown_old_may_be_repeated() {
    let hr = hr("apps", "web")
        .stuck_pending_install()
        .toggled_ago(minutes(30));
    assert_eq!(decided(hr, Helm::deployed(1)), toggle_suspend());
}

#[test]
fn an_unparseable_toggled_at_annotation_counts_as_absent() {
    let hr = hr("apps", "web")
        .stuck_pending_install()
        .annotated(annotations::TOGGLED_AT, "tuesday");
    assert_eq!(decided(hr, Helm::deployed(1)), toggle_suspend());
}

#[test]
fn pending_install_history_with_a_deployed_release_is_toggled() {
    let hr = hr("apps", "web").stuck_pending_install();
    assert_eq!(decided(hr, Helm::deployed(1)), toggle_suspend());
}

#[test]
fn empty_history_with_a_deployed_release_is_toggled() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(6))
        .history_empty();
    assert_eq!(decided(hr, Helm::deployed(1)), toggle_suspend());
}

#[test]
fn a_status_without_history_with_a_deployed_release_is_toggled() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(6))
        .no_history_field();
    assert_eq!(decided(hr, Helm::deployed(1)), toggle_suspend());
}

#[test]
fn pending_install_without_a_release_secret_is_no_helm_release() {
    let hr = hr("apps", "web").stuck_pending_install();
    assert_eq!(decided(hr, Helm::NoRelease), skip(Reason::NoHelmRelease));
}

#[test]
fn pending_install_with_helm_still_pending_is_left_alone() {
    let hr = hr("apps", "web").stuck_pending_install();
    assert_eq!(
        decided(hr, Helm::Latest(1, "pending-install")),
        skip(Reason::HelmReleasePending)
    );
}

#[test]
fn an_unreadable_helm_storage_for_deployed_history_is_storage_unreadable() {
    let hr = hr("apps", "web").stuck_deployed(3);
    assert_eq!(
        decided(hr, Helm::Unreadable),
        skip(Reason::StorageUnreadable)
    );
}

#[test]
fn an_unreadable_helm_storage_for_pending_install_is_storage_unreadable() {
    let hr = hr("apps", "web").stuck_pending_install();
    assert_eq!(
        decided(hr, Helm::Unreadable),
        skip(Reason::StorageUnreadable)
    );
}

#[test]
fn helm_storage_missing_from_the_facts_is_storage_unreadable() {
    let hr = hr("apps", "web").stuck_deployed(3);
    assert_eq!(decided(hr, Helm::NotRead), skip(Reason::StorageUnreadable));
}

#[test]
fn failed_history_stuck_past_the_threshold_is_an_unknown_stuck_mode() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(6))
        .history_status("failed", 3);
    assert_eq!(decided(hr, Helm::NotRead), skip(Reason::UnknownStuckMode));
}

#[test]
fn pending_upgrade_history_stuck_past_the_threshold_is_an_unknown_stuck_mode() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(6))
        .history_status("pending-upgrade", 3);
    assert_eq!(decided(hr, Helm::NotRead), skip(Reason::UnknownStuckMode));
}

#[test]
fn history_without_a_status_stuck_past_the_threshold_is_an_unknown_stuck_mode() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(6))
        .field(&["status", "history"], json!([{"version": 3}]));
    assert_eq!(decided(hr, Helm::NotRead), skip(Reason::UnknownStuckMode));
}

#[test]
fn pending_install_with_a_failed_helm_release_is_an_unknown_stuck_mode() {
    let hr = hr("apps", "web").stuck_pending_install();
    assert_eq!(
        decided(hr, Helm::Latest(1, "failed")),
        skip(Reason::UnknownStuckMode)
    );
}

// ---- edges ----

#[test]
fn ready_unknown_for_exactly_the_threshold_counts_as_stuck() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(5))
        .history_deployed(3);
    assert_eq!(decided(hr, Helm::deployed(3)), correct_status());
}

#[test]
fn ready_unknown_one_second_short_of_the_threshold_is_within_threshold() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(5) - seconds(1))
        .history_deployed(3);
    assert_eq!(
        decided(hr, Helm::deployed(3)),
        skip(Reason::WithinThreshold)
    );
}

#[test]
fn a_newer_reconciling_true_condition_restarts_the_age() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(60))
        .reconciling_true_for(minutes(2))
        .history_deployed(3);
    assert_eq!(
        decided(hr, Helm::deployed(3)),
        skip(Reason::WithinThreshold)
    );
}

#[test]
fn an_older_reconciling_true_condition_does_not_shorten_the_age() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(6))
        .reconciling_true_for(minutes(60))
        .history_deployed(3);
    assert_eq!(decided(hr, Helm::deployed(3)), correct_status());
}

#[test]
fn a_newer_reconciling_false_condition_does_not_restart_the_age() {
    let hr = hr("apps", "web")
        .ready_unknown_for(minutes(60))
        .reconciling_false_for(minutes(2))
        .history_deployed(3);
    assert_eq!(decided(hr, Helm::deployed(3)), correct_status());
}

#[test]
fn a_ready_transition_in_the_future_is_within_threshold() {
    let hr = hr("apps", "web")
        .ready_unknown_since(&ahead(minutes(10)))
        .history_deployed(3);
    assert_eq!(
        decided(hr, Helm::deployed(3)),
        skip(Reason::WithinThreshold)
    );
}

#[test]
fn rfc3339_with_offset_and_fraction_is_accepted() {
    let hr = hr("apps", "web")
        .ready_unknown_since("2026-01-01T13:50:00.123456+02:00")
        .history_deployed(3);
    assert_eq!(decided(hr, Helm::deployed(3)), correct_status());
}

#[test]
fn timestamps_that_are_not_strict_rfc3339_are_bad_timestamps() {
    for raw in [
        "2026-01-01 11:00:00Z",
        "2026-01-01T11:00:00",
        "2026-01-01",
        "2026-13-01T11:00:00Z",
        "1735732800",
        "",
    ] {
        let hr = hr("apps", "web")
            .ready_unknown_since(raw)
            .history_deployed(3);
        assert_eq!(
            decided(hr, Helm::deployed(3)),
            skip(Reason::BadTimestamp),
            "{raw:?}"
        );
    }
}

#[test]
fn the_latest_revision_is_found_by_numeric_version_so_v10_follows_v9() {
    let labels = |version: &str, status: &str| {
        [
            ("owner", "helm"),
            ("name", "web"),
            ("version", version),
            ("status", status),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<std::collections::BTreeMap<_, _>>()
    };
    let secrets = [
        labels("9", "superseded"),
        labels("10", "deployed"),
        labels("x11", "pending-upgrade"),
    ];
    let latest = crate::decide::latest_revision(&secrets);
    assert_eq!(
        latest.as_ref().map(|l| (l.version, l.status.as_str())),
        Some((10, "deployed"))
    );
    let helm = Helm::Fact(StorageFact::Latest(latest));
    assert_eq!(
        decided(hr("apps", "web").stuck_deployed(10), helm),
        correct_status()
    );
}

#[test]
fn helm_storage_is_looked_up_under_the_shortened_release_name() {
    let long = "a-target-namespace-with-a-long-name";
    let hr = hr("apps", "a-helmrelease-with-a-long-name").target_namespace(long);
    let view = hr.clone().stuck_deployed(3).view();
    let release = view.release_name();
    assert_eq!(release.len(), 53);
    assert!(release.starts_with("a-target-namespace-with-a-long-name-a-he-"));
    assert_eq!(
        decided(hr.stuck_deployed(3), Helm::deployed(3)),
        correct_status()
    );
}

#[test]
fn storage_is_needed_only_for_helmreleases_that_reach_a_storage_row() {
    let config = Config::default();
    let not_needed = [
        hr("apps", "healthy").ready_true(),
        hr("apps", "suspended").stuck_deployed(3).suspended(),
        hr("apps", "deleting").stuck_deployed(3).deleting(),
        hr("apps", "young")
            .ready_unknown_for(minutes(1))
            .history_deployed(3),
        hr("apps", "corrected")
            .stuck_deployed(3)
            .corrected_ago(minutes(1)),
        hr("apps", "toggled")
            .stuck_pending_install()
            .toggled_ago(minutes(1)),
        hr("apps", "failed")
            .ready_unknown_for(minutes(6))
            .history_status("failed", 2),
    ];
    for hr in not_needed {
        let view = hr.view();
        assert_eq!(storage_needed(&view, now(), &config), None, "{}", view.name);
    }
    let needed = hr("apps", "web")
        .stuck_deployed(3)
        .status_storage_namespace("helm-storage")
        .view();
    assert_eq!(
        storage_needed(&needed, now(), &config),
        Some(ReleaseRef {
            storage_namespace: "helm-storage".to_string(),
            release_name: "web".to_string(),
        })
    );
    let pending = hr("apps", "db").stuck_pending_install().view();
    assert!(storage_needed(&pending, now(), &config).is_some());
}

#[test]
fn a_custom_threshold_and_cooldown_are_honoured() {
    let config = Config {
        stuck_threshold: minutes(1),
        cooldown: minutes(2),
        ..Config::default()
    };
    let young = hr("apps", "web")
        .ready_unknown_for(seconds(61))
        .history_deployed(3);
    assert_eq!(
        decided_with(young, Helm::deployed(3), &config),
        correct_status()
    );
    let toggled = hr("apps", "db")
        .ready_unknown_for(minutes(6))
        .history_pending_install()
        .toggled_ago(minutes(3));
    assert_eq!(
        decided_with(toggled, Helm::deployed(1), &config),
        toggle_suspend()
    );
}

// ---- the plan as a whole ----

#[test]
fn a_malformed_object_is_a_listed_skip_not_a_failed_plan() {
    let plan = cluster()
        .with(hr("apps", "web").stuck_deployed(3), Helm::deployed(3))
        .with_raw(
            json!({"metadata": {"namespace": "apps", "name": "bad", "resourceVersion": "1"},
                         "status": "broken"}),
        )
        .plan(&Config::default());
    assert_eq!(plan.scanned, 2);
    let skips: Vec<_> = plan.skips().collect();
    assert_eq!(skips.len(), 1);
    assert_eq!(skips[0].name, "bad");
    assert_eq!(skips[0].decision, skip(Reason::Malformed));
    assert!(skips[0].view.is_none());
    assert!(
        skips[0]
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("status"))
    );
    assert_eq!(plan.actions().count(), 1);
}

#[test]
fn a_malformed_object_without_a_name_is_listed_as_unknown() {
    let plan = cluster()
        .with_raw(json!({"metadata": {"namespace": "apps"}}))
        .plan(&Config::default());
    let item = &plan.items[0];
    assert_eq!(
        (item.namespace.as_str(), item.name.as_str()),
        ("apps", "<unknown>")
    );
    assert_eq!(item.decision.reason, Reason::Malformed);
}

#[test]
fn items_are_ordered_by_namespace_then_name() {
    let plan = cluster()
        .with(hr("b", "a").stuck_pending_install(), Helm::NoRelease)
        .with(hr("a", "z").stuck_pending_install(), Helm::NoRelease)
        .with(hr("a", "b").stuck_pending_install(), Helm::NoRelease)
        .plan(&Config::default());
    let order: Vec<_> = plan
        .items
        .iter()
        .map(|i| format!("{}/{}", i.namespace, i.name))
        .collect();
    assert_eq!(order, ["a/b", "a/z", "b/a"]);
}

#[test]
fn stuck_counts_rows_from_already_corrected_down_and_planned_counts_recoveries() {
    let plan = cluster()
        .with(hr("apps", "ready").ready_true(), Helm::NotRead)
        .with(
            hr("apps", "young").ready_unknown_for(minutes(1)),
            Helm::NotRead,
        )
        .with(
            hr("apps", "marked")
                .stuck_pending_install()
                .suspended()
                .marker(),
            Helm::NotRead,
        )
        .with(
            hr("apps", "corrected")
                .stuck_deployed(3)
                .corrected_ago(minutes(1)),
            Helm::NotRead,
        )
        .with(hr("apps", "web").stuck_deployed(3), Helm::deployed(3))
        .with(hr("apps", "db").stuck_pending_install(), Helm::deployed(1))
        .with(
            hr("apps", "cache").stuck_pending_install(),
            Helm::Latest(1, "pending-install"),
        )
        .plan(&Config::default());
    assert_eq!(plan.scanned, 7);
    assert_eq!(plan.stuck(), 4);
    assert_eq!(plan.planned(), 2);
    assert_eq!(plan.actions().count(), 3);
    // ready is neither kept nor listed; young, corrected and cache are listed.
    assert_eq!(plan.skips().count(), 3);
    assert!(!plan.has_undecided());
}

#[test]
fn an_unreadable_storage_makes_the_plan_undecided() {
    let plan = cluster()
        .with(hr("apps", "web").stuck_deployed(3), Helm::Unreadable)
        .plan(&Config::default());
    assert!(plan.has_undecided());
}

// ---- the guardrail ----

fn recoveries(n: usize) -> super::fixtures::Cluster {
    (0..n).fold(cluster(), |c, i| {
        if i % 2 == 0 {
            c.with(
                hr("apps", &format!("web-{i}")).stuck_deployed(3),
                Helm::deployed(3),
            )
        } else {
            c.with(
                hr("apps", &format!("db-{i}")).stuck_pending_install(),
                Helm::deployed(1),
            )
        }
    })
}

fn with_repairs(mut c: super::fixtures::Cluster, n: usize) -> super::fixtures::Cluster {
    for i in 0..n {
        c = c
            .with(
                hr("ops", &format!("resume-{i}"))
                    .stuck_pending_install()
                    .suspended()
                    .marker(),
                Helm::NotRead,
            )
            .with(
                hr("ops", &format!("clear-{i}")).ready_true().marker(),
                Helm::NotRead,
            );
    }
    c
}

#[test]
fn the_guardrail_holds_at_exactly_max_actions() {
    let plan = recoveries(10).plan(&Config::default());
    assert_eq!(plan.guardrail.candidates, 10);
    assert_eq!(plan.guardrail.max_actions, 10);
    assert!(!plan.guardrail.tripped);
    assert_eq!(plan.runnable().count(), 10);
    assert_eq!(plan.held_back().count(), 0);
}

#[test]
fn the_guardrail_trips_one_over_max_actions_and_holds_back_every_recovery() {
    let plan = recoveries(11).plan(&Config::default());
    assert_eq!(plan.guardrail.candidates, 11);
    assert!(plan.guardrail.tripped);
    assert_eq!(plan.runnable().count(), 0);
    assert_eq!(plan.held_back().count(), 11);
    assert_eq!(plan.planned(), 11);
}

#[test]
fn the_guardrail_with_nothing_to_do_is_not_tripped() {
    let plan = cluster()
        .with(hr("apps", "web").ready_true(), Helm::NotRead)
        .plan(&Config::default());
    assert_eq!(plan.guardrail.candidates, 0);
    assert!(!plan.guardrail.tripped);
}

#[test]
fn a_zero_max_actions_trips_on_the_first_recovery() {
    let config = Config {
        max_actions: 0,
        ..Config::default()
    };
    assert!(!cluster().plan(&config).guardrail.tripped);
    assert!(recoveries(1).plan(&config).guardrail.tripped);
}

#[test]
fn repairs_never_count_towards_the_guardrail() {
    let plan = with_repairs(recoveries(10), 6).plan(&Config::default());
    assert_eq!(plan.guardrail.candidates, 10);
    assert!(!plan.guardrail.tripped);
    assert_eq!(plan.runnable().count(), 22);
}

#[test]
fn repairs_still_run_when_the_guardrail_trips() {
    let plan = with_repairs(recoveries(11), 2).plan(&Config::default());
    assert!(plan.guardrail.tripped);
    let runnable: Vec<_> = plan.runnable().filter_map(|i| i.decision.branch).collect();
    assert_eq!(runnable.len(), 4);
    assert!(runnable.iter().all(|b| !b.is_guarded()));
}

mod guardrail_property {
    use proptest::prelude::*;

    use super::super::fixtures::{Cluster, Helm, cluster, hr, minutes};
    use crate::config::Config;

    /// One HelmRelease of a random cluster.
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Correct,
        Toggle,
        Resume,
        Clear,
        Pending,
        Healthy,
        Young,
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Correct),
            Just(Kind::Toggle),
            Just(Kind::Resume),
            Just(Kind::Clear),
            Just(Kind::Pending),
            Just(Kind::Healthy),
            Just(Kind::Young),
        ]
    }

    fn build(kinds: &[Kind]) -> Cluster {
        kinds.iter().enumerate().fold(cluster(), |c, (i, k)| {
            let name = format!("hr-{i}");
            let base = hr(&format!("ns-{}", i % 3), &name);
            match k {
                Kind::Correct => c.with(base.stuck_deployed(3), Helm::deployed(3)),
                Kind::Toggle => c.with(base.stuck_pending_install(), Helm::deployed(1)),
                Kind::Resume => c.with(
                    base.stuck_pending_install().suspended().marker(),
                    Helm::NotRead,
                ),
                Kind::Clear => c.with(base.ready_true().marker(), Helm::NotRead),
                Kind::Pending => c.with(
                    base.stuck_pending_install(),
                    Helm::Latest(1, "pending-install"),
                ),
                Kind::Healthy => c.with(base.ready_true(), Helm::NotRead),
                Kind::Young => c.with(base.ready_unknown_for(minutes(1)), Helm::NotRead),
            }
        })
    }

    proptest! {
        #[test]
        fn the_plan_never_runs_more_recoveries_than_max_actions_and_always_runs_repairs(
            kinds in prop::collection::vec(kind(), 0..40),
            max_actions in 0usize..15,
        ) {
            let config = Config { max_actions, ..Config::default() };
            let plan = build(&kinds).plan(&config);
            let count = |f: fn(&Kind) -> bool| kinds.iter().filter(|k| f(k)).count();
            let recoveries = count(|k| matches!(k, Kind::Correct | Kind::Toggle));
            let repairs = count(|k| matches!(k, Kind::Resume | Kind::Clear));

            prop_assert_eq!(plan.scanned, kinds.len());
            prop_assert_eq!(plan.guardrail.candidates, recoveries);
            prop_assert_eq!(plan.guardrail.tripped, recoveries > max_actions);
            let runnable_recoveries = plan
                .runnable()
                .filter(|i| i.decision.branch.is_some_and(|b| b.is_guarded()))
                .count();
            prop_assert!(runnable_recoveries <= max_actions);
            let expected = if plan.guardrail.tripped { 0 } else { recoveries };
            prop_assert_eq!(runnable_recoveries, expected);
            prop_assert_eq!(plan.held_back().count(), recoveries - expected);
            let runnable_repairs = plan
                .runnable()
                .filter(|i| i.decision.branch.is_some_and(|b| !b.is_guarded()))
                .count();
            prop_assert_eq!(runnable_repairs, repairs);
        }
    }
}

/// One fixture per row, in table order: every reason code is reachable, and
/// the table is complete (a new reason fails this test until it has a row).
#[test]
fn every_row_of_the_decision_table_is_reached_by_its_fixture() {
    let w = || hr("apps", "web");
    let rows = [
        (
            Reason::Deleting,
            w().stuck_deployed(3).deleting(),
            Helm::NotRead,
        ),
        (
            Reason::InterruptedToggle,
            w().stuck_pending_install().suspended().marker(),
            Helm::NotRead,
        ),
        (
            Reason::StaleMarker,
            w().stuck_pending_install().marker(),
            Helm::NotRead,
        ),
        (
            Reason::Suspended,
            w().stuck_deployed(3).suspended(),
            Helm::NotRead,
        ),
        (
            Reason::NoReadyCondition,
            w().no_ready_condition(),
            Helm::NotRead,
        ),
        (Reason::Ready, w().ready_true(), Helm::NotRead),
        (
            Reason::NotReady,
            w().ready_false_for(minutes(60)),
            Helm::NotRead,
        ),
        (
            Reason::BadTimestamp,
            w().ready_unknown_since("noon"),
            Helm::NotRead,
        ),
        (
            Reason::WithinThreshold,
            w().ready_unknown_for(minutes(1)),
            Helm::NotRead,
        ),
        (
            Reason::AlreadyCorrected,
            w().stuck_deployed(3).corrected_ago(minutes(1)),
            Helm::NotRead,
        ),
        (
            Reason::GenerationNotAttempted,
            w().stuck_deployed(3).generation(2),
            Helm::NotRead,
        ),
        (
            Reason::Remediated,
            w().stuck_deployed(3).remediated(),
            Helm::NotRead,
        ),
        (
            Reason::HelmStorageDisagrees,
            w().stuck_deployed(3),
            Helm::deployed(4),
        ),
        (
            Reason::DeployedButUnknownReady,
            w().stuck_deployed(3),
            Helm::deployed(3),
        ),
        (
            Reason::RecentlyToggled,
            w().stuck_pending_install().toggled_ago(minutes(1)),
            Helm::NotRead,
        ),
        (
            Reason::PendingInstallButDeployed,
            w().stuck_pending_install(),
            Helm::deployed(1),
        ),
        (
            Reason::NoHelmRelease,
            w().stuck_pending_install(),
            Helm::NoRelease,
        ),
        (
            Reason::HelmReleasePending,
            w().stuck_pending_install(),
            Helm::Latest(1, "pending-install"),
        ),
        (
            Reason::StorageUnreadable,
            w().stuck_pending_install(),
            Helm::Unreadable,
        ),
        (
            Reason::UnknownStuckMode,
            w().ready_unknown_for(minutes(6))
                .history_status("failed", 2),
            Helm::NotRead,
        ),
    ];
    let reasons: Vec<Reason> = rows.iter().map(|(r, _, _)| *r).collect();
    let table: Vec<Reason> = Reason::ALL
        .into_iter()
        .filter(|r| *r != Reason::Malformed)
        .collect();
    assert_eq!(reasons, table, "one row per reason, in table order");
    for (reason, hr, helm) in rows {
        assert_eq!(decided(hr, helm).reason, reason);
    }
}
