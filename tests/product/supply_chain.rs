//! The supply-chain gate is `scripts/supply-chain`, which `scripts/test` runs
//! after the tests: `cargo fetch --locked` (every target's crates, so the
//! checks can run offline on a new machine), `cargo audit` against the offline
//! advisory snapshot in `../shared/advisory-db`, and `cargo deny --offline`
//! for licenses, bans and sources.
//!
//! The first tests pin the policy in deny.toml, so that loosening it is a
//! visible, reviewed change. The rest run the script itself: it passes on this
//! lock file, and each of its checks fails when the policy or the advisory
//! database says a locked crate is not acceptable. They need cargo-audit and
//! cargo-deny from `scripts/install-tools` and fail when those are missing.

use crate::chart_support::repo_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The quoted strings of the `allow = [ ... ]` list in deny.toml's
/// `[licenses]` table.
fn allowed_licenses() -> Vec<String> {
    let deny = read("deny.toml");
    let licenses = deny
        .split("\n[")
        .find(|table| table.starts_with("licenses]"))
        .expect("[licenses] table in deny.toml");
    let list = licenses
        .split_once("allow = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("allow = [...] in [licenses]");
    list.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or_default();
            let start = line.find('"')?;
            let end = line[start + 1..].find('"')? + start + 1;
            Some(line[start + 1..end].to_string())
        })
        .collect()
}

#[test]
fn deny_toml_allows_only_permissive_licenses() {
    let allowed = allowed_licenses();
    assert!(
        allowed.contains(&"Apache-2.0".to_string()),
        "our own license: {allowed:?}"
    );
    for license in &allowed {
        let upper = license.to_ascii_uppercase();
        for copyleft in [
            "GPL", "MPL", "EUPL", "CDDL", "EPL", "OSL", "SSPL", "CC-BY-SA", "BUSL",
        ] {
            assert!(
                !upper.contains(copyleft),
                "{license} is not a license we accept without review"
            );
        }
    }
}

#[test]
fn deny_toml_accepts_crates_io_only() {
    let deny = read("deny.toml");
    assert!(deny.contains("unknown-registry = \"deny\""));
    assert!(deny.contains("unknown-git = \"deny\""));
    assert!(deny.contains("allow-registry = [\"https://github.com/rust-lang/crates.io-index\"]"));
    assert!(deny.contains("allow-git = []"));
    assert!(deny.contains("wildcards = \"deny\""));
}

#[test]
fn our_crates_are_apache_2_0() {
    let workspace = read("Cargo.toml");
    assert!(
        workspace.contains("license = \"Apache-2.0\""),
        "workspace license"
    );
    let fake = read("crates/fake-apiserver/Cargo.toml");
    assert!(
        fake.contains("license.workspace = true"),
        "fake-apiserver inherits the license"
    );
}

/// What one run of `scripts/supply-chain` did.
struct Gate {
    success: bool,
    output: String,
}

/// Runs `scripts/supply-chain` with the given environment overrides.
fn run_gate(env: &[(&str, &std::path::Path)]) -> Gate {
    let mut cmd = std::process::Command::new(repo_root().join("scripts/supply-chain"));
    cmd.env_remove("SUPPLY_CHAIN_ADVISORY_DB")
        .env_remove("SUPPLY_CHAIN_DENY_CONFIG");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/supply-chain: {e}"));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !output.contains("missing: run scripts/install-tools"),
        "the supply-chain tools are not installed (scripts/install-tools):\n{output}"
    );
    Gate {
        success: out.status.success(),
        output,
    }
}

/// The version of `name` locked in Cargo.lock (the first entry).
fn locked_version(name: &str) -> String {
    let lock = read("Cargo.lock");
    let entry = format!("name = \"{name}\"\nversion = \"");
    let start = lock
        .find(&entry)
        .unwrap_or_else(|| panic!("{name} is not in Cargo.lock"))
        + entry.len();
    lock[start..]
        .split('"')
        .next()
        .expect("a quoted version")
        .to_string()
}

/// deny.toml with `edit` applied, written into `dir`.
fn policy_with(dir: &std::path::Path, edit: impl FnOnce(String) -> String) -> std::path::PathBuf {
    let original = read("deny.toml");
    let edited = edit(original.clone());
    assert_ne!(edited, original, "the edit must change the policy");
    let path = dir.join("deny.toml");
    std::fs::write(&path, edited).expect("write the edited policy");
    path
}

#[test]
fn gate_passes_on_this_lock_file_against_the_offline_snapshot() {
    let gate = run_gate(&[]);
    assert!(gate.success, "supply-chain failed:\n{}", gate.output);
    assert!(
        gate.output.contains("from ../shared/advisory-db)"),
        "cargo audit loaded the snapshot:\n{}",
        gate.output
    );
    let scanned: usize = gate
        .output
        .split("Scanning Cargo.lock for vulnerabilities (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cargo audit scanned Cargo.lock:\n{}", gate.output));
    let locked = read("Cargo.lock").matches("[[package]]").count();
    assert_eq!(scanned, locked, "every locked crate is audited");
    assert!(
        gate.output.contains("bans ok, licenses ok, sources ok"),
        "cargo deny ran all three checks:\n{}",
        gate.output
    );
}

#[test]
fn audit_fails_when_the_snapshot_has_an_advisory_for_a_locked_crate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("advisory-db");
    copy_dir(&repo_root().join("../shared/advisory-db"), &db);
    let version = locked_version("itoa");
    let advisory = format!(
        "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"itoa\"\n\
         date = \"2099-01-01\"\nurl = \"https://example.invalid/\"\n\n\
         [versions]\npatched = [\">= 99.0.0\"]\n```\n\n# A test advisory for itoa {version}\n\n\
         Injected by tests/supply_chain.rs.\n"
    );
    std::fs::create_dir_all(db.join("crates/itoa")).expect("mkdir");
    std::fs::write(db.join("crates/itoa/RUSTSEC-2099-0001.md"), advisory).expect("write");

    let gate = run_gate(&[("SUPPLY_CHAIN_ADVISORY_DB", &db)]);
    assert!(!gate.success, "the gate must fail:\n{}", gate.output);
    assert!(
        gate.output.contains("RUSTSEC-2099-0001") && gate.output.contains("itoa"),
        "cargo audit names the advisory and the crate:\n{}",
        gate.output
    );
}

#[test]
fn deny_fails_on_a_license_outside_the_allow_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_with(dir.path(), |p| p.replace("    \"MIT\",\n", ""));
    let gate = run_gate(&[("SUPPLY_CHAIN_DENY_CONFIG", &policy)]);
    assert!(!gate.success, "the gate must fail:\n{}", gate.output);
    assert!(
        gate.output.contains("licenses FAILED") && gate.output.contains("MIT"),
        "cargo deny rejects the MIT crates:\n{}",
        gate.output
    );
}

#[test]
fn deny_fails_on_a_banned_crate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_with(dir.path(), |p| {
        p.replace("[bans]\n", "[bans]\ndeny = [{ crate = \"itoa\" }]\n")
    });
    let gate = run_gate(&[("SUPPLY_CHAIN_DENY_CONFIG", &policy)]);
    assert!(!gate.success, "the gate must fail:\n{}", gate.output);
    assert!(
        gate.output.contains("bans FAILED") && gate.output.contains("itoa"),
        "cargo deny rejects the banned crate:\n{}",
        gate.output
    );
}

#[test]
fn deny_fails_on_a_registry_outside_the_allow_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_with(dir.path(), |p| {
        p.replace(
            "allow-registry = [\"https://github.com/rust-lang/crates.io-index\"]",
            "allow-registry = [\"https://registry.example.invalid/index\"]",
        )
    });
    let gate = run_gate(&[("SUPPLY_CHAIN_DENY_CONFIG", &policy)]);
    assert!(!gate.success, "the gate must fail:\n{}", gate.output);
    assert!(
        gate.output.contains("sources FAILED"),
        "cargo deny rejects crates.io once it is not allowed:\n{}",
        gate.output
    );
}

/// Copies a directory tree (the advisory snapshot: plain files and folders).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()))
    {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
