//! Child processes of the testbed: each in its own process group, with
//! `PR_SET_PDEATHSIG=SIGKILL`, its output appended to a log file, stopped
//! with SIGTERM to its group and SIGKILL after a grace.
//!
//! PDEATHSIG fires when the *thread* that forked the child exits, not the
//! process. Every child is therefore forked by one dedicated spawner thread
//! that lives as long as the process: a test's runtime worker or a blocking
//! pool thread exiting early cannot take the cluster down with it, and the
//! process dying (a panic that aborts, SIGKILL from a test runner) kills
//! every child.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use anyhow::Context;

type SpawnRequest = (Command, Sender<std::io::Result<Child>>);

static SPAWNER: Mutex<Option<Sender<SpawnRequest>>> = Mutex::new(None);

/// Sends `cmd` to the spawner thread (started on first use) and returns the
/// child it forked.
fn spawn_on_spawner(cmd: Command) -> std::io::Result<Child> {
    let requests = {
        let mut guard = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .get_or_insert_with(|| {
                let (tx, rx) = channel::<SpawnRequest>();
                std::thread::Builder::new()
                    .name("testbed-spawner".to_owned())
                    .spawn(move || {
                        // Lives until the process exits: the sender is in
                        // a static and never dropped.
                        for (mut cmd, reply) in rx {
                            let _ = reply.send(cmd.spawn());
                        }
                    })
                    .expect("spawner thread starts");
                tx
            })
            .clone()
    };
    let (reply_tx, reply_rx) = channel();
    requests
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("testbed spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("testbed spawner thread did not answer"))?
}

/// One running child process of the testbed.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    /// Waited for: its pid (and group id) may belong to someone else now.
    reaped: bool,
}

impl Proc {
    /// Spawns `cmd` as `name`, stdout and stderr appended to `log`, stdin
    /// closed; in its own process group, killed when this process dies.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        writeln!(file, "=== testbed: starting {name}: {cmd:?}")?;
        let err = file.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .process_group(0);
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit)
        // between fork and exec.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died between fork and prctl: no signal will come.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child =
            spawn_on_spawner(cmd).with_context(|| format!("spawning {name} ({program})"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            reaped: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(description)` when the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.reaped = true;
                Some(format!("{} exited: {status}", self.name))
            }
            Ok(None) => None,
            Err(e) => Some(format!("{}: cannot wait: {e}", self.name)),
        }
    }

    /// Sends `signal` to the process group.
    pub fn signal(&self, signal: libc::c_int) {
        if self.reaped {
            return;
        }
        // SAFETY: kill(2) on our own child's process group.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), signal);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the exit.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// SIGKILL to the group, then waits for the exit.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        self.reaped = true;
    }

    /// The last `lines` lines of the log.
    pub fn tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stops all `procs` at once: SIGTERM to every group, one shared grace,
/// then SIGKILL to whatever is left, and waits for each.
pub fn stop_all(procs: &mut [Proc], grace: Duration) {
    for p in procs.iter_mut() {
        if p.exited().is_none() {
            p.signal(libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && procs.iter_mut().any(|p| p.exited().is_none()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in procs.iter_mut() {
        p.kill();
    }
}

/// The last `lines` lines of a file (at most its last 64 KiB read).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
