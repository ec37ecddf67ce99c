//! The chart under Helm 3 and Helm 4 (issue 14, points 4 and 5; SPEC §8):
//! `helm lint --strict` with both, the same objects rendered by both, and the
//! versions that must move together (Cargo, the chart's `appVersion`, the
//! default image tag). Helm 3.18.0 is `.tools/bin/helm`, Helm 4.3.1
//! `.tools/bin/helm4` (scripts/install-tools).

use std::path::Path;
use std::process::Command;

use crate::chart_support::{
    NAMESPACE, RELEASE, assert_helm_lint_strict_is_clean, cargo_version, chart_dir, describe,
    parse_yaml_docs, read_yaml, repo_root, run, tool,
};

/// `helm template` with one helm binary; panics when it refuses.
fn template_with(helm: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = run(Command::new(helm)
        .arg("template")
        .arg(RELEASE)
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE])
        .args(extra));
    assert!(
        out.status.success(),
        "{} template {extra:?}:\n{}",
        helm.display(),
        describe(&out)
    );
    parse_yaml_docs(&String::from_utf8(out.stdout).expect("UTF-8"))
}

fn major_version(helm: &Path) -> String {
    let out = run(Command::new(helm).args(["version", "--short"]));
    assert!(out.status.success(), "helm version:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_two_helms_are_helm_3_18_and_helm_4_3() {
    assert!(
        major_version(&tool("helm")).starts_with("v3.18."),
        "{}",
        major_version(&tool("helm"))
    );
    assert!(
        major_version(&tool("helm4")).starts_with("v4.3."),
        "{}",
        major_version(&tool("helm4"))
    );
}

#[test]
fn helm_4_lint_strict_is_clean() {
    assert_helm_lint_strict_is_clean("helm4");
}

/// Value sets that take different paths through the templates.
const VARIANTS: [&[&str]; 5] = [
    &[],
    &[
        "--set",
        "rbac.namespaced=true",
        "--set",
        "namespaces={apps,data}",
    ],
    &[
        "--set",
        "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ],
    &[
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=existing",
    ],
    &[
        "--set",
        "timeout=10m",
        "--set",
        "selector=team=platform",
        "--set",
        "nodeSelector.kubernetes\\.io/arch=arm64",
        "--set",
        "dryRun=server",
    ],
];

#[test]
fn helm_3_and_helm_4_render_the_same_objects() {
    let (helm3, helm4) = (tool("helm"), tool("helm4"));
    for extra in VARIANTS {
        let three = template_with(&helm3, extra);
        let four = template_with(&helm4, extra);
        assert!(!three.is_empty(), "{extra:?} renders something");
        assert_eq!(three, four, "Helm 3 and Helm 4 differ for {extra:?}");
    }
}

#[test]
fn enabled_false_renders_nothing_with_helm_4_either() {
    let docs = template_with(&tool("helm4"), &["--set", "enabled=false"]);
    assert_eq!(docs, Vec::<serde_json::Value>::new());
}

#[test]
fn cargo_version_app_version_and_default_image_tag_move_together() {
    let version = cargo_version();
    let chart = read_yaml(&repo_root().join("chart/Chart.yaml"));
    let values = read_yaml(&repo_root().join("chart/values.yaml"));
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(version.as_str()),
        "chart/Chart.yaml appVersion must be the Cargo version {version}"
    );
    assert_eq!(
        values["image"]["tag"].as_str(),
        Some(version.as_str()),
        "chart/values.yaml image.tag must be the appVersion {version}"
    );
    // And the rendered default image is that tag, with both helms.
    for helm in [tool("helm"), tool("helm4")] {
        let docs = template_with(&helm, &[]);
        let image = docs
            .iter()
            .find(|d| d["kind"] == "CronJob")
            .map(|d| {
                d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
                    .clone()
            })
            .expect("a CronJob");
        assert_eq!(
            image,
            format!("ghcr.io/openova/stuck-hr-recovery:{version}").as_str(),
            "{}",
            helm.display()
        );
    }
}
