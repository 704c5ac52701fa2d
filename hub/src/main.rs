//! `chitti-hub`: the central hub (MQTT ingest, store, API, dashboard).
//!
//! The hub's ingest, storage and API arrive with their issues (see ARCHITECTURE.md);
//! today the binary only identifies itself, so the workspace ships both binaries from
//! the start and the cross-binary test crate can find them.

use clap::Parser;

/// Chitti hub: fleet findings, alerts and evidence.
#[derive(Debug, Parser)]
#[command(name = "chitti-hub", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!(
        "chitti-hub {}: ingest, store and API are not built yet; see ARCHITECTURE.md",
        env!("CARGO_PKG_VERSION")
    );
}
