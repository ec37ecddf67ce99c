//! Issue 4, point 1, and issue 10, point 7: the fault matrix. Every write
//! the binary makes — found in the request log of a clean run over one
//! HelmRelease per branch, so a new write is covered without touching this
//! file — is failed in turn with each fault; then the binary runs again
//! without faults, a cooldown later. The faults are the answers a real API
//! server gives: 500, 409, 403, a delay past the client's deadline, a
//! dropped connection (nothing applied), the write applied and then the
//! connection dropped, the write applied and then answered 504, 429 and 503
//! with `Retry-After` (as a `Status`, and the plain-text 429 of API Priority
//! and Fairness), and another writer changing the object just before the
//! write (a genuine 409). Writes that only a faulted run makes (the
//! rollback of a correction, the retries after a conflict or a 500, the
//! repair after a re-decision) are found the same way and failed in a
//! second round.
//!
//! After each pair of runs: no HelmRelease suspended with our marker, no
//! `auto-corrected-at` without Ready True, nothing written outside the plan,
//! and the first run's exit code and report name the failure (or the write
//! was retried or recognised and the action succeeded). A write that landed
//! although its answer was lost or 504, and a 429/503 alone, must be
//! absorbed: exit 0.
//!
//! One state may be left by the first run, and only in one kind of cell: a
//! second-round cell that fails the rollback of a correction whose status
//! patch failed. The annotation then stays with Ready Unknown (a half-done
//! correction); the first run must report that action `failed` with both
//! errors (status patch and revert) and exit 3, and the rerun, a cooldown
//! later, must complete the correction (SPEC §3: `already-corrected` is the
//! cooldown alone). Nothing may be half done after the rerun
//! (docs/safety.md).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::safety::*;
use crate::common::*;
use fake_apiserver::Fault;
use serde_json::Value;

/// The faults of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// An error answer; nothing applied.
    Code(u16),
    Delay,
    /// The connection closed unanswered; nothing applied.
    Drop,
    /// The write is applied, then the connection closes unanswered (a real
    /// server that committed and lost the client).
    LostAnswer,
    /// The write is applied, then the answer is 504 `Timeout` (a real
    /// server whose request timeout beat the response).
    AppliedTimeout,
    /// 429 or 503 as a `Status` with `Retry-After: 1`; nothing applied.
    RetryAfter(u16),
    /// The API Priority and Fairness filter's 429: plain text with
    /// `Retry-After: 1`; nothing applied.
    PlainRetryAfter,
    /// Another writer changes the object just before this write arrives:
    /// a write carrying the old `resourceVersion` meets a genuine 409.
    Concurrent,
}

const KINDS: [Kind; 11] = [
    Kind::Code(500),
    Kind::Code(409),
    Kind::Code(403),
    Kind::Delay,
    Kind::Drop,
    Kind::LostAnswer,
    Kind::AppliedTimeout,
    Kind::RetryAfter(429),
    Kind::RetryAfter(503),
    Kind::PlainRetryAfter,
    Kind::Concurrent,
];

/// What the other writer of [`Kind::Concurrent`] changes: fields nothing
/// here decides on.
fn other_writer_patch(status: bool) -> Value {
    if status {
        serde_json::json!({"status": {"lastAttemptedConfigDigest": "sha256:other-writer"}})
    } else {
        serde_json::json!({"metadata": {"annotations": {"example.com/other-writer": "touched"}}})
    }
}

impl Kind {
    fn apply(self, fault: Fault, key: &WriteKey) -> Fault {
        match self {
            Kind::Code(code) => fault.respond(code),
            Kind::Delay => fault.delay(DELAY),
            Kind::Drop => fault.drop_connection(),
            Kind::LostAnswer => fault.apply_then_drop(),
            Kind::AppliedTimeout => fault.apply_then_timeout(),
            Kind::RetryAfter(code) => fault.respond_retry_after(code, 1),
            Kind::PlainRetryAfter => fault.respond_plain_retry_after(429, 1),
            Kind::Concurrent if key.subresource.as_deref() == Some("status") => {
                fault.concurrent_status_write(other_writer_patch(true))
            }
            Kind::Concurrent => fault.concurrent_write(other_writer_patch(false)),
        }
    }

    /// Whether this fault can hit `key`: another writer needs an object
    /// that exists (not an Event being created).
    fn fits(self, key: &WriteKey) -> bool {
        self != Kind::Concurrent || (key.name.is_some() && !key.is_event())
    }

    /// Whether a run must absorb this fault alone on any write: the write
    /// landed and is recognised by its stamp, or the answer says "not
    /// applied, retry" and the retry lands well inside the deadline.
    fn must_be_absorbed(self) -> bool {
        matches!(
            self,
            Kind::LostAnswer | Kind::AppliedTimeout | Kind::RetryAfter(_) | Kind::PlainRetryAfter
        )
    }

    /// Words one of which the report's error must contain to name this
    /// fault.
    fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Code(500) => &["500"],
            Kind::Code(409) | Kind::Concurrent => &["409", "changed-during-run", "conflict"],
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
            Kind::AppliedTimeout => &["504", "timeout", "changed-during-run"],
            Kind::RetryAfter(_) | Kind::PlainRetryAfter => &["429", "503", "deadline"],
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
            Kind::AppliedTimeout => write!(f, "applied, answered 504"),
            Kind::RetryAfter(code) => write!(f, "{code} Retry-After 1"),
            Kind::PlainRetryAfter => write!(f, "plain-text 429 Retry-After 1"),
            Kind::Concurrent => write!(f, "concurrent writer"),
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
    /// The first run left the allowed residue: a half-done correction after
    /// a failed rollback, reported so, which the rerun completed.
    residue: bool,
    first_run: Duration,
}

fn run_case(case: Case, clean: &BTreeSet<WriteKey>, ledger: &RbacLedger) -> CaseResult {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    for (key, kind) in &case.faults {
        cluster.add_fault(kind.apply(key.fault(), key));
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
            judge_first_run(
                &case,
                &primary,
                kind,
                &first,
                report,
                &first_requests,
                &mut violations,
            )
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
    // A half-done correction after the first run is allowed only where the
    // rollback itself was failed, and reported so; the rerun, a cooldown
    // later, must complete it (SPEC §3: `already-corrected` is the cooldown
    // alone), so nothing is half done at the end.
    let residue = !half_done.is_empty();
    if residue {
        violations.extend(residue_violations(
            &case,
            &half_done,
            &first,
            first_report.as_ref().unwrap_or(&Value::Null),
        ));
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
            violations.push(format!(
                "the rerun did not complete the half-done correction of {CORRECT_NS}/{HR_NAME}"
            ));
        }
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
    requests: &[fake_apiserver::RecordedRequest],
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
        // A refused Event may be sent again (429/503 with Retry-After):
        // either it was published in the end or its loss was logged.
        let published = requests.iter().any(|r| {
            r.method == "POST"
                && primary.same_target(r)
                && (200..300).contains(&r.status)
                && r.fault.is_none()
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !published && !stderr.contains("Event not published") {
            violations.push("the failed Event was neither published nor logged".to_owned());
        }
        return "event-ignored".to_owned();
    }
    // A write that landed is recognised on a read-back: the action
    // succeeds in the same run, nothing half done, nothing mis-reported.
    if case.faults.len() == 1 && kind.must_be_absorbed() && code != Some(0) {
        violations.push(format!(
            "{kind} on {primary} was not absorbed: {}",
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
            Kind::Code(409 | 500) | Kind::Drop | Kind::Delay | Kind::Concurrent
        ) || k.must_be_absorbed()
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
            KINDS.iter().filter(|k| k.fits(w)).map(|k| Case {
                faults: vec![(w.clone(), *k)],
            })
        })
        .collect();
    let first_count = first_round.len();
    let ledger = RbacLedger::default();
    let mut results = run_matrix(first_round, &clean, &ledger);

    // Second round: every write only a faulted run made (rollback, retry),
    // found under a 500, a 409 or a lost answer, failed with each fault in
    // turn.
    let mut seen = BTreeSet::new();
    let mut second_round = Vec::new();
    for r in &results {
        let (primary, kind) = &r.case.faults[0];
        let finds_new_writes = matches!(
            kind,
            Kind::Code(500 | 409) | Kind::LostAnswer | Kind::AppliedTimeout | Kind::Concurrent
        );
        if primary.is_event() || !finds_new_writes {
            continue;
        }
        for new in r.new_writes.iter().filter(|w| !w.is_event()) {
            if seen.insert((primary.clone(), *kind, new.clone())) {
                for k in KINDS.into_iter().filter(|k| k.fits(new)) {
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
        "fault matrix: {} writes in the clean run x {} faults = {first_count} cells (where the fault fits), plus {} cells on writes only faulted runs make; {} cells in all",
        writes.len(),
        KINDS.len(),
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
        "half-done after the first run (a failed rollback: reported failed with both errors, exit 3; \
         completed by the rerun): {} cells of {} that fail the rollback, {} of {} cells in all: {residue:#?}",
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
