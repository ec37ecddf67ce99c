//! Building, updating and rendering the report.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Report, render_json, render_text};
use crate::config::Config;
use crate::exit::ExitCode;
use crate::failure::Failure;
use crate::model::{ActionResult, Branch, DryRun, Reason};
use crate::plan::fixtures::{Helm, cluster, hr, minutes};

/// web: correct-status, db: helm-release-pending, plus 118 healthy ones.
fn spec_example_report() -> Report {
    let plan = cluster()
        .with(hr("apps", "web").stuck_deployed(3), Helm::deployed(3))
        .with(
            hr("apps", "db").stuck_pending_install(),
            Helm::Latest(1, "pending-install"),
        )
        .with(
            hr("apps", "db2")
                .ready_unknown_for(minutes(6))
                .history_pending_install()
                .toggled_ago(minutes(1)),
            Helm::NotRead,
        )
        .plan(&Config::default());
    let mut plan = plan;
    plan.scanned = 120;
    // Keep the example's single skip.
    plan.items.retain(|i| i.name != "db2");
    let mut report = Report::from_plan(&plan, &Config::default());
    report.set_result("apps", "web", ActionResult::Succeeded, None);
    report.finish(None);
    report
}

#[test]
fn the_json_report_has_exactly_the_spec_example_shape() {
    let mut report = spec_example_report();
    // The SPEC example counts 3 stuck and 2 planned in a bigger cluster.
    report.counts.stuck = 3;
    report.counts.planned = 2;
    report.guardrail.candidates = 2;
    let rendered: Value = serde_json::from_str(&render_json(&report)).unwrap_or(Value::Null);
    let expected = json!({
      "dryRun": "none",
      "config": {"stuckThreshold": "5m", "maxActions": 10, "suspendWait": "5s",
                 "cooldown": "30m", "timeout": "90s", "namespaces": [], "selector": null},
      "counts": {"scanned": 120, "stuck": 3, "planned": 2, "acted": 1, "failed": 0},
      "guardrail": {"tripped": false, "candidates": 2, "maxActions": 10},
      "actions": [
        {"namespace": "apps", "name": "web", "branch": "correct-status",
         "reason": "deployed-but-unknown-ready", "result": "succeeded", "error": null,
         "blocks": []}
      ],
      "skipped": [{"namespace": "apps", "name": "db", "reason": "helm-release-pending",
                   "blocks": []}],
      "exitCode": 0
    });
    assert_eq!(rendered, expected);
}

#[test]
fn the_json_report_is_one_document_ending_in_a_newline() {
    let text = render_json(&spec_example_report());
    assert!(text.ends_with("}\n"));
    assert!(serde_json::from_str::<Value>(&text).is_ok());
}

#[test]
fn the_text_report_lists_actions_then_skips_then_the_summary() {
    let text = render_text(&spec_example_report());
    assert_eq!(
        text,
        "apps/web correct-status deployed-but-unknown-ready succeeded\n\
         apps/db skip helm-release-pending\n\
         scanned=120 stuck=2 planned=1 acted=1 failed=0 guardrail=ok dry-run=none\n"
    );
}

#[test]
fn a_failed_action_line_carries_its_error_on_one_line() {
    let mut report = spec_example_report();
    report.set_result(
        "apps",
        "web",
        ActionResult::RolledBack,
        Some(Failure::Step(
            "patch status: 500\ninternal error".to_string(),
        )),
    );
    report.finish(None);
    let first = render_text(&report).lines().next().map(str::to_string);
    assert_eq!(
        first.as_deref(),
        Some(
            "apps/web correct-status deployed-but-unknown-ready rolled-back error=patch status: 500 internal error"
        )
    );
    assert_eq!(report.counts.failed, 1);
    assert_eq!(report.counts.acted, 0);
    assert_eq!(report.exit_code, 3);
}

#[test]
fn the_summary_shows_a_tripped_guardrail_and_the_dry_run_mode() {
    let config = Config {
        max_actions: 0,
        dry_run: DryRun::Server,
        ..Config::default()
    };
    let plan = cluster()
        .with(hr("apps", "web").stuck_deployed(3), Helm::deployed(3))
        .plan(&config);
    let report = Report::from_plan(&plan, &config);
    let text = render_text(&report);
    assert_eq!(
        text.lines().last(),
        Some("scanned=1 stuck=1 planned=1 acted=0 failed=0 guardrail=tripped dry-run=server")
    );
    assert_eq!(report.exit_code, 1);
    assert_eq!(report.actions[0].result, ActionResult::Planned);
}

#[test]
fn a_fresh_report_has_every_action_planned() {
    let plan = cluster()
        .with(hr("apps", "web").stuck_deployed(3), Helm::deployed(3))
        .with(hr("apps", "db").stuck_pending_install(), Helm::deployed(1))
        .with(hr("ops", "left").ready_true().marker(), Helm::NotRead)
        .plan(&Config::default());
    let report = Report::from_plan(&plan, &Config::default());
    assert_eq!(report.actions.len(), 3);
    assert!(
        report
            .actions
            .iter()
            .all(|a| a.result == ActionResult::Planned)
    );
    let branches: Vec<_> = report.actions.iter().map(|a| a.branch).collect();
    assert_eq!(
        branches,
        [
            Branch::ToggleSuspend,
            Branch::CorrectStatus,
            Branch::ClearMarker
        ]
    );
    assert_eq!((report.counts.planned, report.counts.acted), (2, 0));
    assert_eq!(report.exit_code, 0);
}

#[test]
fn an_undecided_helmrelease_makes_the_run_exit_3() {
    let plan = cluster()
        .with(hr("apps", "web").stuck_deployed(3), Helm::Unreadable)
        .plan(&Config::default());
    let report = Report::from_plan(&plan, &Config::default());
    assert_eq!(report.skipped[0].reason, Reason::StorageUnreadable);
    assert_eq!(report.exit_code, 3);
}

#[test]
fn repairs_count_as_acted_but_nothing_is_acted_in_a_dry_run() {
    let plan = cluster()
        .with(hr("ops", "left").ready_true().marker(), Helm::NotRead)
        .plan(&Config::default());
    let mut report = Report::from_plan(&plan, &Config::default());
    report.set_result("ops", "left", ActionResult::Succeeded, None);
    report.finish(None);
    assert_eq!(report.counts.acted, 1);
    report.dry_run = DryRun::Server;
    report.finish(None);
    assert_eq!(report.counts.acted, 0);
}

#[test]
fn a_signal_beats_a_tripped_guardrail_and_failed_actions() {
    let config = Config {
        max_actions: 0,
        ..Config::default()
    };
    let plan = cluster()
        .with(hr("apps", "web").stuck_deployed(3), Helm::deployed(3))
        .with(hr("ops", "left").ready_true().marker(), Helm::NotRead)
        .plan(&config);
    let mut report = Report::from_plan(&plan, &config);
    report.set_result(
        "ops",
        "left",
        ActionResult::Failed,
        Some(Failure::Step("boom".into())),
    );
    report.finish(None);
    assert_eq!(report.exit(), ExitCode::GuardrailTripped);
    report.finish(Some(ExitCode::Terminated));
    assert_eq!(report.exit_code, 143);
}

#[test]
fn a_failed_list_reports_what_is_known_and_exits_4() {
    let report = Report::list_failed(7, &Config::default(), None);
    assert_eq!(report.exit_code, 4);
    assert_eq!(report.counts.scanned, 7);
    assert!(report.actions.is_empty() && report.skipped.is_empty());
    assert_eq!(
        Report::list_failed(0, &Config::default(), Some(ExitCode::Interrupted)).exit_code,
        130
    );
}

#[test]
fn a_redecision_to_ready_drops_the_action_without_listing_it() {
    let mut report = spec_example_report();
    report.replace_with_skip("apps", "web", Reason::Ready);
    assert!(report.actions.is_empty());
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.counts.planned, 1, "planned is fixed at plan time");
}

#[test]
fn a_redecision_to_another_skip_lists_it_in_order() {
    let mut report = spec_example_report();
    report.replace_with_skip("apps", "web", Reason::AlreadyCorrected);
    let listed: Vec<_> = report
        .skipped
        .iter()
        .map(|s| format!("{}/{} {}", s.namespace, s.name, s.reason))
        .collect();
    assert_eq!(
        listed,
        ["apps/db helm-release-pending", "apps/web already-corrected"]
    );
}

#[test]
fn a_redecision_to_another_action_replaces_it() {
    let mut report = spec_example_report();
    report.replace_action("apps", "web", Branch::ClearMarker, Reason::StaleMarker);
    let a = &report.actions[0];
    assert_eq!(
        (a.branch, a.reason, a.result),
        (
            Branch::ClearMarker,
            Reason::StaleMarker,
            ActionResult::Planned
        )
    );
}

#[test]
fn configured_durations_and_scope_are_reported_as_the_flags_accept_them() {
    let config = Config {
        stuck_threshold: Duration::from_secs(90),
        cooldown: Duration::from_secs(5400),
        namespaces: vec!["apps".into(), "ops".into()],
        selector: Some("team=a".into()),
        ..Config::default()
    };
    let report = Report::from_plan(&crate::plan::Plan::empty(0, &config), &config);
    let v: Value = serde_json::from_str(&render_json(&report)).unwrap_or(Value::Null);
    assert_eq!(v["config"]["stuckThreshold"], "90s");
    assert_eq!(v["config"]["cooldown"], "90m");
    assert_eq!(v["config"]["namespaces"], json!(["apps", "ops"]));
    assert_eq!(v["config"]["selector"], "team=a");
}

/// Every key path of a JSON value, arrays written `[]`.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                key_paths(child, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_schema_document_lists_exactly_the_report_keys() {
    let doc = include_str!("../../docs/report-schema.md");
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_string)
        .collect();
    let report: Value =
        serde_json::from_str(&render_json(&spec_example_report())).unwrap_or(Value::Null);
    let mut actual = BTreeSet::new();
    key_paths(&report, "", &mut actual);
    assert_eq!(documented, actual);
}

#[test]
fn the_schema_document_lists_every_skip_reason_code() {
    let doc = include_str!("../../docs/report-schema.md");
    for reason in Reason::ALL {
        let is_action = matches!(
            reason,
            Reason::DeployedButUnknownReady
                | Reason::PendingInstallButDeployed
                | Reason::InterruptedToggle
                | Reason::StaleMarker
        );
        assert!(
            doc.contains(&format!("`{reason}`")),
            "{reason} is not documented"
        );
        if !is_action && reason != Reason::Ready {
            let skips = doc.split("### Skip reason codes").nth(1).unwrap_or("");
            assert!(
                skips.contains(&format!("`{reason}`")),
                "{reason} is not a documented skip"
            );
        }
    }
}

#[test]
fn blocks_are_listed_in_json_and_counted_in_text_when_there_are_any() {
    let mut dependents = crate::blocks::Dependents::default();
    dependents.add("apps", "api", "apps", "web");
    dependents.add("apps", "front", "apps", "api");
    dependents.add("ops", "mon", "apps", "db");
    let plan = cluster()
        .with(hr("apps", "web").stuck_deployed(3), Helm::deployed(3))
        .with(
            hr("apps", "db").stuck_pending_install(),
            Helm::Latest(1, "pending-install"),
        )
        .with(hr("apps", "cache").stuck_deployed(2), Helm::deployed(2))
        .plan(&Config::default())
        .with_blocks(&dependents);
    let report = Report::from_plan(&plan, &Config::default());
    let rendered: Value = serde_json::from_str(&render_json(&report)).unwrap_or(Value::Null);
    let blocks = |list: &str, name: &str| {
        rendered[list]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["name"] == name))
            .map(|i| i["blocks"].clone())
    };
    assert_eq!(
        blocks("actions", "web"),
        Some(json!(["apps/api", "apps/front"]))
    );
    assert_eq!(blocks("actions", "cache"), Some(json!([])));
    assert_eq!(blocks("skipped", "db"), Some(json!(["ops/mon"])));
    let text = render_text(&report);
    assert!(
        text.contains("apps/web correct-status deployed-but-unknown-ready planned blocks=2\n"),
        "{text}"
    );
    assert!(
        text.contains("apps/cache correct-status deployed-but-unknown-ready planned\n"),
        "{text}"
    );
    assert!(
        text.contains("apps/db skip helm-release-pending blocks=1\n"),
        "{text}"
    );
}

#[test]
fn a_redecision_to_a_skip_keeps_what_it_blocks() {
    let mut dependents = crate::blocks::Dependents::default();
    dependents.add("apps", "api", "apps", "web");
    let plan = cluster()
        .with(hr("apps", "web").stuck_deployed(3), Helm::deployed(3))
        .plan(&Config::default())
        .with_blocks(&dependents);
    let mut report = Report::from_plan(&plan, &Config::default());
    report.replace_with_skip("apps", "web", Reason::Remediated);
    assert_eq!(report.skipped[0].blocks, ["apps/api"]);
    assert!(report.actions.is_empty());
}

#[test]
fn the_json_report_reads_back_as_the_same_typed_report() {
    let mut report = spec_example_report();
    report.set_result(
        "apps",
        "web",
        ActionResult::Failed,
        Some(Failure::ChangedDuringRun),
    );
    report.finish(None);
    let read: Result<Report, _> = serde_json::from_str(&render_json(&report));
    assert_eq!(read.ok(), Some(report));
}
