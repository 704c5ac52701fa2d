//! Command-line interface.

use crate::inspect::{self, InspectArgs};
use clap::{Parser, Subcommand};

/// Chitti edge agent: finds overheating electrical equipment in FLIR thermal images.
#[derive(Debug, Parser)]
#[command(name = "chitti-agent", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a FLIR radiometric file (R-JPEG, .fff, .seq, .csq) and report its
    /// temperatures, hotspots and their severity.
    Inspect(InspectArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(args) => inspect::run(&args, &mut std::io::stdout().lock()),
    }
}
