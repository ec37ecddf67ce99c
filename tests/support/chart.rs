//! Shared helpers for the deployment-artefact tests (chart, Dockerfile,
//! README). Tools are real binaries: `.tools/bin/<tool>` (installed by
//! `scripts/install-tools`), else `PATH`. A missing tool fails the test; it
//! never skips it.

#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chart directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("chart")
}

/// `.tools/bin/<name>`, else `<name>` on `PATH`; panics (fails the test)
/// with the fix when neither exists.
pub fn tool(name: &str) -> PathBuf {
    let local = repo_root().join(".tools/bin").join(name);
    if local.is_file() {
        return local;
    }
    if let Some(found) = on_path(name) {
        return found;
    }
    panic!(
        "{name} not found in .tools/bin or on PATH: run scripts/install-tools (it installs helm, \
         kubernetes-validate, hadolint, yamllint, cargo-audit and cargo-deny into .tools/)"
    );
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The fixed kubectl 1.33: the `kubectl.1.33` sibling of the real file behind
/// `kubectl` on `PATH` (that one is a version dispatcher).
pub fn kubectl_1_33() -> PathBuf {
    kubectl_fixed("1.33")
}

/// A fixed kubectl minor (`"1.31"`): the `kubectl.<minor>` sibling of the
/// real file behind `kubectl` on `PATH`. Panics (never skips) when missing.
pub fn kubectl_fixed(minor: &str) -> PathBuf {
    let dispatcher = on_path("kubectl").unwrap_or_else(|| {
        panic!("kubectl not on PATH: the machine's Google Cloud CLI kubectl is needed")
    });
    let real = std::fs::canonicalize(&dispatcher)
        .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", dispatcher.display()));
    let fixed = real
        .parent()
        .map(|dir| dir.join(format!("kubectl.{minor}")))
        .unwrap_or_else(|| panic!("{} has no parent directory", real.display()));
    assert!(
        fixed.is_file(),
        "{} not found next to {}",
        fixed.display(),
        real.display()
    );
    fixed
}

/// Runs a command; panics with its output when it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The result of `helm template`.
pub struct Rendered {
    /// The raw multi-document YAML.
    pub yaml: String,
    /// Every non-empty document, as JSON values.
    pub docs: Vec<Value>,
}

/// The release name and namespace every test renders with.
pub const RELEASE: &str = "stuck-hr-recovery";
pub const NAMESPACE: &str = "flux-system";

/// `helm template stuck-hr-recovery chart/ -n flux-system <extra>`.
/// `Err(stderr)` when helm refuses to render.
pub fn helm_template(extra: &[&str]) -> Result<Rendered, String> {
    let out = run(Command::new(tool("helm"))
        .arg("template")
        .arg(RELEASE)
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE])
        .args(extra));
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let yaml = String::from_utf8(out.stdout).expect("helm output is UTF-8");
    let docs = parse_yaml_docs(&yaml);
    Ok(Rendered { yaml, docs })
}

/// `helm_template` that must succeed.
pub fn render(extra: &[&str]) -> Rendered {
    helm_template(extra)
        .unwrap_or_else(|stderr| panic!("helm template {extra:?} failed:\n{stderr}"))
}

/// Every non-empty document of a multi-document YAML stream.
pub fn parse_yaml_docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{yaml}"))
        .into_iter()
        .filter(|value| !value.is_null())
        .collect()
}

/// A YAML file as JSON.
pub fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

impl Rendered {
    /// Every document of this kind.
    pub fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    /// The one document of this kind.
    pub fn one(&self, kind: &str) -> &Value {
        let found = self.all(kind);
        assert_eq!(
            found.len(),
            1,
            "expected exactly one {kind}, got {}:\n{}",
            found.len(),
            self.yaml
        );
        found[0]
    }

    /// `kind` of every document, in order.
    pub fn kinds(&self) -> Vec<String> {
        self.docs
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or("<none>").to_string())
            .collect()
    }

    /// The CronJob's pod spec.
    pub fn pod_spec(&self) -> &Value {
        &self.one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    }

    /// The one container of the CronJob's pod.
    pub fn container(&self) -> &Value {
        let containers = self.pod_spec()["containers"]
            .as_array()
            .expect("containers is a list");
        assert_eq!(containers.len(), 1, "one container expected");
        &containers[0]
    }

    /// The container's args as strings.
    pub fn args(&self) -> Vec<String> {
        strings(&self.container()["args"])
    }
}

/// A JSON array of strings as a Vec (panics on anything else).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a list, got {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {v}"))
                .to_string()
        })
        .collect()
}

/// Writes JSON values as a values file (JSON is YAML) in `dir`.
pub fn values_file(dir: &Path, name: &str, values: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(values).expect("values serialise"),
    )
    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// The `version` of the root package in Cargo.toml.
pub fn cargo_version() -> String {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let package = manifest
        .split("[package]")
        .nth(1)
        .expect("a [package] table");
    package
        .lines()
        .find_map(|l| l.trim().strip_prefix("version = "))
        .expect("package version")
        .trim_matches('"')
        .to_string()
}

/// `<helm> lint --strict` on the chart succeeds and reports no warning or error.
pub fn assert_helm_lint_strict_is_clean(helm: &str) {
    let out = run(Command::new(tool(helm))
        .args(["lint", "--strict"])
        .arg(chart_dir()));
    assert!(
        out.status.success(),
        "{helm} lint --strict failed:\n{}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("[WARNING]") && !stdout.contains("[ERROR]"),
        "{helm} lint reported problems:\n{stdout}"
    );
}
