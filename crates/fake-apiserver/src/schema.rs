//! A structural-schema validator for one CRD version, in the order the real
//! server applies it: prune unknown fields, apply defaults, validate.
//!
//! Covered: `type`, `required`, `enum`, `pattern`, `minLength`/`maxLength`,
//! `minimum`/`maximum`, `minItems`/`maxItems`, `format: date-time`,
//! `nullable`, `additionalProperties`, `x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-int-or-string`, `default`, and the small CEL subset the Flux
//! CRD uses in `x-kubernetes-validations` (see [`crate::cel`]).

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context, anyhow};
use regex::Regex;
use serde_json::{Map, Value};

use crate::cel;
use crate::status::{FieldError, FieldErrorKind};

#[derive(Debug)]
struct PatternCache {
    regex: Option<Regex>,
    verdicts: HashMap<String, bool>,
}

/// The `openAPIV3Schema` of the served version of a CRD.
#[derive(Debug)]
pub struct CrdSchema {
    root: Value,
    /// Compiled patterns and remembered verdicts per (pattern, text): the same
    /// few values ("10m", "Ready") recur across thousands of objects.
    regexes: Mutex<HashMap<String, PatternCache>>,
}

impl CrdSchema {
    /// Reads the `v2` (served, storage) version's schema from a CRD YAML file.
    pub fn from_crd_file(path: &std::path::Path, version: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading CRD {}", path.display()))?;
        let crd: Value = serde_saphyr::from_str(&text)
            .with_context(|| format!("parsing CRD {}", path.display()))?;
        Self::from_crd(&crd, version)
    }

    pub fn from_crd(crd: &Value, version: &str) -> anyhow::Result<Self> {
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("CRD has no spec.versions"))?;
        let v = versions
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
            .ok_or_else(|| anyhow!("CRD does not serve version {version}"))?;
        let root = v
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .ok_or_else(|| anyhow!("CRD version {version} has no openAPIV3Schema"))?;
        Ok(CrdSchema {
            root,
            regexes: Mutex::new(HashMap::new()),
        })
    }

    /// Prunes, defaults and validates `obj` in place. Returns the paths of
    /// pruned fields (for `Warning` headers) or the field errors.
    pub fn admit(&self, obj: &mut Value) -> Result<Vec<String>, Vec<FieldError>> {
        let mut pruned = Vec::new();
        let mut errors = Vec::new();
        if let (Some(props), Some(map)) = (
            self.root.get("properties").and_then(Value::as_object),
            obj.as_object_mut(),
        ) {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match props.get(&key) {
                    None => {
                        map.remove(&key);
                        pruned.push(key.clone());
                    }
                    Some(sub) => {
                        if let Some(child) = map.get_mut(&key) {
                            prune_and_default(sub, child, &key, &mut pruned);
                        }
                    }
                }
            }
            for (key, sub) in props {
                if !map.contains_key(key)
                    && let Some(d) = sub.get("default")
                {
                    let mut d = d.clone();
                    prune_and_default(sub, &mut d, key, &mut pruned);
                    map.insert(key.clone(), d);
                }
            }
            for (key, sub) in props {
                if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(child) = map.get(key) {
                    self.validate(sub, child, key, &mut errors);
                }
            }
            if let Some(req) = self.root.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        errors.push(required(r));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(pruned)
        } else {
            Err(errors)
        }
    }

    /// `Some(false)` when `text` does not match `pattern`; `None` when the
    /// pattern is not a valid regex here (not checked, like an unknown format).
    fn matches_pattern(&self, pattern: &str, text: &str) -> Option<bool> {
        let mut cache = self.regexes.lock().ok()?;
        let entry = cache
            .entry(pattern.to_string())
            .or_insert_with(|| PatternCache {
                regex: Regex::new(pattern).ok(),
                verdicts: HashMap::new(),
            });
        let re = entry.regex.as_ref()?;
        if let Some(v) = entry.verdicts.get(text) {
            return Some(*v);
        }
        let v = re.is_match(text);
        if entry.verdicts.len() > 100_000 {
            entry.verdicts.clear();
        }
        entry.verdicts.insert(text.to_string(), v);
        Some(v)
    }

    fn validate(&self, schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
        let s = match schema.as_object() {
            Some(s) => s,
            None => return,
        };
        if value.is_null() {
            if s.get("nullable").and_then(Value::as_bool) == Some(true) {
                return;
            }
            if let Some(t) = s.get("type").and_then(Value::as_str) {
                errors.push(type_error(path, value, t));
            }
            return;
        }
        let int_or_string =
            s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
        if int_or_string {
            if !(value.is_string() || value.is_i64() || value.is_u64()) {
                errors.push(type_error(path, value, "integer-or-string"));
                return;
            }
        } else if let Some(t) = s.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "boolean" => value.is_boolean(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                _ => true,
            };
            if !ok {
                errors.push(type_error(path, value, t));
                return;
            }
        }
        if let Some(en) = s.get("enum").and_then(Value::as_array)
            && !en.contains(value)
        {
            let supported: Vec<String> = en.iter().map(|v| v.to_string()).collect();
            errors.push(FieldError {
                kind: FieldErrorKind::NotSupported,
                field: path.to_string(),
                value: Some(value.clone()),
                detail: format!("supported values: {}", supported.join(", ")),
            });
        }
        match value {
            Value::String(text) => self.validate_string(s, text, value, path, errors),
            Value::Number(n) => {
                if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), n.as_f64())
                    && x < min
                {
                    errors.push(invalid(
                        path,
                        value,
                        format!("{path} in body should be greater than or equal to {min}"),
                    ));
                }
                if let (Some(max), Some(x)) = (s.get("maximum").and_then(Value::as_f64), n.as_f64())
                    && x > max
                {
                    errors.push(invalid(
                        path,
                        value,
                        format!("{path} in body should be less than or equal to {max}"),
                    ));
                }
            }
            Value::Array(items) => {
                if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                    && items.len() as u64 > max
                {
                    errors.push(FieldError {
                        kind: FieldErrorKind::TooMany,
                        field: path.to_string(),
                        value: None,
                        detail: format!("{} : must have at most {max} items", items.len()),
                    });
                }
                if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                    && (items.len() as u64) < min
                {
                    errors.push(invalid(
                        path,
                        value,
                        format!("{path} in body should have at least {min} items"),
                    ));
                }
                if let Some(item_schema) = s.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.validate(item_schema, item, &format!("{path}[{i}]"), errors);
                    }
                }
            }
            Value::Object(map) => {
                if let Some(req) = s.get("required").and_then(Value::as_array) {
                    for r in req.iter().filter_map(Value::as_str) {
                        if !map.contains_key(r) {
                            errors.push(required(&format!("{path}.{r}")));
                        }
                    }
                }
                let props = s.get("properties").and_then(Value::as_object);
                let additional = s.get("additionalProperties").filter(|a| a.is_object());
                for (k, v) in map {
                    let child_path = format!("{path}.{k}");
                    if let Some(sub) = props.and_then(|p| p.get(k)) {
                        self.validate(sub, v, &child_path, errors);
                    } else if let Some(sub) = additional {
                        self.validate(sub, v, &child_path, errors);
                    }
                }
                let before = errors.len();
                if before == 0
                    && let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array)
                {
                    for rule in rules {
                        let expr = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
                        match cel::eval(expr, value) {
                            Ok(true) => {}
                            Ok(false) => {
                                let msg = rule
                                    .get("message")
                                    .and_then(Value::as_str)
                                    .map(str::to_string)
                                    .unwrap_or_else(|| format!("failed rule: {expr}"));
                                errors.push(invalid(path, &Value::String("object".into()), msg));
                            }
                            Err(e) => {
                                tracing::debug!(rule = expr, error = %e, "CEL rule not evaluated");
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn validate_string(
        &self,
        s: &Map<String, Value>,
        text: &str,
        value: &Value,
        path: &str,
        errors: &mut Vec<FieldError>,
    ) {
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && text.chars().count() as u64 > max
        {
            errors.push(FieldError {
                kind: FieldErrorKind::TooLong,
                field: path.to_string(),
                value: None,
                detail: format!("may not be more than {max} bytes"),
            });
        }
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && (text.chars().count() as u64) < min
        {
            errors.push(invalid(
                path,
                value,
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str)
            && self.matches_pattern(p, text) == Some(false)
        {
            errors.push(invalid(
                path,
                value,
                format!("{path} in body should match '{p}'"),
            ));
        }
        if s.get("format").and_then(Value::as_str) == Some("date-time")
            && chrono::DateTime::parse_from_rfc3339(text).is_err()
        {
            errors.push(invalid(
                path,
                value,
                format!("{path} in body must be of type date-time: {value}"),
            ));
        }
    }
}

fn required(path: &str) -> FieldError {
    FieldError {
        kind: FieldErrorKind::Required,
        field: path.to_string(),
        value: None,
        detail: String::new(),
    }
}

fn invalid(path: &str, value: &Value, detail: String) -> FieldError {
    FieldError {
        kind: FieldErrorKind::Invalid,
        field: path.to_string(),
        value: Some(value.clone()),
        detail,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(path: &str, value: &Value, want: &str) -> FieldError {
    let got = json_type(value);
    invalid(
        path,
        &Value::String(got.to_string()),
        format!("{path} in body must be of type {want}: \"{got}\""),
    )
}

/// Removes fields the schema does not know (unless it preserves unknown
/// fields) and fills `default`s, recursively.
fn prune_and_default(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let child_path = format!("{path}.{k}");
                let sub = props.and_then(|p| p.get(&k));
                match (sub, additional) {
                    (Some(sub), _) => {
                        if let Some(c) = map.get_mut(&k) {
                            prune_and_default(sub, c, &child_path, pruned);
                        }
                    }
                    (None, Some(add)) if add.is_object() => {
                        if let Some(c) = map.get_mut(&k) {
                            prune_and_default(add, c, &child_path, pruned);
                        }
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) if preserve => {}
                    (None, _) => {
                        map.remove(&k);
                        pruned.push(child_path);
                    }
                }
            }
            if let Some(props) = props {
                for (k, sub) in props {
                    if !map.contains_key(k)
                        && let Some(d) = sub.get("default")
                    {
                        let mut d = d.clone();
                        prune_and_default(sub, &mut d, &format!("{path}.{k}"), pruned);
                        map.insert(k.clone(), d);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_and_default(item_schema, item, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}
