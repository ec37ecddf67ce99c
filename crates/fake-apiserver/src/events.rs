//! Core `v1` Events and `events.k8s.io/v1` Events are one stored resource,
//! as on a real server: an Event written through either API is read through
//! both. Storage uses the `events.k8s.io/v1` shape; core reads and writes
//! are converted field by field.

use serde_json::{Map, Value, json};

use crate::resources::{CORE_EVENTS, ResourceDef};
use crate::status::{FieldError, FieldErrorKind};

/// `(events.k8s.io/v1 field, core v1 field)` pairs that differ by name.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Field selectors the real server offers on core Events.
pub const CORE_FIELD_LABELS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "type",
];

fn rename(obj: &Value, from_first: bool, api_version: &str) -> Value {
    let mut out = Map::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            let renamed = RENAMED.iter().find_map(|(a, b)| {
                if from_first && k == a {
                    Some(*b)
                } else if !from_first && k == b {
                    Some(*a)
                } else {
                    None
                }
            });
            out.insert(renamed.unwrap_or(k).to_string(), v.clone());
        }
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

pub fn is_core_event(def: &ResourceDef) -> bool {
    *def == CORE_EVENTS
}

/// The object as `def`'s API shows it.
pub fn to_view(def: &ResourceDef, stored: &Value) -> Option<Value> {
    is_core_event(def).then(|| rename(stored, true, "v1"))
}

/// The object as stored, from `def`'s API shape.
pub fn to_storage(def: &ResourceDef, obj: Value) -> Value {
    if is_core_event(def) {
        rename(&obj, false, "events.k8s.io/v1")
    } else {
        obj
    }
}

/// What the real server's `ValidateEventCreate` requires of an
/// `events.k8s.io/v1` Event: `eventTime`, a `type` of Normal or Warning,
/// `reportingController`, `reportingInstance`, `action` and `reason` (each
/// at most 128 characters), and a `note` of at most 1 kB. Core `v1` Events
/// keep the older, looser rules and are not checked here.
pub fn validate_create(obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let text = |field: &str| obj.get(field).and_then(Value::as_str).unwrap_or_default();
    if obj.get("eventTime").is_none_or(Value::is_null) {
        errors.push(required("eventTime"));
    }
    let kind = text("type");
    if kind != "Normal" && kind != "Warning" {
        errors.push(FieldError {
            kind: FieldErrorKind::Invalid,
            field: "type".into(),
            value: Some(json!(kind)),
            detail: "has invalid value, must be one of Normal or Warning".into(),
        });
    }
    for field in [
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        let value = text(field);
        if value.is_empty() {
            errors.push(required(field));
        } else if value.len() > 128 {
            errors.push(FieldError {
                kind: FieldErrorKind::Invalid,
                field: field.into(),
                value: Some(json!(value)),
                detail: "can have at most 128 characters".into(),
            });
        }
    }
    if text("note").len() > 1024 {
        errors.push(FieldError {
            kind: FieldErrorKind::TooLong,
            field: "note".into(),
            value: None,
            detail: "may not be more than 1024 bytes".into(),
        });
    }
    errors
}

fn required(field: &str) -> FieldError {
    FieldError {
        kind: FieldErrorKind::Required,
        field: field.into(),
        value: None,
        detail: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_events_api_shapes_round_trip() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"name": "web"}, "message": "m", "count": 2, "reason": "R"});
        let stored = to_storage(&CORE_EVENTS, core.clone());
        assert_eq!(stored["regarding"]["name"], "web");
        assert_eq!(stored["note"], "m");
        assert_eq!(stored["deprecatedCount"], 2);
        assert_eq!(stored["apiVersion"], "events.k8s.io/v1");
        assert_eq!(to_view(&CORE_EVENTS, &stored), Some(core));
    }
}
