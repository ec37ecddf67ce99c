//! The object store: one ordered map per resource, keyed by
//! `(namespace, name)` so pages come out in the real server's order and a page
//! costs O(page), not O(total).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::Value;

use crate::resources::ResourceDef;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

#[derive(Debug, Clone)]
pub struct Entry {
    pub obj: Arc<Value>,
    /// Creation order across the whole store (for `events()`).
    pub created_seq: u64,
}

#[derive(Debug, Default)]
pub struct Store {
    rv: u64,
    seq: u64,
    uid: u64,
    tables: HashMap<(&'static str, &'static str), BTreeMap<Key, Entry>>,
    /// Namespaces implied by stored objects: object count and first-seen time.
    ns_refs: BTreeMap<String, (usize, String)>,
}

/// One page of a list.
pub struct Page {
    pub items: Vec<Arc<Value>>,
    /// Set when more objects follow the last one returned.
    pub next_after: Option<Key>,
}

impl Store {
    /// Bumps and returns the cluster-wide resourceVersion counter.
    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// A fresh, unique UUID-shaped uid.
    pub fn new_uid(&mut self) -> String {
        self.uid += 1;
        let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ self.uid.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 31;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (h >> 32) as u32,
            (h >> 16) as u16,
            (h & 0xfff) as u16,
            (self.uid >> 48) as u16 & 0xfff,
            self.uid & 0xffff_ffff_ffff
        )
    }

    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Option<&Entry> {
        self.tables
            .get(&def.key())
            .and_then(|t| t.get(&(ns.to_string(), name.to_string())))
    }

    /// Stores `obj` (already complete) under its key, keeping its creation order
    /// when it replaces an existing object.
    pub fn put(&mut self, def: &ResourceDef, ns: &str, name: &str, obj: Value) -> Arc<Value> {
        let key = (ns.to_string(), name.to_string());
        let table = self.tables.entry(def.key()).or_default();
        let obj = Arc::new(obj);
        match table.get_mut(&key) {
            Some(e) => e.obj = obj.clone(),
            None => {
                self.seq += 1;
                table.insert(
                    key,
                    Entry {
                        obj: obj.clone(),
                        created_seq: self.seq,
                    },
                );
                if !ns.is_empty() {
                    self.ns_refs
                        .entry(ns.to_string())
                        .or_insert_with(|| (0, crate::ops::now()))
                        .0 += 1;
                }
            }
        }
        obj
    }

    pub fn remove(&mut self, def: &ResourceDef, ns: &str, name: &str) -> Option<Entry> {
        let e = self
            .tables
            .get_mut(&def.key())
            .and_then(|t| t.remove(&(ns.to_string(), name.to_string())));
        if e.is_some()
            && !ns.is_empty()
            && let Some((n, _)) = self.ns_refs.get_mut(ns)
        {
            *n -= 1;
            if *n == 0 {
                self.ns_refs.remove(ns);
            }
        }
        e
    }

    /// Every entry of a resource (optionally one namespace), in key order.
    pub fn entries<'a>(
        &'a self,
        def: &ResourceDef,
        ns: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = (&'a Key, &'a Entry)> + 'a> {
        let Some(table) = self.tables.get(&def.key()) else {
            return Box::new(std::iter::empty());
        };
        match ns {
            None => Box::new(table.iter()),
            Some(ns) => Box::new(
                table
                    .range((
                        Bound::Included((ns.to_string(), String::new())),
                        Bound::Unbounded,
                    ))
                    .take_while(move |(k, _)| k.0 == ns),
            ),
        }
    }

    /// Up to `limit` objects after `after` that pass `keep`, in key order.
    pub fn page(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        after: Option<&Key>,
        limit: Option<usize>,
        keep: &dyn Fn(&Value) -> bool,
    ) -> Page {
        let mut items = Vec::new();
        let Some(table) = self.tables.get(&def.key()) else {
            return Page {
                items,
                next_after: None,
            };
        };
        let lower = match (after, ns) {
            (Some(a), _) => Bound::Excluded(a.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut iter = table
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| ns.is_none_or(|ns| k.0 == ns))
            .peekable();
        while let Some((k, e)) = iter.next() {
            if keep(&e.obj) {
                items.push(e.obj.clone());
                if limit.is_some_and(|l| items.len() >= l) {
                    let more = iter.peek().is_some();
                    return Page {
                        items,
                        next_after: more.then(|| k.clone()),
                    };
                }
            }
        }
        Page {
            items,
            next_after: None,
        }
    }

    /// Namespaces implied by the stored namespaced objects.
    /// `(name, creationTimestamp)` of each implied namespace.
    pub fn implied_namespaces(&self) -> impl Iterator<Item = (&String, &String)> {
        self.ns_refs.iter().map(|(k, (_, t))| (k, t))
    }

    pub fn len(&self, def: &ResourceDef) -> usize {
        self.tables.get(&def.key()).map_or(0, BTreeMap::len)
    }
}
