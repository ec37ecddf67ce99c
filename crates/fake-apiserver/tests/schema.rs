//! Acceptance 3 (schema): HelmReleases admitted against the real Flux CRD —
//! pruning, defaults, and 422s with the real message and `details.causes`.

mod common;

use common::{MERGE, client, condition, hr, hr_path, raw, server};
use serde_json::{Value, json};

async fn status_patch(s: &fake_apiserver::FakeApiServer, status: Value) -> (u16, Value) {
    let c = client(s, "admin").await;
    raw(
        &c,
        "PATCH",
        &format!("{}/status", hr_path("apps", "web")),
        &[MERGE],
        Some(json!({"status": status})),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_condition_without_message_is_invalid_with_causes() {
    let s = server();
    let mut cond = condition("Ready", "True", "Succeeded", "x");
    cond.as_object_mut().unwrap().remove("message");
    let (code, st) = status_patch(&s, json!({"conditions": [cond]})).await;
    assert_eq!(code, 422);
    assert_eq!(
        st["message"],
        "HelmRelease.helm.toolkit.fluxcd.io \"web\" is invalid: status.conditions[0].message: Required value"
    );
    assert_eq!(
        st["details"]["causes"],
        json!([{"reason": "FieldValueRequired", "message": "Required value", "field": "status.conditions[0].message"}])
    );
    assert_eq!(
        (
            st["details"]["kind"].as_str(),
            st["details"]["group"].as_str()
        ),
        (Some("HelmRelease"), Some("helm.toolkit.fluxcd.io"))
    );
}

#[tokio::test]
async fn enum_pattern_type_format_and_length_violations_are_each_reported() {
    let s = server();
    let (code, st) = status_patch(&s, json!({
        "conditions": [{"type": "Ready", "status": "Maybe", "reason": "has spaces", "message": "m", "lastTransitionTime": "yesterday"}],
        "failures": "three",
        "storageNamespace": "",
    })).await;
    assert_eq!(code, 422);
    let causes: Vec<(String, String)> = st["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("status.conditions[0].status", "FieldValueNotSupported"),
        ("status.conditions[0].reason", "FieldValueInvalid"),
        (
            "status.conditions[0].lastTransitionTime",
            "FieldValueInvalid",
        ),
        ("status.failures", "FieldValueInvalid"),
        ("status.storageNamespace", "FieldValueInvalid"),
    ] {
        assert!(
            causes.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} missing from {causes:?}"
        );
    }
    let msg = st["message"].as_str().unwrap();
    assert!(msg.contains(r#"status.conditions[0].status: Unsupported value: "Maybe": supported values: "True", "False", "Unknown""#), "{msg}");
    assert!(msg.contains(r#"status.failures: Invalid value: "string": status.failures in body must be of type integer: "string""#), "{msg}");
    assert!(
        msg.starts_with("HelmRelease.helm.toolkit.fluxcd.io \"web\" is invalid: ["),
        "{msg}"
    );
}

#[tokio::test]
async fn unknown_fields_are_pruned_with_a_warning_and_preserved_where_the_schema_says() {
    let s = server();
    let c = client(&s, "admin").await;
    let mut obj = hr("apps", "pruned");
    obj["spec"]["bogus"] = json!(1);
    obj["spec"]["values"] = json!({"anything": {"goes": [1, 2]}});
    obj["topLevelJunk"] = json!(true);
    let (code, created) = raw(
        &c,
        "POST",
        "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases",
        &[],
        Some(obj),
    )
    .await
    .unwrap();
    assert_eq!(code, 201);
    assert!(created["spec"].get("bogus").is_none() && created.get("topLevelJunk").is_none());
    assert_eq!(
        created["spec"]["values"]["anything"]["goes"],
        json!([1, 2]),
        "x-kubernetes-preserve-unknown-fields"
    );
    assert_eq!(
        created["spec"]["chart"]["spec"]["reconcileStrategy"], "ChartVersion",
        "CRD defaults applied"
    );
    let stored = s.helmrelease("apps", "pruned").unwrap();
    assert!(stored["spec"].get("bogus").is_none());
}

#[tokio::test]
async fn cel_rule_chart_xor_chart_ref_is_enforced() {
    let s = server();
    let c = client(&s, "admin").await;
    let mut obj = hr("apps", "neither");
    obj["spec"].as_object_mut().unwrap().remove("chart");
    let (code, st) = raw(
        &c,
        "POST",
        "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases",
        &[],
        Some(obj),
    )
    .await
    .unwrap();
    assert_eq!(code, 422);
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains(r#"spec: Invalid value: "object": either chart or chartRef must be set"#),
        "{}",
        st["message"]
    );
}

#[test]
fn apply_validates_helmreleases_too() {
    let s = server();
    let mut bad = hr("apps", "bad");
    bad["spec"]["interval"] = json!("five minutes");
    let err = s.apply(bad).unwrap_err();
    assert!(
        format!("{err:#}").contains("spec.interval in body should match"),
        "{err:#}"
    );
    assert!(s.helmrelease("apps", "bad").is_none());
}
