//! The supply-chain gate (issue 5, point 7) is `scripts/supply-chain`, which
//! `scripts/test` runs after the tests: `cargo audit` against the offline
//! advisory snapshot and `cargo deny --offline check licenses bans sources`.
//! These tests pin the policy those commands enforce, so that loosening it is
//! a visible, reviewed change.

mod chart_support;

use chart_support::repo_root;

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

#[test]
fn supply_chain_script_runs_audit_offline_and_deny_offline() {
    let script = read("scripts/supply-chain");
    let commands: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo "))
        .collect();
    assert_eq!(
        commands,
        [
            "cargo audit --db ../shared/advisory-db --no-fetch",
            "cargo deny --offline check licenses bans sources",
        ]
    );
    assert!(
        read("scripts/test").contains("scripts/supply-chain"),
        "scripts/test runs the supply-chain gate"
    );
}
