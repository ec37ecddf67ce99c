//! The README's deployment section (issue 5, point 6): its values table is
//! generated from chart/values.yaml (keys, defaults and the `# --` comments)
//! and this test keeps the two identical. When it fails it prints the table
//! to paste between `<!-- values:start -->` and `<!-- values:end -->`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::chart_support::{read_yaml, repo_root};

/// One documented value: dotted path, default (compact JSON), description.
struct Row {
    path: String,
    default: String,
    description: String,
}

/// Keys of values.yaml that carry a `# -- description` comment, with the
/// description (continuation lines `#   …` joined), in file order.
fn documented_keys(values_yaml: &str) -> Vec<(String, String)> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<String> = None;
    let mut out = Vec::new();
    for line in values_yaml.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(text) = trimmed.strip_prefix("# --") {
            pending = Some(text.trim().to_string());
            continue;
        }
        if let Some(text) = trimmed.strip_prefix('#') {
            if let Some(desc) = pending.as_mut() {
                desc.push(' ');
                desc.push_str(text.trim());
            }
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('-') {
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_string()));
        if let Some(desc) = pending.take() {
            let path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
            out.push((path.join("."), desc));
        }
    }
    out
}

fn lookup<'a>(values: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(values, |v, key| &v[key])
}

fn expected_rows() -> Vec<Row> {
    let path = repo_root().join("chart/values.yaml");
    let text = std::fs::read_to_string(&path).expect("values.yaml readable");
    let values = read_yaml(&path);
    documented_keys(&text)
        .into_iter()
        .map(|(path, description)| {
            let value = lookup(&values, &path);
            assert!(
                !(value.is_null() && path != "activeDeadlineSeconds"),
                "{path} is documented but not in values.yaml"
            );
            Row {
                default: serde_json::to_string(value).expect("serialise"),
                path,
                description,
            }
        })
        .collect()
}

fn render_table(rows: &[Row]) -> String {
    let mut table = String::from("| value | default | meaning |\n|---|---|---|\n");
    for row in rows {
        table.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            row.path, row.default, row.description
        ));
    }
    table
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} not found"))
        + start.len();
    let to = text[from..]
        .find(end)
        .unwrap_or_else(|| panic!("{end} not found"))
        + from;
    &text[from..to]
}

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).expect("README.md readable")
}

#[test]
fn readme_values_table_is_generated_from_values_yaml() {
    let readme = readme();
    let section = between(&readme, "<!-- deploy:start -->", "<!-- deploy:end -->");
    let table = between(section, "<!-- values:start -->", "<!-- values:end -->");
    let expected = render_table(&expected_rows());
    assert!(
        table.trim() == expected.trim(),
        "README values table is out of date; paste this between the values markers:\n\n{expected}"
    );
}

/// Leaf paths of values.yaml, entering only the chart's own small objects.
fn leaves(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    const ENTER: [&str; 3] = ["image", "serviceAccount", "rbac"];
    for (key, v) in value.as_object().expect("a map") {
        let path = format!("{prefix}{key}");
        if ENTER.contains(&path.as_str()) {
            leaves(v, &format!("{path}."), out);
        } else {
            out.insert(path);
        }
    }
}

#[test]
fn every_value_is_documented_in_values_yaml() {
    let values = read_yaml(&repo_root().join("chart/values.yaml"));
    let mut all = BTreeSet::new();
    leaves(&values, "", &mut all);
    let documented: BTreeSet<String> = expected_rows().into_iter().map(|r| r.path).collect();
    let missing: Vec<&String> = all.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "values without a `# --` comment: {missing:?}"
    );
}

#[test]
fn deploy_section_shows_install_upgrade_disable_manual_run_report_and_events() {
    let readme = readme();
    let section = between(&readme, "<!-- deploy:start -->", "<!-- deploy:end -->");
    for needle in [
        "helm install stuck-hr-recovery ./chart",
        "helm upgrade stuck-hr-recovery ./chart",
        "--set enabled=false",
        "kubectl create job --from=cronjob/stuck-hr-recovery",
        "kubectl logs",
        "kubectl get events",
        "--field-selector reason=StuckReleaseCorrected",
        "docs/deploy.md",
    ] {
        assert!(
            section.contains(needle),
            "README deploy section lacks {needle:?}"
        );
    }
}

#[test]
fn every_event_reason_the_docs_name_is_one_the_binary_emits() {
    // The Event reasons of SPEC §4 and §5, as the README and docs/deploy.md
    // list them for `kubectl get events --field-selector reason=...`.
    const REASONS: [&str; 6] = [
        "StuckReleaseCorrected",
        "StuckReleaseCorrectionFailed",
        "StuckReleaseToggled",
        "StuckReleaseToggleFailed",
        "InterruptedToggleResumed",
        "RecoveryGuardrailTripped",
    ];
    let deploy =
        std::fs::read_to_string(repo_root().join("docs/deploy.md")).expect("docs/deploy.md");
    let sources = rust_sources(&repo_root().join("src"));
    for reason in REASONS {
        assert!(
            deploy.contains(reason),
            "docs/deploy.md does not list {reason}"
        );
        assert!(
            sources.contains(&format!("\"{reason}\"")),
            "no source file under src/ defines the Event reason {reason}"
        );
    }
}

/// Every `.rs` file under `dir`, concatenated.
fn rust_sources(dir: &std::path::Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).expect("src/ readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            all.push_str(&rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            all.push_str(&std::fs::read_to_string(&path).expect("source readable"));
        }
    }
    all
}
