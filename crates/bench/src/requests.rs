//! The server's request log, tallied by verb and resource, and the request-count
//! formula the product must meet (issue 6 §3): list pages + one metadata-only
//! Secret list per stuck HelmRelease + the writes + the Events, nothing more.

use std::collections::BTreeMap;

use fake_apiserver::RecordedRequest;

use crate::cases::Case;

/// Page size of the product's HelmRelease list (docs/architecture.md).
pub const PAGE_SIZE: usize = 500;

/// The product's field manager on every HelmRelease write (SPEC §5).
const FIELD_MANAGER: &str = "stuck-hr-recovery";

/// Request counts keyed by `"<verb> <resource>[/<subresource>]"`, or
/// the bare verb (`discovery`) for non-resource requests.
pub type Tally = BTreeMap<String, usize>;

pub fn key(r: &RecordedRequest) -> String {
    match r.resource.as_deref() {
        Some(resource) => match r.subresource.as_deref() {
            Some(sub) => format!("{} {resource}/{sub}", r.verb),
            None => format!("{} {resource}", r.verb),
        },
        None => r.verb.clone(),
    }
}

pub fn tally(requests: &[RecordedRequest]) -> Tally {
    let mut t = Tally::new();
    for r in requests {
        *t.entry(key(r)).or_default() += 1;
    }
    t
}

/// Request plus response bytes over the whole log.
pub fn bytes(requests: &[RecordedRequest]) -> u64 {
    requests
        .iter()
        .map(|r| (r.request_bytes + r.response_bytes) as u64)
        .sum()
}

/// The terms of the formula for one case.
pub struct Expected {
    pub pages: usize,
    pub storage_lists: usize,
    pub writes: usize,
    pub events: usize,
    pub tally: Tally,
}

impl Expected {
    pub fn total(&self) -> usize {
        self.pages + self.storage_lists + self.writes + self.events
    }

    /// `pages 20 + storage 20 + writes 30 + events 20 = 90`
    pub fn formula(&self) -> String {
        format!(
            "pages {} + storage {} + writes {} + events {} = {}",
            self.pages,
            self.storage_lists,
            self.writes,
            self.events,
            self.total()
        )
    }
}

/// What the product must send on a freshly seeded cluster for `case`: every
/// stuck HelmRelease needs its Helm storage read; branch A is two patches of
/// the HelmRelease, branch B a patch of the HelmRelease and one of its status;
/// one Event per action. A tripped guardrail writes nothing but one Warning
/// Event per candidate (SPEC §4).
pub fn expected(case: &Case) -> Expected {
    let pages = case.helmreleases.div_ceil(PAGE_SIZE).max(1);
    let stuck = case.stuck();
    let (a, b) = (case.pending_install, case.deployed_unknown);
    let (patch_hr, patch_status) = if case.guardrail_trips() {
        (0, 0)
    } else {
        (2 * a + b, b)
    };
    let mut tally = Tally::new();
    let mut put = |k: &str, n: usize| {
        if n > 0 {
            tally.insert(k.to_string(), n);
        }
    };
    put("list helmreleases", pages);
    put("list secrets", stuck);
    put("patch helmreleases", patch_hr);
    put("patch helmreleases/status", patch_status);
    put("create events", stuck);
    Expected {
        pages,
        storage_lists: stuck,
        writes: patch_hr + patch_status,
        events: stuck,
        tally,
    }
}

/// Every way the product's request log departs from the formula and SPEC §5:
/// counts by verb and resource, failed requests, writes without our field
/// manager, dry-run writes.
pub fn violations(case: &Case, requests: &[RecordedRequest]) -> Vec<String> {
    let mut out = Vec::new();
    let want = expected(case).tally;
    let got = tally(requests);
    if got != want {
        let keys: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
        for k in keys {
            let (w, g) = (
                want.get(k).copied().unwrap_or(0),
                got.get(k).copied().unwrap_or(0),
            );
            if w != g {
                out.push(format!("{k}: expected {w}, got {g}"));
            }
        }
    }
    for r in requests {
        if r.status >= 400 {
            out.push(format!("{} {} answered {}", r.method, r.path, r.status));
        }
        if r.verb == "patch" && r.field_manager.as_deref() != Some(FIELD_MANAGER) {
            out.push(format!(
                "{} {} without field manager {FIELD_MANAGER}",
                r.method, r.path
            ));
        }
        if r.dry_run {
            out.push(format!("{} {} was a dry run", r.method, r.path));
        }
    }
    out
}

/// `list helmreleases 20 · list secrets 20 · …`, in a stable order.
pub fn render(t: &Tally) -> String {
    t.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(" · ")
}
