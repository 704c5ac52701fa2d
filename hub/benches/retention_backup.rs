//! Benchmark of retention and backups on a year of a fleet's data (issue #21): how long
//! the first retention run takes, what it does to ingest running beside it (the same
//! run, with and without the job), and backup, verify and restore per GB.
//!
//! ```text
//! cargo bench -p chitti-hub --bench retention_backup
//! GATEWAYS=100 DAYS=365 FINDINGS_PER_GATEWAY_DAY=4 TELEMETRY_ROWS_PER_GATEWAY_DAY=24 \
//!   cargo bench -p chitti-hub --bench retention_backup
//! STORE_URL=postgres://postgres@127.0.0.1:5432/chitti_bench cargo bench -p chitti-hub --bench retention_backup
//! ```
//!
//! 1. A store (SQLite in a temporary folder, or `STORE_URL`, emptied first) filled with
//!    `DAYS` days of `GATEWAYS` gateways: `FINDINGS_PER_GATEWAY_DAY` findings each (their
//!    alerts resolved, so retention may remove them) and `TELEMETRY_ROWS_PER_GATEWAY_DAY`
//!    telemetry minute rows each (the hub keeps up to 1 440; fewer here keeps the fill
//!    short — the rollup's cost is per row, so scale the figure).
//! 2. Ingest alone for `PHASE_S` seconds: batches of 100 new findings, one after another;
//!    rate and per-batch latency (p50, p99, max).
//! 3. The retention job's first run (`finding_days` 180, `telemetry_minute_days` 30:
//!    half the findings and 11 of 12 months of minutes go) with the same ingest beside
//!    it: the job's time and what it removed; ingest's rate and latency meanwhile.
//! 4. `TREND_FINDINGS` (default 1 000 000) findings over a year on three phases of one
//!    bay, then the trend query of that year (500 buckets per asset) 200 times: p50, p99.
//! 5. SQLite only: `backup::create` (while nothing writes), `backup::verify`,
//!    `backup::restore` into a new folder; seconds and MB/s of the database file.

#[allow(dead_code)]
#[path = "support/copy_rows.rs"]
mod copy_rows;

use chitti_hub::config::HubConfig;
use chitti_hub::evidence::EvidenceStore;
use chitti_hub::retention::{RetentionConfig, RetentionJob};
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AnyStore, IngestedFinding};
use chrono::{DateTime, Duration, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct IngestFigures {
    findings: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl std::fmt::Display for IngestFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} findings/s ({} in {:.1} s), batch of 100: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.findings as f64 / self.seconds,
            self.findings,
            self.seconds,
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

/// Inserts batches of 100 new findings until `stop`; the figures.
async fn ingest_until(store: Arc<AnyStore>, stop: Arc<AtomicBool>) -> IngestFigures {
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut n = 0u64;
    let track = Uuid::now_v7();
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<IngestedFinding> = (0..100)
            .map(|i| IngestedFinding {
                finding: copy_rows::sample(i, track),
                received_at: Utc::now(),
                batch_id: Uuid::now_v7(),
            })
            .collect();
        let t = Instant::now();
        store.insert_findings(&batch).await.expect("ingest");
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        n += 100;
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    IngestFigures {
        findings: n,
        seconds: started.elapsed().as_secs_f64(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: *latencies.last().unwrap_or(&0.0),
    }
}

async fn fill(
    store: &AnyStore,
    start: DateTime<Utc>,
    days: u64,
    gateways: u64,
    per_day: u64,
    telemetry: u64,
) {
    let mut batch = Vec::new();
    let mut i = 0usize;
    for day in 0..days {
        let at = start + Duration::days(day as i64);
        for g in 0..gateways {
            let track = Uuid::now_v7();
            for k in 0..per_day {
                let mut f = copy_rows::sample(i, track);
                f.gateway = format!("gw-{g}");
                f.site = "bench".into();
                f.observed_at = at + Duration::minutes(k as i64);
                i += 1;
                batch.push(IngestedFinding {
                    finding: f,
                    received_at: at + Duration::minutes(k as i64),
                    batch_id: Uuid::now_v7(),
                });
            }
            if batch.len() >= 5000 {
                store.insert_findings(&batch).await.expect("fill findings");
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        store.insert_findings(&batch).await.expect("fill findings");
    }
    let resolve = "UPDATE alerts SET status = 'resolved'";
    match store {
        AnyStore::Sqlite(db) => sqlx::query(resolve).execute(db.pool()).await.map(drop),
        AnyStore::Postgres(db) => sqlx::query(resolve).execute(db.pool()).await.map(drop),
    }
    .expect("resolve");
    // Telemetry minutes, generated in SQL (one row per gateway every `step` seconds,
    // minute-aligned): the hub's upsert would cost a commit per row.
    let rows = days * gateways * telemetry;
    let step_s = (86_400 / telemetry.max(1)) / 60 * 60;
    let start_s = start.timestamp() / 60 * 60;
    let columns = "site, gateway, bucket_start, samples, cpu_temp_sum, cpu_temp_n, cpu_temp_max, \
        gpu_temp_sum, gpu_temp_n, gpu_temp_max, disk_free_min, latency_sum, latency_n, \
        latency_max, frame_drops, first_ts, last_ts";
    match store {
        AnyStore::Sqlite(db) => {
            let t = format!("(({start_s} + (i / {gateways}) * {step_s}) * 1000000)");
            let sql = format!(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {rows} - 1) \
                 INSERT INTO telemetry_minutes ({columns}) SELECT 'bench', 'gw-' || (i % {gateways}), \
                 {t}, 1, 55.0, 1, 55.0, 50.0, 1, 50.0, 10737418240, 40.0, 1, 40.0, 0, {t}, {t} FROM n"
            );
            sqlx::query(&sql).execute(db.pool()).await.map(drop)
        }
        AnyStore::Postgres(db) => {
            let t = format!("to_timestamp({start_s} + (i / {gateways}) * {step_s})");
            let sql = format!(
                "INSERT INTO telemetry_minutes ({columns}) SELECT 'bench', 'gw-' || (i % {gateways}), \
                 {t}, 1, 55.0, 1, 55.0, 50.0, 1, 50.0, 10737418240, 40.0, 1, 40.0, 0, {t}, {t} \
                 FROM generate_series(0, {rows} - 1) AS i"
            );
            sqlx::query(&sql).execute(db.pool()).await.map(drop)
        }
    }
    .expect("fill telemetry");
}

/// `n` findings over the year before `end` on three phases of one bay (site `trend`),
/// then the trend query of a year (three assets, 500 buckets each) 200 times.
async fn trend(store: &AnyStore, end: DateTime<Utc>, n: u64) {
    let t = Instant::now();
    let step_ms = (365 * 86_400_000 / n.max(1)) as i64;
    let assets = ["bay1-breaker-a", "bay1-breaker-b", "bay1-breaker-c"];
    let mut batch = Vec::with_capacity(5000);
    let track = Uuid::now_v7();
    for i in 0..n as usize {
        let mut f = copy_rows::sample(i, track);
        f.site = "trend".into();
        f.asset = Some(assets[i % 3].into());
        f.observed_at = end - Duration::days(365) + Duration::milliseconds(step_ms * i as i64);
        batch.push(IngestedFinding {
            finding: f,
            received_at: end,
            batch_id: Uuid::now_v7(),
        });
        if batch.len() == 5000 {
            store.insert_findings(&batch).await.expect("trend fill");
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.insert_findings(&batch).await.expect("trend fill");
    }
    println!(
        "trend data: {n} findings on 3 assets over a year, filled in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let ids: Vec<String> = assets.iter().map(|a| a.to_string()).collect();
    let since = end - Duration::days(365);
    let bucket = Duration::seconds(365 * 86_400 / 500 + 1);
    let mut times = Vec::new();
    let mut points = 0;
    for _ in 0..200 {
        let t = Instant::now();
        points = store
            .asset_trend("trend", &ids, since, end, bucket)
            .await
            .expect("trend")
            .len();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "trend of a year ({points} buckets, 3 assets): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (200 queries)",
        times[100], times[197], times[199]
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let gateways = env("GATEWAYS", 100);
    let days = env("DAYS", 365);
    let per_day = env("FINDINGS_PER_GATEWAY_DAY", 4);
    let telemetry = env("TELEMETRY_ROWS_PER_GATEWAY_DAY", 24);
    let phase_s = env("PHASE_S", 10);
    let folder = tempfile::tempdir().unwrap();
    let mut config = HubConfig {
        data_dir: folder.path().join("data"),
        ..HubConfig::default()
    };
    config.store.url = std::env::var("STORE_URL").ok();
    let store = Arc::new(chitti_hub::serve::open_store(&config).await.expect("store"));
    println!(
        "retention_backup: {} store, {gateways} gateways × {days} days: {} findings, {} telemetry rows",
        store.backend().name(),
        gateways * days * per_day,
        gateways * days * telemetry
    );
    let end = Utc::now();
    let start = end - Duration::days(days as i64);
    let t = Instant::now();
    fill(&store, start, days, gateways, per_day, telemetry).await;
    println!("filled in {:.0} s", t.elapsed().as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let alone = tokio::spawn(ingest_until(store.clone(), stop.clone()));
    tokio::time::sleep(std::time::Duration::from_secs(phase_s)).await;
    stop.store(true, Ordering::Relaxed);
    let alone = alone.await.unwrap();
    println!("ingest alone:          {alone}");

    let job = RetentionJob::new(
        store.clone(),
        Arc::new(EvidenceStore::in_memory(1 << 20)),
        RetentionConfig {
            finding_days: 180,
            ..RetentionConfig::default()
        },
        "bench".into(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let beside = tokio::spawn(ingest_until(store.clone(), stop.clone()));
    let t = Instant::now();
    let run = job.run_once(end).await.expect("retention").expect("lease");
    let job_s = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let beside = beside.await.unwrap();
    let r = &run.removed;
    println!(
        "retention first run:  {job_s:.1} s; removed {} findings, {} alerts, rolled {} telemetry minutes into hours, kept {} expired findings",
        r.findings, r.alerts, r.telemetry_minutes, r.findings_kept
    );
    println!("ingest beside the job: {beside}");
    for u in &run.usage {
        println!(
            "  storage {:<15} {:>10} rows {:>8.1} MiB",
            u.kind,
            u.rows,
            u.bytes as f64 / 1048576.0
        );
    }

    let trend_findings = env("TREND_FINDINGS", 1_000_000);
    if trend_findings > 0 {
        trend(&store, end, trend_findings).await;
    }

    if store.backend().name() == "sqlite" {
        let backup = folder.path().join("backup");
        let t = Instant::now();
        let manifest = chitti_hub::backup::create(&config, None, &backup)
            .await
            .expect("backup");
        let backup_s = t.elapsed().as_secs_f64();
        let mb = manifest.database.bytes as f64 / 1e6;
        let t = Instant::now();
        chitti_hub::backup::verify(&backup).await.expect("verify");
        let verify_s = t.elapsed().as_secs_f64();
        let restored = HubConfig {
            data_dir: folder.path().join("restored"),
            ..HubConfig::default()
        };
        let t = Instant::now();
        chitti_hub::backup::restore(&restored, &backup, false)
            .await
            .expect("restore");
        let restore_s = t.elapsed().as_secs_f64();
        println!(
            "backup {mb:.0} MB in {backup_s:.1} s ({:.0} MB/s, {:.1} s/GB); verify {verify_s:.1} s ({:.0} MB/s); restore {restore_s:.1} s ({:.0} MB/s, {:.1} s/GB)",
            mb / backup_s,
            backup_s * 1000.0 / mb,
            mb / verify_s,
            mb / restore_s,
            restore_s * 1000.0 / mb
        );
    }
    println!(
        "rerun: GATEWAYS={gateways} DAYS={days} FINDINGS_PER_GATEWAY_DAY={per_day} TELEMETRY_ROWS_PER_GATEWAY_DAY={telemetry} PHASE_S={phase_s} TREND_FINDINGS={trend_findings} cargo bench -p chitti-hub --bench retention_backup"
    );
}
