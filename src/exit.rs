//! Exit codes (SPEC §7), in one place.

/// How the process ends. When several apply, [`ExitCode::combine`] keeps the
/// one SPEC §7 puts first: a signal (130/143), then 4, then 1, then 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// Done: nothing to do, or every action succeeded.
    Success = 0,
    /// The guardrail tripped: no recovery was acted on.
    GuardrailTripped = 1,
    /// Bad usage (bad flag, bad duration); no report is printed.
    Usage = 2,
    /// One or more actions failed or rolled back, or a HelmRelease could not
    /// be decided (`storage-unreadable`).
    ActionsFailed = 3,
    /// HelmReleases could not be listed: the plan is incomplete, nothing was
    /// acted on.
    ListFailed = 4,
    /// SIGINT.
    Interrupted = 130,
    /// SIGTERM.
    Terminated = 143,
}

impl ExitCode {
    /// The process exit status.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Every exit code.
    pub const ALL: [ExitCode; 7] = [
        ExitCode::Success,
        ExitCode::GuardrailTripped,
        ExitCode::Usage,
        ExitCode::ActionsFailed,
        ExitCode::ListFailed,
        ExitCode::Interrupted,
        ExitCode::Terminated,
    ];

    /// The variant for a process exit status, if it is one of ours.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        ExitCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// Higher wins in [`ExitCode::combine`].
    fn precedence(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::ActionsFailed => 1,
            ExitCode::GuardrailTripped => 2,
            ExitCode::ListFailed => 3,
            ExitCode::Interrupted | ExitCode::Terminated => 4,
            // Usage ends the run before anything else can happen.
            ExitCode::Usage => 5,
        }
    }

    /// The code that wins when both apply; on a tie (SIGINT and SIGTERM)
    /// the first one received, `self`, is kept.
    #[must_use]
    pub fn combine(self, other: ExitCode) -> ExitCode {
        if other.precedence() > self.precedence() {
            other
        } else {
            self
        }
    }

    /// The winner among all that apply; `Success` when none does.
    pub fn worst(codes: impl IntoIterator<Item = ExitCode>) -> ExitCode {
        codes.into_iter().fold(ExitCode::Success, ExitCode::combine)
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        // Every variant fits in a u8.
        std::process::ExitCode::from(code as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::ExitCode::*;
    use super::*;

    #[test]
    fn codes_are_the_spec_numbers() {
        let codes = [
            (Success, 0),
            (GuardrailTripped, 1),
            (Usage, 2),
            (ActionsFailed, 3),
            (ListFailed, 4),
            (Interrupted, 130),
            (Terminated, 143),
        ];
        for (code, number) in codes {
            assert_eq!(code.code(), number);
        }
    }

    #[test]
    fn every_code_reads_back_from_its_number() {
        for code in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(code.code()), Some(code));
        }
        assert_eq!(ExitCode::from_code(5), None);
    }

    #[test]
    fn a_signal_beats_everything_else_that_happened() {
        for other in [Success, GuardrailTripped, ActionsFailed, ListFailed] {
            assert_eq!(Terminated.combine(other), Terminated);
            assert_eq!(other.combine(Interrupted), Interrupted);
        }
    }

    #[test]
    fn the_first_signal_received_wins_over_the_second() {
        assert_eq!(Interrupted.combine(Terminated), Interrupted);
        assert_eq!(Terminated.combine(Interrupted), Terminated);
    }

    #[test]
    fn a_failed_list_beats_a_tripped_guardrail_and_failed_actions() {
        assert_eq!(ExitCode::worst([GuardrailTripped, ListFailed]), ListFailed);
        assert_eq!(ExitCode::worst([ActionsFailed, ListFailed]), ListFailed);
    }

    #[test]
    fn a_tripped_guardrail_beats_failed_actions() {
        assert_eq!(ActionsFailed.combine(GuardrailTripped), GuardrailTripped);
        assert_eq!(GuardrailTripped.combine(ActionsFailed), GuardrailTripped);
    }

    #[test]
    fn nothing_to_report_is_success() {
        assert_eq!(ExitCode::worst([]), Success);
        assert_eq!(ExitCode::worst([Success, ActionsFailed]), ActionsFailed);
    }
}
