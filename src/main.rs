//! `stuck-hr-recovery`: parse flags, log to stderr, run once, print the
//! report on stdout, exit with SPEC §7's code.

use std::io::{IsTerminal as _, Write as _};

use clap::Parser as _;
use stuck_hr_recovery::cli::Cli;
use stuck_hr_recovery::config::{LogFormat, OutputFormat};
use stuck_hr_recovery::exit::ExitCode;
use stuck_hr_recovery::report::{render_json, render_text};
use stuck_hr_recovery::run::{Interrupt, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help, --version
            let _ = error.print();
            return ExitCode::Success.into();
        }
        Err(error) => {
            let _ = error.print();
            return ExitCode::Usage.into();
        }
    };
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::Usage.into();
        }
    };
    // kube's own per-request error lines repeat what our log line says.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    let interrupt = Interrupt::new();
    interrupt.listen();
    let report = run(&config, &interrupt).await;
    let rendered = match config.output {
        OutputFormat::Text => render_text(&report),
        OutputFormat::Json => render_json(&report),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(rendered.as_bytes())
        .and_then(|()| stdout.flush());
    report.exit().into()
}
