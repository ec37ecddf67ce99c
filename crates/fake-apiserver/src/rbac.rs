//! RBAC as the real authorizer evaluates it: ClusterRoles/Roles bound by
//! ClusterRoleBindings/RoleBindings to users, groups and service accounts;
//! plus the tally of which rules allowed which requests.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::log::RecordedRequest;

/// One rule of one role, as the tally names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRef {
    /// File the role came from.
    pub file: String,
    /// `ClusterRole` or `Role`.
    pub role_kind: String,
    /// Role name (`namespace/name` for a Role).
    pub role: String,
    /// Index of the rule in `rules`.
    pub index: usize,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    pub resource_names: Vec<String>,
}

/// Which rules allowed requests, and every denied request.
#[derive(Debug, Clone, Default)]
pub struct RbacTally {
    /// Every loaded rule with how many requests it allowed (0 = unused).
    pub used: Vec<(RuleRef, u64)>,
    /// Every request answered 403 by RBAC.
    pub denied: Vec<RecordedRequest>,
}

impl RbacTally {
    /// Rules that allowed no request.
    pub fn unused(&self) -> Vec<&RuleRef> {
        self.used
            .iter()
            .filter(|(_, n)| *n == 0)
            .map(|(r, _)| r)
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Role {
    kind: String,
    namespace: Option<String>,
    name: String,
    rules: Vec<RuleRef>,
}

#[derive(Debug, Clone)]
struct Binding {
    /// `Some(ns)` for a RoleBinding.
    namespace: Option<String>,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

#[derive(Debug, Clone)]
enum Subject {
    User(String),
    Group(String),
}

/// The attributes RBAC decides on.
pub struct Attributes<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Loaded RBAC policy and its tally.
#[derive(Debug, Default)]
pub struct Rbac {
    roles: Vec<Role>,
    bindings: Vec<Binding>,
    counts: HashMap<RuleRef, u64>,
    denied: Vec<RecordedRequest>,
    /// ServiceAccounts declared in the loaded files (`namespace`, `name`).
    pub service_accounts: Vec<(String, String)>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Rbac {
    /// Loads every `.yaml`/`.yml`/`.json` file of `dir` (sorted by name).
    pub fn load_dir(dir: &Path) -> anyhow::Result<Self> {
        let mut rbac = Rbac::default();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading RBAC dir {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        files.sort();
        for f in files {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            for doc in crate::seed::parse_documents(&text)
                .with_context(|| format!("parsing {}", f.display()))?
            {
                rbac.add_object(&f.display().to_string(), &doc);
            }
        }
        Ok(rbac)
    }

    /// Adds one RBAC object (other kinds are ignored).
    pub fn add_object(&mut self, file: &str, obj: &Value) {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let namespace = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        match kind {
            "ClusterRole" | "Role" => {
                let ns = if kind == "Role" { namespace } else { None };
                let display = match &ns {
                    Some(n) => format!("{n}/{name}"),
                    None => name.clone(),
                };
                let rules: Vec<RuleRef> = obj
                    .get("rules")
                    .and_then(Value::as_array)
                    .map(|rules| {
                        rules
                            .iter()
                            .enumerate()
                            .map(|(index, r)| RuleRef {
                                file: file.to_string(),
                                role_kind: kind.to_string(),
                                role: display.clone(),
                                index,
                                api_groups: strings(r.get("apiGroups")),
                                resources: strings(r.get("resources")),
                                verbs: strings(r.get("verbs")),
                                resource_names: strings(r.get("resourceNames")),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for r in &rules {
                    self.counts.insert(r.clone(), 0);
                }
                self.roles.push(Role {
                    kind: kind.to_string(),
                    namespace: ns,
                    name,
                    rules,
                });
            }
            "ClusterRoleBinding" | "RoleBinding" => {
                let subjects = obj
                    .get("subjects")
                    .and_then(Value::as_array)
                    .map(|subs| {
                        subs.iter()
                            .filter_map(|s| {
                                let n = s.get("name")?.as_str()?.to_string();
                                match s.get("kind")?.as_str()? {
                                    "User" => Some(Subject::User(n)),
                                    "Group" => Some(Subject::Group(n)),
                                    "ServiceAccount" => {
                                        let sns = s
                                            .get("namespace")
                                            .and_then(Value::as_str)
                                            .or(namespace.as_deref())?;
                                        Some(Subject::User(format!(
                                            "system:serviceaccount:{sns}:{n}"
                                        )))
                                    }
                                    _ => None,
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.bindings.push(Binding {
                    namespace: if kind == "RoleBinding" {
                        namespace
                    } else {
                        None
                    },
                    role_kind: obj
                        .pointer("/roleRef/kind")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    role_name: obj
                        .pointer("/roleRef/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    subjects,
                });
            }
            "ServiceAccount" => {
                if let Some(ns) = namespace {
                    self.service_accounts.push((ns, name));
                }
            }
            _ => {}
        }
    }

    /// The first rule that allows the request (and counts it), or `None`.
    pub fn authorize(&mut self, a: &Attributes<'_>) -> Option<RuleRef> {
        let found = self.find(a)?;
        *self.counts.entry(found.clone()).or_default() += 1;
        Some(found)
    }

    fn find(&self, a: &Attributes<'_>) -> Option<RuleRef> {
        for b in &self.bindings {
            let subject_ok = b.subjects.iter().any(|s| match s {
                Subject::User(u) => u == a.user,
                Subject::Group(g) => a.groups.iter().any(|x| x == g),
            });
            if !subject_ok {
                continue;
            }
            if let Some(bns) = &b.namespace
                && a.namespace != Some(bns.as_str())
            {
                continue;
            }
            let role = self.roles.iter().find(|r| {
                r.kind == b.role_kind
                    && r.name == b.role_name
                    && (r.kind == "ClusterRole" || r.namespace == b.namespace)
            });
            let Some(role) = role else { continue };
            if let Some(rule) = role.rules.iter().find(|r| rule_allows(r, a)) {
                return Some(rule.clone());
            }
        }
        None
    }

    pub fn record_denied(&mut self, r: RecordedRequest) {
        self.denied.push(r);
    }

    pub fn tally(&self) -> RbacTally {
        let mut used: Vec<(RuleRef, u64)> =
            self.counts.iter().map(|(k, v)| (k.clone(), *v)).collect();
        used.sort_by(|a, b| {
            (&a.0.file, &a.0.role, a.0.index).cmp(&(&b.0.file, &b.0.role, b.0.index))
        });
        RbacTally {
            used,
            denied: self.denied.clone(),
        }
    }
}

fn rule_allows(r: &RuleRef, a: &Attributes<'_>) -> bool {
    let has = |list: &[String], x: &str| list.iter().any(|v| v == "*" || v == x);
    if !has(&r.verbs, a.verb) || !has(&r.api_groups, a.group) {
        return false;
    }
    let resource_ok = r.resources.iter().any(|res| match a.subresource {
        None => res == "*" || res == a.resource,
        Some(sub) => {
            res == "*"
                || *res == format!("{}/{}", a.resource, sub)
                || *res == format!("*/{sub}")
                || *res == format!("{}/*", a.resource)
        }
    });
    if !resource_ok {
        return false;
    }
    r.resource_names.is_empty()
        || a.name
            .is_some_and(|n| r.resource_names.iter().any(|x| x == n))
}
