//! `stuck-hr-recovery`: parse flags, log to stderr, run once (or explain),
//! print the result on stdout, exit with SPEC §7's code.

use std::io::Write as _;

use clap::Parser as _;
use stuck_hr_recovery::app::{self, Ending};
use stuck_hr_recovery::cli::Cli;
use stuck_hr_recovery::exit::ExitCode;
use stuck_hr_recovery::interrupt::Interrupt;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // --help and --version are not errors.
            return match error.use_stderr() {
                true => ExitCode::Usage.into(),
                false => ExitCode::Success.into(),
            };
        }
    };
    let command = cli.command.clone();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::Usage.into();
        }
    };
    app::init_logging(config.log_format);
    let interrupt = Interrupt::new();
    interrupt.listen();
    let ending: Ending = tokio::select! {
        ending = app::invoke(command, &config, &interrupt) => ending,
        // A second signal: stop at once, the next run heals what is left.
        code = interrupt.stopped() => std::process::exit(code.code()),
    };
    if let Some(message) = &ending.stderr {
        eprintln!("error: {message}");
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(ending.stdout.as_bytes())
        .and_then(|()| stdout.flush());
    ending.code.into()
}
