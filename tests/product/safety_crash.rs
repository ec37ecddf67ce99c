//! Issue 4, point 2: crash safety. For every write of a clean run (found in
//! its request log), the binary is SIGKILLed the moment the server receives
//! that write — once with the write then applied, once with it dropped —
//! and the binary runs again. The rerun resumes every HelmRelease the killed
//! run left suspended (`interrupted-toggle`, marker removed); nothing
//! outside the plan is ever written.
//!
//! A kill between branch B's two writes leaves a half-done correction
//! (`auto-corrected-at` written, Ready still Unknown). SPEC §3's
//! `already-corrected` is the cooldown alone: a run within the cooldown
//! lists it as a skip and never writes to it; the first run once the
//! cooldown has passed completes the correction (the reruns here use
//! `--cooldown 1ms`, so they complete it).

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use crate::common::safety::*;
use crate::common::*;
use serde_json::Value;

/// What one kill showed.
struct Crash {
    name: String,
    left_suspended: bool,
    left_half_corrected: bool,
    /// The rerun (past the cooldown) completed the half-done correction.
    completed: bool,
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
    let left_half_corrected = is_half_done(&correct);

    cluster.server.clear_faults();
    let after = last_seq(&cluster);
    let rerun = cluster.run(&rerun_args());
    if rerun.status.code() != Some(0) {
        violations.push(format!("rerun: {}", describe(&rerun)));
    }
    let report: Value = serde_json::from_slice(&rerun.stdout).unwrap_or_default();
    let rerun_requests = requests_after(&cluster, after);
    violations.extend(writes_outside_plan(
        &rerun_requests,
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
    // The half-done correction the kill left: the rerun, past the cooldown,
    // completes it (SPEC §3: `already-corrected` is the cooldown alone).
    let completed = left_half_corrected
        && action_of(&report, CORRECT_NS, HR_NAME).is_some_and(|a| {
            a["branch"] == "correct-status"
                && a["reason"] == "deployed-but-unknown-ready"
                && a["result"] == "succeeded"
        });
    if left_half_corrected && !completed {
        violations.push(format!(
            "the half-done correction was not completed by the rerun: {}",
            describe(&rerun)
        ));
    }
    violations.extend(end_state_violations(&cluster));
    cluster.assert_nothing_denied();
    Crash {
        name,
        left_suspended,
        left_half_corrected,
        completed,
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
    let completed = crashes.iter().filter(|c| c.completed).count();
    let failures: Vec<String> = crashes
        .iter()
        .filter(|c| !c.violations.is_empty())
        .map(|c| format!("{}:\n  {}", c.name, c.violations.join("\n  ")))
        .collect();
    println!(
        "crash matrix: {} writes x 2 (applied, dropped) = {} kills; {suspended} left a HelmRelease suspended \
         (resumed by the rerun as interrupted-toggle), {half} left a half-done correction ({completed} completed \
         by the rerun past the cooldown); no other damage: {}; total {:?}",
        writes.len(),
        crashes.len(),
        failures.is_empty(),
        started.elapsed()
    );
    assert!(suspended > 0, "some kill lands between suspend and resume");
    assert!(half > 0, "some kill lands between annotation and status");
    assert_eq!(
        completed, half,
        "every half-done correction is completed by the rerun"
    );
    assert!(
        failures.is_empty(),
        "{} of {} kills left damage:\n{}",
        failures.len(),
        crashes.len(),
        failures.join("\n")
    );
}

/// SPEC §3 end to end (issue 10, point 4): a half-done correction (a
/// SIGKILL between branch B's two writes) is `already-corrected` while our
/// annotation is younger than the cooldown — listed, never written to —
/// and the first run once the cooldown has passed completes it.
#[test]
fn a_half_done_correction_is_held_within_the_cooldown_and_completed_after_it() {
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
    let killed_at = Instant::now();
    assert_eq!(killed.status.signal(), Some(9), "{}", describe(&killed));
    assert!(wait_logged(
        &cluster,
        &status,
        1,
        std::time::Duration::from_secs(10)
    ));
    wait_quiet(&cluster);
    assert!(is_half_done(&cluster.hr(CORRECT_NS, HR_NAME)), "half done");
    cluster.server.clear_faults();

    // A 3 s cooldown: the rerun right away is within it, and holds.
    let cooldown = std::time::Duration::from_secs(3);
    let args = [
        "-o",
        "json",
        "--suspend-wait",
        SUSPEND_WAIT,
        "--cooldown",
        "3s",
    ];
    assert_held(&cluster, &args, "within the cooldown");
    assert!(
        killed_at.elapsed() < cooldown,
        "the held run was within the cooldown"
    );
    // Once the cooldown has passed: corrected.
    std::thread::sleep(
        cooldown.saturating_sub(killed_at.elapsed()) + std::time::Duration::from_secs(1),
    );
    let out = cluster.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    let action = action_of(&report, CORRECT_NS, HR_NAME).cloned();
    assert_eq!(
        action.as_ref().map(|a| (
            a["branch"].clone(),
            a["reason"].clone(),
            a["result"].clone()
        )),
        Some((
            Value::from("correct-status"),
            Value::from("deployed-but-unknown-ready"),
            Value::from("succeeded")
        )),
        "{}",
        describe(&out)
    );
    let hr = cluster.hr(CORRECT_NS, HR_NAME);
    assert_eq!(
        find_condition(&hr, "Ready").map(|c| c["status"].clone()),
        Some(Value::from("True")),
        "{hr}"
    );
    assert_eq!(end_state_violations(&cluster), Vec::<String>::new());
    cluster.assert_nothing_denied();
}

/// One run with `args` holds the half-done correction (exit 0).
fn assert_held(cluster: &Cluster, args: &[&str], when: &str) {
    let before = cluster.hr(CORRECT_NS, HR_NAME);
    let after_seq = last_seq(cluster);
    let out = cluster.run(args);
    assert_eq!(out.status.code(), Some(0), "{when}: {}", describe(&out));
    let report = json_report(&out);
    let problems = held_half_done_violations(
        CORRECT_NS,
        HR_NAME,
        &report,
        &requests_after(cluster, after_seq),
        &before,
        &cluster.hr(CORRECT_NS, HR_NAME),
    );
    assert_eq!(problems, Vec::<String>::new(), "{when}: {}", describe(&out));
    let held = BTreeSet::from([format!("{CORRECT_NS}/{HR_NAME}")]);
    assert_eq!(
        end_state_violations_except(cluster, &held),
        Vec::<String>::new(),
        "{when}"
    );
}
