//! Reading one HelmRelease into a view: names, namespaces, malformed objects.

use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{HelmReleaseView, shorten_release_name};
use crate::config::Config;
use crate::decide::{StorageFact, decide, storage_needed};
use crate::plan::fixtures::{hr, minutes, now};

fn malformed(item: Value) -> super::MalformedObject {
    match HelmReleaseView::from_json(&item) {
        Ok(view) => panic!("expected a malformed object, got {view:?}"),
        Err(m) => m,
    }
}

#[test]
fn a_full_helmrelease_is_read_with_its_real_field_names() {
    let view = hr("apps", "web")
        .stuck_deployed(3)
        .generation(4)
        .last_attempted_generation(4)
        .marker()
        .target_namespace("prod")
        .view();
    assert_eq!(
        (view.namespace.as_str(), view.name.as_str()),
        ("apps", "web")
    );
    assert_eq!(view.uid.as_deref(), Some("uid-apps-web"));
    assert_eq!(view.resource_version, "100");
    assert_eq!(view.generation, Some(4));
    assert_eq!(view.last_attempted_generation, Some(4));
    assert_eq!(view.observed_generation, Some(1));
    assert!(!view.deleting && !view.suspend);
    assert_eq!(view.target_namespace.as_deref(), Some("prod"));
    assert_eq!(view.history.len(), 2);
    let head = &view.history[0];
    assert_eq!(head.version, Some(3));
    assert_eq!(head.status.as_deref(), Some("deployed"));
    assert_eq!(head.action.as_deref(), Some("upgrade"));
    assert_eq!(head.chart_name.as_deref(), Some("web"));
    assert_eq!(head.chart_version.as_deref(), Some("1.2.3"));
    let ready = view.condition("Ready").map(|c| c.status.as_str());
    assert_eq!(ready, Some("Unknown"));
    assert!(
        view.annotation(crate::model::annotations::SUSPENDED_AT)
            .is_some()
    );
}

#[test]
fn the_raw_conditions_are_kept_exactly_as_read() {
    let conditions = json!([
        {"type": "Ready", "status": "Unknown", "reason": "Progressing", "message": "",
         "lastTransitionTime": "2026-01-01T11:00:00Z", "observedGeneration": 1},
        {"type": "Custom", "status": "True", "extraField": {"kept": [1, 2]}}
    ]);
    let item = hr("apps", "web")
        .field(&["status", "conditions"], conditions)
        .json();
    let view = HelmReleaseView::from_json(&item).map_err(|e| e.to_string());
    let view = view.unwrap_or_else(|e| panic!("{e}"));
    let raw = item["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(view.conditions_raw, raw);
    assert_eq!(view.conditions.len(), raw.len());
}

#[test]
fn the_release_name_defaults_to_the_helmrelease_name() {
    assert_eq!(hr("apps", "web").view().release_name(), "web");
}

#[test]
fn spec_release_name_wins_over_the_target_namespace() {
    let view = hr("apps", "web")
        .target_namespace("prod")
        .release_name("custom")
        .view();
    assert_eq!(view.release_name(), "custom");
}

#[test]
fn a_target_namespace_prefixes_the_release_name() {
    assert_eq!(
        hr("apps", "web")
            .target_namespace("prod")
            .view()
            .release_name(),
        "prod-web"
    );
}

#[test]
fn a_target_namespace_equal_to_the_own_namespace_still_prefixes_the_release_name() {
    assert_eq!(
        hr("apps", "web")
            .target_namespace("apps")
            .view()
            .release_name(),
        "apps-web"
    );
}

#[test]
fn an_empty_spec_release_name_counts_as_unset() {
    assert_eq!(
        hr("apps", "web").release_name("").view().release_name(),
        "web"
    );
}

#[test]
fn a_release_name_of_53_characters_is_kept_whole() {
    let name = "n".repeat(53);
    assert_eq!(hr("apps", &name).view().release_name(), name);
}

#[test]
fn a_release_name_of_54_characters_is_shortened_to_40_dash_12_hex_of_sha256() {
    let name = format!("{}{}", "x".repeat(50), "-abc");
    assert_eq!(name.len(), 54);
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let expected = format!("{}-{}", &name[..40], &digest[..12]);
    let got = hr("apps", &name).view().release_name();
    assert_eq!(got, expected);
    assert_eq!(got.len(), 53);
}

#[test]
fn a_long_target_namespace_and_name_are_shortened_after_joining() {
    let view = hr("apps", "web-with-a-long-name")
        .target_namespace("a-target-namespace-that-is-quite-long")
        .view();
    let full = "a-target-namespace-that-is-quite-long-web-with-a-long-name";
    let digest = hex::encode(Sha256::digest(full.as_bytes()));
    assert_eq!(
        view.release_name(),
        format!("{}-{}", &full[..40], &digest[..12])
    );
}

#[test]
fn shortening_matches_helm_controllers_published_examples() {
    // Expected values from helm-controller's own tests of its name shortening.
    assert_eq!(
        shorten_release_name("release-name-with-very-long-name-which-is-longer-than-53-characters"),
        "release-name-with-very-long-name-which-i-788ca0d0d7b0"
    );
    assert_eq!(
        shorten_release_name(
            "another-release-name-with-very-long-name-which-is-longer-than-53-characters"
        ),
        "another-release-name-with-very-long-name-7e72150d5a36"
    );
    assert_eq!(shorten_release_name(""), "");
}

#[test]
fn shortening_a_non_ascii_name_does_not_panic() {
    let name = "é".repeat(40);
    let short = shorten_release_name(&name);
    assert!(short.len() <= 53);
}

#[test]
fn the_storage_namespace_comes_from_status_first() {
    let view = hr("apps", "web")
        .spec_storage_namespace("from-spec")
        .status_storage_namespace("from-status")
        .view();
    assert_eq!(view.storage_namespace(), "from-status");
}

#[test]
fn the_storage_namespace_comes_from_spec_when_status_has_none() {
    let view = hr("apps", "web").spec_storage_namespace("from-spec").view();
    assert_eq!(view.storage_namespace(), "from-spec");
}

#[test]
fn the_storage_namespace_defaults_to_the_helmrelease_namespace() {
    let view = hr("apps", "web").target_namespace("prod").view();
    assert_eq!(view.storage_namespace(), "apps");
}

#[test]
fn a_deletion_timestamp_marks_the_view_deleting() {
    assert!(hr("apps", "web").deleting().view().deleting);
}

#[test]
fn a_ready_transition_time_of_the_wrong_type_is_kept_as_absent() {
    let view = hr("apps", "web")
        .field(
            &["status", "conditions"],
            json!([{"type": "Ready", "status": "Unknown", "lastTransitionTime": 5}]),
        )
        .view();
    assert_eq!(
        view.condition("Ready")
            .and_then(|c| c.last_transition_time.clone()),
        None
    );
}

#[test]
fn a_missing_status_is_read_as_empty() {
    let mut item = hr("apps", "web").json();
    if let Some(map) = item.as_object_mut() {
        map.remove("status");
    }
    let view = HelmReleaseView::from_json(&item).unwrap_or_else(|e| panic!("{e}"));
    assert!(view.conditions.is_empty() && view.history.is_empty());
    assert_eq!(view.last_attempted_generation, None);
}

#[test]
fn an_item_that_is_not_an_object_is_malformed() {
    let m = malformed(json!("a string"));
    assert_eq!((m.namespace, m.name), (None, None));
    assert!(m.problem.contains("expected an object"), "{}", m.problem);
}

#[test]
fn an_item_without_metadata_is_malformed() {
    assert!(malformed(json!({"spec": {}})).problem.contains("metadata"));
}

#[test]
fn an_item_without_a_name_is_malformed_and_names_its_namespace() {
    let m = malformed(
        hr("apps", "web")
            .field(&["metadata", "name"], Value::Null)
            .json(),
    );
    assert_eq!(m.namespace.as_deref(), Some("apps"));
    assert!(m.problem.contains("metadata.name"), "{}", m.problem);
}

#[test]
fn a_name_of_the_wrong_type_is_malformed() {
    let m = malformed(
        hr("apps", "web")
            .field(&["metadata", "name"], json!(42))
            .json(),
    );
    assert_eq!(m.problem, "metadata.name is a number, expected a string");
}

#[test]
fn an_item_without_a_resource_version_is_malformed() {
    let m = malformed(
        hr("apps", "web")
            .field(&["metadata", "resourceVersion"], Value::Null)
            .json(),
    );
    assert!(m.problem.contains("metadata.resourceVersion"));
}

#[test]
fn a_status_that_is_a_string_is_malformed() {
    let m = malformed(hr("apps", "web").field(&["status"], json!("ok")).json());
    assert_eq!(m.problem, "status is a string, expected an object");
    assert_eq!(m.name.as_deref(), Some("web"));
}

#[test]
fn conditions_that_are_not_a_list_are_malformed() {
    let m = malformed(
        hr("apps", "web")
            .field(&["status", "conditions"], json!({"type": "Ready"}))
            .json(),
    );
    assert_eq!(m.problem, "status.conditions is an object, expected a list");
}

#[test]
fn a_condition_that_is_not_an_object_is_malformed() {
    let m = malformed(
        hr("apps", "web")
            .field(&["status", "conditions"], json!(["Ready"]))
            .json(),
    );
    assert_eq!(
        m.problem,
        "status.conditions[0] is a string, expected an object"
    );
}

#[test]
fn a_condition_without_a_type_is_malformed() {
    let m = malformed(
        hr("apps", "web")
            .field(&["status", "conditions"], json!([{"status": "True"}]))
            .json(),
    );
    assert!(m.problem.contains("status.conditions[0].type"));
}

#[test]
fn a_condition_status_outside_true_false_unknown_is_malformed() {
    for bad in [json!("Maybe"), json!(""), Value::Null] {
        let conditions =
            json!([{"type": "Ready", "status": bad, "lastTransitionTime": "2026-01-01T11:00:00Z"}]);
        let m = malformed(
            hr("apps", "web")
                .field(&["status", "conditions"], conditions)
                .json(),
        );
        assert!(
            m.problem.starts_with("status.conditions[0].status is"),
            "{}",
            m.problem
        );
        assert!(
            m.problem.ends_with("expected True, False or Unknown"),
            "{}",
            m.problem
        );
    }
}

#[test]
fn a_suspend_flag_that_is_not_a_boolean_is_malformed() {
    let m = malformed(
        hr("apps", "web")
            .field(&["spec", "suspend"], json!("yes"))
            .json(),
    );
    assert_eq!(
        m.problem,
        "spec.suspend is a string, expected true or false"
    );
}

#[test]
fn a_generation_that_is_not_a_whole_number_is_malformed() {
    for bad in [json!("1"), json!(1.5), json!(true)] {
        let m = malformed(
            hr("apps", "web")
                .field(&["metadata", "generation"], bad)
                .json(),
        );
        assert!(
            m.problem.starts_with("metadata.generation is"),
            "{}",
            m.problem
        );
    }
}

#[test]
fn a_history_version_of_the_wrong_type_is_malformed() {
    let m = malformed(
        hr("apps", "web")
            .field(
                &["status", "history"],
                json!([{"status": "deployed", "version": "3"}]),
            )
            .json(),
    );
    assert_eq!(
        m.problem,
        "status.history[0].version is a string, expected a whole number"
    );
}

#[test]
fn history_that_is_not_a_list_is_malformed() {
    let m = malformed(
        hr("apps", "web")
            .field(&["status", "history"], json!("deployed"))
            .json(),
    );
    assert_eq!(m.problem, "status.history is a string, expected a list");
}

#[test]
fn an_annotation_that_is_not_a_string_is_malformed() {
    let m = malformed(
        hr("apps", "web")
            .field(&["metadata", "annotations", "team"], json!(7))
            .json(),
    );
    assert!(
        m.problem.contains("metadata.annotations[\"team\"]"),
        "{}",
        m.problem
    );
}

#[test]
fn the_malformed_message_names_the_object_the_field_and_the_fix() {
    let m = malformed(hr("apps", "web").field(&["status"], json!(1)).json());
    let text = m.to_string();
    assert!(text.contains("apps/web"), "{text}");
    assert!(text.contains("status is a number"), "{text}");
    assert!(
        text.contains("kubectl edit helmrelease -n apps web"),
        "{text}"
    );
}

#[test]
fn huge_strings_are_read_and_cut_short_in_messages() {
    let huge = "x".repeat(1 << 20);
    let view = hr("apps", "web")
        .field(
            &["status", "conditions"],
            json!([{"type": "Ready", "status": "Unknown",
            "message": huge, "lastTransitionTime": huge}]),
        )
        .view();
    assert_eq!(
        view.condition("Ready")
            .and_then(|c| c.message.as_ref())
            .map(String::len),
        Some(1 << 20)
    );
    let m = malformed(
        hr("apps", &huge)
            .field(&["metadata", "annotations", &huge], json!(1))
            .json(),
    );
    assert!(
        m.to_string().len() < 1000,
        "message of {} bytes",
        m.to_string().len()
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9:. -]{0,30}".prop_map(Value::String),
        Just(json!("2026-01-01T11:00:00Z")),
        Just(json!("Unknown")),
        Just(json!("deployed")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("metadata".to_string()),
                    Just("status".to_string()),
                    Just("spec".to_string()),
                    Just("conditions".to_string()),
                    Just("history".to_string()),
                    "[a-zA-Z]{1,12}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Paths of a valid HelmRelease where arbitrary values are planted.
const PATHS: &[&[&str]] = &[
    &["metadata"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "generation"],
    &["metadata", "annotations"],
    &["metadata", "deletionTimestamp"],
    &["spec"],
    &["spec", "suspend"],
    &["spec", "releaseName"],
    &["spec", "targetNamespace"],
    &["status"],
    &["status", "conditions"],
    &["status", "history"],
    &["status", "lastAttemptedGeneration"],
    &["status", "storageNamespace"],
];

fn no_panic_through_decide(item: &Value) {
    if let Ok(view) = HelmReleaseView::from_json(item) {
        let config = Config::default();
        let _ = view.release_name();
        let _ = storage_needed(&view, now(), &config);
        for fact in [
            None,
            Some(StorageFact::Latest(None)),
            Some(StorageFact::Unreadable(crate::failure::Failure::Deadline)),
        ] {
            let _ = decide(&view, fact.as_ref(), now(), &config);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics_the_reader_or_the_decision(item in arb_json()) {
        no_panic_through_decide(&item);
    }

    #[test]
    fn arbitrary_values_in_a_real_helmrelease_never_panic(
        picks in prop::collection::vec((0..PATHS.len(), arb_json()), 1..4),
        deployed in any::<bool>(),
    ) {
        let base = hr("apps", "web").ready_unknown_for(minutes(6));
        let mut fixture = if deployed { base.history_deployed(3) } else { base.history_pending_install() };
        for (path, value) in picks {
            fixture = fixture.field(PATHS[path], value);
        }
        no_panic_through_decide(&fixture.json());
    }
}
