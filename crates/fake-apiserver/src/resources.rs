//! The closed table of resources the fake server serves, and the names
//! Kubernetes derives from them (qualified resource, group-kind).

/// One served resource type (one group/version/plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Whether `/status` is a subresource (spec/status split on writes).
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained.
    pub has_generation: bool,
    /// Custom resource: validated against the CRD schema, strategic merge refused.
    pub custom: bool,
}

impl ResourceDef {
    /// `helmreleases.helm.toolkit.fluxcd.io`, or `secrets` for the core group.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `HelmRelease.helm.toolkit.fluxcd.io`, or `Secret` for the core group.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `helm.toolkit.fluxcd.io/v2`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Key of this resource's table in the store. Core Events share the
    /// `events.k8s.io` table (see `events.rs`).
    pub fn key(&self) -> (&'static str, &'static str) {
        if self.group.is_empty() && self.plural == "events" {
            ("events.k8s.io", "events")
        } else {
            (self.group, self.plural)
        }
    }
}

pub const HELMRELEASES: ResourceDef = ResourceDef {
    group: "helm.toolkit.fluxcd.io",
    version: "v2",
    plural: "helmreleases",
    singular: "helmrelease",
    kind: "HelmRelease",
    namespaced: true,
    short_names: &["hr"],
    categories: &["all", "fluxcd", "fluxcd-appliers"],
    status_subresource: true,
    has_generation: true,
    custom: true,
};

pub const SECRETS: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    namespaced: true,
    short_names: &[],
    categories: &[],
    status_subresource: false,
    has_generation: false,
    custom: false,
};

pub const CONFIGMAPS: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    status_subresource: false,
    has_generation: false,
    custom: false,
};

pub const NAMESPACES: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    status_subresource: true,
    has_generation: false,
    custom: false,
};

pub const CORE_EVENTS: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    status_subresource: false,
    has_generation: false,
    custom: false,
};

pub const EVENTS: ResourceDef = ResourceDef {
    group: "events.k8s.io",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    status_subresource: false,
    has_generation: false,
    custom: false,
};

pub const CRONJOBS: ResourceDef = ResourceDef {
    group: "batch",
    version: "v1",
    plural: "cronjobs",
    singular: "cronjob",
    kind: "CronJob",
    namespaced: true,
    short_names: &["cj"],
    categories: &["all"],
    status_subresource: true,
    has_generation: true,
    custom: false,
};

pub const JOBS: ResourceDef = ResourceDef {
    group: "batch",
    version: "v1",
    plural: "jobs",
    singular: "job",
    kind: "Job",
    namespaced: true,
    short_names: &[],
    categories: &["all"],
    status_subresource: true,
    has_generation: true,
    custom: false,
};

/// Every served resource, in discovery order.
pub const ALL: &[ResourceDef] = &[
    NAMESPACES,
    SECRETS,
    CONFIGMAPS,
    CORE_EVENTS,
    HELMRELEASES,
    EVENTS,
    CRONJOBS,
    JOBS,
];

/// The served group/versions other than core v1, in discovery order.
pub const GROUPS: &[(&str, &str)] = &[
    ("helm.toolkit.fluxcd.io", "v2"),
    ("events.k8s.io", "v1"),
    ("batch", "v1"),
];

/// Finds a resource by group, version and plural.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    ALL.iter()
        .find(|d| d.group == group && d.version == version && d.plural == plural)
}

/// Finds a resource by `apiVersion` and `kind` as written in an object.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    let (group, version) = split_api_version(api_version);
    ALL.iter()
        .find(|d| d.group == group && d.version == version && d.kind == kind)
}

/// Finds a resource by `apiVersion` and plural (the library's `get`/`list`).
pub fn by_api_version(api_version: &str, plural: &str) -> Option<&'static ResourceDef> {
    let (group, version) = split_api_version(api_version);
    by_plural(group, version, plural)
}

/// `"helm.toolkit.fluxcd.io/v2"` → `("helm.toolkit.fluxcd.io", "v2")`; `"v1"` → `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}
