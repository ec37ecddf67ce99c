//! A small read-only view of one HelmRelease, built from the raw JSON of one
//! list item.
//!
//! Every field is optional in the source; a field of the wrong JSON type makes
//! the whole object [`MalformedObject`] (reported as a `malformed` skip), while
//! an odd *timestamp* is kept raw so that deciding reports `bad-timestamp`.
//! Building a view never panics, whatever the input.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Helm's limit on release names; longer names are shortened like
/// helm-controller does.
const RELEASE_NAME_MAX: usize = 53;
/// Length of the hash suffix of a shortened release name.
const RELEASE_NAME_HASH: usize = 12;
/// How much of an offending value a [`MalformedObject`] message quotes.
const QUOTE_MAX: usize = 64;

/// One entry of `status.conditions`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionView {
    pub type_: String,
    /// `True`, `False` or `Unknown` (anything else makes the object
    /// malformed).
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// Raw `lastTransitionTime`; `None` when absent or not a string.
    pub last_transition_time: Option<String>,
    pub observed_generation: Option<i64>,
}

/// One entry of `status.history` (a Helm release snapshot), parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotView {
    pub version: Option<i64>,
    pub status: Option<String>,
    pub action: Option<String>,
    pub chart_name: Option<String>,
    pub chart_version: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

/// The fields of one HelmRelease that deciding and acting need.
#[derive(Debug, Clone, PartialEq)]
pub struct HelmReleaseView {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub resource_version: String,
    pub generation: Option<i64>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    pub annotations: BTreeMap<String, String>,
    /// `spec.suspend`; absent means false.
    pub suspend: bool,
    pub spec_release_name: Option<String>,
    pub target_namespace: Option<String>,
    pub spec_storage_namespace: Option<String>,
    pub status_storage_namespace: Option<String>,
    pub conditions: Vec<ConditionView>,
    /// `status.conditions` exactly as read, for branch B's full-list status
    /// patch (a merge patch replaces arrays whole).
    pub conditions_raw: Vec<Value>,
    /// `status.history`, newest first.
    pub history: Vec<SnapshotView>,
    pub last_attempted_generation: Option<i64>,
    pub observed_generation: Option<i64>,
}

/// An object that could not be read into a [`HelmReleaseView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedObject {
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The field and what is wrong with it, e.g.
    /// `status.conditions is a string, expected a list`.
    pub problem: String,
}

impl fmt::Display for MalformedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.namespace.as_deref().unwrap_or("<no namespace>");
        let name = self.name.as_deref().unwrap_or("<no name>");
        // Status fields are edited through the status subresource.
        let subresource = if self.problem.starts_with("status") {
            " --subresource=status"
        } else {
            ""
        };
        write!(
            f,
            "HelmRelease {ns}/{name} is malformed: {}; correct or remove that field \
             (kubectl edit helmrelease -n {ns} {name}{subresource}); it is skipped until then",
            self.problem
        )
    }
}

impl std::error::Error for MalformedObject {}

/// One listed item, as the lister hands it over.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "a view is the common case; malformed is rare"
)]
pub enum Candidate {
    /// An object read into a view.
    View(HelmReleaseView),
    /// An object that could not be read: planned as a `malformed` skip.
    Malformed(MalformedObject),
}

impl HelmReleaseView {
    /// Builds a view from the JSON of one list item.
    ///
    /// # Errors
    /// [`MalformedObject`] when the item is not an object, `metadata.name`,
    /// `metadata.namespace` or `metadata.resourceVersion` is missing, or any
    /// field read here has the wrong JSON type. Odd timestamps are not errors.
    pub fn from_json(item: &Value) -> Result<HelmReleaseView, MalformedObject> {
        let mut ctx = Ctx {
            namespace: None,
            name: None,
        };
        let root = item
            .as_object()
            .ok_or_else(|| ctx.err(format!("the item is {}, expected an object", kind(item))))?;
        let meta = ctx.object(root, "metadata", "metadata")?;
        let Some(meta) = meta else {
            return Err(ctx.err("metadata is missing".to_string()));
        };
        // Read the identity first so every later error names the object.
        ctx.namespace = ctx.string(meta, "namespace", "metadata.namespace")?;
        ctx.name = ctx.string(meta, "name", "metadata.name")?;
        let name = match &ctx.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => return Err(ctx.err("metadata.name is missing or empty".to_string())),
        };
        let namespace = match &ctx.namespace {
            Some(n) if !n.is_empty() => n.clone(),
            _ => return Err(ctx.err("metadata.namespace is missing or empty".to_string())),
        };
        let resource_version =
            match ctx.string(meta, "resourceVersion", "metadata.resourceVersion")? {
                Some(rv) if !rv.is_empty() => rv,
                _ => {
                    return Err(ctx.err("metadata.resourceVersion is missing or empty".to_string()));
                }
            };
        let uid = ctx.string(meta, "uid", "metadata.uid")?;
        let generation = ctx.int(meta, "generation", "metadata.generation")?;
        let deleting = meta.get("deletionTimestamp").is_some_and(|v| !v.is_null());
        let mut annotations = BTreeMap::new();
        if let Some(map) = ctx.object(meta, "annotations", "metadata.annotations")? {
            for (key, value) in map {
                match value {
                    Value::String(s) => {
                        annotations.insert(key.clone(), s.clone());
                    }
                    Value::Null => {}
                    other => {
                        return Err(ctx.err(format!(
                            "metadata.annotations[{}] is {}, expected a string",
                            quote(key),
                            kind(other)
                        )));
                    }
                }
            }
        }

        let spec = ctx.object(root, "spec", "spec")?;
        let empty = Map::new();
        let spec = spec.unwrap_or(&empty);
        let suspend = ctx.bool(spec, "suspend", "spec.suspend")?.unwrap_or(false);
        let spec_release_name = non_empty(ctx.string(spec, "releaseName", "spec.releaseName")?);
        let target_namespace =
            non_empty(ctx.string(spec, "targetNamespace", "spec.targetNamespace")?);
        let spec_storage_namespace =
            non_empty(ctx.string(spec, "storageNamespace", "spec.storageNamespace")?);

        let status = ctx.object(root, "status", "status")?.unwrap_or(&empty);
        let status_storage_namespace =
            non_empty(ctx.string(status, "storageNamespace", "status.storageNamespace")?);
        let last_attempted_generation = ctx.int(
            status,
            "lastAttemptedGeneration",
            "status.lastAttemptedGeneration",
        )?;
        let observed_generation =
            ctx.int(status, "observedGeneration", "status.observedGeneration")?;

        let conditions_raw = ctx
            .array(status, "conditions", "status.conditions")?
            .cloned()
            .unwrap_or_default();
        let mut conditions = Vec::with_capacity(conditions_raw.len());
        for (i, raw) in conditions_raw.iter().enumerate() {
            let path = format!("status.conditions[{i}]");
            let Some(c) = raw.as_object() else {
                return Err(ctx.err(format!("{path} is {}, expected an object", kind(raw))));
            };
            let type_ = match ctx.string(c, "type", &format!("{path}.type"))? {
                Some(t) if !t.is_empty() => t,
                _ => return Err(ctx.err(format!("{path}.type is missing or empty"))),
            };
            // The CRD allows exactly these three; anything else is a corrupt
            // object, never something to act on.
            let status = match ctx.string(c, "status", &format!("{path}.status"))? {
                Some(s) if matches!(s.as_str(), "True" | "False" | "Unknown") => s,
                other => {
                    return Err(ctx.err(format!(
                        "{path}.status is {}, expected True, False or Unknown",
                        other
                            .as_deref()
                            .map_or_else(|| "missing".to_string(), quote)
                    )));
                }
            };
            conditions.push(ConditionView {
                type_,
                status,
                reason: ctx.string(c, "reason", &format!("{path}.reason"))?,
                message: ctx.string(c, "message", &format!("{path}.message"))?,
                // A timestamp of the wrong type is an odd timestamp, not a
                // malformed object: deciding reports `bad-timestamp`.
                last_transition_time: c
                    .get("lastTransitionTime")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                observed_generation: ctx.int(
                    c,
                    "observedGeneration",
                    &format!("{path}.observedGeneration"),
                )?,
            });
        }

        let mut history = Vec::new();
        if let Some(entries) = ctx.array(status, "history", "status.history")? {
            for (i, raw) in entries.iter().enumerate() {
                let path = format!("status.history[{i}]");
                let Some(s) = raw.as_object() else {
                    return Err(ctx.err(format!("{path} is {}, expected an object", kind(raw))));
                };
                history.push(SnapshotView {
                    version: ctx.int(s, "version", &format!("{path}.version"))?,
                    status: ctx.string(s, "status", &format!("{path}.status"))?,
                    action: ctx.string(s, "action", &format!("{path}.action"))?,
                    chart_name: ctx.string(s, "chartName", &format!("{path}.chartName"))?,
                    chart_version: ctx.string(
                        s,
                        "chartVersion",
                        &format!("{path}.chartVersion"),
                    )?,
                    name: ctx.string(s, "name", &format!("{path}.name"))?,
                    namespace: ctx.string(s, "namespace", &format!("{path}.namespace"))?,
                });
            }
        }

        Ok(HelmReleaseView {
            namespace,
            name,
            uid,
            resource_version,
            generation,
            deleting,
            annotations,
            suspend,
            spec_release_name,
            target_namespace,
            spec_storage_namespace,
            status_storage_namespace,
            conditions,
            conditions_raw,
            history,
            last_attempted_generation,
            observed_generation,
        })
    }

    /// The Helm release name (SPEC §3): `spec.releaseName`, else
    /// `<spec.targetNamespace>-<metadata.name>` when a target namespace is set
    /// (even when it equals the HelmRelease's own namespace), else
    /// `metadata.name`; a result longer than 53 bytes becomes its first 40
    /// bytes, `-`, and the first 12 hex digits of the SHA-256 of the whole
    /// name, as helm-controller's `ShortenName` does.
    pub fn release_name(&self) -> String {
        let full = match (&self.spec_release_name, &self.target_namespace) {
            (Some(release), _) => release.clone(),
            (None, Some(target)) => format!("{target}-{}", self.name),
            (None, None) => self.name.clone(),
        };
        shorten_release_name(&full)
    }

    /// Where Helm keeps the release Secrets: `status.storageNamespace`, else
    /// `spec.storageNamespace`, else `metadata.namespace`.
    pub fn storage_namespace(&self) -> &str {
        self.status_storage_namespace
            .as_deref()
            .or(self.spec_storage_namespace.as_deref())
            .unwrap_or(&self.namespace)
    }

    /// The first condition of the given type.
    pub fn condition(&self, type_: &str) -> Option<&ConditionView> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The value of one annotation.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}

/// helm-controller's release name shortening (see
/// [`HelmReleaseView::release_name`]). Lengths are in bytes, as in Go; the
/// 40-byte prefix is cut at a character boundary so that non-ASCII input
/// cannot panic (Kubernetes names are ASCII, so this never differs there).
pub fn shorten_release_name(name: &str) -> String {
    if name.len() <= RELEASE_NAME_MAX {
        return name.to_string();
    }
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    format!(
        "{}-{}",
        prefix(name, RELEASE_NAME_MAX - RELEASE_NAME_HASH - 1),
        prefix(&digest, RELEASE_NAME_HASH)
    )
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.get(..cut).unwrap_or_default()
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// The JSON type of a value, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value quoted for a message, cut short so a huge string cannot flood logs.
fn quote(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return format!("{s:?}");
    }
    format!("{:?}… ({} bytes)", prefix(s, QUOTE_MAX), s.len())
}

/// Typed field access that turns a wrong type into a [`MalformedObject`]
/// naming the object read so far.
struct Ctx {
    namespace: Option<String>,
    name: Option<String>,
}

impl Ctx {
    fn err(&self, problem: String) -> MalformedObject {
        MalformedObject {
            namespace: self.namespace.as_deref().map(quote_plain),
            name: self.name.as_deref().map(quote_plain),
            problem,
        }
    }

    fn wrong(&self, path: &str, v: &Value, expected: &str) -> MalformedObject {
        self.err(format!("{path} is {}, expected {expected}", kind(v)))
    }

    fn object<'a>(
        &self,
        m: &'a Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'a Map<String, Value>>, MalformedObject> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(v) => Err(self.wrong(path, v, "an object")),
        }
    }

    fn array<'a>(
        &self,
        m: &'a Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'a Vec<Value>>, MalformedObject> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong(path, v, "a list")),
        }
    }

    fn string(
        &self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<String>, MalformedObject> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.wrong(path, v, "a string")),
        }
    }

    fn int(
        &self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<i64>, MalformedObject> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.wrong(path, v, "a whole number")),
            Some(v) => Err(self.wrong(path, v, "a whole number")),
        }
    }

    fn bool(
        &self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<bool>, MalformedObject> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(path, v, "true or false")),
        }
    }
}

/// A name cut short for messages (a huge name must not flood logs).
fn quote_plain(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return s.to_string();
    }
    format!("{}…", prefix(s, QUOTE_MAX))
}

#[cfg(test)]
mod tests;
