//! The API operations on the store — create, update, patch, delete, get,
//! list — with the real server's semantics (spec/status split, generation,
//! resourceVersion preconditions, dry run, schema admission).

use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::patch::{self, PatchKind};
use crate::resources::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::State;
use crate::status::{ApiError, FieldError, FieldErrorKind};
use crate::store::{Key, Store};

/// The answer to a successful write.
#[derive(Debug)]
pub struct Written {
    pub obj: Value,
    pub code: u16,
    /// `Warning` header texts (pruned unknown fields).
    pub warnings: Vec<String>,
}

/// List parameters from the query string.
#[derive(Debug, Default)]
pub struct ListParams {
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// One page of a list, ready to serialise.
pub struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub resource_version: String,
    pub continue_token: Option<String>,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let m = map.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut()
}

/// Whether anything but metadata and status differs (what bumps generation).
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(old) != strip(new)
}

fn encode_continue(rv: u64, key: &Key) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{}\u{0}{}", key.0, key.1)});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, Key), ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad("illegal base64 data"))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad("not JSON"))?;
    let rv = v
        .get("rv")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("no rv"))?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no start"))?;
    let (ns, name) = start.split_once('\u{0}').ok_or_else(|| bad("bad start"))?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

impl State {
    fn admit(
        &self,
        def: &ResourceDef,
        name: &str,
        obj: &mut Value,
    ) -> Result<Vec<String>, ApiError> {
        let mut errors: Vec<FieldError> = Vec::new();
        let mut warnings = Vec::new();
        if name.is_empty() {
            errors.push(FieldError {
                kind: FieldErrorKind::Required,
                field: "metadata.name".into(),
                value: None,
                detail: String::new(),
            });
        }
        if def.custom
            && let Some(schema) = &self.schema
        {
            match schema.admit(obj) {
                Ok(pruned) => {
                    warnings.extend(pruned.into_iter().map(|p| format!("unknown field \"{p}\"")))
                }
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(warnings)
        } else {
            Err(ApiError::invalid(def, name, &errors))
        }
    }

    /// POST: creates an object in `ns` (status dropped where it is a subresource).
    pub fn create(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Written, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        check_type(def, &mut obj)?;
        if let Some(ns) = ns {
            let body_ns = meta_str(&obj, "namespace");
            if body_ns.is_some_and(|b| !b.is_empty() && b != ns) {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        if def.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let mut store = self
            .store
            .lock()
            .map_err(|_| ApiError::internal("store lock poisoned"))?;
        let name = match meta_str(&obj, "name").filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => match meta_str(&obj, "generateName").filter(|n| !n.is_empty()) {
                Some(prefix) => {
                    let uid = store.new_uid();
                    format!("{prefix}{}", &uid.replace('-', "")[..5])
                }
                None => String::new(),
            },
        };
        if def.group == "events.k8s.io" {
            let errors = crate::events::validate_create(&obj);
            if !errors.is_empty() {
                return Err(ApiError::invalid(def, &name, &errors));
            }
        }
        let warnings = self.admit(def, &name, &mut obj)?;
        let ns_key = ns.unwrap_or_default();
        if store.get(def, ns_key, &name).is_some() {
            return Err(ApiError::already_exists(def, &name));
        }
        let uid = store.new_uid();
        let m = meta_mut(&mut obj).ok_or_else(|| ApiError::internal("metadata"))?;
        m.insert("name".into(), json!(name));
        if let Some(ns) = ns {
            m.insert("namespace".into(), json!(ns));
        }
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(now()));
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        if def.has_generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        if !dry_run {
            let rv = store.next_rv();
            if let Some(m) = meta_mut(&mut obj) {
                m.insert("resourceVersion".into(), json!(rv.to_string()));
            }
            write(&mut store, def, ns_key, &name, obj.clone());
        }
        Ok(Written {
            obj,
            code: 201,
            warnings,
        })
    }

    /// PUT on the object or its `/status`.
    pub fn update(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        status_only: bool,
        mut body: Value,
        dry_run: bool,
    ) -> Result<Written, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        check_type(def, &mut body)?;
        if meta_str(&body, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&body, "name").unwrap_or_default()
            )));
        }
        let mut store = self
            .store
            .lock()
            .map_err(|_| ApiError::internal("store lock poisoned"))?;
        let old = read(&store, def, ns.unwrap_or_default(), name)
            .ok_or_else(|| ApiError::not_found(def, name))?;
        match meta_str(&body, "resourceVersion").filter(|rv| !rv.is_empty()) {
            None if def.custom => {
                return Err(ApiError::invalid(
                    def,
                    name,
                    &[FieldError {
                        kind: FieldErrorKind::Invalid,
                        field: "metadata.resourceVersion".into(),
                        value: Some(json!("0x0")),
                        detail: "must be specified for an update".into(),
                    }],
                ));
            }
            Some(rv) if Some(rv) != meta_str(&old, "resourceVersion") => {
                return Err(ApiError::conflict(def, name));
            }
            _ => {}
        }
        self.commit(&mut store, def, ns, name, &old, body, status_only, dry_run)
    }

    /// PATCH on the object or its `/status`.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        status_only: bool,
        content_type: &str,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Written, ApiError> {
        let kind = PatchKind::from_content_type(content_type, def)?;
        let mut store = self
            .store
            .lock()
            .map_err(|_| ApiError::internal("store lock poisoned"))?;
        let old = read(&store, def, ns.unwrap_or_default(), name)
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let patched = patch::apply(kind, &old, body)?;
        if !patched.is_object() {
            return Err(ApiError::bad_request(
                "the patched object is not a JSON object",
            ));
        }
        if let Some(rv) = meta_str(&patched, "resourceVersion").filter(|rv| !rv.is_empty())
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(def, name));
        }
        self.commit(
            &mut store,
            def,
            ns,
            name,
            &old,
            patched,
            status_only,
            dry_run,
        )
    }

    /// Builds the new object from the old one and the request's version of it
    /// (spec/status split), admits it, and persists it unless a dry run or a no-op.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        store: &mut Store,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        old: &Value,
        requested: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Written, ApiError> {
        let mut new = if status_only {
            let mut n = old.clone();
            if let Some(m) = n.as_object_mut() {
                match requested.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            n
        } else {
            let mut n = requested;
            if def.status_subresource
                && let Some(m) = n.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            n
        };
        if let Some(m) = new.as_object_mut() {
            m.insert("apiVersion".into(), json!(def.api_version()));
            m.insert("kind".into(), json!(def.kind));
        }
        // Immutable and server-owned metadata comes from the stored object.
        let old_meta = meta(old).cloned().unwrap_or_default();
        if let Some(m) = meta_mut(&mut new) {
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "resourceVersion",
                "deletionTimestamp",
            ] {
                match old_meta.get(k) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
        }
        let mut warnings = self.admit(def, name, &mut new)?;
        if def.has_generation && !status_only && spec_changed(old, &new) {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            if let Some(m) = meta_mut(&mut new) {
                m.insert("generation".into(), json!(g));
            }
        }
        if new == *old {
            warnings.clear();
            return Ok(Written {
                obj: new,
                code: 200,
                warnings,
            });
        }
        if !dry_run {
            let rv = store.next_rv();
            if let Some(m) = meta_mut(&mut new) {
                m.insert("resourceVersion".into(), json!(rv.to_string()));
            }
            write(store, def, ns.unwrap_or_default(), name, new.clone());
        }
        Ok(Written {
            obj: new,
            code: 200,
            warnings,
        })
    }

    /// DELETE: removes the object and answers it.
    pub fn delete(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        dry_run: bool,
    ) -> Result<Written, ApiError> {
        let mut store = self
            .store
            .lock()
            .map_err(|_| ApiError::internal("store lock poisoned"))?;
        let ns_key = ns.unwrap_or_default();
        let old = read(&store, def, ns_key, name)
            .map(|o| (*o).clone())
            .ok_or_else(|| ApiError::not_found(def, name))?;
        if !dry_run {
            store.remove(def, ns_key, name);
            store.next_rv();
        }
        Ok(Written {
            obj: old,
            code: 200,
            warnings: Vec::new(),
        })
    }

    pub fn get_object(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let store = self
            .store
            .lock()
            .map_err(|_| ApiError::internal("store lock poisoned"))?;
        if def.plural == "namespaces" {
            return namespace_object(&store, name).ok_or_else(|| ApiError::not_found(def, name));
        }
        read(&store, def, ns.unwrap_or_default(), name)
            .ok_or_else(|| ApiError::not_found(def, name))
    }

    /// One page of a list, in `(namespace, name)` order.
    pub fn list_page(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        p: &ListParams,
    ) -> Result<ListPage, ApiError> {
        let store = self
            .store
            .lock()
            .map_err(|_| ApiError::internal("store lock poisoned"))?;
        let (snapshot_rv, after) = match p.continue_token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => {
                let (rv, key) = decode_continue(t)?;
                (Some(rv), Some(key))
            }
            None => (None, None),
        };
        let limit = match (p.limit.filter(|l| *l > 0), self.page_size_cap) {
            (Some(l), Some(cap)) => Some(l.min(cap)),
            (None, Some(cap)) => Some(cap),
            (l, None) => l,
        };
        let keep = |o: &Value| match crate::events::to_view(def, o) {
            Some(v) => p.label.matches(&v) && p.field.matches(&v),
            None => p.label.matches(o) && p.field.matches(o),
        };
        let rv = snapshot_rv.unwrap_or_else(|| store.current_rv());
        if def.plural == "namespaces" {
            let items: Vec<Arc<Value>> = all_namespaces(&store)
                .into_iter()
                .filter(|o| keep(o))
                .collect();
            return Ok(ListPage {
                items,
                resource_version: rv.to_string(),
                continue_token: None,
            });
        }
        let page = store.page(def, ns, after.as_ref(), limit, &keep);
        let items = if crate::events::is_core_event(def) {
            page.items.iter().map(|o| view(def, o)).collect()
        } else {
            page.items
        };
        Ok(ListPage {
            items,
            resource_version: rv.to_string(),
            continue_token: page.next_after.map(|k| encode_continue(rv, &k)),
        })
    }

    /// Library seeding: create or replace, bypassing RBAC; keeps status and
    /// any given uid/generation/creationTimestamp; validates custom resources.
    pub fn seed(&self, def: &ResourceDef, mut obj: Value) -> Result<Arc<Value>, ApiError> {
        check_type(def, &mut obj)?;
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let ns = if def.namespaced {
            Some(
                meta_str(&obj, "namespace")
                    .filter(|n| !n.is_empty())
                    .unwrap_or("default")
                    .to_string(),
            )
        } else {
            None
        };
        self.admit(def, &name, &mut obj)?;
        let mut store = self
            .store
            .lock()
            .map_err(|_| ApiError::internal("store lock poisoned"))?;
        let old = store
            .get(def, ns.as_deref().unwrap_or_default(), &name)
            .map(|e| e.obj.clone());
        let uid = store.new_uid();
        let rv = store.next_rv();
        let m = meta_mut(&mut obj).ok_or_else(|| ApiError::internal("metadata"))?;
        if let Some(ns) = &ns {
            m.insert("namespace".into(), json!(ns));
        }
        let old_meta = old.as_deref().and_then(meta).cloned().unwrap_or_default();
        for (k, fresh) in [("uid", json!(uid)), ("creationTimestamp", json!(now()))] {
            if !m.contains_key(k) {
                m.insert(k.into(), old_meta.get(k).cloned().unwrap_or(fresh));
            }
        }
        if def.has_generation && !m.contains_key("generation") {
            let g = match &old {
                Some(o) if spec_changed(o, &obj) => {
                    o.pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                        + 1
                }
                Some(o) => o
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
                None => 1,
            };
            if let Some(m) = meta_mut(&mut obj) {
                m.insert("generation".into(), json!(g));
            }
        }
        if let Some(m) = meta_mut(&mut obj) {
            m.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        Ok(write(
            &mut store,
            def,
            ns.as_deref().unwrap_or_default(),
            &name,
            obj,
        ))
    }
}

/// The stored object as `def`'s API shows it.
fn view(def: &ResourceDef, stored: &Arc<Value>) -> Arc<Value> {
    match crate::events::to_view(def, stored) {
        Some(v) => Arc::new(v),
        None => stored.clone(),
    }
}

fn read(store: &Store, def: &ResourceDef, ns: &str, name: &str) -> Option<Arc<Value>> {
    store.get(def, ns, name).map(|e| view(def, &e.obj))
}

/// Stores `obj` (in `def`'s API shape); answers it in that shape.
fn write(store: &mut Store, def: &ResourceDef, ns: &str, name: &str, obj: Value) -> Arc<Value> {
    if crate::events::is_core_event(def) {
        let shown = Arc::new(obj.clone());
        store.put(def, ns, name, crate::events::to_storage(def, obj));
        shown
    } else {
        store.put(def, ns, name, obj)
    }
}

/// Fills `apiVersion`/`kind` when absent; refuses a body of another type.
fn check_type(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let want_av = def.api_version();
    let m = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body of the request is not a JSON object"))?;
    let av = m
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = m
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if (!av.is_empty() && av != want_av) || (!kind.is_empty() && kind != def.kind) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        )));
    }
    m.insert("apiVersion".into(), json!(want_av));
    m.insert("kind".into(), json!(def.kind));
    Ok(())
}

fn namespace_value(name: &str, created: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "creationTimestamp": created,
                     "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

fn namespace_object(store: &Store, name: &str) -> Option<Arc<Value>> {
    if let Some(e) = store.get(&crate::resources::NAMESPACES, "", name) {
        return Some(e.obj.clone());
    }
    store
        .implied_namespaces()
        .find(|(n, _)| *n == name)
        .map(|(n, t)| Arc::new(namespace_value(n, t)))
}

/// Stored Namespaces plus those implied by namespaced objects, by name.
fn all_namespaces(store: &Store) -> Vec<Arc<Value>> {
    let mut by_name: std::collections::BTreeMap<String, Arc<Value>> = store
        .entries(&crate::resources::NAMESPACES, None)
        .map(|(k, e)| (k.1.clone(), e.obj.clone()))
        .collect();
    for (n, t) in store.implied_namespaces() {
        by_name
            .entry(n.clone())
            .or_insert_with(|| Arc::new(namespace_value(n, t)));
    }
    by_name.into_values().collect()
}
