//! RBAC as the real authorizer evaluates it: ClusterRoles/Roles bound by
//! ClusterRoleBindings/RoleBindings to users, groups and service accounts;
//! plus the tally of which rules allowed which requests.
//!
//! One evaluation ([`Rbac::visit`]) serves real requests, impersonation and
//! the access reviews: ClusterRoleBindings first, then the RoleBindings of
//! the request's namespace, the first rule that matches wins. Besides the
//! loaded files, every server has the bootstrap roles a real cluster always
//! has for `system:authenticated` (discovery URLs, `system:basic-user`'s
//! self reviews); they are not part of the tally.

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
    pub non_resource_urls: Vec<String>,
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
    name: String,
    /// `Some(ns)` for a RoleBinding.
    namespace: Option<String>,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

/// A binding's subject as written (`namespace` only for a ServiceAccount).
#[derive(Debug, Clone)]
struct Subject {
    kind: String,
    name: String,
    namespace: Option<String>,
}

impl Subject {
    /// Whether it names the user: a ServiceAccount without a namespace takes
    /// the RoleBinding's (and names nobody in a ClusterRoleBinding).
    fn applies(&self, user: &str, groups: &[String], binding_ns: Option<&str>) -> bool {
        match self.kind.as_str() {
            "User" => self.name == user,
            "Group" => groups.contains(&self.name),
            "ServiceAccount" => self
                .namespace
                .as_deref()
                .or(binding_ns)
                .is_some_and(|ns| user == format!("system:serviceaccount:{ns}:{}", self.name)),
            _ => false,
        }
    }

    /// As the real resolver describes a subject in its reasons.
    fn describe(&self, binding_ns: Option<&str>) -> String {
        if self.kind == "ServiceAccount" {
            let ns = self.namespace.as_deref().or(binding_ns).unwrap_or_default();
            format!("{} {:?}", self.kind, format!("{}/{ns}", self.name))
        } else {
            format!("{} {:?}", self.kind, self.name)
        }
    }
}

/// What an access review asks: a resource request or a non-resource URL.
pub enum Request<'a> {
    Resource(Attributes<'a>),
    NonResource {
        user: &'a str,
        groups: &'a [String],
        verb: &'a str,
        path: &'a str,
    },
}

/// The RBAC authorizer's answer: allowed or no opinion, with its reason
/// (`RBAC: allowed by ...`, or the resolution errors on a denial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// The first matching rule and the binding it came through, or the errors
/// met while resolving roles.
struct Visit {
    found: Option<(RuleRef, String)>,
    errors: Vec<String>,
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
        rbac.add_bootstrap();
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
                                non_resource_urls: strings(r.get("nonResourceURLs")),
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
                                Some(Subject {
                                    kind: s.get("kind")?.as_str()?.to_string(),
                                    name: s.get("name")?.as_str()?.to_string(),
                                    namespace: s
                                        .get("namespace")
                                        .and_then(Value::as_str)
                                        .filter(|n| !n.is_empty())
                                        .map(str::to_string),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.bindings.push(Binding {
                    name,
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
        let (found, _) = self
            .visit(a.user, a.groups, a.namespace, |r| rule_allows(r, a))
            .found?;
        if let Some(n) = self.counts.get_mut(&found) {
            *n += 1;
        }
        Some(found)
    }

    /// The decision for an access review, with the real authorizer's reason
    /// text; not counted in the tally.
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        let visit = match request {
            Request::Resource(a) => {
                self.visit(a.user, a.groups, a.namespace, |r| rule_allows(r, a))
            }
            Request::NonResource {
                user,
                groups,
                verb,
                path,
            } => self.visit(user, groups, None, |r| non_resource_allows(r, verb, path)),
        };
        match visit.found {
            Some((_, source)) => Decision {
                allowed: true,
                reason: format!("RBAC: allowed by {source}"),
            },
            None if visit.errors.is_empty() => Decision {
                allowed: false,
                reason: String::new(),
            },
            None => Decision {
                allowed: false,
                reason: format!("RBAC: {}", aggregate(&visit.errors)),
            },
        }
    }

    /// Every rule that applies to the user in `namespace` (cluster-wide
    /// bindings, then the namespace's), and the resolution errors, as a
    /// SelfSubjectRulesReview lists them.
    pub fn rules_for(
        &self,
        user: &str,
        groups: &[String],
        namespace: Option<&str>,
    ) -> (Vec<RuleRef>, Vec<String>) {
        let mut rules = Vec::new();
        let visit = self.visit(user, groups, namespace, |r| {
            rules.push(r.clone());
            false
        });
        (rules, visit.errors)
    }

    /// Walks the rules that apply to the user in `namespace` in the real
    /// resolver's order, stopping at the first one `allows` accepts.
    fn visit(
        &self,
        user: &str,
        groups: &[String],
        namespace: Option<&str>,
        mut allows: impl FnMut(&RuleRef) -> bool,
    ) -> Visit {
        let mut errors = Vec::new();
        let cluster = self.bindings.iter().filter(|b| b.namespace.is_none());
        let local = self
            .bindings
            .iter()
            .filter(|b| b.namespace.is_some() && b.namespace.as_deref() == namespace);
        for b in cluster.chain(local) {
            let bns = b.namespace.as_deref();
            let Some(subject) = b.subjects.iter().find(|s| s.applies(user, groups, bns)) else {
                continue;
            };
            let role = self.roles.iter().find(|r| {
                r.kind == b.role_kind
                    && r.name == b.role_name
                    && (r.kind == "ClusterRole" || r.namespace == b.namespace)
            });
            let Some(role) = role else {
                errors.push(match b.role_kind.as_str() {
                    "ClusterRole" | "Role" => format!(
                        "{}.rbac.authorization.k8s.io {:?} not found",
                        b.role_kind.to_lowercase(),
                        b.role_name
                    ),
                    other => format!("unsupported role reference kind: {other:?}"),
                });
                continue;
            };
            if let Some(rule) = role.rules.iter().find(|r| allows(r)) {
                let source = match bns {
                    None => format!(
                        "ClusterRoleBinding {:?} of {} {:?} to {}",
                        b.name,
                        b.role_kind,
                        b.role_name,
                        subject.describe(None)
                    ),
                    Some(ns) => format!(
                        "RoleBinding {:?} of {} {:?} to {}",
                        format!("{}/{ns}", b.name),
                        b.role_kind,
                        b.role_name,
                        subject.describe(bns)
                    ),
                };
                return Visit {
                    found: Some((rule.clone(), source)),
                    errors,
                };
            }
        }
        Visit {
            found: None,
            errors,
        }
    }

    /// The bootstrap ClusterRoles and bindings every real cluster has for
    /// authenticated users (and, for public-info-viewer, everyone).
    fn add_bootstrap(&mut self) {
        let urls = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let rule =
            |role: &str, groups: &[&str], resources: &[&str], verbs: &[&str], urls: Vec<String>| {
                RuleRef {
                    file: "<bootstrap policy>".into(),
                    role_kind: "ClusterRole".into(),
                    role: role.into(),
                    index: 0,
                    api_groups: groups.iter().map(|g| g.to_string()).collect(),
                    resources: resources.iter().map(|r| r.to_string()).collect(),
                    verbs: verbs.iter().map(|v| v.to_string()).collect(),
                    resource_names: Vec::new(),
                    non_resource_urls: urls,
                }
            };
        let public = ["/livez", "/readyz", "/healthz", "/version", "/version/"];
        let mut discovery = urls(&public[..]);
        discovery.extend(urls(&[
            "/openapi",
            "/openapi/*",
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
        ]));
        let everything = RuleRef {
            non_resource_urls: vec!["*".into()],
            ..rule("cluster-admin", &["*"], &["*"], &["*"], Vec::new())
        };
        let mut admin_urls = everything.clone();
        admin_urls.index = 1;
        admin_urls.api_groups.clear();
        admin_urls.resources.clear();
        let mut admin_resources = everything;
        admin_resources.non_resource_urls.clear();
        self.roles.push(Role {
            kind: "ClusterRole".into(),
            namespace: None,
            name: "cluster-admin".into(),
            rules: vec![admin_resources, admin_urls],
        });
        self.bindings.push(Binding {
            name: "cluster-admin".into(),
            namespace: None,
            role_kind: "ClusterRole".into(),
            role_name: "cluster-admin".into(),
            subjects: vec![Subject {
                kind: "Group".into(),
                name: "system:masters".into(),
                namespace: None,
            }],
        });
        let roles = [
            (
                "system:basic-user",
                rule(
                    "system:basic-user",
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                    Vec::new(),
                ),
                &["system:authenticated"][..],
            ),
            (
                "system:discovery",
                rule("system:discovery", &[], &[], &["get"], discovery),
                &["system:authenticated"][..],
            ),
            (
                "system:public-info-viewer",
                rule(
                    "system:public-info-viewer",
                    &[],
                    &[],
                    &["get"],
                    urls(&public),
                ),
                &["system:authenticated", "system:unauthenticated"][..],
            ),
        ];
        for (name, rule, groups) in roles {
            self.roles.push(Role {
                kind: "ClusterRole".into(),
                namespace: None,
                name: name.into(),
                rules: vec![rule],
            });
            self.bindings.push(Binding {
                name: name.into(),
                namespace: None,
                role_kind: "ClusterRole".into(),
                role_name: name.into(),
                subjects: groups
                    .iter()
                    .map(|g| Subject {
                        kind: "Group".into(),
                        name: (*g).into(),
                        namespace: None,
                    })
                    .collect(),
            });
        }
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

/// A resource request against one rule: verb, API group, resource (with
/// its subresource as `resource/sub`, or `*/sub`), resource name; `*` in the
/// rule matches anything, a `*` in the request only a `*` in the rule.
fn rule_allows(r: &RuleRef, a: &Attributes<'_>) -> bool {
    let has = |list: &[String], x: &str| list.iter().any(|v| v == "*" || v == x);
    if !has(&r.verbs, a.verb) || !has(&r.api_groups, a.group) {
        return false;
    }
    let combined = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource),
        None => a.resource.to_string(),
    };
    let resource_ok = r.resources.iter().any(|res| {
        res == "*"
            || *res == combined
            || a.subresource
                .is_some_and(|sub| res.strip_prefix("*/") == Some(sub))
    });
    if !resource_ok {
        return false;
    }
    r.resource_names.is_empty()
        || a.name
            .is_some_and(|n| r.resource_names.iter().any(|x| x == n))
}

/// A non-resource URL against one rule: `*`, the exact path, or a rule
/// ending in `*` that is a prefix of the path.
fn non_resource_allows(r: &RuleRef, verb: &str, path: &str) -> bool {
    r.verbs.iter().any(|v| v == "*" || v == verb)
        && r.non_resource_urls.iter().any(|u| {
            u == "*"
                || u == path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        })
}

/// Several errors as the apimachinery aggregate prints them.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}
