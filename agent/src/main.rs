//! `chitti-agent`: the edge agent's command line. Everything testable lives in the
//! library; this file parses arguments, runs the command and turns an error into one
//! line on stderr (a list, for configuration errors) and a non-zero exit status.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = chitti_agent::cli::Cli::parse();
    match chitti_agent::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: "cannot open x.jpg: No such file".
            eprintln!("chitti-agent: error: {err:#}");
            ExitCode::from(chitti_agent::cli::exit_code(&err))
        }
    }
}
