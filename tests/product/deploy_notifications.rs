//! docs/deploy.md's `Alert` + `Provider` example (SPEC §10) against the real
//! notification-controller CRDs in ../shared/fixtures/crds: every field
//! known (nothing pruned), every value valid, and the Alert routes
//! HelmRelease events of both severities to that Provider.

use std::path::{Path, PathBuf};

use fake_apiserver::schema::CrdSchema;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn crd(file: &str) -> PathBuf {
    let path = repo().join("../shared/fixtures/crds").join(file);
    assert!(
        path.is_file(),
        "{} is missing: the real Flux CRDs live in ../shared/fixtures/crds",
        path.display()
    );
    path
}

/// The YAML documents between the doc's `flux-alert` markers.
fn example() -> Vec<Value> {
    let doc = std::fs::read_to_string(repo().join("docs/deploy.md")).expect("docs/deploy.md");
    let block = doc
        .split("<!-- flux-alert:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- flux-alert:end -->").next())
        .expect("docs/deploy.md has the flux-alert markers");
    let yaml = block
        .trim()
        .strip_prefix("```yaml")
        .and_then(|b| b.strip_suffix("```"))
        .expect("a yaml code block between the markers");
    serde_saphyr::from_multiple(yaml).expect("valid YAML")
}

fn schema_for(object: &Value) -> CrdSchema {
    let (file, version) = match (object["kind"].as_str(), object["apiVersion"].as_str()) {
        (Some("Alert"), Some(api)) => ("notification.toolkit.fluxcd.io_alerts.yaml", api),
        (Some("Provider"), Some(api)) => ("notification.toolkit.fluxcd.io_providers.yaml", api),
        other => panic!("unexpected object {other:?}"),
    };
    let version = version
        .strip_prefix("notification.toolkit.fluxcd.io/")
        .expect("group notification.toolkit.fluxcd.io");
    CrdSchema::from_crd_file(&crd(file), version)
        .unwrap_or_else(|e| panic!("{file} serves {version}: {e:#}"))
}

/// Admits like the API server: `Err` with the field errors, or the pruned
/// (unknown) fields.
fn admit(object: &Value) -> Result<Vec<String>, String> {
    let mut object = object.clone();
    schema_for(&object)
        .admit(&mut object)
        .map_err(|errors| format!("{errors:?}"))
}

fn by_kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("the example has a {kind}"))
}

#[test]
fn the_alert_and_provider_example_is_valid_against_the_real_crds() {
    let objects = example();
    assert_eq!(objects.len(), 2);
    for object in &objects {
        assert_eq!(admit(object), Ok(Vec::new()), "{object:#}");
    }
}

#[test]
fn the_alert_routes_helmrelease_events_of_both_severities_to_the_provider() {
    let objects = example();
    let (alert, provider) = (by_kind(&objects, "Alert"), by_kind(&objects, "Provider"));
    assert_eq!(
        alert["spec"]["providerRef"]["name"],
        provider["metadata"]["name"]
    );
    assert_eq!(
        alert["metadata"]["namespace"],
        provider["metadata"]["namespace"]
    );
    // `info` lets both info and error events through; ours are both.
    assert_eq!(alert["spec"]["eventSeverity"], "info");
    let sources = alert["spec"]["eventSources"]
        .as_array()
        .expect("eventSources");
    assert!(
        sources
            .iter()
            .any(|s| s["kind"] == "HelmRelease" && s["name"] == "*"),
        "{sources:?}"
    );
}

#[test]
fn the_check_catches_a_misspelled_field_and_a_bad_value() {
    let objects = example();
    let mut typo = by_kind(&objects, "Alert").clone();
    typo["spec"]["eventSeverty"] = Value::from("error");
    assert!(admit(&typo).is_ok_and(|pruned| !pruned.is_empty()));
    let mut bad = by_kind(&objects, "Alert").clone();
    bad["spec"]["eventSeverity"] = Value::from("warning");
    assert!(admit(&bad).is_err());
    let mut bad = by_kind(&objects, "Provider").clone();
    bad["spec"]["type"] = Value::from("carrier-pigeon");
    assert!(admit(&bad).is_err());
}
