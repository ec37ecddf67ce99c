//! Runs one child process and measures it: wall time from spawn to exit, exit
//! status and peak RSS (`wait4`'s `ru_maxrss`, which for a shell script is the
//! largest of the shell and the processes it waited for).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What one finished (or killed) child did.
pub struct Measured {
    pub wall: Duration,
    /// Exit code, or 128 + signal number.
    pub exit_code: i32,
    /// Peak resident set size in KiB.
    pub max_rss_kib: u64,
    /// The child was still running at the cap and was sent SIGTERM.
    pub killed_at_cap: bool,
    pub stdout: String,
}

/// Runs `cmd` with stdout and stderr in files under `log_dir` (named after
/// `label`), in its own process group. With a `cap`, the whole group gets
/// SIGTERM once the cap has passed.
pub fn run(
    mut cmd: Command,
    label: &str,
    log_dir: &Path,
    cap: Option<Duration>,
) -> Result<Measured> {
    let stdout_path = log_dir.join(format!("{label}.stdout"));
    let stderr_path = log_dir.join(format!("{label}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&stdout_path).context("creating the stdout log")?)
        .stderr(File::create(&stderr_path).context("creating the stderr log")?)
        .process_group(0);

    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;

    let (done, wait_done) = mpsc::channel::<()>();
    let watchdog = cap.map(|cap| {
        thread::spawn(move || match wait_done.recv_timeout(cap) {
            Err(RecvTimeoutError::Timeout) => {
                // SAFETY: signals the child's own process group, created above.
                unsafe { libc::kill(-pid, libc::SIGTERM) };
                true
            }
            _ => false,
        })
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
            bail!("wait4 on {label}: {err}");
        }
    }
    let wall = start.elapsed();
    drop(done);
    let killed_at_cap = match watchdog {
        Some(w) => w.join().unwrap_or(false),
        None => false,
    };
    // Anything the killed group left behind (a kubectl mid-request) goes too.
    if killed_at_cap {
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    drop(child);

    let exit_code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    let stdout = std::fs::read_to_string(&stdout_path).context("reading the stdout log")?;
    Ok(Measured {
        wall,
        exit_code,
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        killed_at_cap,
        stdout,
    })
}
