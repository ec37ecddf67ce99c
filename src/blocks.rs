//! What a stuck HelmRelease holds back (SPEC §10): the HelmReleases in scope
//! that depend on it through `spec.dependsOn`, directly or through others.
//!
//! Built from the same list the run reads (no extra request). Only the
//! `dependsOn` entries are kept — one interned name per HelmRelease that
//! appears in an entry, one integer per entry — so memory grows with the
//! number of entries, not with the number or size of the objects. A walk
//! visits each HelmRelease at most once, so cycles terminate.

use std::collections::{HashMap, HashSet};

/// The reverse `dependsOn` edges of the HelmReleases listed.
#[derive(Debug, Clone, Default)]
pub struct Dependents {
    /// `<namespace>/<name>` → id.
    ids: HashMap<Box<str>, u32>,
    /// id → `<namespace>/<name>`.
    names: Vec<Box<str>>,
    /// id → the ids of the HelmReleases whose `dependsOn` names it.
    dependents: Vec<Vec<u32>>,
}

impl Dependents {
    /// `namespace/name` depends on `dependency_ns/dependency`.
    pub fn add(&mut self, namespace: &str, name: &str, dependency_ns: &str, dependency: &str) {
        let from = self.id(namespace, name);
        let to = self.id(dependency_ns, dependency);
        let list = &mut self.dependents[to as usize];
        if !list.contains(&from) {
            list.push(from);
        }
    }

    /// Every HelmRelease that depends on `namespace/name` directly or
    /// through others, itself excluded (a cycle), sorted.
    pub fn blocks(&self, namespace: &str, name: &str) -> Vec<String> {
        let Some(&start) = self.ids.get(key(namespace, name).as_str()) else {
            return Vec::new();
        };
        // Visited set sized by what is found, not by the cluster.
        let mut seen = HashSet::from([start]);
        let mut queue = vec![start];
        let mut found = Vec::new();
        while let Some(id) = queue.pop() {
            for &dependent in &self.dependents[id as usize] {
                if seen.insert(dependent) {
                    found.push(self.names[dependent as usize].to_string());
                    queue.push(dependent);
                }
            }
        }
        found.sort();
        found
    }

    /// How many `dependsOn` entries are kept.
    pub fn entries(&self) -> usize {
        self.dependents.iter().map(Vec::len).sum()
    }

    fn id(&mut self, namespace: &str, name: &str) -> u32 {
        let key = key(namespace, name);
        if let Some(&id) = self.ids.get(key.as_str()) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let key: Box<str> = key.into();
        self.names.push(key.clone());
        self.ids.insert(key, id);
        self.dependents.push(Vec::new());
        id
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize as _;
    use serde_json::{Value, json};

    use super::*;
    use crate::view::decode::{Field, Item, dependencies};

    impl Dependents {
        /// What the lister records for one item (`kube_io::list`).
        fn add_item(&mut self, item: &Value) {
            let Ok(Field::Found(item)) = Field::<Item>::deserialize(item) else {
                return;
            };
            if let Some(item) = dependencies(&item) {
                for (dependency_ns, dependency) in &item.on {
                    self.add(item.namespace, item.name, dependency_ns, dependency);
                }
            }
        }
    }

    fn hr(namespace: &str, name: &str, depends_on: Value) -> Value {
        json!({"metadata": {"namespace": namespace, "name": name},
               "spec": {"dependsOn": depends_on}})
    }

    #[test]
    fn a_chain_blocks_everything_downstream_sorted() {
        let mut d = Dependents::default();
        d.add_item(&hr("apps", "web", json!([{"name": "api"}])));
        d.add_item(&hr("apps", "api", json!([{"name": "db"}])));
        d.add_item(&hr(
            "ops",
            "mon",
            json!([{"name": "db", "namespace": "apps"}]),
        ));
        assert_eq!(d.blocks("apps", "db"), ["apps/api", "apps/web", "ops/mon"]);
        assert_eq!(d.blocks("apps", "api"), ["apps/web"]);
        assert!(d.blocks("apps", "web").is_empty());
        assert!(d.blocks("apps", "unknown").is_empty());
    }

    #[test]
    fn an_entry_without_namespace_means_the_dependents_own() {
        let mut d = Dependents::default();
        d.add_item(&hr("team-a", "web", json!([{"name": "db"}])));
        assert_eq!(d.blocks("team-a", "db"), ["team-a/web"]);
        assert!(d.blocks("apps", "db").is_empty());
    }

    #[test]
    fn cycles_terminate_and_never_list_the_helmrelease_itself() {
        let mut d = Dependents::default();
        d.add_item(&hr("apps", "a", json!([{"name": "b"}])));
        d.add_item(&hr("apps", "b", json!([{"name": "c"}])));
        d.add_item(&hr("apps", "c", json!([{"name": "a"}])));
        d.add_item(&hr("apps", "self", json!([{"name": "self"}])));
        assert_eq!(d.blocks("apps", "a"), ["apps/b", "apps/c"]);
        assert!(d.blocks("apps", "self").is_empty());
    }

    #[test]
    fn a_diamond_counts_each_dependent_once() {
        let mut d = Dependents::default();
        d.add_item(&hr("apps", "l", json!([{"name": "base"}])));
        d.add_item(&hr("apps", "r", json!([{"name": "base"}])));
        d.add_item(&hr(
            "apps",
            "top",
            json!([{"name": "l"}, {"name": "r"}, {"name": "l"}]),
        ));
        assert_eq!(d.blocks("apps", "base"), ["apps/l", "apps/r", "apps/top"]);
        assert_eq!(d.entries(), 4);
    }

    #[test]
    fn odd_entries_are_ignored() {
        let mut d = Dependents::default();
        d.add_item(&hr(
            "apps",
            "web",
            json!([{"name": ""}, {"namespace": "x"}, "db", 7, null]),
        ));
        d.add_item(&hr("apps", "api", json!("db")));
        d.add_item(&json!({"spec": {"dependsOn": [{"name": "db"}]}}));
        assert_eq!(d.entries(), 0);
    }

    #[test]
    fn memory_grows_with_entries_not_with_helmreleases_without_any() {
        let mut d = Dependents::default();
        for i in 0..1000 {
            d.add_item(
                &json!({"metadata": {"namespace": "apps", "name": format!("hr{i}")},
                               "spec": {"interval": "5m"}}),
            );
        }
        assert_eq!(d.names.len(), 0);
        d.add_item(&hr("apps", "web", json!([{"name": "db"}])));
        assert_eq!(d.names.len(), 2);
    }
}
