//! Sustained finding insert rate on Postgres, against `COPY` of the same rows.
//!
//! ```text
//! cargo run --release --example insert_rate -- [FINDINGS=100000] [BATCH=500]
//! ```
//!
//! Creates a scratch database `chitti_bench_<random>` through the admin URL
//! (`CHITTI_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`),
//! migrates it, then:
//! 1. inserts the findings through `PgStore::insert_findings`, batch after batch (one
//!    transaction each, alerts upserted, durable at each commit: what ingest does);
//! 2. `COPY`s the same rows into `findings_copy` (`LIKE findings INCLUDING ALL`: same
//!    indexes and constraints, no alerts), once per batch and once as a single stream;
//! 3. does 1. on SQLite too (a temporary file, WAL, synchronous=FULL);
//!
//! prints findings/s for each and the ratios, and drops the database.

#[path = "../benches/support/copy_rows.rs"]
mod copy_rows;

use chitti_hub::store::prelude::*;
use chitti_hub::store::{IngestedFinding, PgStore, SqliteStore, StoreOptions};
use chrono::Utc;
use copy_rows::{copy_batches, sample};
use sqlx::Connection;
use std::fmt::Write as _;
use std::time::Instant;
use uuid::Uuid;

fn rate(n: usize, secs: f64) -> f64 {
    n as f64 / secs
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let admin_url = std::env::var("CHITTI_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("chitti_bench_{}", Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let root = admin_url
        .rsplit_once('/')
        .map(|(r, _)| r)
        .unwrap_or(&admin_url);
    let result = run(&format!("{root}/{name}"), n, batch).await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}

async fn run(url: &str, n: usize, batch: usize) -> Result<(), Box<dyn std::error::Error>> {
    let options = StoreOptions::default();
    let store = PgStore::connect(url, &options).await?;
    store.migrate().await?;
    sqlx::query("CREATE TABLE findings_copy (LIKE findings INCLUDING ALL)")
        .execute(store.pool())
        .await?;
    let tracks: Vec<Uuid> = (0..1000).map(|_| Uuid::now_v7()).collect();
    let received_at = Utc::now();
    let rows: Vec<IngestedFinding> = (0..n)
        .map(|i| IngestedFinding {
            finding: sample(i, tracks[i % tracks.len()]),
            received_at,
            batch_id: Uuid::nil(),
        })
        .collect();
    let server: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(store.pool())
        .await?;
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(store.pool())
        .await?;
    println!(
        "{n} findings, batches of {batch}, postgres {server} (synchronous_commit={sync}), \
         {} bytes of JSON per finding",
        serde_json::to_string(&rows[0].finding)?.len()
    );

    let started = Instant::now();
    for chunk in rows.chunks(batch) {
        let report = store.insert_findings(chunk).await?;
        assert_eq!(report.inserted.len(), chunk.len());
    }
    let insert_s = started.elapsed().as_secs_f64();
    assert_eq!(store.count_findings().await?, n as u64);

    let started = Instant::now();
    let copied = copy_batches(&store, &rows, batch).await;
    let copy_batch_s = started.elapsed().as_secs_f64();
    assert_eq!(copied, n as u64);
    sqlx::query("TRUNCATE findings_copy")
        .execute(store.pool())
        .await?;
    let started = Instant::now();
    let copied = copy_batches(&store, &rows, n).await;
    let copy_all_s = started.elapsed().as_secs_f64();
    assert_eq!(copied, n as u64);
    store.close().await;

    let dir = tempfile::tempdir()?;
    let sqlite = SqliteStore::open(&dir.path().join("bench.db"), &options).await?;
    sqlite.migrate().await?;
    let started = Instant::now();
    for chunk in rows.chunks(batch) {
        sqlite.insert_findings(chunk).await?;
    }
    let sqlite_s = started.elapsed().as_secs_f64();
    sqlite.close().await;

    let mut table = String::new();
    let (insert, copy_batch, copy_all, lite) = (
        rate(n, insert_s),
        rate(n, copy_batch_s),
        rate(n, copy_all_s),
        rate(n, sqlite_s),
    );
    writeln!(table, "postgres insert_findings (UNNEST + alerts, commit per batch): {insert:>9.0} findings/s ({insert_s:.2} s)")?;
    writeln!(table, "postgres COPY, one COPY per batch (findings only):            {copy_batch:>9.0} findings/s ({copy_batch_s:.2} s)")?;
    writeln!(table, "postgres COPY, one stream of all rows (findings only):        {copy_all:>9.0} findings/s ({copy_all_s:.2} s)")?;
    writeln!(table, "sqlite   insert_findings (VALUES chunks + alerts, FULL sync): {lite:>9.0} findings/s ({sqlite_s:.2} s)")?;
    writeln!(
        table,
        "ratio insert_findings / COPY per batch: {:.2}",
        insert / copy_batch
    )?;
    writeln!(
        table,
        "ratio insert_findings / COPY stream:    {:.2}",
        insert / copy_all
    )?;
    print!("{table}");
    Ok(())
}
