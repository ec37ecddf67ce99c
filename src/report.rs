//! The report of one run (SPEC §7): built from the plan with every action
//! `planned`, updated by the executor, rendered as text or JSON on stdout.
//! The JSON schema is written down in `docs/report-schema.md`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::config::{Config, format_duration};
use crate::exit::ExitCode;
use crate::failure::Failure;
use crate::model::{ActionResult, Branch, DryRun, Reason};
use crate::plan::{Guardrail, Plan};

/// One action and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    pub namespace: String,
    pub name: String,
    pub branch: Branch,
    pub reason: Reason,
    pub result: ActionResult,
    /// Why it failed or rolled back; both errors when a rollback failed too.
    pub error: Option<String>,
    /// The HelmReleases in scope it holds back through `dependsOn`, sorted.
    pub blocks: Vec<String>,
}

/// One listed skip (every skip except `ready`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkipRecord {
    pub namespace: String,
    pub name: String,
    pub reason: Reason,
    /// The HelmReleases in scope it holds back through `dependsOn`, sorted.
    pub blocks: Vec<String>,
}

/// The summary counts (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// HelmReleases read.
    pub scanned: usize,
    /// Decided at the `already-corrected` row or below.
    pub stuck: usize,
    /// Guardrail candidates at plan time (no repairs).
    pub planned: usize,
    /// Actions that succeeded, repairs included; 0 in a dry run.
    pub acted: usize,
    /// Actions failed or rolled back.
    pub failed: usize,
}

/// The configuration as the report shows it: durations as the flags accept
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSummary {
    pub stuck_threshold: String,
    pub max_actions: usize,
    pub suspend_wait: String,
    pub cooldown: String,
    pub timeout: String,
    pub namespaces: Vec<String>,
    pub selector: Option<String>,
}

impl From<&Config> for ConfigSummary {
    fn from(c: &Config) -> Self {
        ConfigSummary {
            stuck_threshold: format_duration(c.stuck_threshold),
            max_actions: c.max_actions,
            suspend_wait: format_duration(c.suspend_wait),
            cooldown: format_duration(c.cooldown),
            timeout: format_duration(c.timeout),
            namespaces: c.namespaces.clone(),
            selector: c.selector.clone(),
        }
    }
}

/// The guardrail as the report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailSummary {
    pub tripped: bool,
    pub candidates: usize,
    pub max_actions: usize,
}

impl From<Guardrail> for GuardrailSummary {
    fn from(g: Guardrail) -> Self {
        GuardrailSummary {
            tripped: g.tripped,
            candidates: g.candidates,
            max_actions: g.max_actions,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dry_run: DryRun,
    pub config: ConfigSummary,
    pub counts: Counts,
    pub guardrail: GuardrailSummary,
    /// Actions in plan order (namespace, then name).
    pub actions: Vec<ActionRecord>,
    /// Listed skips in plan order.
    pub skipped: Vec<SkipRecord>,
    pub exit_code: i32,
}

impl Report {
    /// The report of a plan before anything ran: every action `planned`,
    /// `acted` and `failed` 0, exit code 1 when the guardrail tripped, 3 when
    /// a HelmRelease could not be decided.
    pub fn from_plan(plan: &Plan, config: &Config) -> Report {
        let mut report = Report {
            dry_run: config.dry_run,
            config: ConfigSummary::from(config),
            counts: Counts {
                scanned: plan.scanned,
                stuck: plan.stuck(),
                planned: plan.planned(),
                acted: 0,
                failed: 0,
            },
            guardrail: plan.guardrail.into(),
            actions: plan
                .actions()
                .filter_map(|i| {
                    Some(ActionRecord {
                        namespace: i.namespace.clone(),
                        name: i.name.clone(),
                        branch: i.decision.branch?,
                        reason: i.decision.reason,
                        result: ActionResult::Planned,
                        error: None,
                        blocks: i.blocks.clone(),
                    })
                })
                .collect(),
            skipped: plan
                .skips()
                .map(|i| SkipRecord {
                    namespace: i.namespace.clone(),
                    name: i.name.clone(),
                    reason: i.decision.reason,
                    blocks: i.blocks.clone(),
                })
                .collect(),
            exit_code: 0,
        };
        report.finish(None);
        report
    }

    /// The report of a run whose listing failed: nothing planned, nothing
    /// acted, exit 4 (or a signal's code).
    pub fn list_failed(scanned: usize, config: &Config, signal: Option<ExitCode>) -> Report {
        let mut report = Report::from_plan(&Plan::empty(scanned, config), config);
        report.finish(Some(ExitCode::ListFailed));
        if let Some(signal) = signal {
            report.finish(Some(signal));
        }
        report
    }

    /// Records what became of one action.
    pub fn set_result(
        &mut self,
        namespace: &str,
        name: &str,
        result: ActionResult,
        error: Option<Failure>,
    ) {
        if let Some(a) = self.action_mut(namespace, name) {
            a.result = result;
            a.error = error.map(|failure| failure.to_string());
        }
    }

    /// A re-decision after a 409 chose another action for this HelmRelease.
    pub fn replace_action(&mut self, namespace: &str, name: &str, branch: Branch, reason: Reason) {
        if let Some(a) = self.action_mut(namespace, name) {
            a.branch = branch;
            a.reason = reason;
            a.result = ActionResult::Planned;
            a.error = None;
        }
    }

    /// A re-decision after a 409 chose a skip: the action is dropped and the
    /// skip listed (a `ready` skip is counted, not listed). `planned` and the
    /// guardrail stay as planned.
    pub fn replace_with_skip(&mut self, namespace: &str, name: &str, reason: Reason) {
        let mut blocks = Vec::new();
        self.actions.retain_mut(|a| {
            let this = a.namespace == namespace && a.name == name;
            if this {
                blocks = std::mem::take(&mut a.blocks);
            }
            !this
        });
        if reason != Reason::Ready {
            let at = self
                .skipped
                .partition_point(|s| (s.namespace.as_str(), s.name.as_str()) < (namespace, name));
            self.skipped.insert(
                at,
                SkipRecord {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    reason,
                    blocks,
                },
            );
        }
    }

    /// Recomputes `acted`, `failed` and the exit code from the actions, the
    /// skips and the guardrail, combined with `extra` (a failed list or a
    /// signal; call again to add another). Idempotent.
    pub fn finish(&mut self, extra: Option<ExitCode>) {
        let succeeded = self
            .actions
            .iter()
            .filter(|a| a.result == ActionResult::Succeeded)
            .count();
        self.counts.acted = if self.dry_run == DryRun::None {
            succeeded
        } else {
            0
        };
        self.counts.failed = self
            .actions
            .iter()
            .filter(|a| matches!(a.result, ActionResult::Failed | ActionResult::RolledBack))
            .count();
        let undecided = self
            .skipped
            .iter()
            .any(|s| s.reason == Reason::StorageUnreadable);
        let mut code = ExitCode::from_code(self.exit_code).unwrap_or(ExitCode::Success);
        if self.guardrail.tripped {
            code = code.combine(ExitCode::GuardrailTripped);
        }
        if self.counts.failed > 0 || undecided {
            code = code.combine(ExitCode::ActionsFailed);
        }
        if let Some(extra) = extra {
            code = code.combine(extra);
        }
        self.exit_code = code.code();
    }

    /// The exit code as an [`ExitCode`].
    pub fn exit(&self) -> ExitCode {
        ExitCode::from_code(self.exit_code).unwrap_or(ExitCode::Success)
    }

    fn action_mut(&mut self, namespace: &str, name: &str) -> Option<&mut ActionRecord> {
        self.actions
            .iter_mut()
            .find(|a| a.namespace == namespace && a.name == name)
    }
}

/// `-o text`: one line per action, one per listed skip, then the summary.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    for a in &r.actions {
        let _ = write!(
            out,
            "{}/{} {} {} {}",
            a.namespace, a.name, a.branch, a.reason, a.result
        );
        write_blocks(&mut out, &a.blocks);
        if let Some(error) = &a.error {
            let _ = write!(out, " error={}", one_line(error));
        }
        out.push('\n');
    }
    for s in &r.skipped {
        let _ = write!(out, "{}/{} skip {}", s.namespace, s.name, s.reason);
        write_blocks(&mut out, &s.blocks);
        out.push('\n');
    }
    let c = &r.counts;
    let _ = writeln!(
        out,
        "scanned={} stuck={} planned={} acted={} failed={} guardrail={} dry-run={}",
        c.scanned,
        c.stuck,
        c.planned,
        c.acted,
        c.failed,
        if r.guardrail.tripped { "tripped" } else { "ok" },
        r.dry_run
    );
    out
}

/// `-o json`: one pretty-printed document, newline-terminated.
pub fn render_json(r: &Report) -> String {
    match serde_json::to_string_pretty(r) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        // Serializing plain structs of strings and numbers cannot fail; keep
        // the process honest anyway.
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    }
}

/// ` blocks=N` when N > 0 (SPEC §7).
fn write_blocks(out: &mut String, blocks: &[String]) {
    if !blocks.is_empty() {
        let _ = write!(out, " blocks={}", blocks.len());
    }
}

/// An error message on one line (a text report line must not break).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
