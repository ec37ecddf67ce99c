//! `meta.k8s.io/v1` Table answers (what `kubectl get` asks for by default):
//! Name and Age, plus the CRD's printer columns for HelmReleases.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::resources::ResourceDef;

fn age(ts: Option<&str>) -> String {
    let Some(t) = ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn ready_field(obj: &Value, field: &str) -> String {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Last Seen, Type, Reason, Object, Message — from either Event shape.
fn event_cells(o: &Value) -> Vec<Value> {
    let s = |p: &str| o.pointer(p).and_then(Value::as_str);
    let object = o.get("involvedObject").or_else(|| o.get("regarding"));
    let kind = object
        .and_then(|x| x.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = object
        .and_then(|x| x.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let last = s("/series/lastObservedTime")
        .or(s("/lastTimestamp"))
        .or(s("/deprecatedLastTimestamp"))
        .or(s("/eventTime"))
        .or(s("/metadata/creationTimestamp"));
    vec![
        json!(age(last)),
        json!(s("/type").unwrap_or_default()),
        json!(s("/reason").unwrap_or_default()),
        json!(format!("{}/{name}", kind.to_ascii_lowercase())),
        json!(s("/message").or(s("/note")).unwrap_or_default()),
    ]
}

pub fn table(def: &ResourceDef, items: &[Arc<Value>], cont: Option<&str>, rv: &str) -> Value {
    let col = |name: &str, ty: &str, format: &str| json!({"name": name, "type": ty, "format": format, "description": "", "priority": 0});
    let is_event = def.plural == "events";
    let mut columns = if is_event {
        vec![
            col("Last Seen", "string", ""),
            col("Type", "string", ""),
            col("Reason", "string", ""),
            col("Object", "string", ""),
            col("Message", "string", ""),
        ]
    } else {
        vec![col("Name", "string", "name"), col("Age", "date", "")]
    };
    let hr = def.custom;
    if hr {
        columns.push(col("Ready", "string", ""));
        columns.push(col("Status", "string", ""));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let cells = if is_event {
                event_cells(o)
            } else {
                let name = o
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let created = o
                    .pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str);
                let mut cells = vec![json!(name), json!(age(created))];
                if hr {
                    cells.push(json!(ready_field(o, "status")));
                    cells.push(json!(ready_field(o, "message")));
                }
                cells
            };
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }
            })
        })
        .collect();
    let mut meta = serde_json::Map::new();
    if !rv.is_empty() {
        meta.insert("resourceVersion".into(), json!(rv));
    }
    if let Some(c) = cont {
        meta.insert("continue".into(), json!(c));
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}
