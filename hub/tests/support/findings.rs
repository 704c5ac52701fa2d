//! Sample findings: a template ([`finding`]), a cool exception, a received batch.

use chitti_common::finding::*;
use chitti_common::geometry::{PixelPoint, PixelRect};
use chitti_common::severity::{AssessedInputs, SeverityAssessment};
use chitti_hub::store::IngestedFinding;
use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

/// A fixed instant plus `ms` milliseconds.
pub fn at(ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 21, 40, 0).unwrap() + Duration::milliseconds(ms)
}

/// A finding template: change what a test needs.
pub fn finding(track: Uuid, level: u8, max_c: f64, observed_ms: i64) -> Finding {
    let observed_at = at(observed_ms);
    let captured = observed_at
        .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap())
        - Duration::milliseconds(180);
    Finding {
        id: Uuid::now_v7(),
        site: "north-yard".into(),
        gateway: "gw-07".into(),
        camera: "cam-1".into(),
        asset: Some("bay3-breaker-b".into()),
        preset: Some("p4".into()),
        captured_at: captured,
        observed_at,
        source: FindingSource::Stream,
        component: Some(DetectedComponent {
            class: "bushing".into(),
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
            mean_c: max_c - 7.2,
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
            action: "inspect".into(),
            inputs: AssessedInputs {
                max_c,
                reference_c: None,
                reference_kind: None,
                reference_source: None,
                delta_c: None,
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
            first_seen: at(0),
            last_seen: observed_at,
            frames: 30,
            state: TrackState::Raised,
        },
        model: None,
        evidence: Some(EvidenceRef {
            sha256: "ab".repeat(32),
        }),
        historical: false,
        quality: None,
    }
}

/// A cool exception: level 0 on `neta-similar`, the component `below_c` colder than
/// its loaded sibling phase (an open phase).
pub fn cool_finding(track: Uuid, max_c: f64, below_c: f64, observed_ms: i64) -> Finding {
    let mut f = finding(track, 0, max_c, observed_ms);
    let sibling_c = max_c + below_c;
    f.reference.similar = Some(SimilarComponent {
        label: "phase A".into(),
        celsius: sibling_c,
    });
    let s = &mut f.severity;
    s.table = "neta-similar".into();
    s.level_name = chitti_common::severity::NO_LEVEL_NAME.into();
    s.action = "investigate: far colder than its similar component".into();
    s.inputs.reference_c = Some(sibling_c);
    s.inputs.reference_kind = Some(chitti_common::severity::ReferenceKind::SimilarComponent);
    s.inputs.reference_source = Some("phase A".into());
    s.inputs.delta_c = Some(-below_c);
    s.inputs.compared_c = -below_c;
    s.cool_exception = true;
    f
}

/// Wraps findings as one received batch.
pub fn ingested(findings: &[Finding], received_at: DateTime<Utc>) -> Vec<IngestedFinding> {
    let batch_id = Uuid::now_v7();
    findings
        .iter()
        .map(|f| IngestedFinding {
            finding: f.clone(),
            received_at,
            batch_id,
        })
        .collect()
}
