//! A small read-only view of one HelmRelease, built from the raw JSON of one
//! list item.
//!
//! Every field is optional in the source; a field of the wrong JSON type makes
//! the whole object [`MalformedObject`] (reported as a `malformed` skip), while
//! an odd *timestamp* is kept raw so that deciding reports `bad-timestamp`.
//! Building a view never panics, whatever the input.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use decode::{Field, Item};
use decode::{Spec, Status};

pub mod decode;

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
    /// Builds a view from the JSON of one object (a re-read, `explain`).
    ///
    /// # Errors
    /// As [`HelmReleaseView::from_item`].
    pub fn from_json(item: &Value) -> Result<HelmReleaseView, MalformedObject> {
        match Field::<Item>::deserialize(item) {
            Ok(item) => HelmReleaseView::from_item(item),
            // Unreachable for a `Value` (every JSON type is accepted), but
            // an error is a malformed object, never a panic.
            Err(error) => Err(Ctx::default().err(error.to_string())),
        }
    }

    /// Reads the text of one list item straight into its view, without
    /// building what the view does not read.
    ///
    /// # Errors
    /// As [`HelmReleaseView::from_item`]; text serde cannot read at all (a
    /// field given twice) names the spot (`serde_path_to_error`).
    pub fn from_text(text: &str) -> (Result<HelmReleaseView, MalformedObject>, Item) {
        match serde_json::from_str::<Field<Item>>(text) {
            Ok(Field::Found(item)) => {
                let view = HelmReleaseView::from_found(&item);
                (view, item)
            }
            Ok(other) => (HelmReleaseView::from_item(other), Item::default()),
            Err(_) => {
                let mut json = serde_json::Deserializer::from_str(text);
                let problem = match serde_path_to_error::deserialize::<_, Field<Item>>(&mut json) {
                    Err(error) if error.path().to_string() != "." => {
                        format!("{} cannot be read: {}", error.path(), error.inner())
                    }
                    Err(error) => format!("the item cannot be read: {}", error.inner()),
                    Ok(_) => "the item cannot be read".to_owned(),
                };
                (Err(Ctx::default().err(problem)), Item::default())
            }
        }
    }

    /// Builds a view from one object as decoded ([`decode`]).
    ///
    /// # Errors
    /// [`MalformedObject`] when the item is not an object, `metadata.name`,
    /// `metadata.namespace` or `metadata.resourceVersion` is missing, or any
    /// field read here has the wrong JSON type. Odd timestamps are not errors.
    pub fn from_item(item: Field<Item>) -> Result<HelmReleaseView, MalformedObject> {
        match item {
            Field::Found(item) => HelmReleaseView::from_found(&item),
            Field::Wrong(kind) => {
                Err(Ctx::default().err(format!("the item is {kind}, expected an object")))
            }
            Field::Absent => {
                Err(Ctx::default().err("the item is null, expected an object".to_owned()))
            }
        }
    }

    fn from_found(item: &Item) -> Result<HelmReleaseView, MalformedObject> {
        let mut ctx = Ctx::default();
        let meta = match &item.metadata {
            Field::Found(meta) => meta,
            Field::Absent => return Err(ctx.err("metadata is missing".to_string())),
            Field::Wrong(kind) => return Err(ctx.wrong("metadata", kind, "an object")),
        };
        // Read the identity first so every later error names the object.
        ctx.namespace = ctx.string(&meta.namespace, "metadata.namespace")?;
        ctx.name = ctx.string(&meta.name, "metadata.name")?;
        let name = match &ctx.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => return Err(ctx.err("metadata.name is missing or empty".to_string())),
        };
        let namespace = match &ctx.namespace {
            Some(n) if !n.is_empty() => n.clone(),
            _ => return Err(ctx.err("metadata.namespace is missing or empty".to_string())),
        };
        let resource_version =
            match ctx.string(&meta.resource_version, "metadata.resourceVersion")? {
                Some(rv) if !rv.is_empty() => rv,
                _ => {
                    return Err(ctx.err("metadata.resourceVersion is missing or empty".to_string()));
                }
            };
        let uid = ctx.string(&meta.uid, "metadata.uid")?;
        let generation = ctx.int(&meta.generation, "metadata.generation")?;
        let deleting = matches!(meta.deletion_timestamp, Field::Found(_) | Field::Wrong(_));
        let mut annotations = BTreeMap::new();
        match &meta.annotations {
            Field::Absent => {}
            Field::Wrong(kind) => {
                return Err(ctx.wrong("metadata.annotations", kind, "an object"));
            }
            Field::Found(map) => {
                for (key, value) in map {
                    match value {
                        Field::Found(s) => {
                            annotations.insert(key.clone(), s.clone());
                        }
                        Field::Absent => {}
                        Field::Wrong(kind) => {
                            return Err(ctx.err(format!(
                                "metadata.annotations[{}] is {kind}, expected a string",
                                quote(key)
                            )));
                        }
                    }
                }
            }
        }

        let no_spec = Spec::default();
        let spec = match &item.spec {
            Field::Found(spec) => spec,
            Field::Absent => &no_spec,
            Field::Wrong(kind) => return Err(ctx.wrong("spec", kind, "an object")),
        };
        let suspend = match spec.suspend {
            Field::Found(b) => b,
            Field::Absent => false,
            Field::Wrong(kind) => return Err(ctx.wrong("spec.suspend", kind, "true or false")),
        };
        let spec_release_name = non_empty(ctx.string(&spec.release_name, "spec.releaseName")?);
        let target_namespace =
            non_empty(ctx.string(&spec.target_namespace, "spec.targetNamespace")?);
        let spec_storage_namespace =
            non_empty(ctx.string(&spec.storage_namespace, "spec.storageNamespace")?);

        let no_status = Status::default();
        let status = match &item.status {
            Field::Found(status) => status,
            Field::Absent => &no_status,
            Field::Wrong(kind) => return Err(ctx.wrong("status", kind, "an object")),
        };
        let status_storage_namespace =
            non_empty(ctx.string(&status.storage_namespace, "status.storageNamespace")?);
        let last_attempted_generation = ctx.int(
            &status.last_attempted_generation,
            "status.lastAttemptedGeneration",
        )?;
        let observed_generation =
            ctx.int(&status.observed_generation, "status.observedGeneration")?;

        let conditions_raw = match &status.conditions {
            Field::Found(list) => list.clone(),
            Field::Absent => Vec::new(),
            Field::Wrong(kind) => return Err(ctx.wrong("status.conditions", kind, "a list")),
        };
        let mut conditions = Vec::with_capacity(conditions_raw.len());
        for (i, raw) in conditions_raw.iter().enumerate() {
            conditions.push(ctx.condition(i, raw)?);
        }

        let mut history = Vec::new();
        match &status.history {
            Field::Absent => {}
            Field::Wrong(kind) => return Err(ctx.wrong("status.history", kind, "a list")),
            Field::Found(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    let path = format!("status.history[{i}]");
                    let s = match entry {
                        Field::Found(s) => s,
                        Field::Absent => return Err(ctx.wrong(&path, "null", "an object")),
                        Field::Wrong(kind) => return Err(ctx.wrong(&path, kind, "an object")),
                    };
                    history.push(SnapshotView {
                        version: ctx.int(&s.version, &format!("{path}.version"))?,
                        status: ctx.string(&s.status, &format!("{path}.status"))?,
                        action: ctx.string(&s.action, &format!("{path}.action"))?,
                        chart_name: ctx.string(&s.chart_name, &format!("{path}.chartName"))?,
                        chart_version: ctx
                            .string(&s.chart_version, &format!("{path}.chartVersion"))?,
                        name: ctx.string(&s.name, &format!("{path}.name"))?,
                        namespace: ctx.string(&s.namespace, &format!("{path}.namespace"))?,
                    });
                }
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

/// Turns a wrong type into a [`MalformedObject`] naming the object read so
/// far.
#[derive(Default)]
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

    fn wrong(&self, path: &str, kind: &str, expected: &str) -> MalformedObject {
        self.err(format!("{path} is {kind}, expected {expected}"))
    }

    fn string(&self, field: &Field<String>, path: &str) -> Result<Option<String>, MalformedObject> {
        match field {
            Field::Absent => Ok(None),
            Field::Found(s) => Ok(Some(s.clone())),
            Field::Wrong(kind) => Err(self.wrong(path, kind, "a string")),
        }
    }

    fn int(&self, field: &Field<i64>, path: &str) -> Result<Option<i64>, MalformedObject> {
        match field {
            Field::Absent => Ok(None),
            Field::Found(n) => Ok(Some(*n)),
            Field::Wrong(kind) => Err(self.wrong(path, kind, "a whole number")),
        }
    }

    /// One entry of `status.conditions`, kept raw for the status patch.
    fn condition(&self, i: usize, raw: &Value) -> Result<ConditionView, MalformedObject> {
        let path = format!("status.conditions[{i}]");
        let c = match Field::<Condition>::deserialize(raw) {
            Ok(Field::Found(c)) => c,
            _ => return Err(self.wrong(&path, kind(raw), "an object")),
        };
        let type_ = match self.string(&c.type_, &format!("{path}.type"))? {
            Some(t) if !t.is_empty() => t,
            _ => return Err(self.err(format!("{path}.type is missing or empty"))),
        };
        // The CRD allows exactly these three; anything else is a corrupt
        // object, never something to act on.
        let status = match self.string(&c.status, &format!("{path}.status"))? {
            Some(s) if matches!(s.as_str(), "True" | "False" | "Unknown") => s,
            other => {
                return Err(self.err(format!(
                    "{path}.status is {}, expected True, False or Unknown",
                    other
                        .as_deref()
                        .map_or_else(|| "missing".to_string(), quote)
                )));
            }
        };
        Ok(ConditionView {
            type_,
            status,
            reason: self.string(&c.reason, &format!("{path}.reason"))?,
            message: self.string(&c.message, &format!("{path}.message"))?,
            // A timestamp of the wrong type is an odd timestamp, not a
            // malformed object: deciding reports `bad-timestamp`.
            last_transition_time: c.last_transition_time.found(),
            observed_generation: self.int(
                &c.observed_generation,
                &format!("{path}.observedGeneration"),
            )?,
        })
    }
}

/// One entry of `status.conditions`, as far as the view reads it.
#[derive(Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Condition {
    #[serde(rename = "type")]
    type_: Field<String>,
    status: Field<String>,
    reason: Field<String>,
    message: Field<String>,
    last_transition_time: Field<String>,
    observed_generation: Field<i64>,
}

impl decode::Read for Condition {
    fn from_map<'de, A: serde::de::MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        Condition::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
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
