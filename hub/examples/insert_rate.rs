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

use chitti_common::finding::*;
use chitti_common::geometry::{PixelPoint, PixelRect};
use chitti_common::severity::{AssessedInputs, SeverityAssessment};
use chitti_hub::store::{IngestedFinding, PgStore, SqliteStore, Store, StoreOptions};
use chrono::{Duration, SecondsFormat, Utc};
use sqlx::postgres::PgPoolCopyExt;
use sqlx::Connection;
use std::fmt::Write as _;
use std::time::Instant;
use uuid::Uuid;

fn sample(i: usize, track: Uuid) -> Finding {
    let observed_at = Utc::now() - Duration::milliseconds(i as i64);
    let level = (i % 4) as u8;
    let max_c = 30.0 + (i % 60) as f64 + 0.25;
    Finding {
        id: Uuid::now_v7(),
        site: format!("site-{}", i % 4),
        gateway: format!("gw-{}", i % 16),
        camera: "cam-1".into(),
        asset: Some(format!("bay{}-breaker", i % 40)),
        preset: Some("p4".into()),
        captured_at: observed_at.fixed_offset(),
        observed_at,
        source: FindingSource::Stream,
        component: Some(DetectedComponent {
            class: ["bushing", "clamp", "insulator"][i % 3].into(),
            confidence: 0.91,
            bbox: PixelRect {
                x: 300,
                y: 120,
                w: 40,
                h: 90,
            },
        }),
        hotspot: HotspotSummary {
            bbox: PixelRect {
                x: 310,
                y: 130,
                w: 12,
                h: 18,
            },
            max_c,
            mean_c: max_c - 7.0,
            max_at: PixelPoint { x: 316, y: 139 },
            area_px: 171,
        },
        reference: ReferenceSummary {
            ambient_c: 21.0,
            ambient_source: "camera atmospheric temperature".into(),
            similar: None,
        },
        severity: SeverityAssessment {
            table: "utility-absolute".into(),
            table_version: 1,
            level,
            level_name: format!("level {level}"),
            action: "schedule repair".into(),
            inputs: AssessedInputs {
                max_c,
                reference_c: Some(21.0),
                reference_kind: None,
                reference_source: None,
                delta_c: Some(max_c - 21.0),
                compared_c: max_c,
            },
            cool_exception: false,
            not_assessed: None,
        },
        measurement: Measurement {
            emissivity: 0.95,
            distance_m: 12.0,
            reflected_c: 20.0,
            atmosphere_c: 21.0,
            relative_humidity: 0.6,
            qualitative: false,
        },
        track: TrackSummary {
            id: track,
            first_seen: observed_at,
            last_seen: observed_at,
            frames: 30,
            state: TrackState::Updated,
        },
        model: None,
        evidence: Some(EvidenceRef {
            sha256: format!("{:064x}", i),
        }),
        historical: false,
    }
}

/// COPY text format: backslash, tab, newline and carriage return escaped; `\N` is NULL.
fn field(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("\\N"),
        Some(v) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

/// One `findings` row in COPY text format, columns in table order.
fn copy_row(out: &mut String, f: &IngestedFinding) {
    let g = &f.finding;
    let rfc = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let doc = serde_json::to_string(g).expect("finding serializes");
    let cols: [Option<String>; 22] = [
        Some(g.id.to_string()),
        Some(g.site.clone()),
        Some(g.gateway.clone()),
        Some(g.camera.clone()),
        g.asset.clone(),
        g.preset.clone(),
        Some(rfc(g.captured_at.with_timezone(&Utc))),
        Some(g.captured_at.offset().local_minus_utc().to_string()),
        Some(rfc(g.observed_at)),
        Some(rfc(f.received_at)),
        Some(f.batch_id.to_string()),
        Some("stream".into()),
        Some(g.severity.level.to_string()),
        Some(g.severity.table.clone()),
        Some(if g.severity.cool_exception { "t" } else { "f" }.into()),
        g.component.as_ref().map(|c| c.class.clone()),
        Some(g.hotspot.max_c.to_string()),
        Some(g.track.id.to_string()),
        Some("updated".into()),
        Some(if g.historical { "t" } else { "f" }.into()),
        g.evidence.as_ref().map(|e| e.sha256.clone()),
        Some(doc),
    ];
    for (i, col) in cols.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        field(out, col.as_deref());
    }
    out.push('\n');
}

const COPY: &str = "COPY findings_copy (id, site, gateway, camera, asset, preset, captured_at, \
    captured_offset_s, observed_at, received_at, batch_id, source, severity_level, \
    severity_table, cool_exception, component_class, max_c, track_id, track_state, \
    historical, evidence_sha256, doc) FROM STDIN";

async fn copy_batches(store: &PgStore, rows: &[IngestedFinding], batch: usize) -> u64 {
    let mut copied = 0;
    for chunk in rows.chunks(batch) {
        let mut text = String::with_capacity(chunk.len() * 2048);
        for row in chunk {
            copy_row(&mut text, row);
        }
        let mut copy = store.pool().copy_in_raw(COPY).await.expect("copy in");
        copy.send(text.as_bytes()).await.expect("copy send");
        copied += copy.finish().await.expect("copy finish");
    }
    copied
}

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
