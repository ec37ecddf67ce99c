//! Issue 4, point 1: the fault matrix. Every write the binary makes — found
//! in the request log of a clean run over one HelmRelease per branch, so a
//! new write is covered without touching this file — is failed in turn with
//! each fault (500, 409, 403, a delay past the client's deadline, a dropped
//! connection); then the binary runs again without faults. Writes that only
//! a faulted run makes (the rollback of a correction, the retries after a
//! conflict or a 500) are found the same way and failed in a second round.
//!
//! After each pair of runs: no HelmRelease suspended with our marker, no
//! `auto-corrected-at` without Ready True, nothing written outside the plan,
//! and the first run's exit code and report name the failure (or the write
//! was retried and the action succeeded).
//!
//! One first-run residue is allowed, and only in one kind of cell: a
//! second-round cell that fails the rollback of a correction whose status
//! patch failed. The annotation then stays with Ready Unknown (a half-done
//! correction); the first run must report that action `failed` with both
//! errors (status patch and revert) and exit 3, and the rerun — past the
//! cooldown (`--cooldown 1ms`; SPEC §3: `already-corrected` is the cooldown
//! alone) — must complete the correction. After the rerun nothing is left
//! half done in any cell (docs/safety.md).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::safety::*;
use common::*;
use fake_apiserver::Fault;
use serde_json::Value;

/// The faults of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Code(u16),
    Delay,
    Drop,
    /// The write is applied but the connection drops before the answer:
    /// what a real API server does with a request the client gave up on
    /// (the fake server abandons a delayed request with its connection).
    LostAnswer,
}

const KINDS: [Kind; 6] = [
    Kind::Code(500),
    Kind::Code(409),
    Kind::Code(403),
    Kind::Delay,
    Kind::Drop,
    Kind::LostAnswer,
];

impl Kind {
    fn apply(self, fault: Fault, cluster: &Cluster) -> Fault {
        match self {
            Kind::Code(code) => fault.respond(code),
            Kind::Delay => fault.delay(DELAY),
            Kind::Drop => fault.drop_connection(),
            Kind::LostAnswer => fault
                .hook(apply_then_lose_answer(Arc::downgrade(&cluster.server)))
                .drop_connection(),
        }
    }

    /// Words one of which the report's error must contain to name this
    /// fault.
    fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Code(500) => &["500"],
            Kind::Code(409) => &["409", "changed-during-run"],
            Kind::Code(403) => &["403", "forbidden"],
            Kind::Code(_) => &[],
            Kind::Delay => &["deadline", "timeout", "timed out"],
            Kind::Drop | Kind::LostAnswer => &[
                "connection",
                "closed",
                "incomplete",
                "sending request",
                "changed-during-run",
            ],
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Code(code) => write!(f, "{code}"),
            Kind::Delay => write!(f, "delay {}s", DELAY.as_secs()),
            Kind::Drop => write!(f, "drop"),
            Kind::LostAnswer => write!(f, "applied, answer lost"),
        }
    }
}

/// One cell: the faults of the first run (one, or a first fault and one on
/// a write only that first fault makes happen).
#[derive(Debug, Clone)]
struct Case {
    faults: Vec<(WriteKey, Kind)>,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .faults
            .iter()
            .map(|(key, kind)| format!("{kind} on {key}"))
            .collect();
        write!(f, "{}", parts.join(" then "))
    }
}

/// What one cell showed.
struct CaseResult {
    case: Case,
    /// `failed`, `rolled-back`, `absorbed` (retried, succeeded) or
    /// `event-ignored` (an Event failed, the action did not).
    outcome: String,
    violations: Vec<String>,
    /// Writes of the first run that the clean run did not make.
    new_writes: Vec<WriteKey>,
    /// The first run left the allowed residue (a half-done correction after
    /// a failed rollback, reported so) and the rerun completed it.
    residue: bool,
    first_run: Duration,
}

fn run_case(case: Case, clean: &BTreeSet<WriteKey>, ledger: &RbacLedger) -> CaseResult {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    for (key, kind) in &case.faults {
        cluster.add_fault(kind.apply(key.fault(), &cluster));
    }
    let mut violations = Vec::new();
    let started = Instant::now();
    let first = cluster.run(&fault_run_args());
    let first_run = started.elapsed();
    let first_requests = cluster.requests();
    let new_writes: Vec<WriteKey> = write_keys(&first_requests)
        .into_iter()
        .filter(|k| !clean.contains(k))
        .collect();
    let (primary, kind) = case.faults[0].clone();
    let first_report = serde_json::from_slice::<Value>(&first.stdout);
    let outcome = match &first_report {
        Err(e) => {
            violations.push(format!("first run printed no JSON report ({e})"));
            String::new()
        }
        Ok(report) => {
            violations.extend(writes_outside_plan(
                &first_requests,
                report,
                &BTreeSet::new(),
            ));
            judge_first_run(&case, &primary, kind, &first, report, &mut violations)
        }
    };
    // The run's deadline bounds it, clean-up grace included.
    if first_run > RUN_BOUND {
        violations.push(format!(
            "first run took {first_run:?}, past --timeout {TIMEOUT} and the clean-up grace"
        ));
    }

    cluster.server.clear_faults();
    let after = last_seq(&cluster);
    // What the first run left half done, if anything, and as it was.
    let half_done = half_done_corrections(&cluster);
    let second = cluster.run(&rerun_args());
    if second.status.code() != Some(0) {
        violations.push(format!("second run: {}", describe(&second)));
    }
    let rerun_requests = requests_after(&cluster, after);
    let second_report = serde_json::from_slice::<Value>(&second.stdout);
    match &second_report {
        Ok(report) => violations.extend(writes_outside_plan(
            &rerun_requests,
            report,
            &BTreeSet::new(),
        )),
        Err(e) => violations.push(format!("second run printed no JSON report ({e})")),
    }
    // The first run's half-done correction is the allowed residue only if
    // it is exactly that; the rerun, past the cooldown, must complete it.
    let mut residue = false;
    if !half_done.is_empty() {
        let mut problems = residue_violations(
            &case,
            &half_done,
            &first,
            first_report.as_ref().unwrap_or(&Value::Null),
        );
        let completed = second_report
            .as_ref()
            .ok()
            .and_then(|r| action_of(r, CORRECT_NS, HR_NAME))
            .is_some_and(|a| {
                a["branch"] == "correct-status"
                    && a["reason"] == "deployed-but-unknown-ready"
                    && a["result"] == "succeeded"
            });
        if !completed {
            problems.push(format!(
                "the rerun did not complete the half-done correction: {}",
                describe(&second)
            ));
        }
        residue = problems.is_empty();
        violations.extend(problems);
    }
    violations.extend(end_state_violations(&cluster));
    let denied = cluster.server.rbac_tally().denied;
    if !denied.is_empty() {
        violations.push(format!("RBAC denied {} requests", denied.len()));
    }
    ledger.add(&cluster);
    CaseResult {
        case,
        outcome,
        violations,
        new_writes,
        residue,
        first_run,
    }
}

/// Whether `case` fails the rollback of a correction: its first fault is on
/// branch B's status patch, its second on the next write to the same
/// HelmRelease's object — the revert of the annotation.
fn fails_the_rollback(case: &Case) -> bool {
    let [(first, _), (second, _)] = case.faults.as_slice() else {
        return false;
    };
    first.namespace == CORRECT_NS
        && first.subresource.as_deref() == Some("status")
        && second.namespace == CORRECT_NS
        && second.resource == "helmreleases"
        && second.method == "PATCH"
        && second.subresource.is_none()
}

/// The allowed residue, as the first run must leave it: only `correct/hr`
/// half done, only in a cell that fails the rollback, and the first run
/// reported the action `failed` with both errors (status patch and revert)
/// and exit 3. (The rerun must then complete it.)
/// One line per way the residue is not that.
fn residue_violations(
    case: &Case,
    half_done: &BTreeSet<String>,
    first: &std::process::Output,
    first_report: &Value,
) -> Vec<String> {
    let id = format!("{CORRECT_NS}/{HR_NAME}");
    let mut violations = Vec::new();
    if !fails_the_rollback(case) {
        violations.push(format!(
            "half-done corrections {half_done:?} in a cell that does not fail a rollback"
        ));
        return violations;
    }
    if half_done != &BTreeSet::from([id.clone()]) {
        violations.push(format!(
            "half-done corrections {half_done:?}, not only {id}"
        ));
    }
    let action = action_of(first_report, CORRECT_NS, HR_NAME);
    let error = action.and_then(|a| a["error"].as_str()).unwrap_or_default();
    let both = error.contains(&format!("patch status of HelmRelease {id}"))
        && error.contains(&format!("revert annotation of HelmRelease {id}"));
    let failed = action.is_some_and(|a| a["result"] == "failed");
    if first.status.code() != Some(3) || !failed || !both {
        violations.push(format!(
            "the failed rollback was not reported as failed with both errors and exit 3: exit {:?}, action {}",
            first.status.code(),
            action.cloned().unwrap_or_default()
        ));
    }
    violations
}

/// The first run's exit code and report must name the failure: the faulted
/// action `failed` or `rolled-back` with an error naming the fault and exit
/// 3, or the write retried and the action `succeeded` with exit 0. A failed
/// Event never fails its action.
fn judge_first_run(
    case: &Case,
    primary: &WriteKey,
    kind: Kind,
    out: &std::process::Output,
    report: &Value,
    violations: &mut Vec<String>,
) -> String {
    let code = out.status.code();
    if report["exitCode"].as_i64().map(|c| c as i32) != code {
        violations.push(format!(
            "report exitCode {} but the process exited {code:?}",
            report["exitCode"]
        ));
    }
    if primary.is_event() {
        let all_succeeded = report["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|a| a["result"] == "succeeded");
        if code != Some(0) || !all_succeeded {
            violations.push(format!(
                "a failed Event changed the run's result: {}",
                describe(out)
            ));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.contains("Event not published") {
            violations.push("the failed Event was not logged".to_owned());
        }
        return "event-ignored".to_owned();
    }
    // A write that landed is recognised on a read-back: the action
    // succeeds in the same run, nothing half done, nothing mis-reported.
    let lost_alone = case.faults.len() == 1 && kind == Kind::LostAnswer;
    if lost_alone && code != Some(0) {
        violations.push(format!(
            "a lost answer on {primary} was not recognised: {}",
            describe(out)
        ));
    }
    let Some(action) = action_of(report, &primary.namespace, HR_NAME) else {
        // SPEC §5: a 409 on an action's first write re-reads and decides
        // again; another decision is reported instead, with no error.
        let skip = report["skipped"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["namespace"] == primary.namespace.as_str() && s["name"] == HR_NAME);
        if skip.is_none() || code != Some(0) {
            violations.push(format!(
                "no action and no skip for {} in the report, exit {code:?}",
                primary.namespace
            ));
        }
        return "redecided".to_owned();
    };
    let result = action["result"].as_str().unwrap_or_default().to_owned();
    let error = action["error"].as_str().unwrap_or_default();
    match (code, result.as_str()) {
        (Some(3), "failed" | "rolled-back") => {
            let named = case
                .faults
                .iter()
                .flat_map(|(_, k)| k.names())
                .any(|w| error.to_lowercase().contains(w));
            if !named {
                violations.push(format!("error {error:?} does not name {kind}"));
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !stderr.contains(&result) {
                violations.push(format!("the logs do not say {result}"));
            }
            result
        }
        (Some(0), "succeeded") => {
            let retried = out_requests_exceed(case);
            if !retried {
                violations.push("succeeded although its write failed".to_owned());
            }
            "absorbed".to_owned()
        }
        _ => {
            violations.push(format!(
                "exit {code:?} with result {result} error {error:?}: {}",
                describe(out)
            ));
            result
        }
    }
}

/// A succeeded action after a failed write means the write was sent again:
/// only faults the product retries (a 409, a 5xx, a dropped connection)
/// or a delay on a write it retried can end that way.
fn out_requests_exceed(case: &Case) -> bool {
    case.faults.iter().any(|(_, k)| {
        matches!(
            k,
            Kind::Code(409 | 500) | Kind::Drop | Kind::Delay | Kind::LostAnswer
        )
    })
}

fn run_matrix(
    cases: Vec<Case>,
    clean: &BTreeSet<WriteKey>,
    ledger: &RbacLedger,
) -> Vec<CaseResult> {
    parallel(cases, 6, |case| run_case(case, clean, ledger))
}

#[test]
fn no_fault_on_any_write_leaves_a_helmrelease_worse_off() {
    let started = Instant::now();
    let writes = clean_run_writes();
    let clean: BTreeSet<WriteKey> = writes.iter().cloned().collect();
    assert!(
        writes
            .iter()
            .any(|w| w.subresource.as_deref() == Some("status")),
        "the clean run corrects a status: {writes:#?}"
    );
    let first_round: Vec<Case> = writes
        .iter()
        .flat_map(|w| {
            KINDS.iter().map(|k| Case {
                faults: vec![(w.clone(), *k)],
            })
        })
        .collect();
    let ledger = RbacLedger::default();
    let mut results = run_matrix(first_round, &clean, &ledger);

    // Second round: every write only a faulted run made (rollback, retry),
    // found under a 500, a 409 or a lost answer, failed with each fault in
    // turn.
    let mut seen = BTreeSet::new();
    let mut second_round = Vec::new();
    for r in &results {
        let (primary, kind) = &r.case.faults[0];
        if primary.is_event() || !matches!(kind, Kind::Code(500 | 409) | Kind::LostAnswer) {
            continue;
        }
        for new in r.new_writes.iter().filter(|w| !w.is_event()) {
            if seen.insert((primary.clone(), *kind, new.clone())) {
                for k in KINDS {
                    second_round.push(Case {
                        faults: vec![(primary.clone(), *kind), (new.clone(), k)],
                    });
                }
            }
        }
    }
    let second_count = second_round.len();
    results.extend(run_matrix(second_round, &clean, &ledger));

    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for r in &results {
        *counts.entry(r.outcome.clone()).or_default() += 1;
        if !r.violations.is_empty() {
            failures.push(format!("{}:\n  {}", r.case, r.violations.join("\n  ")));
        }
    }
    let slowest = results
        .iter()
        .map(|r| r.first_run)
        .max()
        .unwrap_or_default();
    println!(
        "fault matrix: {} writes in the clean run x {} faults = {} cells, plus {} cells on writes only faulted runs make; {} cells in all",
        writes.len(),
        KINDS.len(),
        writes.len() * KINDS.len(),
        second_count,
        results.len()
    );
    println!("clean-run writes:");
    for w in &writes {
        println!("  {w}");
    }
    println!(
        "first-run outcomes: {counts:?}; violations in {} cells; slowest first run {slowest:?}; total {:?}",
        failures.len(),
        started.elapsed()
    );
    println!("first-run outcome per cell (one fault):");
    for w in &writes {
        let row: Vec<String> = KINDS
            .iter()
            .map(|k| {
                let outcome = results
                    .iter()
                    .find(|r| r.case.faults.len() == 1 && r.case.faults[0] == (w.clone(), *k))
                    .map_or("-", |r| r.outcome.as_str());
                format!("{k}: {outcome}")
            })
            .collect();
        println!("  {w}: {}", row.join(", "));
    }
    let second: BTreeSet<String> = results
        .iter()
        .filter(|r| r.case.faults.len() == 2)
        .map(|r| format!("{} (after {})", r.case.faults[1].0, r.case.faults[0].1))
        .collect();
    println!("second-round writes: {second:#?}");
    let rollback_cells = results.iter().filter(|r| fails_the_rollback(&r.case));
    let residue: Vec<String> = results
        .iter()
        .filter(|r| r.residue)
        .map(|r| r.case.to_string())
        .collect();
    println!(
        "allowed residue (half-done correction after a failed rollback: reported failed with both errors, exit 3; \
         completed by the rerun past the cooldown): {} cells of {} that fail the rollback, {} of {} cells in all: {residue:#?}",
        residue.len(),
        rollback_cells.count(),
        residue.len(),
        results.len()
    );
    println!(
        "RBAC over the matrix's {} runs: {} denied, unused rules {:?}",
        results.len() * 2,
        ledger.denied().len(),
        ledger.unused_rules()
    );
    assert_eq!(ledger.denied(), Vec::<String>::new());
    assert_eq!(ledger.unused_rules(), Vec::<String>::new());
    assert!(
        failures.is_empty(),
        "{} of {} cells left damage or mis-reported:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
}
