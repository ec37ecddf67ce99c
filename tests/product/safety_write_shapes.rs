//! Issue 10: answers that do not say what happened, at every write
//! position, with the real binary (and its real client stack) against the
//! fake API server. Each position (suspend, resume, annotation, status,
//! revert, marker clear, interrupted-toggle resume) meets each shape:
//!
//! * the server applies the write, then answers 504 (`Timeout`);
//! * the server applies the write, then drops the connection;
//! * 429 and 503 with `Retry-After` (header and `details`), and the
//!   plain-text 429 of API Priority and Fairness;
//! * another writer really writes the object just before our write
//!   (a genuine 409, not an injected one).
//!
//! Every cell asserts the end state (nothing left suspended by the run, no
//! half-done correction, the other writer's change kept), the exit code,
//! each action's result, and the request log: no write body is ever sent
//! twice (no blind re-send of an applied write), and a refused write is
//! sent again only after the server's `Retry-After`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::safety::*;
use crate::common::*;
use fake_apiserver::{Fault, RecordedRequest};
use serde_json::{Value, json};
use stuck_hr_recovery::model::{ActionResult, Branch, Reason};

/// An annotation the other writer sets; it must survive every run.
const OTHER: &str = "example.com/other-writer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    ApplyThen504,
    ApplyThenDrop,
    RetryAfter(u16),
    PlainRetryAfter429,
    Concurrent,
}

const SHAPES: [Shape; 6] = [
    Shape::ApplyThen504,
    Shape::ApplyThenDrop,
    Shape::RetryAfter(429),
    Shape::RetryAfter(503),
    Shape::PlainRetryAfter429,
    Shape::Concurrent,
];

/// Seconds of every `Retry-After`.
const RETRY_AFTER: u64 = 2;

impl Shape {
    fn apply(self, fault: Fault, status: bool) -> Fault {
        match self {
            Shape::ApplyThen504 => fault.apply_then_respond(504),
            Shape::ApplyThenDrop => fault.apply_then_drop(),
            Shape::RetryAfter(code) => fault.respond_retry_after(code, RETRY_AFTER),
            Shape::PlainRetryAfter429 => fault.respond_plain_retry_after(429, RETRY_AFTER),
            // The other writer changes the object (an annotation of its
            // own), or its status (a condition of its own) for a status
            // write: either bumps the resourceVersion.
            Shape::Concurrent if status => fault.concurrent_status_write(json!({
                "status": {"lastHandledReconcileAt": "other"}
            })),
            Shape::Concurrent => fault.concurrent_write(json!({
                "metadata": {"annotations": {OTHER: "kept"}}
            })),
        }
    }
}

/// A write position: the HelmRelease, which of its writes, and what the
/// run must report.
#[derive(Debug, Clone, Copy)]
struct Position {
    name: &'static str,
    namespace: &'static str,
    status: bool,
    nth: u64,
    /// The position is the revert: the status patch fails first.
    revert: bool,
    /// Writes to the faulted target in a run without this fault.
    clean: u64,
}

const POSITIONS: [Position; 7] = [
    Position {
        name: "suspend",
        namespace: TOGGLE_NS,
        status: false,
        nth: 1,
        revert: false,
        clean: 2,
    },
    Position {
        name: "resume",
        namespace: TOGGLE_NS,
        status: false,
        nth: 2,
        revert: false,
        clean: 2,
    },
    Position {
        name: "annotation",
        namespace: CORRECT_NS,
        status: false,
        nth: 1,
        revert: false,
        clean: 1,
    },
    Position {
        name: "status",
        namespace: CORRECT_NS,
        status: true,
        nth: 1,
        revert: false,
        clean: 1,
    },
    Position {
        name: "revert",
        namespace: CORRECT_NS,
        status: false,
        nth: 2,
        revert: true,
        clean: 2,
    },
    Position {
        name: "marker clear",
        namespace: CLEAR_NS,
        status: false,
        nth: 1,
        revert: false,
        clean: 1,
    },
    Position {
        name: "interrupted-toggle resume",
        namespace: RESUME_NS,
        status: false,
        nth: 1,
        revert: false,
        clean: 1,
    },
];

impl Position {
    fn key(self) -> WriteKey {
        WriteKey {
            method: "PATCH".into(),
            resource: "helmreleases".into(),
            subresource: self.status.then(|| "status".into()),
            namespace: self.namespace.into(),
            name: Some(HR_NAME.into()),
            nth: self.nth,
        }
    }

    /// The result the faulted action must end with: a status patch met
    /// by another writer is rolled back (SPEC §5); a revert cell fails the
    /// status patch first, so it is rolled back too.
    fn expected(self, shape: Shape) -> &'static str {
        if self.revert || (self.status && shape == Shape::Concurrent) {
            "rolled-back"
        } else {
            "succeeded"
        }
    }
}

/// Our own writes (not the other writer's).
fn ours(requests: &[RecordedRequest]) -> Vec<&RecordedRequest> {
    requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.user != fake_apiserver::faults::OTHER_WRITER)
        .collect()
}

/// One cell: a run with the fault, then a rerun without it.
fn cell(position: Position, shape: Shape) -> Vec<String> {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    let key = position.key();
    if position.revert {
        // The status patch fails (not applied, final): the run reverts.
        let status = WriteKey {
            subresource: Some("status".into()),
            nth: 1,
            ..key.clone()
        };
        cluster.add_fault(status.fault().respond(500));
    }
    cluster.add_fault(shape.apply(key.fault(), position.status));
    let started = Instant::now();
    let out = cluster.run(&fault_run_args());
    let elapsed = started.elapsed();
    let mut problems = Vec::new();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let expected = position.expected(shape);
    let code = if expected == "succeeded" { 0 } else { 3 };
    if out.status.code() != Some(code) {
        problems.push(format!("exit {:?}, not {code}", out.status.code()));
    }
    let action = action_of(&report, position.namespace, HR_NAME);
    if action.map(|a| a["result"].clone()) != Some(Value::from(expected)) {
        problems.push(format!("action {action:?}, not {expected}"));
    }
    // Every other action succeeded.
    for a in report["actions"].as_array().into_iter().flatten() {
        if a["namespace"] != position.namespace && a["result"] != "succeeded" {
            problems.push(format!("unfaulted action not succeeded: {a}"));
        }
    }
    let requests = cluster.requests();
    // A write body is sent again only after a refusal that says it was
    // not applied (429/503): never blind after an applied write.
    let mut last = BTreeMap::<String, u16>::new();
    for r in ours(&requests) {
        let write = format!("{} {}", r.path, r.body.clone().unwrap_or_default());
        if let Some(before) = last.insert(write.clone(), r.status)
            && !matches!(before, 429 | 503)
        {
            problems.push(format!("sent again after {before}: {write}"));
        }
    }
    let faulted: Vec<&RecordedRequest> = ours(&requests)
        .into_iter()
        .filter(|r| key.same_target(r))
        .collect();
    match shape {
        Shape::ApplyThen504 | Shape::ApplyThenDrop => {
            // Applied: recognised on a read-back, never sent again.
            if faulted.len() as u64 != position.clean {
                problems.push(format!(
                    "{} writes to the faulted target, not {}: the applied write was sent again",
                    faulted.len(),
                    position.clean
                ));
            }
        }
        Shape::RetryAfter(_) | Shape::PlainRetryAfter429 => {
            // Refused: sent again once, after Retry-After.
            if faulted.len() as u64 != position.clean + 1 {
                problems.push(format!(
                    "{} writes to the faulted target, not {}",
                    faulted.len(),
                    position.clean + 1
                ));
            }
            if elapsed < Duration::from_secs(RETRY_AFTER) {
                problems.push(format!(
                    "the run took {elapsed:?}: Retry-After {RETRY_AFTER}s not honoured"
                ));
            }
        }
        Shape::Concurrent => {
            // A genuine 409: one write more, with the new resourceVersion
            // (a status patch is not sent again: it is rolled back, and the
            // revert then meets the 409 and is sent again).
            let again = u64::from(!position.status);
            if faulted.len() as u64 != position.clean + again {
                problems.push(format!(
                    "{} writes to the faulted target, not {}",
                    faulted.len(),
                    position.clean + again
                ));
            }
            let statuses: Vec<u16> = faulted.iter().map(|r| r.status).collect();
            if statuses.get(key.nth as usize - 1) != Some(&409) {
                problems.push(format!("no genuine 409 at the faulted write: {statuses:?}"));
            }
            let hr = cluster.hr(position.namespace, HR_NAME);
            let kept = if position.status {
                hr["status"]["lastHandledReconcileAt"] == "other"
            } else {
                annotation(&hr, OTHER) == Some("kept")
            };
            if !kept {
                problems.push(format!("the other writer's change was lost: {hr}"));
            }
        }
    }
    problems.extend(end_state_violations(&cluster));
    if !problems.is_empty() && std::env::var_os("SHAPES_VERBOSE").is_some() {
        problems.push(describe(&out));
    }
    problems
}

#[test]
fn every_write_position_survives_every_answer_that_does_not_say_what_happened() {
    let cells: Vec<(Position, Shape)> = POSITIONS
        .iter()
        .flat_map(|p| SHAPES.iter().map(move |s| (*p, *s)))
        .collect();
    let total = cells.len();
    let results = parallel(cells, 6, |(p, s)| (p.name, s, cell(p, s)));
    let failures: Vec<String> = results
        .iter()
        .filter(|(_, _, problems)| !problems.is_empty())
        .map(|(p, s, problems)| format!("{s:?} at {p}:\n  {}", problems.join("\n  ")))
        .collect();
    println!(
        "write shapes: {} positions x {} shapes = {total} cells; cells with damage or a blind re-send: {}",
        POSITIONS.len(),
        SHAPES.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cells:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Issue 10, point 2: our suspend meets a genuine 409 because the object
/// now carries a marker that is not this write's (a killed run's) with
/// `spec.suspend: true`: the re-decision is `interrupted-toggle`, a repair
/// of our own state, carried out in the same run — never left suspended,
/// never reported `planned`.
#[test]
fn a_suspend_redecided_into_interrupted_toggle_is_resumed_in_the_same_run() {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    let key = POSITIONS[0].key();
    cluster.add_fault(key.fault().concurrent_write(json!({
        "metadata": {"annotations": {SUSPENDED_AT: ago(1)}},
        "spec": {"suspend": true},
    })));
    let (out, report) = cluster.run_report(&fault_run_args());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_action(
        &report,
        TOGGLE_NS,
        HR_NAME,
        (
            Branch::Resume,
            Reason::InterruptedToggle,
            ActionResult::Succeeded,
        ),
    );
    assert_resumed(&cluster.hr(TOGGLE_NS, HR_NAME));
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
}

/// Issue 10, point 3: a genuine 409 on the status patch (another writer
/// wrote the object between our two writes) makes the revert's
/// `resourceVersion` stale too; the revert re-reads and writes again while
/// the annotation still holds our value: `rolled-back`, annotation gone,
/// the other writer's change kept.
#[test]
fn a_revert_after_a_genuine_conflict_rereads_and_rolls_back() {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    let status = POSITIONS[3].key();
    cluster.add_fault(status.fault().concurrent_write(json!({
        "metadata": {"annotations": {OTHER: "kept"}}
    })));
    let out = cluster.run(&fault_run_args());
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = json_report(&out);
    let action = action_of(&report, CORRECT_NS, HR_NAME)
        .cloned()
        .unwrap_or_default();
    assert_eq!(action["result"], "rolled-back", "{}", describe(&out));
    let hr = cluster.hr(CORRECT_NS, HR_NAME);
    assert_eq!(annotation(&hr, CORRECTED_AT), None, "annotation put back");
    assert_eq!(annotation(&hr, OTHER), Some("kept"));
    // The revert met the stale resourceVersion (409), then succeeded.
    let reverts: Vec<u16> = ours(&cluster.requests())
        .into_iter()
        .filter(|r| r.namespace.as_deref() == Some(CORRECT_NS) && r.subresource.is_none())
        .skip(1)
        .map(|r| r.status)
        .collect();
    assert_eq!(reverts, [409, 200]);
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
}

/// Issue 21 (SPEC §5): a status patch answered 500, then a revert answered
/// 500 as well. A 500 is a failed write: the revert is read back once but
/// never sent again, so the run ends promptly — result `failed` with both
/// errors, a Warning Event, exit 3 — and the next run heals what is left.
#[test]
fn a_revert_answered_500_after_a_status_500_is_not_sent_again() {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    let status = POSITIONS[3].key();
    cluster.add_fault(status.fault().respond(500));
    // Every revert of the annotation is answered 500, however often sent.
    let revert = POSITIONS[4].key();
    cluster.add_fault(revert.fault().times(u64::MAX).respond(500));
    let started = Instant::now();
    let out = cluster.run(&[
        "-o",
        "json",
        "--suspend-wait",
        SUSPEND_WAIT,
        "--timeout",
        "30s",
    ]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        elapsed < Duration::from_secs(10),
        "the run took {elapsed:?}: the failed revert was retried\n{}",
        describe(&out)
    );
    let report = report(&out);
    let action = action(&report, CORRECT_NS, HR_NAME);
    assert_eq!(action.result, ActionResult::Failed, "{}", describe(&out));
    let error = action.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("patch status of HelmRelease correct/hr")
            && error.contains("revert annotation of HelmRelease correct/hr"),
        "both errors reported: {error}"
    );
    let reverts = ours(&cluster.requests())
        .into_iter()
        .filter(|r| revert.same_target(r))
        .skip(1)
        .map(|r| r.status)
        .collect::<Vec<u16>>();
    assert_eq!(
        reverts,
        [500],
        "the revert is sent once, never again after a 500"
    );
    assert!(
        cluster.events().contains(&(
            format!("{CORRECT_NS}/{HR_NAME}"),
            "Warning".to_owned(),
            "StuckReleaseCorrectionFailed".to_owned()
        )),
        "{:?}",
        cluster.events()
    );
}
