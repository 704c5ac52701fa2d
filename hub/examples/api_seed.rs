//! Fills a store with findings for the API load benchmark (`hub/benches/api_load.sh`).
//!
//! ```text
//! cargo run --release -p chitti-hub --example api_seed -- STORE_URL [FINDINGS=1000000] [PER_TRACK=20]
//! ```
//!
//! Findings come in tracks of `PER_TRACK` (one alert each: a track stays on one of 16
//! gateways in 4 sites), through `Store::insert_findings` in batches of 1000 — the path ingest
//! takes, alerts included. Prints the number stored and one alert id (for the detail
//! endpoint) on the last line as `alert <uuid>`.

// Only `sample` is used here; the COPY helpers serve the ingest benchmarks.
#[allow(dead_code)]
#[path = "../benches/support/copy_rows.rs"]
mod copy_rows;

use chitti_hub::store::prelude::*;
use chitti_hub::store::{AlertStore, IngestStore};
use chitti_hub::store::{AnyStore, IngestedFinding};
use chrono::Utc;
use std::time::Instant;
use uuid::Uuid;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: api_seed STORE_URL [FINDINGS] [PER_TRACK]")?;
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let per_track: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20)
        .max(1);
    let store = AnyStore::connect(&url).await?;
    store.migrate().await?;
    let started = Instant::now();
    let mut track = Uuid::now_v7();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        if i % per_track == 0 {
            track = Uuid::now_v7();
        }
        // A track stays on one gateway (as a camera's episode does): one alert each.
        let mut finding = copy_rows::sample(i, track);
        let t = i / per_track;
        finding.site = format!("site-{}", t % 4);
        finding.gateway = format!("gw-{}", t % 16);
        batch.push(IngestedFinding {
            finding,
            received_at: Utc::now(),
            batch_id: Uuid::nil(),
        });
        if batch.len() == 1000 || i + 1 == n {
            store.insert_findings(&batch).await?;
            batch.clear();
        }
        if (i + 1) % 100_000 == 0 {
            eprintln!(
                "seeded {} findings ({:.0}/s)",
                i + 1,
                (i + 1) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let alerts = store.list_alerts(&Default::default()).await?;
    println!("findings {}", store.count_findings().await?);
    let middle = alerts
        .items
        .get(alerts.items.len() / 2)
        .ok_or("no alerts")?;
    println!("alert {}", middle.id);
    Ok(())
}
