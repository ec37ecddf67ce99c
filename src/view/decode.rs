//! Reading one HelmRelease straight into its view with serde.
//!
//! The shape below names only what deciding, acting and `blocks` read;
//! serde skips everything else (`spec.values`, `status.history[].digest`,
//! managed fields…) without building it. Every field is a [`Field`]: absent
//! (or null), found with the expected JSON type, or found with another type —
//! a wrong type never fails the decoding, it is kept so that the view can
//! name the field and what is wrong with it (`status.conditions is a string,
//! expected a list`). Only text that is not JSON at all fails to decode; the
//! caller then names the spot with `serde_path_to_error`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One field as found in the object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<T> {
    /// Absent, or `null`.
    #[default]
    Absent,
    /// Of the expected JSON type.
    Found(T),
    /// Of another JSON type: which one (`a string`, `a list`…).
    Wrong(&'static str),
}

/// What a [`Field`] holds: the one JSON type it accepts. Every other type is
/// skipped (without building it) and recorded as [`Field::Wrong`].
pub trait Read: Sized {
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    /// Reads an object; `Ok(None)` when this type is not an object (the
    /// object is then skipped).
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    /// Reads a list; `Ok(None)` when this type is not a list.
    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl Read for String {
    fn from_str(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
}

impl Read for i64 {
    fn from_i64(n: i64) -> Option<Self> {
        Some(n)
    }
}

impl Read for bool {
    fn from_bool(b: bool) -> Option<Self> {
        Some(b)
    }
}

/// Any JSON value but `null`, not kept (`metadata.deletionTimestamp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Present;

impl Read for Present {
    fn from_str(_: &str) -> Option<Self> {
        Some(Present)
    }
    fn from_i64(_: i64) -> Option<Self> {
        Some(Present)
    }
    fn from_bool(_: bool) -> Option<Self> {
        Some(Present)
    }
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Some(Present))
    }
    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some(Present))
    }
}

impl<T: for<'de> Deserialize<'de>> Read for Vec<T> {
    fn from_seq<'de, A: SeqAccess<'de>>(seq: A) -> Result<Option<Self>, A::Error> {
        Vec::deserialize(SeqAccessDeserializer::new(seq)).map(Some)
    }
}

impl<T: for<'de> Deserialize<'de>> Read for BTreeMap<String, T> {
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        BTreeMap::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
}

/// Objects of the shape below are read with their derived `Deserialize`.
macro_rules! read_as_object {
    ($($t:ty),*) => {$(
        impl Read for $t {
            fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
                <$t>::deserialize(MapAccessDeserializer::new(map)).map(Some)
            }
        }
    )*};
}

read_as_object!(Item, Meta, Spec, Status, Snapshot, Dependency);

impl<'de, T: Read> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor(PhantomData))
    }
}

struct FieldVisitor<T>(PhantomData<T>);

fn found<T>(value: Option<T>, kind: &'static str) -> Field<T> {
    value.map_or(Field::Wrong(kind), Field::Found)
}

impl<'de, T: Read> Visitor<'de> for FieldVisitor<T> {
    type Value = Field<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Field<T>, E> {
        Ok(Field::Absent)
    }

    fn visit_none<E>(self) -> Result<Field<T>, E> {
        Ok(Field::Absent)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Field<T>, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_str<E>(self, s: &str) -> Result<Field<T>, E> {
        Ok(found(T::from_str(s), "a string"))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Field<T>, E> {
        Ok(found(T::from_i64(n), "a number"))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Field<T>, E> {
        Ok(found(
            i64::try_from(n).ok().and_then(T::from_i64),
            "a number",
        ))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Field<T>, E> {
        Ok(Field::Wrong("a number"))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Field<T>, E> {
        Ok(found(T::from_bool(b), "a boolean"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<T>, A::Error> {
        Ok(found(T::from_map(map)?, "an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<T>, A::Error> {
        Ok(found(T::from_seq(seq)?, "a list"))
    }
}

/// One HelmRelease, as far as this tool reads it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Item {
    pub metadata: Field<Meta>,
    pub spec: Field<Spec>,
    pub status: Field<Status>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Meta {
    pub namespace: Field<String>,
    pub name: Field<String>,
    pub resource_version: Field<String>,
    pub uid: Field<String>,
    pub generation: Field<i64>,
    pub deletion_timestamp: Field<Present>,
    pub annotations: Field<BTreeMap<String, Field<String>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Spec {
    pub suspend: Field<bool>,
    pub release_name: Field<String>,
    pub target_namespace: Field<String>,
    pub storage_namespace: Field<String>,
    pub depends_on: Field<Vec<Field<Dependency>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Dependency {
    pub namespace: Field<String>,
    pub name: Field<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Status {
    pub storage_namespace: Field<String>,
    pub last_attempted_generation: Field<i64>,
    pub observed_generation: Field<i64>,
    /// Kept whole: branch B sends the full list back (a merge patch
    /// replaces arrays whole). A few small entries per object.
    pub conditions: Field<Vec<Value>>,
    pub history: Field<Vec<Field<Snapshot>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Snapshot {
    pub version: Field<i64>,
    pub status: Field<String>,
    pub action: Field<String>,
    pub chart_name: Field<String>,
    pub chart_version: Field<String>,
    pub name: Field<String>,
    pub namespace: Field<String>,
}

impl<T> Field<T> {
    pub fn as_ref(&self) -> Field<&T> {
        match self {
            Field::Absent => Field::Absent,
            Field::Found(t) => Field::Found(t),
            Field::Wrong(kind) => Field::Wrong(kind),
        }
    }

    /// The value, when found with the expected type.
    pub fn found(self) -> Option<T> {
        match self {
            Field::Found(t) => Some(t),
            _ => None,
        }
    }
}

/// Who an item is and what it depends on (`spec.dependsOn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependencies<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// `(namespace, name)` of each entry, its namespace defaulting to the
    /// item's own; entries without a name (or of the wrong shape) left out.
    pub on: Vec<(String, String)>,
}

/// The dependencies of `item`; `None` for an item without a namespace and
/// name.
pub fn dependencies(item: &Item) -> Option<Dependencies<'_>> {
    let Field::Found(meta) = &item.metadata else {
        return None;
    };
    let (Field::Found(namespace), Field::Found(name)) = (&meta.namespace, &meta.name) else {
        return None;
    };
    let entries = match &item.spec {
        Field::Found(Spec {
            depends_on: Field::Found(entries),
            ..
        }) => entries.as_slice(),
        _ => &[],
    };
    let on = entries
        .iter()
        .filter_map(|entry| {
            let Field::Found(entry) = entry else {
                return None;
            };
            let dependency = entry.name.as_ref().found().filter(|n| !n.is_empty())?;
            let dependency_ns = entry
                .namespace
                .as_ref()
                .found()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(namespace);
            Some((dependency_ns.clone(), dependency.clone()))
        })
        .collect();
    Some(Dependencies {
        namespace,
        name,
        on,
    })
}
