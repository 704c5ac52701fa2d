//! Backend-neutral preparation of an insert: a finding flattened into its indexed
//! columns, and the per-track alert changes a batch makes.

use super::model::{IngestedFinding, InsertReport};
use super::StoreError;
use chitti_common::finding::{FindingSource, TrackState};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// A finding's columns, as both schemas have them.
#[derive(Debug, Clone)]
pub(crate) struct FindingRow {
    pub id: Uuid,
    pub site: String,
    pub gateway: String,
    pub camera: String,
    pub asset: Option<String>,
    pub preset: Option<String>,
    pub captured_at: DateTime<Utc>,
    pub captured_offset_s: i32,
    pub observed_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub batch_id: Uuid,
    pub source: &'static str,
    pub severity_level: i16,
    pub severity_table: String,
    pub cool_exception: bool,
    pub component_class: Option<String>,
    pub max_c: f64,
    pub track_id: Uuid,
    pub track_state: &'static str,
    pub historical: bool,
    pub evidence_sha256: Option<String>,
    /// ΔT against the reference (SQLite stores it for the asset-trend index; Postgres
    /// generates it from `doc`).
    pub delta_c: Option<f64>,
    /// The finding as JSON.
    pub doc: String,
}

/// Columns per finding row (the SQLite chunking depends on it).
pub(crate) const FINDING_COLUMNS: usize = 23;

/// A batch ready to insert: unique rows sorted by id, and how to report the outcome.
pub(crate) struct PreparedBatch {
    /// One row per distinct id, sorted by id so that concurrent batches take row locks
    /// in the same order (no deadlock between hub replicas on Postgres).
    pub rows: Vec<FindingRow>,
    /// Each distinct id's position in the input (first occurrence).
    first_index: Vec<usize>,
    /// The input ids in order.
    input_ids: Vec<Uuid>,
}

pub(crate) fn source_name(source: FindingSource) -> &'static str {
    match source {
        FindingSource::Stream => "stream",
        FindingSource::Rjpeg => "rjpeg",
        FindingSource::Upload => "upload",
    }
}

pub(crate) fn track_state_name(state: TrackState) -> &'static str {
    match state {
        TrackState::Raised => "raised",
        TrackState::Updated => "updated",
        TrackState::Cleared => "cleared",
    }
}

/// Truncates to the microsecond: what both databases store.
pub(crate) fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    from_micros(t.timestamp_micros()).unwrap_or(t)
}

pub(crate) fn from_micros(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

/// Whether JSON text contains an escaped NUL (`\u0000`, not an escaped backslash
/// followed by `u0000`). Postgres rejects NUL in text and jsonb.
pub(crate) fn json_has_nul(doc: &str) -> bool {
    let bytes = doc.as_bytes();
    doc.match_indices("\\u0000").any(|(at, _)| {
        let backslashes = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        backslashes % 2 == 0
    })
}

/// JSON text with every NUL character (in strings and keys) replaced by U+FFFD, for
/// documents that are kept for display rather than as evidence (gateway status).
pub(crate) fn json_without_nul(doc: String) -> String {
    fn clean(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = s.replace('\0', "\u{FFFD}"),
            serde_json::Value::Array(items) => items.iter_mut().for_each(clean),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut value) in entries {
                    clean(&mut value);
                    map.insert(key.replace('\0', "\u{FFFD}"), value);
                }
            }
            _ => {}
        }
    }
    if !json_has_nul(&doc) {
        return doc;
    }
    match serde_json::from_str::<serde_json::Value>(&doc) {
        Ok(mut value) => {
            clean(&mut value);
            value.to_string()
        }
        Err(_) => doc,
    }
}

fn row(ingested: &IngestedFinding) -> Result<FindingRow, StoreError> {
    let f = &ingested.finding;
    let invalid = |reason| StoreError::InvalidFinding { id: f.id, reason };
    if !f.hotspot.max_c.is_finite() || !f.hotspot.mean_c.is_finite() {
        // serde_json writes NaN as null, which would not read back as a Finding.
        return Err(invalid("hotspot temperature is not finite"));
    }
    let doc = serde_json::to_string(f).map_err(|_| invalid("it does not serialize"))?;
    if json_has_nul(&doc) {
        // Both backends refuse it, so SQLite and Postgres behave alike.
        return Err(invalid("a text field contains a nul character"));
    }
    Ok(FindingRow {
        id: f.id,
        site: f.site.clone(),
        gateway: f.gateway.clone(),
        camera: f.camera.clone(),
        asset: f.asset.clone(),
        preset: f.preset.clone(),
        captured_at: to_micros(f.captured_at.with_timezone(&Utc)),
        captured_offset_s: f.captured_at.offset().local_minus_utc(),
        observed_at: to_micros(f.observed_at),
        received_at: to_micros(ingested.received_at),
        batch_id: ingested.batch_id,
        source: source_name(f.source),
        severity_level: i16::from(f.severity.level),
        severity_table: f.severity.table.clone(),
        cool_exception: f.severity.cool_exception,
        component_class: f.component.as_ref().map(|c| c.class.clone()),
        max_c: f.hotspot.max_c,
        delta_c: f.severity.inputs.delta_c,
        track_id: f.track.id,
        track_state: track_state_name(f.track.state),
        historical: f.historical,
        evidence_sha256: f.evidence.as_ref().map(|e| e.sha256.clone()),
        doc,
    })
}

impl PreparedBatch {
    /// Validates and flattens a batch; an invalid finding rejects the whole batch.
    pub fn new(findings: &[IngestedFinding]) -> Result<Self, StoreError> {
        let mut seen = HashSet::with_capacity(findings.len());
        let mut rows = Vec::with_capacity(findings.len());
        for (index, f) in findings.iter().enumerate() {
            if seen.insert(f.finding.id) {
                rows.push((index, row(f)?));
            }
        }
        rows.sort_unstable_by_key(|(_, r)| r.id);
        let (first_index, rows) = rows.into_iter().unzip();
        Ok(Self {
            rows,
            first_index,
            input_ids: findings.iter().map(|f| f.finding.id).collect(),
        })
    }

    /// The report for the ids the database says it inserted.
    pub fn report(&self, inserted: &HashSet<Uuid>, alerts: Vec<Uuid>) -> InsertReport {
        let mut report = InsertReport {
            alerts,
            ..InsertReport::default()
        };
        let mut reported = HashSet::with_capacity(inserted.len());
        for &id in &self.input_ids {
            if inserted.contains(&id) && reported.insert(id) {
                report.inserted.push(id);
            } else {
                report.duplicates.push(id);
            }
        }
        report
    }

    /// The alert changes of the newly inserted rows, one per track, sorted by key (lock
    /// order again). Duplicates are not in `inserted`, so they never count twice.
    pub fn alert_deltas(&self, inserted: &HashSet<Uuid>) -> Vec<AlertDelta> {
        let mut new_rows: Vec<(usize, &FindingRow)> = self
            .first_index
            .iter()
            .zip(&self.rows)
            .filter(|(_, r)| inserted.contains(&r.id))
            .map(|(&i, r)| (i, r))
            .collect();
        // Input order, so that among equal observed_at the later finding is "last".
        new_rows.sort_unstable_by_key(|(i, _)| *i);
        let mut by_track: HashMap<(&str, &str, &str, Uuid), usize> = HashMap::new();
        let mut deltas: Vec<AlertDelta> = Vec::new();
        for (_, r) in new_rows {
            let key = (
                r.site.as_str(),
                r.gateway.as_str(),
                r.camera.as_str(),
                r.track_id,
            );
            match by_track.get(&key) {
                Some(&at) => deltas[at].absorb(r),
                None => {
                    by_track.insert(key, deltas.len());
                    deltas.push(AlertDelta::first(r));
                }
            }
        }
        deltas.sort_unstable_by(|a, b| {
            (&a.site, &a.gateway, &a.camera, a.track_id)
                .cmp(&(&b.site, &b.gateway, &b.camera, b.track_id))
        });
        deltas
    }
}

/// What one batch adds to one track's alert. The upsert merges it into the stored row
/// with the same rules [`AlertDelta::absorb`] uses within the batch.
#[derive(Debug, Clone)]
pub(crate) struct AlertDelta {
    /// Id for the alert if this creates it.
    pub new_id: Uuid,
    pub site: String,
    pub gateway: String,
    pub camera: String,
    pub track_id: Uuid,
    pub asset: Option<String>,
    pub component_class: Option<String>,
    pub severity_table: String,
    pub worst_level: i16,
    pub worst_max_c: f64,
    pub last_level: i16,
    pub last_max_c: f64,
    pub first_finding_id: Uuid,
    pub first_finding_at: DateTime<Utc>,
    pub last_finding_id: Uuid,
    pub last_finding_at: DateTime<Utc>,
    pub finding_count: i64,
    pub cleared_at: Option<DateTime<Utc>>,
    /// Whether any of the batch's findings of the track is a cool exception.
    pub cool_exception: bool,
    /// Latest received_at among the batch's findings of the track (hub clock).
    pub received_at: DateTime<Utc>,
}

impl AlertDelta {
    fn first(r: &FindingRow) -> Self {
        Self {
            new_id: Uuid::now_v7(),
            site: r.site.clone(),
            gateway: r.gateway.clone(),
            camera: r.camera.clone(),
            track_id: r.track_id,
            asset: r.asset.clone(),
            component_class: r.component_class.clone(),
            severity_table: r.severity_table.clone(),
            worst_level: r.severity_level,
            worst_max_c: r.max_c,
            last_level: r.severity_level,
            last_max_c: r.max_c,
            first_finding_id: r.id,
            first_finding_at: r.observed_at,
            last_finding_id: r.id,
            last_finding_at: r.observed_at,
            finding_count: 1,
            cleared_at: (r.track_state == "cleared").then_some(r.observed_at),
            cool_exception: r.cool_exception,
            received_at: r.received_at,
        }
    }

    fn absorb(&mut self, r: &FindingRow) {
        self.worst_level = self.worst_level.max(r.severity_level);
        self.worst_max_c = self.worst_max_c.max(r.max_c);
        if r.observed_at >= self.last_finding_at {
            self.last_level = r.severity_level;
            self.last_max_c = r.max_c;
            self.last_finding_id = r.id;
            self.last_finding_at = r.observed_at;
            if r.asset.is_some() {
                self.asset.clone_from(&r.asset);
            }
            if r.component_class.is_some() {
                self.component_class.clone_from(&r.component_class);
            }
        }
        if r.observed_at < self.first_finding_at {
            self.first_finding_id = r.id;
            self.first_finding_at = r.observed_at;
        }
        if r.track_state == "cleared" {
            self.cleared_at = Some(match self.cleared_at {
                Some(at) => at.min(r.observed_at),
                None => r.observed_at,
            });
        }
        self.cool_exception |= r.cool_exception;
        self.finding_count += 1;
        self.received_at = self.received_at.max(r.received_at);
    }
}

#[cfg(test)]
mod tests {
    use super::json_has_nul;

    #[test]
    fn nul_escapes_are_told_from_escaped_backslashes() {
        assert!(json_has_nul(r#"{"a":"x\u0000"}"#));
        assert!(json_has_nul(r#"{"a":"\\\u0000"}"#));
        assert!(!json_has_nul(r#"{"a":"\\u0000"}"#));
        assert!(!json_has_nul(r#"{"a":"plain"}"#));
    }

    #[test]
    fn nul_characters_are_replaced_in_kept_documents() {
        let doc = serde_json::json!({"a\u{0}": ["x\u{0}y", 1]}).to_string();
        assert!(json_has_nul(&doc));
        let clean = super::json_without_nul(doc);
        assert!(!json_has_nul(&clean));
        let back: serde_json::Value = serde_json::from_str(&clean).unwrap();
        assert_eq!(back, serde_json::json!({"a\u{FFFD}": ["x\u{FFFD}y", 1]}));
    }
}
