//! The recovery matrix of issue 20: what the real helm-controller does with each
//! stuck state, what we decide, and whether our fix holds.
//!
//! The real-cluster tests (`tests/real/recovery.rs`) write one [`Record`] per
//! (helm-controller version, stuck state) as JSON into a results directory
//! ([`results_dir`]); [`render`] turns a set of records into the Markdown of
//! `docs/recovery-matrix.md`. The table is never typed by hand: the document
//! names the command that produced it, and a test renders the committed records
//! and compares.
//!
//! A record says what was *measured*. The verdicts ([`verdicts`]) are derived
//! here from the measurement, with one rule per way our decision can be wrong
//! (issue 20, point 7): we skip a state the controller never leaves; we act on
//! one it leaves by itself within its interval; our fix is undone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The helm-controller versions of the testbed (issue 19, LAYOUT.md), oldest first.
pub const VERSIONS: [&str; 3] = ["v1.4.3", "v1.6.3", "v1.6.4"];

/// The stuck states issue 20 requires for every version. Further states (issue
/// 20 point 5) use other keys ("5a", "5b", ...) and are rendered when present.
pub const REQUIRED_STATES: [&str; 4] = ["1", "2", "3", "4"];

/// Environment variable that overrides the results directory.
pub const DIR_ENV: &str = "RECOVERY_MATRIX_DIR";

/// One-line title of a required state; others carry theirs in the record.
pub fn state_title(state: &str) -> Option<&'static str> {
    Some(match state {
        "1" => "Ready write lost, `Released` missing",
        "2" => "Ready write lost, `Released=True` recorded",
        "3" => "controller killed after Helm stored `deployed`",
        "4" => "controller killed while Helm's release is `pending-install`",
        _ => return None,
    })
}

/// Where records are written and read: `$RECOVERY_MATRIX_DIR`, else
/// `<workspace>/target/recovery-matrix`.
pub fn results_dir(workspace_root: &Path) -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root.join("target").join("recovery-matrix"),
    }
}

/// The file name of a record: `<version>-<state>.json`.
pub fn file_name(version: &str, state: &str) -> String {
    format!("{version}-{state}.json")
}

/// What one real-cluster test measured for one (version, state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// helm-controller version, e.g. `v1.6.4`.
    pub version: String,
    /// `1`..`4`, or a further state's key (`5a`, ...).
    pub state: String,
    /// Title of a state that is not one of [`REQUIRED_STATES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_title: Option<String>,
    /// How the test created the state (the production mechanism, in a line).
    pub mechanism: String,
    /// The HelmRelease's `spec.interval`, seconds.
    pub interval_seconds: f64,
    /// The controller left alone with the stuck state.
    pub alone: Alone,
    /// Our decision on the stuck state.
    pub decision: Decision,
    /// After our run: `Ready=True`. `None` when the run did not act.
    #[serde(default)]
    pub recovered: Option<bool>,
    /// `Ready=True` still holds after an interval reconcile and a
    /// `reconcile.fluxcd.io/requestedAt` reconcile of the real controller.
    /// `None` when the run did not act.
    #[serde(default)]
    pub stays: Option<bool>,
    /// A HelmRelease that `dependsOn` it ended `Ready=True`.
    #[serde(default)]
    pub dependents: Option<bool>,
    /// No object but the stuck HelmRelease (and the Events) changed in our run.
    pub nothing_else: bool,
    /// The stuck HelmRelease as our run found it (trimmed).
    #[serde(default)]
    pub before: serde_json::Value,
    /// The HelmRelease at the end of the test (trimmed).
    #[serde(default)]
    pub after: serde_json::Value,
    /// Free-form observations worth keeping (one line each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The controller alone with the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alone {
    /// The state ended (Ready True, or no longer the state) without us.
    pub left_by_itself: bool,
    /// Seconds from the state's creation until it ended (when it did). For a
    /// state created with the controller stopped, from the restart.
    #[serde(default)]
    pub after_seconds: Option<f64>,
    /// What ended it: `retry` (the rate-limited requeue after a failed
    /// reconcile), `interval`, `restart` (the start-up reconcile), `requestedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_by: Option<String>,
    /// How long the test watched, seconds.
    pub observed_seconds: f64,
    /// Controller restarts during the watch.
    pub restarts: u32,
    /// The stuck state's status signature.
    pub signature: Signature,
    /// The signature once the controller left the state, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_signature: Option<Signature>,
}

/// The parts of a HelmRelease and its Helm storage that tell states apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub history0: Option<History0>,
    /// The latest Helm release Secret.
    #[serde(default)]
    pub storage: Option<Storage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History0 {
    pub status: String,
    #[serde(default)]
    pub action: Option<String>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    pub version: i64,
    pub status: String,
}

/// Our decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Reason code of the `--dry-run` plan.
    pub reason: String,
    /// Reason code `explain` printed.
    pub explain_reason: String,
    /// `correct-status`, `toggle-suspend`, `resume`, `clear-marker`, or `skip`.
    pub branch: String,
    /// Result of the acting run (`succeeded`, `failed`, ...), when it acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl Decision {
    /// The run wrote to the HelmRelease.
    pub fn acts(&self) -> bool {
        self.branch != "skip"
    }
}

/// One way a cell shows our decision is wrong, or the measurement incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// We skip a state the controller never left while watched.
    SkipsStateNeverLeft,
    /// We act on a state the controller left by itself within one interval.
    ActsOnSelfHealing,
    /// Our fix did not hold across the controller's next reconciles.
    FixUndone,
    /// Our run acted but the HelmRelease did not end `Ready=True`.
    FixFailed,
    /// Our run acted but a dependent did not become Ready.
    DependentsBlocked,
    /// Our run changed something besides the stuck HelmRelease.
    ChangedOtherObjects,
    /// `explain` and the run's plan gave different reasons.
    ExplainDisagrees,
}

impl Verdict {
    pub fn text(&self) -> &'static str {
        match self {
            Verdict::SkipsStateNeverLeft => "we skip a state the controller never leaves",
            Verdict::ActsOnSelfHealing => {
                "we act on a state the controller leaves by itself within its interval"
            }
            Verdict::FixUndone => "our fix is undone by the controller",
            Verdict::FixFailed => "our run did not end Ready=True",
            Verdict::DependentsBlocked => "a dependent stays blocked",
            Verdict::ChangedOtherObjects => "our run changed other objects",
            Verdict::ExplainDisagrees => "explain and the run disagree",
        }
    }
}

/// Slack on "within its interval": the controller jitters the interval by up to
/// ±5 % (`--interval-jitter-percentage`), and a reconcile takes a moment.
fn within_interval(after: f64, interval: f64) -> bool {
    after <= interval * 1.05 + 5.0
}

/// Every rule of issue 20 point 7 (and the other checks of a cell) that the
/// record breaks; empty when the decision is right.
pub fn verdicts(r: &Record) -> Vec<Verdict> {
    let mut out = Vec::new();
    let acts = r.decision.acts();
    if !acts && !r.alone.left_by_itself {
        out.push(Verdict::SkipsStateNeverLeft);
    }
    if acts
        && r.alone.left_by_itself
        && r.alone
            .after_seconds
            .is_some_and(|s| within_interval(s, r.interval_seconds))
    {
        out.push(Verdict::ActsOnSelfHealing);
    }
    if acts {
        match r.recovered {
            Some(true) if r.stays == Some(false) => out.push(Verdict::FixUndone),
            Some(false) | None => out.push(Verdict::FixFailed),
            Some(true) => {}
        }
        if r.dependents == Some(false) {
            out.push(Verdict::DependentsBlocked);
        }
    }
    if !r.nothing_else {
        out.push(Verdict::ChangedOtherObjects);
    }
    if r.decision.reason != r.decision.explain_reason {
        out.push(Verdict::ExplainDisagrees);
    }
    out
}

/// Reads every `*.json` record of `dir`. A file that does not parse, or whose
/// name is not `<version>-<state>.json` of its content, is an error.
pub fn load_dir(dir: &Path) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading records in {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let record: Record = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a recovery-matrix record", path.display()))?;
        let expected = file_name(&record.version, &record.state);
        if path.file_name().and_then(|n| n.to_str()) != Some(expected.as_str()) {
            bail!(
                "{} holds the record of {} state {}; it must be named {expected}",
                path.display(),
                record.version,
                record.state
            );
        }
        records.push(record);
    }
    Ok(records)
}

/// Writes a record as `<dir>/<version>-<state>.json` (pretty JSON), creating
/// `dir`. Returns the path.
pub fn write_record(dir: &Path, record: &Record) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(file_name(&record.version, &record.state));
    let mut text = serde_json::to_string_pretty(record)?;
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The (version, state) cells of `versions` × [`REQUIRED_STATES`] that no
/// record covers.
pub fn missing_cells(records: &[Record], versions: &[String]) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for v in versions {
        for s in REQUIRED_STATES {
            if !records.iter().any(|r| &r.version == v && r.state == s) {
                missing.push((v.clone(), s.to_string()));
            }
        }
    }
    missing
}

/// Sort key of a cell: (version's position in the required list, state number).
type CellKey = ((usize, String), (u64, String));

fn version_key(versions: &[String], v: &str) -> (usize, String) {
    (
        versions.iter().position(|x| x == v).unwrap_or(usize::MAX),
        v.to_string(),
    )
}

fn state_key(s: &str) -> (u64, String) {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    (digits.parse().unwrap_or(u64::MAX), s.to_string())
}

/// How to render: which versions are required, and what the document says
/// produced it.
pub struct RenderOptions<'a> {
    pub versions: &'a [String],
    /// The command line that regenerates the document, shown in it.
    pub command: &'a str,
    /// Render even when required cells are missing (marked "not measured").
    pub allow_missing: bool,
}

fn fmt_secs(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

fn fmt_opt_bool(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    }
}

/// `Ready=Unknown/Progressing, Released=True/InstallSucceeded; history[0] deployed
/// install v1; storage v1 deployed`.
pub fn fmt_signature(s: &Signature) -> String {
    let conds = if s.conditions.is_empty() {
        "no conditions".to_string()
    } else {
        s.conditions
            .iter()
            .map(|c| format!("{}={}/{}", c.type_, c.status, c.reason))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hist = match &s.history0 {
        Some(h) => format!(
            "history[0] {} {}v{}",
            h.status,
            h.action
                .as_deref()
                .map(|a| format!("{a} "))
                .unwrap_or_default(),
            h.version
        ),
        None => "history empty".to_string(),
    };
    let storage = match &s.storage {
        Some(st) => format!("storage v{} {}", st.version, st.status),
        None => "no release Secret".to_string(),
    };
    format!("{conds}; {hist}; {storage}")
}

fn fmt_alone(a: &Alone) -> String {
    if a.left_by_itself {
        let by = a.left_by.as_deref().unwrap_or("?");
        match (a.after_seconds, by) {
            (Some(s), "restart") => format!(
                "left by itself at the controller's (re)start, {} after it",
                fmt_secs(s)
            ),
            (Some(s), _) => format!("left by itself after {} ({by})", fmt_secs(s)),
            (None, _) => format!("left by itself ({by})"),
        }
    } else {
        format!(
            "**never** (watched {}, {} restart{})",
            fmt_secs(a.observed_seconds),
            a.restarts,
            if a.restarts == 1 { "" } else { "s" }
        )
    }
}

fn cell_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Renders the Markdown of `docs/recovery-matrix.md`. Fails when a required
/// cell is missing (unless `allow_missing`), or when two records claim the same
/// cell.
pub fn render(records: &[Record], opts: &RenderOptions<'_>) -> Result<String> {
    let mut by_cell: BTreeMap<CellKey, &Record> = BTreeMap::new();
    for r in records {
        let key = (version_key(opts.versions, &r.version), state_key(&r.state));
        if by_cell.insert(key, r).is_some() {
            bail!("two records for {} state {}", r.version, r.state);
        }
    }
    let missing = missing_cells(records, opts.versions);
    if !missing.is_empty() && !opts.allow_missing {
        let list: Vec<String> = missing
            .iter()
            .map(|(v, s)| format!("{v} state {s}"))
            .collect();
        bail!(
            "the matrix is incomplete; no record for: {} (run the real recovery tests, tests/real/recovery.rs)",
            list.join(", ")
        );
    }

    let mut md = String::new();
    md.push_str("# Recovery matrix: the real helm-controller, each stuck state, our decision\n\n");
    md.push_str("<!-- Generated; do not edit. Regenerate with the command below. -->\n\n");
    let _ = writeln!(
        md,
        "Generated by `{}` from the records that `tests/real/recovery.rs` writes \
         (one per helm-controller version and stuck state; SPEC §11, issue 20). \
         Each record is one test run against the testbed: real etcd and \
         kube-apiserver, source-controller, and the helm-controller version of the \
         row, reaching the API server through the fault proxy that creates the \
         state. What the controller's source predicts is in \
         [helm-controller-source.md](helm-controller-source.md).\n",
        opts.command
    );
    md.push_str(
        "Columns: **alone** — does the controller leave the state by itself, when, \
         and what ended it; **decision** — our reason code (`--dry-run` plan; \
         `explain` agrees unless the verdict says otherwise) and branch; \
         **recovered** — `Ready=True` after our run; **stays** — still `True` \
         after an interval reconcile and a `requestedAt` reconcile; \
         **dependents** — a HelmRelease that `dependsOn` it became Ready; \
         **nothing else** — no other object changed. `—`: our run did not act.\n\n",
    );
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(v, s)| format!("{v} × {s}")).collect();
        let _ = writeln!(
            md,
            "> **INCOMPLETE** — not measured yet: {}. This document does not meet \
             issue 20's acceptance until every cell has a record.\n",
            list.join(", ")
        );
    }

    md.push_str("## States\n\n| state | what | mechanism (as measured) |\n|---|---|---|\n");
    let mut states: BTreeMap<(u64, String), (String, String)> = BTreeMap::new();
    for r in records {
        let title = state_title(&r.state)
            .map(str::to_string)
            .or_else(|| r.state_title.clone())
            .unwrap_or_else(|| "(untitled)".to_string());
        states
            .entry(state_key(&r.state))
            .or_insert((title, r.mechanism.clone()));
    }
    for s in REQUIRED_STATES {
        states
            .entry(state_key(s))
            .or_insert((state_title(s).unwrap_or("").to_string(), "—".to_string()));
    }
    for ((_, key), (title, mech)) in &states {
        let _ = writeln!(
            md,
            "| {key} | {} | {} |",
            cell_escape(title),
            cell_escape(mech)
        );
    }

    md.push_str("\n## Matrix\n\n");
    md.push_str("| version | state | alone | stuck signature | decision | recovered | stays | dependents | nothing else | verdict |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let mut rows: Vec<(&str, &str, Option<&Record>)> = Vec::new();
    for v in opts.versions {
        for s in REQUIRED_STATES {
            if !by_cell.values().any(|r| &r.version == v && r.state == s) {
                rows.push((v.as_str(), s, None));
            }
        }
    }
    for r in by_cell.values() {
        rows.push((r.version.as_str(), r.state.as_str(), Some(r)));
    }
    rows.sort_by(|a, b| {
        (version_key(opts.versions, a.0), state_key(a.1))
            .cmp(&(version_key(opts.versions, b.0), state_key(b.1)))
    });
    let mut wrong: Vec<(&Record, Vec<Verdict>)> = Vec::new();
    for (v, s, r) in rows {
        let Some(r) = r else {
            let _ = writeln!(
                md,
                "| {v} | {s} | not measured | — | — | — | — | — | — | **missing** |"
            );
            continue;
        };
        let vs = verdicts(r);
        let verdict = if vs.is_empty() {
            "ok".to_string()
        } else {
            format!(
                "**WRONG**: {}",
                vs.iter().map(Verdict::text).collect::<Vec<_>>().join("; ")
            )
        };
        let decision = if r.decision.acts() {
            format!(
                "`{}` → {}{}",
                r.decision.reason,
                r.decision.branch,
                r.decision
                    .result
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            )
        } else {
            format!("`{}` → skip", r.decision.reason)
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.version,
            r.state,
            cell_escape(&fmt_alone(&r.alone)),
            cell_escape(&fmt_signature(&r.alone.signature)),
            cell_escape(&decision),
            fmt_opt_bool(r.recovered),
            fmt_opt_bool(r.stays),
            fmt_opt_bool(r.dependents),
            if r.nothing_else { "yes" } else { "**no**" },
            verdict
        );
        if !vs.is_empty() {
            wrong.push((r, vs));
        }
    }

    md.push_str("\n## Where our decision is wrong\n\n");
    if wrong.is_empty() {
        md.push_str("Nowhere in the measured cells.\n");
    } else {
        for (r, vs) in &wrong {
            let _ = writeln!(
                md,
                "* **{} state {}** — {}. Decision `{}`; alone: {}.",
                r.version,
                r.state,
                vs.iter().map(Verdict::text).collect::<Vec<_>>().join("; "),
                r.decision.reason,
                fmt_alone(&r.alone).replace("**", "")
            );
        }
        md.push_str("\nThe objects before and after are under *Cells* below.\n");
    }

    md.push_str("\n## Cells\n");
    for r in by_cell.values() {
        let _ = writeln!(md, "\n### {} state {}\n", r.version, r.state);
        let _ = writeln!(md, "* mechanism: {}", r.mechanism);
        let _ = writeln!(md, "* interval: {}", fmt_secs(r.interval_seconds));
        let _ = writeln!(md, "* alone: {}", fmt_alone(&r.alone).replace("**", ""));
        let _ = writeln!(md, "* stuck: {}", fmt_signature(&r.alone.signature));
        if let Some(left) = &r.alone.left_signature {
            let _ = writeln!(
                md,
                "* after the controller left it: {}",
                fmt_signature(left)
            );
        }
        let _ = writeln!(
            md,
            "* decision: plan `{}`, explain `{}`, branch {}{}",
            r.decision.reason,
            r.decision.explain_reason,
            r.decision.branch,
            r.decision
                .result
                .as_deref()
                .map(|x| format!(", result {x}"))
                .unwrap_or_default()
        );
        for n in &r.notes {
            let _ = writeln!(md, "* {n}");
        }
        for (label, obj) in [("before our run", &r.before), ("after", &r.after)] {
            if obj.is_null() {
                continue;
            }
            let _ = writeln!(
                md,
                "\n<details><summary>{label}</summary>\n\n```json\n{}\n```\n\n</details>",
                serde_json::to_string_pretty(obj).unwrap_or_default()
            );
        }
    }
    Ok(md)
}
