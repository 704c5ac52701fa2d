//! `chitti-hub`: the central hub's command line. Everything testable lives in the
//! library; this file parses arguments, runs the command and turns an error into one
//! line on stderr and a non-zero exit status (64 for configuration errors).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = chitti_hub::cli::Cli::parse();
    match chitti_hub::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chitti-hub: error: {err:#}");
            ExitCode::from(chitti_hub::cli::exit_code(&err))
        }
    }
}
