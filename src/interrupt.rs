//! SIGTERM / SIGINT (SPEC §5): the first signal starts nothing new and lets
//! the run resume what it suspended; a second one stops at once.
//!
//! Both the run and the executor read the [`Interrupt`], so it lives below
//! both. It never ends the process itself: a second signal resolves
//! [`Interrupt::stopped`], and `main` exits.

use std::sync::{Arc, OnceLock};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::exit::ExitCode;

/// The first SIGTERM/SIGINT of the run, and the token that tells every part
/// of the run to start nothing new; a second signal stops the process.
#[derive(Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    signal: Arc<OnceLock<(ExitCode, Instant)>>,
    second: CancellationToken,
    second_signal: Arc<OnceLock<ExitCode>>,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a signal: the first one cancels the run; a second one (of
    /// either kind) resolves [`Interrupt::stopped`] with its own code.
    pub fn trigger(&self, code: ExitCode) {
        if self.signal.set((code, Instant::now())).is_err() {
            let _ = self.second_signal.set(code);
            self.second.cancel();
        }
        self.token.cancel();
    }

    /// The exit code of the first signal received, if any.
    pub fn signal(&self) -> Option<ExitCode> {
        self.signal.get().map(|(code, _)| *code)
    }

    /// When the first signal arrived, if one did.
    pub fn signalled_at(&self) -> Option<Instant> {
        self.signal.get().map(|(_, at)| *at)
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Resolves when a second signal arrives, with that signal's exit code:
    /// the caller stops at once (what is left suspended is healed by the
    /// next run, `interrupted-toggle`).
    pub async fn stopped(&self) -> ExitCode {
        self.second.cancelled().await;
        self.second_signal
            .get()
            .copied()
            .unwrap_or(ExitCode::Terminated)
    }

    /// Listens for SIGTERM and SIGINT in the background and feeds them to
    /// [`Interrupt::trigger`]. The first cancels the run (what this run
    /// suspended is still resumed, for at most the executor's
    /// `SIGNAL_BUDGET`).
    pub fn listen(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        for (kind, code) in [
            (SignalKind::terminate(), ExitCode::Terminated),
            (SignalKind::interrupt(), ExitCode::Interrupted),
        ] {
            match signal(kind) {
                Ok(mut stream) => {
                    let this = self.clone();
                    tokio::spawn(async move {
                        while stream.recv().await.is_some() {
                            if this.signal().is_some() {
                                tracing::warn!(
                                    exit_code = code.code(),
                                    "second signal: stopping at once; the next run resumes what is left suspended"
                                );
                            } else {
                                tracing::warn!(
                                    exit_code = code.code(),
                                    "signal received: starting nothing new, resuming what this run suspended"
                                );
                            }
                            this.trigger(code);
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "cannot listen for a signal"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_signal_cancels_and_the_second_stops_with_its_own_code() {
        let interrupt = Interrupt::new();
        assert_eq!(interrupt.signal(), None);
        interrupt.trigger(ExitCode::Terminated);
        assert!(interrupt.token().is_cancelled());
        assert_eq!(interrupt.signal(), Some(ExitCode::Terminated));
        let stopped = tokio::time::timeout(std::time::Duration::ZERO, interrupt.stopped()).await;
        assert!(stopped.is_err(), "one signal does not stop the process");
        interrupt.trigger(ExitCode::Interrupted);
        assert_eq!(interrupt.stopped().await, ExitCode::Interrupted);
        assert_eq!(
            interrupt.signal(),
            Some(ExitCode::Terminated),
            "the first wins"
        );
    }
}
