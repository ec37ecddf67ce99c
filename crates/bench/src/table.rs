//! Renders the measured runs as markdown tables.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cases::{Case, Group};
use crate::requests;
use crate::run::{Run, Tool};
use crate::stats::{self, median, thousands};

/// Every run of one tool on one case.
pub struct Row<'a> {
    pub case: &'a Case,
    pub tool: Tool,
    pub runs: Vec<Run>,
}

impl Row<'_> {
    fn walls(&self) -> Vec<Duration> {
        self.runs.iter().map(|r| r.measured.wall).collect()
    }

    fn stopped(&self) -> bool {
        self.runs.iter().any(|r| r.measured.killed_at_cap)
    }

    fn last(&self) -> Option<&Run> {
        self.runs.last()
    }

    fn rss_kib(&self) -> Vec<u64> {
        self.runs.iter().map(|r| r.measured.max_rss_kib).collect()
    }
}

fn cluster(c: &Case) -> String {
    format!(
        "{} HR / {} ns, stuck {} ({} A + {} B), --max-actions {}",
        thousands(c.helmreleases),
        thousands(c.namespaces),
        thousands(c.stuck()),
        c.pending_install,
        c.deployed_unknown,
        c.max_actions
    )
}

fn wall_cell(row: &Row) -> String {
    if row.stopped() {
        let toggled = row.last().map_or(0, |r| r.toggled);
        format!(
            "> {} (stopped at the cap; had toggled {toggled} of {})",
            stats::secs(median(row.walls())),
            row.case.stuck()
        )
    } else {
        stats::wall(&row.walls())
    }
}

fn rss_cell(row: &Row) -> String {
    let rss = row.rss_kib();
    let max = rss.iter().copied().max().unwrap_or(0);
    match row.tool {
        Tool::Ours | Tool::PagedGet => stats::mib(max),
        Tool::Baseline => format!("{} (largest kubectl/sh)", stats::mib(max)),
    }
}

/// The comparison table: both tools on cases (a), (b), (c).
pub fn compare(rows: &[Row]) -> String {
    let mut out = String::from(
        "| case | cluster | tool | runs | wall, median (min–max) | baseline ÷ ours | CPU (user + sys) | API requests | by verb and resource | bytes (req + resp) | Secret list, mean response | peak RSS |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows.iter().filter(|r| r.case.group == Group::Compare) {
        let Some(last) = row.last() else { continue };
        let ratio = match row.tool {
            Tool::Ours => rows
                .iter()
                .find(|b| {
                    b.tool == Tool::Baseline && b.case.id == row.case.id && !b.runs.is_empty()
                })
                .map(|b| {
                    let r = median(b.walls()).as_secs_f64() / median(row.walls()).as_secs_f64();
                    if b.stopped() {
                        format!("≥ {r:.1}×")
                    } else {
                        format!("{r:.1}×")
                    }
                })
                .unwrap_or_else(|| "–".into()),
            Tool::Baseline | Tool::PagedGet => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.case.id,
            cluster(row.case),
            row.tool.name(),
            row.runs.len(),
            wall_cell(row),
            ratio,
            stats::secs(median(row.runs.iter().map(|r| r.measured.cpu).collect())),
            last.requests.len(),
            requests::render(&requests::tally(&last.requests)),
            stats::bytes(requests::bytes(&last.requests)),
            mean_secret_list(&row.runs),
            rss_cell(row),
        );
    }
    out
}

/// Mean response size of the Secret lists (the product's are metadata-only;
/// the baseline's carry every release payload).
fn mean_secret_list(runs: &[Run]) -> String {
    let sizes: Vec<usize> = runs
        .iter()
        .flat_map(|r| &r.requests)
        .filter(|r| requests::key(r) == "list secrets")
        .map(|r| r.response_bytes)
        .collect();
    match sizes.len() {
        0 => "–".to_string(),
        n => format!("{} B", sizes.iter().sum::<usize>() / n),
    }
}

/// The scaling table: the product alone as the cluster grows.
pub fn scaling(rows: &[Row]) -> String {
    let mut out = String::from(
        "| HelmReleases | namespaces | stuck | runs | wall, median (min–max) | added per extra 1 000 HR | CPU (user + sys) | peak RSS, max of runs | API requests | bytes (req + resp) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut previous: Option<(usize, Duration)> = None;
    for row in rows.iter().filter(|r| r.case.group == Group::Scaling) {
        let Some(last) = row.last() else { continue };
        let med = median(row.walls());
        let slope = match previous {
            Some((n, t)) if row.case.helmreleases > n => {
                let per_k = (med.as_secs_f64() - t.as_secs_f64()) * 1e6
                    / (row.case.helmreleases - n) as f64;
                format!("{per_k:.0} ms")
            }
            _ => "–".to_string(),
        };
        previous = Some((row.case.helmreleases, med));
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {} | {} | {slope} | {} | {} | {} | {} |",
            thousands(row.case.helmreleases),
            if row.case.depends_on {
                " with dependsOn chains"
            } else {
                ""
            },
            thousands(row.case.namespaces),
            row.case.stuck(),
            row.runs.len(),
            stats::wall(&row.walls()),
            stats::secs(median(row.runs.iter().map(|r| r.measured.cpu).collect())),
            rss_cell(row),
            last.requests.len(),
            stats::bytes(requests::bytes(&last.requests)),
        );
    }
    out
}

/// One line per product case: the formula, the measured count, the verdict.
pub fn formula(rows: &[Row]) -> String {
    let mut out = String::from(
        "| case | expected: pages + storage lists + writes + events | measured (every run) | holds | mean Secret-list response |\n|---|---|---|---|---|\n",
    );
    for row in rows
        .iter()
        .filter(|r| r.tool == Tool::Ours && !r.case.dry_run)
    {
        let want = requests::expected(row.case);
        let counts: Vec<String> = row
            .runs
            .iter()
            .map(|r| r.requests.len().to_string())
            .collect();
        let holds = row
            .runs
            .iter()
            .all(|r| requests::tally(&r.requests) == want.tally);
        let mean_secret_list = mean_secret_list(&row.runs);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {mean_secret_list} |",
            row.case.id,
            want.formula(),
            counts.join(", "),
            if holds { "yes" } else { "**NO**" }
        );
    }
    out
}

/// The decoding cases: per case, the product's dry run and the bare paged
/// GET, median wall and CPU, peak RSS, and the product's ratios to the GET.
pub fn decoding(rows: &[Row]) -> String {
    let mut out = String::from(
        "| HelmReleases | tool | wall (median) | CPU user+sys (median) | peak RSS (max) | wall ratio | CPU ratio |\n|---|---|---|---|---|---|---|\n",
    );
    let cpu = |row: &Row| median(row.runs.iter().map(|r| r.measured.cpu).collect());
    for row in rows.iter().filter(|r| r.case.group == Group::Decoding) {
        let get = rows
            .iter()
            .find(|g| g.tool == Tool::PagedGet && g.case.id == row.case.id && !g.runs.is_empty());
        let ratio = |ours: Duration, theirs: Duration| {
            format!(
                "{:.2}×",
                ours.as_secs_f64() / theirs.as_secs_f64().max(1e-9)
            )
        };
        let (wall_ratio, cpu_ratio) = match (row.tool, get) {
            (Tool::Ours, Some(get)) => (
                ratio(median(row.walls()), median(get.walls())),
                ratio(cpu(row), cpu(get)),
            ),
            _ => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {wall_ratio} | {cpu_ratio} |",
            thousands(row.case.helmreleases),
            row.tool.name(),
            stats::wall(&row.walls()),
            stats::secs(cpu(row)),
            stats::mib(row.rss_kib().into_iter().max().unwrap_or(0)),
        );
    }
    out
}
