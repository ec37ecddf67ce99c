//! The benchmark cases of issue 6: a seeded cluster each, and how the two tools
//! are run against it.

/// Which table a case belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// stuck-hr-recovery against the kubectl baseline, same cluster, same wait.
    Compare,
    /// stuck-hr-recovery alone as the cluster grows.
    Scaling,
    /// stuck-hr-recovery's `--dry-run` (list, decode, decide) against a bare
    /// keep-alive paged GET of the same pages.
    Decoding,
}

/// One seeded cluster and the flags the product runs with on it.
pub struct Case {
    /// Short id used on the command line (`--cases`) and in the tables.
    pub id: &'static str,
    pub group: Group,
    pub helmreleases: usize,
    pub namespaces: usize,
    /// Stuck in pending-install mode (branch A: toggle suspend).
    pub pending_install: usize,
    /// Stuck in deployed-but-Unknown-Ready mode (branch B: correct status).
    pub deployed_unknown: usize,
    /// `--max-actions` for the product.
    pub max_actions: usize,
    /// `--suspend-wait` for the product (the baseline always sleeps 5 s).
    pub suspend_wait: &'static str,
    /// Whether the kubectl baseline is run on this case too.
    pub baseline: bool,
    /// Run when no `--cases` are given (the smoke case is not).
    pub by_default: bool,
    /// Give the HelmReleases `spec.dependsOn` chains ([`add_depends_on`]).
    pub depends_on: bool,
    /// Run the product with `--dry-run` (read and decide only).
    pub dry_run: bool,
    /// Also run the bare paged GET of the same pages ([`crate::paged`]).
    pub paged_get: bool,
}

impl Case {
    pub fn stuck(&self) -> usize {
        self.pending_install + self.deployed_unknown
    }

    /// The guardrail verdict the product must reach (SPEC §4).
    pub fn guardrail_trips(&self) -> bool {
        self.stuck() > self.max_actions
    }
}

/// Every case, in the order they run and are reported.
pub fn all() -> Vec<Case> {
    let compare = |id, pending_install, deployed_unknown, max_actions| Case {
        id,
        group: Group::Compare,
        helmreleases: 10_000,
        namespaces: 500,
        pending_install,
        deployed_unknown,
        max_actions,
        suspend_wait: "5s",
        baseline: true,
        by_default: true,
        depends_on: false,
        dry_run: false,
        paged_get: false,
    };
    let scaling = |id, helmreleases, namespaces| Case {
        id,
        group: Group::Scaling,
        helmreleases,
        namespaces,
        pending_install: 10,
        deployed_unknown: 10,
        max_actions: 20,
        suspend_wait: "1ms",
        baseline: false,
        by_default: true,
        depends_on: false,
        dry_run: false,
        paged_get: false,
    };
    let decoding = |id, helmreleases, namespaces| Case {
        id,
        group: Group::Decoding,
        dry_run: true,
        paged_get: true,
        by_default: false,
        ..scaling(id, helmreleases, namespaces)
    };
    vec![
        // (a) 20 stuck, 10 per branch, everything acted on.
        compare("a", 10, 10, 20),
        // (b) 1 000 / 100 / 0 stuck, half per branch; --max-actions raised to the
        // stuck count so both tools do the full repair.
        compare("b1000", 500, 500, 1_000),
        // The same 1 000 stuck with the default --max-actions 10: the guardrail
        // trips (one Warning Event per candidate, no write, exit 1), which is
        // what the CronJob does in a real mass outage. The baseline has no
        // guardrail, so this one is the product alone.
        Case {
            baseline: false,
            ..compare("b1000g", 500, 500, 10)
        },
        compare("b100", 50, 50, 100),
        compare("b0", 0, 0, 10),
        // (c) 10 branch-A toggles only.
        compare("c", 10, 0, 10),
        // Scaling: the same 20 stuck as (a) in a growing cluster; the shortest
        // suspend wait the CLI accepts, so that the time is the tool's own work.
        scaling("s1k", 1_000, 50),
        scaling("s10k", 10_000, 500),
        scaling("s50k", 50_000, 2_500),
        // The same with dependsOn chains (SPEC §10 `blocks`): memory must grow
        // with the dependsOn entries only.
        Case {
            depends_on: true,
            ..scaling("d10k", 10_000, 500)
        },
        Case {
            depends_on: true,
            ..scaling("d50k", 50_000, 2_500)
        },
        // Decoding (issue 21): the product's dry run against a bare paged GET
        // of the same pages; run with `--cases p10k,p100k`.
        decoding("p10k", 10_000, 500),
        decoding("p100k", 100_000, 5_000),
        // A quick check of the harness itself (`--cases smoke`), not a figure.
        Case {
            id: "smoke",
            helmreleases: 200,
            namespaces: 20,
            pending_install: 1,
            deployed_unknown: 1,
            max_actions: 10,
            by_default: false,
            ..compare("smoke", 0, 0, 0)
        },
    ]
}

/// Realistic `spec.dependsOn` chains: in each namespace the HelmReleases, in
/// order, form chains of five (each depends on the one before it), and the
/// head of every chain but the first depends on the namespace's first
/// HelmRelease (its "infrastructure"). About one entry per HelmRelease.
/// Returns the number of entries added.
pub fn add_depends_on(seed: &mut [serde_json::Value]) -> usize {
    use std::collections::HashMap;
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let mut entries = 0;
    for object in seed.iter_mut() {
        if object["kind"] != "HelmRelease" {
            continue;
        }
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let earlier = seen.entry(namespace).or_default();
        let position = earlier.len();
        let dependency = match position {
            0 => None,
            p if p % 5 == 0 => earlier.first().cloned(),
            _ => earlier.last().cloned(),
        };
        if let Some(dependency) = dependency {
            object["spec"]["dependsOn"] = serde_json::json!([{"name": dependency}]);
            entries += 1;
        }
        earlier.push(name);
    }
    entries
}
