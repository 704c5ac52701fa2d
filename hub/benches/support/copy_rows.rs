//! Realistic findings and `COPY` of them into `findings_copy`: shared by
//! `examples/insert_rate.rs` and `benches/ingest_load.rs`, each of which includes this
//! file with `#[path = "..."] mod copy_rows;`.
//!
//! `findings_copy` is made with `CREATE TABLE findings_copy (LIKE findings INCLUDING
//! ALL)`: the same columns, indexes and constraints as `findings`, no alerts.

use chitti_common::finding::*;
use chitti_common::geometry::{PixelPoint, PixelRect};
use chitti_common::severity::{AssessedInputs, SeverityAssessment};
use chitti_hub::store::{IngestedFinding, PgStore};
use chrono::{Duration, SecondsFormat, Utc};
use sqlx::postgres::PgPoolCopyExt;
use uuid::Uuid;

/// Finding number `i` of a realistic mix (four severity levels, three component
/// classes, evidence), on `track`; site and gateway are `site-{i % 4}`/`gw-{i % 16}`
/// (callers that publish set their own).
pub fn sample(i: usize, track: Uuid) -> Finding {
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
            qualitative: false,
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
        quality: None,
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

/// The `COPY` statement, columns in table order.
pub const COPY: &str =
    "COPY findings_copy (id, site, gateway, camera, asset, preset, captured_at, \
    captured_offset_s, observed_at, received_at, batch_id, source, severity_level, \
    severity_table, cool_exception, component_class, max_c, track_id, track_state, \
    historical, evidence_sha256, doc) FROM STDIN";

/// `COPY`s `rows` into `findings_copy`, one `COPY` per `batch` rows; returns the rows
/// copied.
pub async fn copy_batches(store: &PgStore, rows: &[IngestedFinding], batch: usize) -> u64 {
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
