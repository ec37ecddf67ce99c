//! `stuck-hr-recovery`: parse flags, log to stderr, run once, print the
//! report on stdout, exit with SPEC §7's code.

use std::io::{IsTerminal as _, Write as _};

use clap::Parser as _;
use stuck_hr_recovery::cli::{Cli, Command, ExplainArgs};
use stuck_hr_recovery::config::Config;
use stuck_hr_recovery::config::{LogFormat, OutputFormat};
use stuck_hr_recovery::exit::ExitCode;
use stuck_hr_recovery::explain::run_explain;
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
    let command = cli.command.clone();
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

    if let Some(Command::Explain(args)) = command {
        return explain(&args, &config).await.into();
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

/// `explain`: prints why one HelmRelease gets its outcome; exit 0, or 4
/// when it cannot be read (2 for a bad target, 3 when it is malformed).
async fn explain(args: &ExplainArgs, config: &Config) -> ExitCode {
    let target = match args.target(&config.namespaces) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::Usage;
        }
    };
    match run_explain(config, &target).await {
        Ok(explanation) => {
            let rendered = match config.output {
                OutputFormat::Text => stuck_hr_recovery::explain::render_text(&explanation),
                OutputFormat::Json => stuck_hr_recovery::explain::render_json(&explanation),
            };
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(rendered.as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::Success
        }
        Err(error) => {
            let code = error.exit();
            eprintln!("error: {:#}", anyhow::Error::new(error));
            code
        }
    }
}
