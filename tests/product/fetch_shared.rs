//! `scripts/fetch-shared` lays out what the tests read from `../shared` (the
//! Flux CRDs and the RustSec snapshot) on a machine that has no `../shared`
//! beside the checkout; the GitHub CI workflow runs it. These tests run the
//! script against a real HTTP server (Python's `http.server`) that serves the
//! upstream layout (raw files by commit, `git archive` tarballs by commit),
//! built from `../shared` itself, and check what lands and what is refused.
//! They need python3, curl and git, and fail when those are missing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::chart_support::{describe, repo_root};

const CRDS: &[(&str, &str, &str)] = &[
    (
        "fluxcd/helm-controller",
        "372c34e2b4a455d24ef6cbb8321c82c4533dbbd8",
        "helm.toolkit.fluxcd.io_helmreleases.yaml",
    ),
    (
        "fluxcd/source-controller",
        "092bcff3c9c3f258a44310507201d295ff294ba6",
        "source.toolkit.fluxcd.io_helmrepositories.yaml",
    ),
    (
        "fluxcd/source-controller",
        "092bcff3c9c3f258a44310507201d295ff294ba6",
        "source.toolkit.fluxcd.io_ocirepositories.yaml",
    ),
    (
        "fluxcd/notification-controller",
        "0b6fcb118ea64a36d7ca7d29904e4f5075be87bc",
        "notification.toolkit.fluxcd.io_alerts.yaml",
    ),
    (
        "fluxcd/notification-controller",
        "0b6fcb118ea64a36d7ca7d29904e4f5075be87bc",
        "notification.toolkit.fluxcd.io_providers.yaml",
    ),
];

fn shared() -> PathBuf {
    repo_root().join("../shared")
}

/// Runs a command that must succeed.
fn succeed(cmd: &mut Command) -> Output {
    let output = crate::chart_support::run(cmd);
    assert!(output.status.success(), "{cmd:?}: {}", describe(&output));
    output
}

/// Runs a command that must fail with `message` on stderr.
fn fail_with(cmd: &mut Command, message: &str) {
    let output = crate::chart_support::run(cmd);
    assert!(
        !output.status.success() && String::from_utf8_lossy(&output.stderr).contains(message),
        "expected a failure saying {message:?}: {}",
        describe(&output)
    );
}

/// An upstream stand-in: the files of `../shared` at the paths and commits
/// GitHub serves them under, and an HTTP server in front of them.
struct Upstream {
    root: tempfile::TempDir,
    server: Child,
    port: u16,
    advisory_commit: String,
}

impl Upstream {
    fn start() -> Upstream {
        let root = tempfile::tempdir().unwrap();
        for (repo, commit, file) in CRDS {
            let dir = root
                .path()
                .join(format!("raw/{repo}/{commit}/config/crd/bases"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(shared().join("fixtures/crds").join(file), dir.join(file)).unwrap();
        }
        let advisory_commit = archive_advisory_db(root.path());
        let mut server = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(root.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for these tests");
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in http.server's first line: {line:?}"));
        Upstream {
            root,
            server,
            port,
            advisory_commit,
        }
    }

    fn fetch(&self, dest: &Path) -> Command {
        let mut cmd = Command::new(repo_root().join("scripts/fetch-shared"));
        cmd.arg(dest)
            .env(
                "FETCH_SHARED_RAW_BASE",
                format!("http://127.0.0.1:{}/raw", self.port),
            )
            .env(
                "FETCH_SHARED_ARCHIVE_BASE",
                format!("http://127.0.0.1:{}/archive", self.port),
            )
            .env("FETCH_SHARED_ADVISORY_COMMIT", &self.advisory_commit);
        cmd
    }

    fn raw(&self, repo: &str, commit: &str, file: &str) -> PathBuf {
        self.root
            .path()
            .join(format!("raw/{repo}/{commit}/config/crd/bases/{file}"))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Commits a copy of `../shared/advisory-db` to a fresh repository and writes
/// its `git archive` where codeload serves it; returns the commit.
fn archive_advisory_db(root: &Path) -> String {
    let repo = root.join("advisory-db-src");
    std::fs::create_dir_all(&repo).unwrap();
    succeed(
        Command::new("cp")
            .arg("-R")
            .arg(shared().join("advisory-db/crates"))
            .arg(shared().join("advisory-db/rust"))
            .arg(shared().join("advisory-db/LICENSE.txt"))
            .arg(&repo),
    );
    let git = |args: &[&str]| {
        succeed(
            Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args),
        )
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "snapshot"]);
    let commit = String::from_utf8(git(&["rev-parse", "HEAD"]).stdout).unwrap();
    let commit = commit.trim().to_string();
    let dir = root.join("archive/rustsec/advisory-db/tar.gz");
    std::fs::create_dir_all(&dir).unwrap();
    git(&[
        "archive",
        "--format=tar.gz",
        &format!("--prefix=advisory-db-{commit}/"),
        "-o",
        dir.join(&commit).to_str().unwrap(),
        "HEAD",
    ]);
    commit
}

fn same_tree(a: &Path, b: &Path) {
    let output = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} and {} differ:\n{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn lays_out_the_crds_and_the_advisory_snapshot_as_shared_has_them() {
    let upstream = Upstream::start();
    let dest = tempfile::tempdir().unwrap();
    let out = dest.path().join("shared");

    succeed(&mut upstream.fetch(&out));

    same_tree(&out.join("fixtures/crds"), &{
        // ../shared/fixtures/crds also holds SOURCE.md, which is ours.
        let only_yaml = dest.path().join("expected");
        std::fs::create_dir_all(&only_yaml).unwrap();
        for (_, _, file) in CRDS {
            std::fs::copy(
                shared().join("fixtures/crds").join(file),
                only_yaml.join(file),
            )
            .unwrap();
        }
        only_yaml
    });
    same_tree(
        &out.join("advisory-db/crates"),
        &shared().join("advisory-db/crates"),
    );
    same_tree(
        &out.join("advisory-db/rust"),
        &shared().join("advisory-db/rust"),
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with(".fetch-shared"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary folders left: {leftovers:?}"
    );

    // A second run keeps what is there and fetches nothing.
    drop(upstream);
    succeed(
        Command::new(repo_root().join("scripts/fetch-shared"))
            .arg(&out)
            .env("FETCH_SHARED_RAW_BASE", "http://127.0.0.1:1/raw")
            .env("FETCH_SHARED_ARCHIVE_BASE", "http://127.0.0.1:1/archive"),
    );
}

#[test]
fn a_crd_that_differs_from_the_pinned_one_is_refused_and_nothing_lands() {
    let upstream = Upstream::start();
    let (repo, commit, file) = CRDS[3];
    let path = upstream.raw(repo, commit, file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("# changed\n");
    std::fs::write(&path, text).unwrap();
    let dest = tempfile::tempdir().unwrap();

    fail_with(
        &mut upstream.fetch(dest.path()),
        &format!("{repo}@{commit}:config/crd/bases/{file} has SHA-256"),
    );
    let left: Vec<_> = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing may land: {left:?}");
}

#[test]
fn an_archive_of_another_commit_is_refused() {
    let upstream = Upstream::start();
    let dest = tempfile::tempdir().unwrap();
    let wanted = "0123456789abcdef0123456789abcdef01234567";
    let served = upstream
        .root
        .path()
        .join("archive/rustsec/advisory-db/tar.gz");
    std::fs::copy(served.join(&upstream.advisory_commit), served.join(wanted)).unwrap();

    fail_with(
        upstream
            .fetch(dest.path())
            .env("FETCH_SHARED_ADVISORY_COMMIT", wanted),
        &format!(
            "archive is of commit {}, expected {wanted}",
            upstream.advisory_commit
        ),
    );
    assert!(!dest.path().join("advisory-db").exists());
    // The CRDs had all passed their checks, so they are in place.
    assert!(dest.path().join("fixtures/crds").join(CRDS[0].2).is_file());
}

#[test]
fn a_missing_file_names_the_address() {
    let upstream = Upstream::start();
    let (repo, commit, file) = CRDS[0];
    std::fs::remove_file(upstream.raw(repo, commit, file)).unwrap();
    let dest = tempfile::tempdir().unwrap();

    fail_with(
        &mut upstream.fetch(dest.path()),
        &format!(
            "could not fetch http://127.0.0.1:{}/raw/{repo}/{commit}/config/crd/bases/{file}",
            upstream.port
        ),
    );
}
