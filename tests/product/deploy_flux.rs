//! The Flux install example of docs/deploy.md (issue 14, point 5): every
//! document of its "Installing with Flux" section is admitted by the real
//! Flux CRDs in ../shared/fixtures/crds (the fake API server's structural
//! schema validator: prune, default, validate, CEL rules) with no field
//! pruned, the HelmRelease points at the source next to it, the source points
//! where the release workflow pushes the chart, and `spec.values` renders
//! with the chart.

use std::path::PathBuf;
use std::process::Command;

use fake_apiserver::schema::CrdSchema;
use serde_json::Value;

use crate::chart_support::{
    NAMESPACE, RELEASE, chart_dir, describe, read_yaml, repo_root, run, tool,
};

const CHART_REPO: &str = "oci://ghcr.io/openova/charts";

fn crd_dir() -> PathBuf {
    let dir = repo_root().join("../shared/fixtures/crds");
    assert!(
        dir.is_dir(),
        "{} not found: the Flux CRDs live beside the worktree in ../shared/fixtures/crds",
        dir.display()
    );
    dir
}

/// The schema that admits objects of `kind`.
fn schema_for(kind: &str) -> CrdSchema {
    let (file, version) = match kind {
        "HelmRelease" => ("helm.toolkit.fluxcd.io_helmreleases.yaml", "v2"),
        "OCIRepository" => ("source.toolkit.fluxcd.io_ocirepositories.yaml", "v1"),
        "HelmRepository" => ("source.toolkit.fluxcd.io_helmrepositories.yaml", "v1"),
        other => panic!("the Flux example holds an unexpected kind {other}"),
    };
    CrdSchema::from_crd_file(&crd_dir().join(file), version)
        .unwrap_or_else(|e| panic!("CRD {file}: {e:#}"))
}

/// The YAML blocks of the "Installing with Flux" section, each as its
/// documents.
fn example_blocks() -> Vec<Vec<Value>> {
    let doc = std::fs::read_to_string(repo_root().join("docs/deploy.md")).expect("docs/deploy.md");
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Installing with Flux"))
        .expect("docs/deploy.md has a section \"Installing with Flux\"");
    let blocks: Vec<Vec<Value>> = section
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().expect("a closed block"))
        .map(crate::chart_support::parse_yaml_docs)
        .collect();
    assert_eq!(
        blocks.len(),
        2,
        "an OCIRepository and a HelmRepository example"
    );
    blocks
}

/// Admits `obj` like the API server would; `Err` lists the problems.
fn admit(obj: &Value) -> Result<(), String> {
    let kind = obj["kind"].as_str().unwrap_or("?");
    let mut copy = obj.clone();
    match schema_for(kind).admit(&mut copy) {
        Ok(pruned) if pruned.is_empty() => Ok(()),
        Ok(pruned) => Err(format!("{kind}: fields the CRD does not know: {pruned:?}")),
        Err(errors) => Err(format!("{kind}: {errors:?}")),
    }
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {docs:?}"))
}

fn chart_version() -> String {
    read_yaml(&chart_dir().join("Chart.yaml"))["version"]
        .as_str()
        .expect("chart version")
        .to_string()
}

/// `0.1.x` / `0.1.0` style constraint that the chart's own version meets.
fn assert_constraint_matches_chart(constraint: &str) {
    let version = chart_version();
    let wanted: Vec<&str> = constraint.split('.').collect();
    let have: Vec<&str> = version.split('.').collect();
    assert_eq!(wanted.len(), 3, "constraint {constraint}");
    for (w, h) in wanted.iter().zip(&have) {
        assert!(
            *w == "x" || w == h,
            "constraint {constraint} does not take chart version {version}"
        );
    }
}

#[test]
fn every_example_document_is_admitted_by_the_flux_crds() {
    for docs in example_blocks() {
        for obj in &docs {
            admit(obj).unwrap_or_else(|e| panic!("{e}\n{obj:#}"));
            assert_eq!(obj["metadata"]["namespace"], NAMESPACE, "{obj}");
        }
    }
}

#[test]
fn the_validator_refuses_a_broken_example() {
    let mut docs = example_blocks().remove(0);
    let release = docs
        .iter_mut()
        .find(|d| d["kind"] == "HelmRelease")
        .expect("HelmRelease");
    release["spec"]["chartRef"]["kind"] = "GitRepository".into();
    assert!(admit(release).is_err(), "chartRef.kind is an enum");
    let mut typo = find(&example_blocks()[0], "HelmRelease").clone();
    typo["spec"]["intervall"] = "5m".into();
    assert!(
        admit(&typo).is_err(),
        "an unknown field is pruned: reported"
    );
}

#[test]
fn the_oci_repository_example_installs_the_published_chart() {
    let docs = &example_blocks()[0];
    let source = find(docs, "OCIRepository");
    let release = find(docs, "HelmRelease");
    assert_eq!(
        source["spec"]["url"],
        format!("{CHART_REPO}/stuck-hr-recovery").as_str()
    );
    assert_constraint_matches_chart(source["spec"]["ref"]["semver"].as_str().expect("semver"));
    assert_eq!(release["spec"]["chartRef"]["kind"], "OCIRepository");
    assert_eq!(
        release["spec"]["chartRef"]["name"],
        source["metadata"]["name"]
    );
}

#[test]
fn the_helm_repository_example_installs_the_published_chart() {
    let docs = &example_blocks()[1];
    let source = find(docs, "HelmRepository");
    let release = find(docs, "HelmRelease");
    assert_eq!(source["spec"]["type"], "oci");
    assert_eq!(source["spec"]["url"], CHART_REPO);
    let chart = &release["spec"]["chart"]["spec"];
    assert_eq!(chart["chart"], "stuck-hr-recovery");
    assert_constraint_matches_chart(chart["version"].as_str().expect("version"));
    assert_eq!(chart["sourceRef"]["kind"], "HelmRepository");
    assert_eq!(chart["sourceRef"]["name"], source["metadata"]["name"]);
}

#[test]
fn the_example_values_render_with_the_chart() {
    for docs in example_blocks() {
        let values = &find(&docs, "HelmRelease")["spec"]["values"];
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), serde_json::to_string(values).expect("JSON")).expect("write");
        let out = run(Command::new(tool("helm"))
            .arg("template")
            .arg(RELEASE)
            .arg(chart_dir())
            .args(["--namespace", NAMESPACE, "-f"])
            .arg(file.path()));
        assert!(
            out.status.success(),
            "the example's values do not render:\n{}",
            describe(&out)
        );
    }
}
