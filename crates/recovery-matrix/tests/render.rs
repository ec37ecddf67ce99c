//! The renderer on records: every cell, the verdict rules of issue 20 point 7,
//! a missing cell, and the binary's --check; and the committed document is the
//! rendering of the committed records.

use std::path::{Path, PathBuf};
use std::process::Command;

use recovery_matrix::{
    Alone, Condition, Decision, History0, Record, RenderOptions, Signature, Storage, VERSIONS,
    Verdict, load_dir, missing_cells, render, verdicts, write_record,
};

fn cond(t: &str, s: &str, r: &str) -> Condition {
    Condition {
        type_: t.into(),
        status: s.into(),
        reason: r.into(),
    }
}

/// A plausible record; tests change what they need.
fn record(version: &str, state: &str) -> Record {
    Record {
        version: version.into(),
        state: state.into(),
        state_title: None,
        mechanism:
            "install through the fault proxy; conditions PATCH carrying Released answered 409"
                .into(),
        interval_seconds: 30.0,
        alone: Alone {
            left_by_itself: false,
            after_seconds: None,
            left_by: None,
            observed_seconds: 125.0,
            restarts: 1,
            signature: Signature {
                conditions: vec![cond("Ready", "Unknown", "Progressing")],
                history0: Some(History0 {
                    status: "deployed".into(),
                    action: Some("install".into()),
                    version: 1,
                }),
                storage: Some(Storage {
                    version: 1,
                    status: "deployed".into(),
                }),
            },
            left_signature: None,
        },
        decision: Decision {
            reason: "deployed-but-unknown-ready".into(),
            explain_reason: "deployed-but-unknown-ready".into(),
            branch: "correct-status".into(),
            result: Some("succeeded".into()),
        },
        recovered: Some(true),
        stays: Some(true),
        dependents: Some(true),
        nothing_else: true,
        before: serde_json::json!({"metadata": {"name": "web"}}),
        after: serde_json::json!({"metadata": {"name": "web"}}),
        notes: vec![],
    }
}

fn full_set() -> Vec<Record> {
    let mut out = Vec::new();
    for v in VERSIONS {
        for s in ["1", "2", "3", "4"] {
            out.push(record(v, s));
        }
    }
    out
}

fn versions() -> Vec<String> {
    VERSIONS.iter().map(|v| v.to_string()).collect()
}

fn opts(v: &[String]) -> RenderOptions<'_> {
    RenderOptions {
        versions: v,
        command: "scripts/recovery-matrix --dir X --out Y",
        allow_missing: false,
    }
}

#[test]
fn a_right_decision_has_no_verdict() {
    assert!(verdicts(&record("v1.6.4", "1")).is_empty());
}

#[test]
fn skipping_a_state_the_controller_never_leaves_is_wrong() {
    let mut r = record("v1.4.3", "5a");
    r.decision = Decision {
        reason: "not-ready".into(),
        explain_reason: "not-ready".into(),
        branch: "skip".into(),
        result: None,
    };
    r.recovered = None;
    r.stays = None;
    r.dependents = Some(false);
    assert_eq!(verdicts(&r), vec![Verdict::SkipsStateNeverLeft]);
}

#[test]
fn skipping_a_state_the_controller_leaves_is_right() {
    let mut r = record("v1.6.4", "2");
    r.alone.left_by_itself = true;
    r.alone.after_seconds = Some(0.8);
    r.alone.left_by = Some("retry".into());
    r.decision = Decision {
        reason: "within-threshold".into(),
        explain_reason: "within-threshold".into(),
        branch: "skip".into(),
        result: None,
    };
    r.recovered = None;
    r.stays = None;
    assert!(verdicts(&r).is_empty());
}

#[test]
fn acting_on_a_state_healed_within_the_interval_is_wrong_but_not_later() {
    let mut r = record("v1.6.4", "3");
    r.alone.left_by_itself = true;
    r.alone.left_by = Some("restart".into());
    r.alone.after_seconds = Some(31.0); // 30 s interval, +5 % jitter and slack
    r.decision.reason = "pending-install-but-deployed".into();
    r.decision.explain_reason = r.decision.reason.clone();
    r.decision.branch = "toggle-suspend".into();
    assert_eq!(verdicts(&r), vec![Verdict::ActsOnSelfHealing]);
    r.alone.after_seconds = Some(300.0);
    assert!(verdicts(&r).is_empty());
}

#[test]
fn an_undone_or_failed_fix_and_blocked_dependents_are_wrong() {
    let mut r = record("v1.6.3", "1");
    r.stays = Some(false);
    r.dependents = Some(false);
    assert_eq!(
        verdicts(&r),
        vec![Verdict::FixUndone, Verdict::DependentsBlocked]
    );
    r.recovered = Some(false);
    r.stays = None;
    r.dependents = Some(true);
    assert_eq!(verdicts(&r), vec![Verdict::FixFailed]);
}

#[test]
fn other_objects_changed_and_explain_disagreeing_are_flagged() {
    let mut r = record("v1.6.3", "1");
    r.nothing_else = false;
    r.decision.explain_reason = "ready".into();
    assert_eq!(
        verdicts(&r),
        vec![Verdict::ChangedOtherObjects, Verdict::ExplainDisagrees]
    );
}

#[test]
fn the_full_matrix_renders_every_cell_in_order() {
    let v = versions();
    let mut records = full_set();
    records.reverse();
    let md = render(&records, &opts(&v)).unwrap();
    let rows: Vec<String> = md
        .lines()
        .filter(|l| l.starts_with("| v1."))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            format!("{} {}", cells[1], cells[2])
        })
        .collect();
    let expected: Vec<String> = VERSIONS
        .iter()
        .flat_map(|v| ["1", "2", "3", "4"].map(|s| format!("{v} {s}")))
        .collect();
    assert_eq!(rows, expected);
    assert!(
        md.contains("scripts/recovery-matrix --dir X --out Y"),
        "{md}"
    );
    assert!(md.contains("Nowhere in the measured cells."), "{md}");
    assert!(!md.contains("INCOMPLETE"));
    assert!(
        md.contains(
            "Ready=Unknown/Progressing; history[0] deployed install v1; storage v1 deployed"
        ),
        "{md}"
    );
    assert!(md.contains("`deployed-but-unknown-ready` → correct-status (succeeded)"));
    assert_eq!(md.matches("### v1.").count(), 12);
}

#[test]
fn a_wrong_cell_is_marked_in_the_table_and_listed_with_its_evidence() {
    let v = versions();
    let mut records = full_set();
    let r = records
        .iter_mut()
        .find(|r| r.version == "v1.4.3" && r.state == "4")
        .unwrap();
    r.stays = Some(false);
    r.after =
        serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    let md = render(&records, &opts(&v)).unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| v1.4.3 | 4 |"))
        .unwrap();
    assert!(
        row.contains("**WRONG**: our fix is undone by the controller"),
        "{row}"
    );
    assert!(md.contains("* **v1.4.3 state 4** — our fix is undone by the controller."));
    assert!(md.contains("\"status\": \"Unknown\""), "{md}");
}

#[test]
fn a_missing_cell_fails_the_render_and_names_it() {
    let v = versions();
    let records: Vec<Record> = full_set()
        .into_iter()
        .filter(|r| !(r.version == "v1.6.3" && r.state == "2"))
        .collect();
    assert_eq!(
        missing_cells(&records, &v),
        vec![("v1.6.3".to_string(), "2".to_string())]
    );
    let err = render(&records, &opts(&v)).unwrap_err().to_string();
    assert!(err.contains("v1.6.3 state 2"), "{err}");
    let md = render(
        &records,
        &RenderOptions {
            allow_missing: true,
            ..opts(&v)
        },
    )
    .unwrap();
    assert!(md.contains("**INCOMPLETE** — not measured yet: v1.6.3 × 2."));
    assert!(md.contains("| v1.6.3 | 2 | not measured |"));
}

#[test]
fn a_further_state_is_rendered_after_the_required_ones() {
    let v = versions();
    let mut records = full_set();
    let mut extra = record("v1.4.3", "5a");
    extra.state_title = Some("Released=False left by a failed try, retry's write lost".into());
    records.push(extra);
    let md = render(&records, &opts(&v)).unwrap();
    let pos = |s: &str| md.find(s).unwrap();
    assert!(pos("| v1.4.3 | 4 |") < pos("| v1.4.3 | 5a |"));
    assert!(pos("| v1.4.3 | 5a |") < pos("| v1.6.3 | 1 |"));
    assert!(md.contains("| 5a | Released=False left by a failed try, retry's write lost |"));
}

#[test]
fn two_records_for_one_cell_fail() {
    let v = versions();
    let mut records = full_set();
    records.push(record("v1.6.4", "1"));
    assert!(render(&records, &opts(&v)).is_err());
}

#[test]
fn records_round_trip_through_the_directory_and_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for r in full_set() {
        write_record(dir.path(), &r).unwrap();
    }
    let mut back = load_dir(dir.path()).unwrap();
    back.sort_by(|a, b| (&a.version, &a.state).cmp(&(&b.version, &b.state)));
    let mut want = full_set();
    want.sort_by(|a, b| (&a.version, &a.state).cmp(&(&b.version, &b.state)));
    assert_eq!(back, want);
    std::fs::rename(
        dir.path().join("v1.6.4-1.json"),
        dir.path().join("v1.6.4-9.json"),
    )
    .unwrap();
    let err = format!("{:#}", load_dir(dir.path()).unwrap_err());
    assert!(err.contains("must be named v1.6.4-1.json"), "{err}");
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_recovery-matrix"))
}

#[test]
fn the_binary_writes_checks_and_fails_on_a_missing_cell() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    for r in full_set() {
        write_record(&records, &r).unwrap();
    }
    let out = dir.path().join("matrix.md");
    let st = bin()
        .arg("--dir")
        .arg(&records)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let check = |out: &Path| {
        bin()
            .arg("--dir")
            .arg(&records)
            .arg("--out")
            .arg(out)
            .arg("--check")
            .output()
            .unwrap()
    };
    assert!(check(&out).status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::write(&out, text.replace("yes", "YES")).unwrap();
    let o = check(&out);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("differs"));

    std::fs::remove_file(records.join("v1.4.3-3.json")).unwrap();
    let o = bin().arg("--dir").arg(&records).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("v1.4.3 state 3"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The same directory through the environment variable, allowing the gap.
    let o = bin()
        .env("RECOVERY_MATRIX_DIR", &records)
        .arg("--allow-missing")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("v1.4.3 × 3"));
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// docs/recovery-matrix.md is what `scripts/recovery-matrix` renders from the
/// committed records (docs/recovery-matrix-records/): the doc is never edited
/// by hand, and a change to the renderer shows here.
#[test]
fn the_committed_document_is_the_rendering_of_the_committed_records() {
    let root = repo_root();
    let doc = root.join("docs/recovery-matrix.md");
    let records_dir = root.join("docs/recovery-matrix-records");
    let doc_text = std::fs::read_to_string(&doc).expect("docs/recovery-matrix.md");
    let first_line = doc_text
        .lines()
        .find(|l| l.starts_with("Generated by `"))
        .expect("the document names its command");
    let command = first_line
        .trim_start_matches("Generated by `")
        .split('`')
        .next()
        .unwrap();
    assert!(
        command.starts_with("scripts/recovery-matrix --dir docs/recovery-matrix-records --out docs/recovery-matrix.md"),
        "{command}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_recovery-matrix"))
        .current_dir(&root)
        .args(command.split_whitespace().skip(1))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docs/recovery-matrix.md is not the rendering of docs/recovery-matrix-records: run `{command}`\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(records_dir.is_dir());
}
