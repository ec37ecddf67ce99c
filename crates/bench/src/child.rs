//! Runs one child process and measures it: wall time from spawn to exit, exit
//! status and peak RSS (`wait4`'s `ru_maxrss`; for a shell script, the largest
//! of the shell and the processes it waited for).
//!
//! Linux carries the RSS high-water mark of the address space a process had
//! *before* `exec` into its `ru_maxrss`, and a child spawned straight from this
//! harness starts in the harness's address space (which holds the whole fake
//! cluster: hundreds of MiB). So the harness never spawns the measured program
//! itself: it re-executes its own small binary as `bench __measure …`, which
//! spawns the program, waits for it with `wait4` and writes the figures to a
//! file. The floor this leaves (the helper's own few MiB) is measured with
//! `/bin/true` and printed with the results.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// First argument that turns the binary into the measuring helper.
pub const MEASURE: &str = "__measure";

/// What one finished (or killed) child did.
pub struct Measured {
    pub wall: Duration,
    /// Exit code, or 128 + signal number.
    pub exit_code: i32,
    /// Peak resident set size in KiB.
    pub max_rss_kib: u64,
    /// User plus system CPU time (of the child and the children it waited for).
    pub cpu: Duration,
    /// The child was still running at the cap and was sent SIGTERM.
    pub killed_at_cap: bool,
    pub stdout: String,
}

/// Runs `cmd` (its program, arguments and environment changes) through the
/// measuring helper, with stdout and stderr in files under `log_dir` named
/// after `label`. With a `cap`, the child's process group gets SIGTERM once the
/// cap has passed.
pub fn run(cmd: &Command, label: &str, log_dir: &Path, cap: Option<Duration>) -> Result<Measured> {
    let stdout_path = log_dir.join(format!("{label}.stdout"));
    let stderr_path = log_dir.join(format!("{label}.stderr"));
    let result_path = log_dir.join(format!("{label}.measure"));
    let mut helper = Command::new(std::env::current_exe().context("locating the bench binary")?);
    helper
        .arg(MEASURE)
        .arg(&result_path)
        .arg(cap.map_or(0, |c| c.as_millis()).to_string())
        .arg(&stdout_path)
        .arg(&stderr_path)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => helper.env(k, v),
            None => helper.env_remove(k),
        };
    }
    let status = helper.status().context("running the measuring helper")?;
    if !status.success() {
        bail!(
            "measuring helper failed for {label} ({status}); see {}",
            stderr_path.display()
        );
    }
    let result = std::fs::read_to_string(&result_path).context("reading the helper's result")?;
    let fields: Vec<u64> = result
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("parsing the helper's result")?;
    let [wall_ns, exit_code, max_rss_kib, cpu_us, killed] = fields[..] else {
        bail!("unexpected helper result {result:?}");
    };
    Ok(Measured {
        wall: Duration::from_nanos(wall_ns),
        exit_code: i32::try_from(exit_code).unwrap_or(-1),
        max_rss_kib,
        cpu: Duration::from_micros(cpu_us),
        killed_at_cap: killed == 1,
        stdout: std::fs::read_to_string(&stdout_path).context("reading the stdout log")?,
    })
}

/// The helper: `bench __measure <result> <cap ms, 0: none> <stdout> <stderr> <program> [args…]`.
/// Writes `<wall ns> <exit code> <max rss KiB> <cpu µs> <killed 0|1>` to `<result>`.
pub fn measure_main(args: Vec<OsString>) -> Result<()> {
    let mut it = args.into_iter();
    let mut next = |what: &str| it.next().with_context(|| format!("missing {what}"));
    let result = PathBuf::from(next("result path")?);
    let cap_ms: u64 = next("cap")?
        .to_string_lossy()
        .parse()
        .context("cap in ms")?;
    let stdout = PathBuf::from(next("stdout path")?);
    let stderr = PathBuf::from(next("stderr path")?);
    let program = next("program")?;
    let rest: Vec<OsString> = it.collect();

    let mut cmd = Command::new(program);
    cmd.args(rest)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).context("creating the stdout log")?)
        .stderr(File::create(&stderr).context("creating the stderr log")?)
        .process_group(0);

    let start = Instant::now();
    let child = cmd.spawn().context("starting the measured program")?;
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;

    let (done, wait_done) = mpsc::channel::<()>();
    let watchdog = (cap_ms > 0).then(|| {
        thread::spawn(
            move || match wait_done.recv_timeout(Duration::from_millis(cap_ms)) {
                Err(RecvTimeoutError::Timeout) => {
                    // SAFETY: signals the child's own process group, created above.
                    unsafe { libc::kill(-pid, libc::SIGTERM) };
                    true
                }
                _ => false,
            },
        )
    });

    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child, with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4: {err}");
        }
    }
    let wall = start.elapsed();
    drop(done);
    let killed = watchdog.is_some_and(|w| w.join().unwrap_or(false));
    if killed {
        // Whatever the stopped group left behind (a kubectl mid-request) goes too.
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    drop(child);

    let exit_code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    };
    let micros = |t: libc::timeval| (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64;
    let cpu_us = micros(usage.ru_utime) + micros(usage.ru_stime);
    std::fs::write(
        &result,
        format!(
            "{} {exit_code} {} {cpu_us} {}\n",
            wall.as_nanos(),
            usage.ru_maxrss.max(0),
            u8::from(killed)
        ),
    )
    .context("writing the result")?;
    Ok(())
}
