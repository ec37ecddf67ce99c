//! `recovery-matrix`: renders docs/recovery-matrix.md from the records the real
//! recovery tests wrote. Run through `scripts/recovery-matrix`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use recovery_matrix::{RenderOptions, VERSIONS, load_dir, render};

const USAGE: &str = "\
usage: recovery-matrix [--dir DIR] [--out FILE] [--check] [--allow-missing] [--versions v1,v2,...]

  --dir DIR         records to read (default: $RECOVERY_MATRIX_DIR, else target/recovery-matrix)
  --out FILE        write the Markdown there (default: stdout)
  --check           do not write: fail (exit 1) when FILE differs from the rendering
  --allow-missing   render even when a version x state 1-4 cell has no record (marked INCOMPLETE)
  --versions LIST   the required helm-controller versions (default: v1.4.3,v1.6.3,v1.6.4)

Fails (exit 1) when a required cell is missing, a record does not parse, or two
records claim the same cell.";

struct Args {
    dir: Option<String>,
    out: Option<String>,
    check: bool,
    allow_missing: bool,
    versions: Vec<String>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args> {
    let mut a = Args {
        dir: None,
        out: None,
        check: false,
        allow_missing: false,
        versions: VERSIONS.iter().map(|v| v.to_string()).collect(),
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--dir" => a.dir = Some(value("--dir")?),
            "--out" => a.out = Some(value("--out")?),
            "--check" => a.check = true,
            "--allow-missing" => a.allow_missing = true,
            "--versions" => {
                a.versions = value("--versions")?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if a.check && a.out.is_none() {
        bail!("--check needs --out FILE");
    }
    Ok(a)
}

fn run() -> Result<bool> {
    let args = parse(std::env::args().skip(1))?;
    let dir = match &args.dir {
        Some(d) => PathBuf::from(d),
        None => recovery_matrix::results_dir(&std::env::current_dir()?),
    };
    let records = load_dir(&dir)?;
    let mut command = String::from("scripts/recovery-matrix");
    if let Some(d) = &args.dir {
        command.push_str(&format!(" --dir {d}"));
    }
    if let Some(o) = &args.out {
        command.push_str(&format!(" --out {o}"));
    }
    if args.allow_missing {
        command.push_str(" --allow-missing");
    }
    if args.versions != VERSIONS {
        command.push_str(&format!(" --versions {}", args.versions.join(",")));
    }
    let md = render(
        &records,
        &RenderOptions {
            versions: &args.versions,
            command: &command,
            allow_missing: args.allow_missing,
        },
    )?;
    match (&args.out, args.check) {
        (Some(out), true) => {
            let current = std::fs::read_to_string(out).with_context(|| format!("reading {out}"))?;
            if current != md {
                eprintln!("{out} differs from the rendering of {}", dir.display());
                return Ok(false);
            }
        }
        (Some(out), false) => std::fs::write(out, md).with_context(|| format!("writing {out}"))?,
        (None, _) => print!("{md}"),
    }
    Ok(true)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("recovery-matrix: {e:#}");
            ExitCode::FAILURE
        }
    }
}
