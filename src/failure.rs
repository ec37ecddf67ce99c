//! Why something did not succeed: the one vocabulary of failure causes.
//!
//! The report's `error` field, the Events' notes and the log lines all
//! print a [`Failure`] through its one `Display`, so a cause has one
//! wording wherever it shows up.

use std::fmt;

/// Why an action failed or rolled back, or why Helm storage could not be
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A step failed: the step, the object and every cause
    /// (`Error::failure`).
    Step(String),
    /// No answer before the run's deadline (`--timeout`).
    Deadline,
    /// SPEC §5: the object changed under the action (a second 409 on its
    /// first write, or someone else took over a later write).
    ChangedDuringRun,
    /// A signal came during the suspend wait: resumed early.
    WaitInterrupted,
    /// The run's deadline came during the suspend wait: resumed early.
    WaitCutByDeadline,
    /// Helm storage was needed but not read (`explain` without it).
    NotRead,
    /// Branch B's status patch failed and so did putting the annotation
    /// back: both causes, in that order.
    RevertFailed {
        status: Box<Failure>,
        revert: Box<Failure>,
    },
}

impl Failure {
    /// The wording of [`Failure::Deadline`], for messages built elsewhere
    /// (`thiserror` formats).
    pub const DEADLINE: &'static str = "no answer before the run's deadline (--timeout)";
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Step(chain) => f.write_str(chain),
            Failure::Deadline => f.write_str(Failure::DEADLINE),
            Failure::ChangedDuringRun => f.write_str("changed-during-run"),
            Failure::WaitInterrupted => {
                f.write_str("interrupted: resumed before --suspend-wait elapsed")
            }
            Failure::WaitCutByDeadline => {
                f.write_str("deadline: resumed before --suspend-wait elapsed")
            }
            Failure::NotRead => f.write_str("not read"),
            Failure::RevertFailed { status, revert } => write!(f, "{status}; {revert}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_revert_shows_both_causes_in_order() {
        let status = "patch status of HelmRelease apps/web: boom (500 InternalError)";
        let failure = Failure::RevertFailed {
            status: Box::new(Failure::Step(status.to_owned())),
            revert: Box::new(Failure::Deadline),
        };
        assert_eq!(
            failure.to_string(),
            "patch status of HelmRelease apps/web: boom (500 InternalError); \
             no answer before the run's deadline (--timeout)"
        );
    }

    #[test]
    fn the_spec_word_for_a_change_during_the_run() {
        assert_eq!(Failure::ChangedDuringRun.to_string(), "changed-during-run");
    }
}
