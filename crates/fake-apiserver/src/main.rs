//! `fake-apiserver serve ...`: the fake Kubernetes API server as a process.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("fake-apiserver: {e:#}");
        std::process::exit(1);
    }
}
