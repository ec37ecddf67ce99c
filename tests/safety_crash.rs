//! Issue 4, point 2: crash safety. For every write of a clean run (found in
//! its request log), the binary is SIGKILLed the moment the server receives
//! that write — once with the write then applied, once with it dropped —
//! and the binary runs again. The rerun resumes every HelmRelease the killed
//! run left suspended (`interrupted-toggle`, marker removed) and finishes
//! every half-done correction; nothing outside the plan is ever written.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use common::safety::*;
use common::*;
use serde_json::Value;

/// What one kill showed.
struct Crash {
    name: String,
    left_suspended: bool,
    left_half_corrected: bool,
    violations: Vec<String>,
}

fn crash_at(key: &WriteKey, applied: bool) -> Crash {
    let name = format!(
        "SIGKILL at {key} (write {})",
        if applied { "applied" } else { "dropped" }
    );
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    let pid = Arc::new(AtomicU32::new(0));
    let mut fault = key.fault().hook(signal_hook(Arc::clone(&pid), "KILL"));
    if !applied {
        fault = fault.drop_connection();
    }
    cluster.add_fault(fault);
    let child = spawn_with_pid(&cluster, &fault_run_args(), &pid);
    let killed = child.wait_with_output().expect("binary ends");
    let mut violations = Vec::new();
    // The server finishes (applies or drops) the write after the hook
    // killed the binary: wait for it before looking.
    if !wait_logged(&cluster, key, key.nth, std::time::Duration::from_secs(10)) {
        violations.push(format!("{key} never finished on the server"));
    }
    if killed.status.signal() != Some(9) {
        violations.push(format!("not killed: {}", describe(&killed)));
    }
    // Other requests of the killed run may still be in flight.
    wait_quiet(&cluster);
    // The killed run printed no report: its plan is the four HelmReleases.
    violations.extend(writes_outside_plan(
        &cluster.requests(),
        &Value::Null,
        &every_branch_objects(),
    ));
    let toggle = cluster.hr(TOGGLE_NS, HR_NAME);
    let left_suspended =
        toggle["spec"]["suspend"] == true && annotation(&toggle, SUSPENDED_AT).is_some();
    let correct = cluster.hr(CORRECT_NS, HR_NAME);
    let left_half_corrected = annotation(&correct, CORRECTED_AT).is_some()
        && find_condition(&correct, "Ready").map(|c| c["status"].clone())
            != Some(Value::from("True"));

    cluster.server.clear_faults();
    let after = last_seq(&cluster);
    let rerun = cluster.run(&rerun_args());
    if rerun.status.code() != Some(0) {
        violations.push(format!("rerun: {}", describe(&rerun)));
    }
    let report: Value = serde_json::from_slice(&rerun.stdout).unwrap_or_default();
    violations.extend(writes_outside_plan(
        &requests_after(&cluster, after),
        &report,
        &Default::default(),
    ));
    if left_suspended {
        let resumed = action_of(&report, TOGGLE_NS, HR_NAME).is_some_and(|a| {
            a["branch"] == "resume"
                && a["reason"] == "interrupted-toggle"
                && a["result"] == "succeeded"
        });
        if !resumed {
            violations.push(format!(
                "the suspension the killed run left was not resumed as interrupted-toggle: {}",
                describe(&rerun)
            ));
        }
    }
    if left_half_corrected {
        let completed = action_of(&report, CORRECT_NS, HR_NAME)
            .is_some_and(|a| a["branch"] == "correct-status" && a["result"] == "succeeded");
        if !completed {
            violations.push(format!(
                "the half-done correction was not completed: {}",
                describe(&rerun)
            ));
        }
    }
    violations.extend(end_state_violations(&cluster));
    cluster.assert_nothing_denied();
    Crash {
        name,
        left_suspended,
        left_half_corrected,
        violations,
    }
}

#[test]
fn a_kill_at_any_write_is_healed_by_the_next_run() {
    let started = Instant::now();
    let writes = clean_run_writes();
    let cases: Vec<(WriteKey, bool)> = writes
        .iter()
        .flat_map(|w| [(w.clone(), true), (w.clone(), false)])
        .collect();
    let crashes = parallel(cases, 6, |(key, applied)| crash_at(&key, applied));
    let suspended = crashes.iter().filter(|c| c.left_suspended).count();
    let half = crashes.iter().filter(|c| c.left_half_corrected).count();
    let failures: Vec<String> = crashes
        .iter()
        .filter(|c| !c.violations.is_empty())
        .map(|c| format!("{}:\n  {}", c.name, c.violations.join("\n  ")))
        .collect();
    println!(
        "crash matrix: {} writes x 2 (applied, dropped) = {} kills; {suspended} left a HelmRelease suspended, \
         {half} left a half-done correction; all healed: {}; total {:?}",
        writes.len(),
        crashes.len(),
        failures.is_empty(),
        started.elapsed()
    );
    assert!(suspended > 0, "some kill lands between suspend and resume");
    assert!(half > 0, "some kill lands between annotation and status");
    assert!(
        failures.is_empty(),
        "{} of {} kills not healed:\n{}",
        failures.len(),
        crashes.len(),
        failures.join("\n")
    );
}

/// A half-done correction within the cooldown is held back
/// (`already-corrected`), and completed by the first run past it.
#[test]
fn a_half_done_correction_waits_for_the_cooldown_then_is_completed() {
    let cluster = Cluster::start();
    seed_every_branch(&cluster);
    let status = WriteKey {
        method: "PATCH".into(),
        resource: "helmreleases".into(),
        subresource: Some("status".into()),
        namespace: CORRECT_NS.into(),
        name: Some(HR_NAME.into()),
        nth: 1,
    };
    let pid = Arc::new(AtomicU32::new(0));
    cluster.add_fault(
        status
            .fault()
            .hook(signal_hook(Arc::clone(&pid), "KILL"))
            .drop_connection(),
    );
    let killed = spawn_with_pid(&cluster, &fault_run_args(), &pid)
        .wait_with_output()
        .expect("binary ends");
    assert_eq!(killed.status.signal(), Some(9), "{}", describe(&killed));
    assert!(wait_logged(
        &cluster,
        &status,
        1,
        std::time::Duration::from_secs(10)
    ));
    let hr = cluster.hr(CORRECT_NS, HR_NAME);
    assert!(annotation(&hr, CORRECTED_AT).is_some(), "half done");
    cluster.server.clear_faults();

    let within = cluster.run(&["-o", "json", "--suspend-wait", SUSPEND_WAIT]);
    let report = json_report(&within);
    assert!(
        report["skipped"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["namespace"] == CORRECT_NS && s["reason"] == "already-corrected"),
        "{}",
        describe(&within)
    );

    let past = cluster.run(&rerun_args());
    let report = json_report(&past);
    let action = action_of(&report, CORRECT_NS, HR_NAME).cloned();
    assert_eq!(
        action
            .as_ref()
            .map(|a| (a["branch"].clone(), a["result"].clone())),
        Some((Value::from("correct-status"), Value::from("succeeded"))),
        "{}",
        describe(&past)
    );
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
}
