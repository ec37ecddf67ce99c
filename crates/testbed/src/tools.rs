//! Where the testbed finds its programs. A missing one is an error that
//! says how to get it — never a reason to skip.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The repository this crate lives in.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// `TESTBED_TOOLS`, else `<repo>/.tools/testbed`: `bin/` holds the Go
/// binaries, `crds/<controller>-<version>/` their CRDs.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("TESTBED_TOOLS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join(".tools/testbed"),
    }
}

/// A built Go binary of the testbed (`etcd`, `kube-apiserver`,
/// `helm-controller-v1.6.4`, `source-controller`).
pub fn go_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = tools_dir().join("bin").join(name);
    if is_executable(&path) {
        return Ok(path);
    }
    bail!(
        "testbed: {} is missing — run scripts/build-testbed (it builds etcd, kube-apiserver, \
         helm-controller and source-controller into {}; TESTBED_TOOLS overrides that directory)",
        path.display(),
        tools_dir().join("bin").display()
    )
}

/// The CRD directory of `component` (`helm-controller-v1.6.4`, or
/// `source-controller` for whichever version was built), if present.
pub fn crd_dir(component: &str) -> Option<PathBuf> {
    let root = tools_dir().join("crds");
    let exact = root.join(component);
    if exact.is_dir() {
        return Some(exact);
    }
    let prefix = format!("{component}-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    found.sort();
    found.pop()
}

/// The shared fixtures' CRDs (`../shared/fixtures/crds` next to the repo):
/// the fallback where a version's own are missing.
pub fn fixture_crd_dir() -> PathBuf {
    repo_root().join("../shared/fixtures/crds")
}

/// `helm` on `PATH`, else `<repo>/.tools/bin/helm` (scripts/install-tools).
pub fn helm() -> anyhow::Result<PathBuf> {
    if let Some(path) = on_path("helm") {
        return Ok(path);
    }
    let local = repo_root().join(".tools/bin/helm");
    if is_executable(&local) {
        return Ok(local);
    }
    bail!(
        "testbed: helm not found on PATH nor at {} — run scripts/install-tools",
        local.display()
    )
}

/// A fixed kubectl (1.33), not the version-dispatching wrapper: the real
/// file behind `kubectl` on `PATH` has siblings `kubectl.1.27` … `kubectl.1.33`.
pub fn kubectl() -> anyhow::Result<PathBuf> {
    let Some(wrapper) = on_path("kubectl") else {
        bail!("testbed: kubectl not on PATH (the Debian package `kubectl` provides it)");
    };
    let real = std::fs::canonicalize(&wrapper).unwrap_or(wrapper);
    let fixed = real
        .parent()
        .map(|d| d.join("kubectl.1.33"))
        .unwrap_or_default();
    if is_executable(&fixed) {
        return Ok(fixed);
    }
    bail!(
        "testbed: {} not found (expected next to the kubectl on PATH, {})",
        fixed.display(),
        real.display()
    )
}

/// `python3` on `PATH` (serves the chart repository).
pub fn python3() -> anyhow::Result<PathBuf> {
    on_path("python3").ok_or_else(|| anyhow::anyhow!("testbed: python3 not on PATH"))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
