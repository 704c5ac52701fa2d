//! The MQTT wire protocol between agents and the hub (DESIGN.md §2): topic names,
//! identifiers and payloads. JSON, versioned by the topic prefix `chitti/v1/`.
//!
//! | suffix | direction | QoS | retain | payload |
//! |---|---|---|---|---|
//! | `status` | agent → hub | 1 | yes | [`AgentStatus`] (also the Last Will, `online: false`) signed by the gateway (`signing::sign_report`) |
//! | `findings` | agent → hub | 1 | no | [`FindingBatch`] signed by the gateway (`signing::sign_batch`) |
//! | `telemetry` | agent → hub | 0 | no | [`Telemetry`] signed by the gateway (`signing::sign_report`) |
//! | `ack` | hub → agent | 1 | no | [`Ack`] signed by the hub's key (`signing::sign_ack`): findings of one batch durably committed |
//! | `config/set` | hub → agent | 1 | yes | [`DesiredConfig`] signed by the hub's key (`signing::sign_desired_config`) |
//! | `config/state` | agent → hub | 1 | yes | [`ConfigState`] signed by the gateway (`signing::sign_report`) |
//! | `model/set` | hub → agent | 1 | yes | [`DesiredModel`] signed by the hub's key (`signing::sign_desired_model`) |
//! | `model/state` | agent → hub | 1 | yes | [`ModelState`] signed by the gateway (`signing::sign_report`) |
//!
//! A broker's PUBACK only says the broker has a message; an agent keeps a finding until
//! an [`Ack`] names it, so delivery is at-least-once on the wire and exactly-once in the
//! hub's database (insert on conflict do nothing, keyed by the finding's UUIDv7).

use crate::finding::Finding;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Protocol version, part of every topic.
pub const PROTOCOL_VERSION: &str = "v1";

/// Topic prefix before site and gateway.
pub const TOPIC_ROOT: &str = "chitti";

/// Longest site, gateway or camera id.
pub const MAX_ID_LEN: usize = 64;

/// An id is not `[a-z0-9-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} id {value:?} is invalid: use 1 to 64 characters of a-z, 0-9 and '-'")]
pub struct InvalidId {
    /// Which id ("site", "gateway", "camera").
    pub what: &'static str,
    /// The offending value.
    pub value: String,
}

/// Checks a site, gateway or camera id: `[a-z0-9-]{1,64}`, which also keeps MQTT's
/// `+`, `/` and `#` out of topic levels.
pub fn validate_id(what: &'static str, value: &str) -> Result<(), InvalidId> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidId {
            what,
            value: value.to_string(),
        })
    }
}

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// Retained agent status.
    Status,
    /// Finding batches.
    Findings,
    /// Periodic health.
    Telemetry,
    /// Hub acknowledgements.
    Ack,
    /// Desired configuration.
    ConfigSet,
    /// Applied configuration.
    ConfigState,
    /// Desired detection model.
    ModelSet,
    /// The model update's progress.
    ModelState,
}

impl TopicKind {
    /// Every kind.
    pub const ALL: [TopicKind; 8] = [
        Self::Status,
        Self::Findings,
        Self::Telemetry,
        Self::Ack,
        Self::ConfigSet,
        Self::ConfigState,
        Self::ModelSet,
        Self::ModelState,
    ];

    /// The topic suffix after `chitti/v1/{site}/{gateway}/`.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Findings => "findings",
            Self::Telemetry => "telemetry",
            Self::Ack => "ack",
            Self::ConfigSet => "config/set",
            Self::ConfigState => "config/state",
            Self::ModelSet => "model/set",
            Self::ModelState => "model/state",
        }
    }
}

/// A parsed Chitti topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// What it carries.
    pub kind: TopicKind,
}

/// A topic is not a Chitti v1 topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Wrong root or version.
    #[error("topic {0:?} is not under chitti/v1/")]
    NotChitti(String),
    /// Site or gateway id invalid.
    #[error("topic {topic:?}: {source}")]
    BadId {
        /// The topic.
        topic: String,
        /// Which id.
        source: InvalidId,
    },
    /// Unknown suffix.
    #[error("topic {0:?} has an unknown suffix")]
    UnknownSuffix(String),
}

impl Topic {
    /// A topic for a validated site and gateway.
    pub fn new(site: &str, gateway: &str, kind: TopicKind) -> Result<Self, InvalidId> {
        validate_id("site", site)?;
        validate_id("gateway", gateway)?;
        Ok(Self {
            site: site.to_string(),
            gateway: gateway.to_string(),
            kind,
        })
    }

    /// Parses `chitti/v1/{site}/{gateway}/{suffix}`.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let rest = topic
            .strip_prefix(TOPIC_ROOT)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_prefix(PROTOCOL_VERSION))
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| TopicError::NotChitti(topic.to_string()))?;
        let mut parts = rest.splitn(3, '/');
        let (Some(site), Some(gateway), Some(suffix)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TopicError::UnknownSuffix(topic.to_string()));
        };
        let bad = |source| TopicError::BadId {
            topic: topic.to_string(),
            source,
        };
        validate_id("site", site).map_err(bad)?;
        validate_id("gateway", gateway).map_err(bad)?;
        let kind = TopicKind::ALL
            .into_iter()
            .find(|k| k.suffix() == suffix)
            .ok_or_else(|| TopicError::UnknownSuffix(topic.to_string()))?;
        Ok(Self {
            site: site.to_string(),
            gateway: gateway.to_string(),
            kind,
        })
    }

    /// The hub's subscription filter for one kind from every gateway, e.g.
    /// `chitti/v1/+/+/findings`.
    pub fn filter_all(kind: TopicKind) -> String {
        format!("{TOPIC_ROOT}/{PROTOCOL_VERSION}/+/+/{}", kind.suffix())
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{TOPIC_ROOT}/{PROTOCOL_VERSION}/{}/{}/{}",
            self.site,
            self.gateway,
            self.kind.suffix()
        )
    }
}

/// A batch of findings on `/findings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingBatch {
    /// Batch id (for logs; findings are deduplicated by their own ids).
    pub batch_id: Uuid,
    /// When the batch was sent.
    pub sent_at: DateTime<Utc>,
    /// The findings.
    pub findings: Vec<Finding>,
}

/// The hub's acknowledgement on `/ack`: these findings are durably committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The [`FindingBatch::batch_id`] this answers: the agent deletes only ids of a
    /// batch it sent and has not seen answered (a replayed ack names none).
    pub batch_id: Uuid,
    /// Committed finding ids (of that batch).
    pub ids: Vec<Uuid>,
    /// When the hub signed it (for logs and audits; not a freshness check, which would
    /// make a gateway with a wrong clock keep everything forever).
    pub signed_at: DateTime<Utc>,
}

/// State of one camera in `/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CameraStatus {
    /// Camera id.
    pub id: String,
    /// `streaming`, `reconnecting`, `idle`, `failed` …
    pub state: String,
    /// Frames per second over the last interval.
    pub fps: f64,
    /// Last frame time.
    pub last_frame_at: Option<DateTime<Utc>>,
}

/// Outbox state in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BufferStatus {
    /// Findings waiting for an ack.
    pub depth: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Oldest unacknowledged finding.
    pub oldest_at: Option<DateTime<Utc>>,
    /// Evictions since start, by what was evicted.
    #[serde(default)]
    pub evicted: EvictionCounts,
    /// The byte cap the outbox evicts to stay within (absent from older agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_bytes: Option<u64>,
}

/// The evidence uploader in `/status`: whether evidence reaches the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceUploadStatus {
    /// Blobs uploaded since start.
    pub uploaded: u64,
    /// Failed attempts since start (each retried).
    pub failures: u64,
    /// Since when every attempt has failed (gateway clock); `None` while uploads
    /// succeed or nothing is waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// The latest failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Counts of what the outbox evicted to stay within its byte cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvictionCounts {
    /// Evidence blobs of low-severity findings.
    pub evidence: u64,
    /// Findings (never critical ones).
    pub findings: u64,
}

/// Retained `/status` (and the Last Will with `online: false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentStatus {
    /// Whether the agent is connected and running.
    pub online: bool,
    /// Agent version.
    pub agent_version: String,
    /// Cameras.
    #[serde(default)]
    pub cameras: Vec<CameraStatus>,
    /// Outbox.
    pub buffer: Option<BufferStatus>,
    /// Detection model, or `None` when running on thresholds alone.
    pub model: Option<crate::finding::ModelIdentity>,
    /// The component detector: `disabled`, `ok (<model> <version>)` or
    /// `degraded (<reason>)` (thresholds alone because the model, the runtime or its
    /// library failed). Absent from agents older than the detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    /// Applied configuration version.
    pub config_version: Option<u32>,
    /// The model update in progress or last decided (absent from older agents and
    /// from gateways the hub never sent a model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_update: Option<ModelState>,
    /// The evidence uploader, when the gateway uploads evidence (absent from older
    /// agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceUploadStatus>,
    /// When this status was produced.
    pub ts: DateTime<Utc>,
    /// When the agent process that sent it started: the Last Will, signed at start,
    /// has `ts == session`. The hub applies a Will only for the current session (or a
    /// newer one), any other status only when newer than the last it applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<DateTime<Utc>>,
}

/// Periodic health on `/telemetry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// When measured.
    pub ts: DateTime<Utc>,
    /// CPU temperature, °C.
    pub cpu_temp_c: Option<f64>,
    /// GPU temperature, °C.
    pub gpu_temp_c: Option<f64>,
    /// Free disk where the outbox lives, bytes.
    pub disk_free_bytes: Option<u64>,
    /// Median analysis latency over the interval, ms.
    pub analysis_latency_ms: Option<f64>,
    /// Frames dropped over the interval, all cameras.
    pub frame_drops: u64,
    /// Findings in the outbox, not yet acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_depth: Option<u64>,
    /// Age of the oldest unacknowledged finding, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_oldest_age_s: Option<f64>,
    /// Per camera: frame rate and drops over the interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cameras: Vec<CameraTelemetry>,
}

/// One camera in `/telemetry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraTelemetry {
    /// Camera id.
    pub id: String,
    /// Frames per second over the interval.
    pub fps: f64,
    /// Frames dropped over the interval.
    pub drops: u64,
}

/// `/config/set`: the configuration the hub wants a gateway to run. Versions only grow
/// per gateway; an agent applies a document only when it is newer than what it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredConfig {
    /// The gateway's desired-configuration version (1, 2, …).
    pub version: u64,
    /// The agent's configuration file, TOML (`chitti_common::agent_config`).
    pub config: String,
    /// When the hub's user saved it.
    pub issued_at: DateTime<Utc>,
}

/// What an agent did with a desired configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigStatus {
    /// Validated, written and running.
    Applied,
    /// Not applied: `errors` says why; the configuration before it keeps running.
    Rejected,
    /// Applied, then undone by the agent itself (it lost the hub within its
    /// probation time); the configuration before it runs again.
    RolledBack,
}

impl ConfigStatus {
    /// `applied`, `rejected` or `rolled_back`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Rejected => "rejected",
            Self::RolledBack => "rolled_back",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Applied, Self::Rejected, Self::RolledBack]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// `/config/state`: what the agent did with the newest `/config/set` document it saw,
/// and what it runs now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigState {
    /// The desired version this report answers (0: none received yet, the gateway
    /// runs its local file).
    pub version: u64,
    /// What became of it.
    pub status: ConfigStatus,
    /// Why it was rejected or rolled back, one problem per line (`camera[0].source.path:
    /// … is not a folder`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The desired version running now; `None` when the local file runs.
    pub applied_version: Option<u64>,
    /// When the running configuration was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<DateTime<Utc>>,
    /// The running configuration's document, TOML, secrets replaced by `(kept)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// When the report was made.
    pub ts: DateTime<Utc>,
}

/// `/model/set`: the detection model the hub wants a gateway to run. `seq` only grows
/// per gateway; an agent acts only on one newer than the last it decided on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredModel {
    /// The gateway's desired-model sequence number (1, 2, …).
    pub seq: u64,
    /// The model to run; `None`: the model of the gateway's own configuration
    /// (`detector.model`), as after a rollout is undone.
    pub model: Option<ModelOffer>,
    /// The rollout this belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// How long the gateway watches the new model before calling it good, seconds.
    pub probation_s: u64,
    /// When the hub issued it.
    pub issued_at: DateTime<Utc>,
}

/// A model offered to a gateway: where to fetch it and its hub-signed manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOffer {
    /// The registry id.
    pub id: String,
    /// The file's path on the hub (`/api/v1/models/{id}/file`), fetched from the
    /// gateway's `evidence.hub_url` with range requests.
    pub path: String,
    /// The capability that lets this file be fetched without an API token.
    pub token: String,
    /// File size, bytes.
    pub bytes: u64,
    /// The manifest as the hub signed it, the envelope's JSON text exactly as signed
    /// (`chitti_common::signing::open_manifest` checks it).
    pub manifest: String,
}

/// Where a gateway's model update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ModelPhase {
    /// Fetching the file.
    Downloading,
    /// Checking the manifest's signature and the file's sha256.
    Verifying,
    /// Running the reference frames.
    Testing,
    /// Switched; watched for `probation_s`.
    Probation,
    /// Running, probation passed.
    Active,
    /// Refused before it ran (download, verification or self-test): the model before
    /// keeps running.
    Failed,
    /// Ran and was undone (degraded during probation, or asked for by the hub).
    RolledBack,
}

impl ModelPhase {
    /// Every phase.
    pub const ALL: [Self; 7] = [
        Self::Downloading,
        Self::Verifying,
        Self::Testing,
        Self::Probation,
        Self::Active,
        Self::Failed,
        Self::RolledBack,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Downloading => "downloading",
            Self::Verifying => "verifying",
            Self::Testing => "testing",
            Self::Probation => "probation",
            Self::Active => "active",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }

    /// The phase named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether the update is over (successfully or not).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Active | Self::Failed | Self::RolledBack)
    }
}

/// `/model/state` (and `/status`'s `model_update`): what a gateway did with the newest
/// `/model/set` it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelState {
    /// The desired-model `seq` this answers (0: none received).
    pub seq: u64,
    /// Its model's registry id (`None`: the configuration's own model).
    pub model_id: Option<String>,
    /// Where it stands.
    pub phase: ModelPhase,
    /// Why it failed or was rolled back, or what it is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The model running now.
    pub running: Option<crate::finding::ModelIdentity>,
    /// When the report was made.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub ts: DateTime<Utc>,
}

/// Most findings in one batch a hub accepts.
pub const MAX_FINDINGS_PER_BATCH: usize = 10_000;

/// Longest free-text field (asset, preset, level name, action, sources) accepted.
pub const MAX_TEXT_LEN: usize = 256;

/// A finding batch that decodes but cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("finding {index} ({id}): {field}: {problem}")]
pub struct InvalidFinding {
    /// Position in the batch.
    pub index: usize,
    /// The finding's id.
    pub id: String,
    /// The field, as a path (`hotspot.max_c`).
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// Checks what a schema cannot: counts, ranges, lengths. The hub runs it on every
/// batch before anything is stored.
pub fn validate_batch(batch: &FindingBatch) -> Result<(), Vec<InvalidFinding>> {
    let mut problems = Vec::new();
    if batch.findings.len() > MAX_FINDINGS_PER_BATCH {
        problems.push(InvalidFinding {
            index: 0,
            id: batch.batch_id.to_string(),
            field: "findings",
            problem: format!(
                "{} findings in one batch, at most {MAX_FINDINGS_PER_BATCH}",
                batch.findings.len()
            ),
        });
        return Err(problems);
    }
    for (index, f) in batch.findings.iter().enumerate() {
        let mut bad = |field: &'static str, problem: String| {
            problems.push(InvalidFinding {
                index,
                id: f.id.to_string(),
                field,
                problem,
            })
        };
        if f.id.get_version_num() != 7 {
            bad(
                "id",
                format!("version {} uuid, expected a UUIDv7", f.id.get_version_num()),
            );
        }
        for (field, what, value) in [
            ("site", "site", &f.site),
            ("gateway", "gateway", &f.gateway),
            ("camera", "camera", &f.camera),
        ] {
            if let Err(e) = validate_id(what, value) {
                bad(field, e.to_string());
            }
        }
        for (field, value) in [
            ("asset", f.asset.as_deref()),
            ("preset", f.preset.as_deref()),
            ("severity.level_name", Some(f.severity.level_name.as_str())),
            ("severity.action", Some(f.severity.action.as_str())),
            ("severity.table", Some(f.severity.table.as_str())),
            (
                "reference.ambient_source",
                Some(f.reference.ambient_source.as_str()),
            ),
        ] {
            if value.is_some_and(|v| v.len() > MAX_TEXT_LEN) {
                bad(field, format!("longer than {MAX_TEXT_LEN} bytes"));
            }
        }
        let plausible = |c: f64| c.is_finite() && (-273.15..=5000.0).contains(&c);
        for (field, value) in [
            ("hotspot.max_c", f.hotspot.max_c),
            ("hotspot.mean_c", f.hotspot.mean_c),
            ("reference.ambient_c", f.reference.ambient_c),
            ("measurement.reflected_c", f.measurement.reflected_c),
            ("measurement.atmosphere_c", f.measurement.atmosphere_c),
        ] {
            if !plausible(value) {
                bad(field, format!("{value} is not a plausible temperature"));
            }
        }
        if f.hotspot.area_px == 0 {
            bad("hotspot.area_px", "must be at least 1".into());
        }
        let b = f.hotspot.bbox;
        if b.w == 0 || b.h == 0 || b.x.saturating_add(b.w) > 8192 || b.y.saturating_add(b.h) > 8192
        {
            bad(
                "hotspot.bbox",
                format!(
                    "{:?} is not a box inside an 8192-pixel frame",
                    [b.x, b.y, b.w, b.h]
                ),
            );
        }
        let m = &f.measurement;
        if !(m.emissivity > 0.0 && m.emissivity <= 1.0) {
            bad(
                "measurement.emissivity",
                format!("{} is outside 0 < E <= 1", m.emissivity),
            );
        }
        if !(m.distance_m.is_finite() && m.distance_m >= 0.0) {
            bad(
                "measurement.distance_m",
                format!("{} is not a distance", m.distance_m),
            );
        }
        if !(0.0..=1.0).contains(&m.relative_humidity) {
            bad(
                "measurement.relative_humidity",
                format!("{} is not a fraction", m.relative_humidity),
            );
        }
        if let Some(c) = &f.component {
            if !(0.0..=1.0).contains(&c.confidence) {
                bad(
                    "component.confidence",
                    format!("{} is not 0..1", c.confidence),
                );
            }
            if c.class.len() > MAX_TEXT_LEN {
                bad(
                    "component.class",
                    format!("longer than {MAX_TEXT_LEN} bytes"),
                );
            }
        }
        if let Some(e) = &f.evidence {
            if e.sha256.len() != 64
                || !e
                    .sha256
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            {
                bad("evidence.sha256", "not 64 lowercase hex characters".into());
            }
        }
        if f.track.first_seen > f.track.last_seen {
            bad("track.first_seen", "after last_seen".into());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::*;
    use crate::geometry::{PixelPoint, PixelRect};
    use crate::severity::{ReferenceTemperature, SeverityCatalog, SeverityInputs};
    use expect_test::expect;

    #[test]
    fn ids_are_lowercase_digits_and_dashes() {
        for ok in ["a", "sub-220kv-01", &"x".repeat(64)] {
            assert!(validate_id("site", ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "a/b", "a+b", "#", "a b", "ü", &"x".repeat(65)] {
            assert!(validate_id("site", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topics_round_trip_and_reject_strangers() {
        for kind in TopicKind::ALL {
            let t = Topic::new("north-yard", "gw-07", kind).unwrap();
            assert_eq!(Topic::parse(&t.to_string()).unwrap(), t);
        }
        expect!["chitti/v1/north-yard/gw-07/config/set"].assert_eq(
            &Topic::new("north-yard", "gw-07", TopicKind::ConfigSet)
                .unwrap()
                .to_string(),
        );
        expect!["chitti/v1/+/+/findings"].assert_eq(&Topic::filter_all(TopicKind::Findings));
        expect![[r#"NotChitti("chitti/v2/a/b/status")"#]]
            .assert_debug_eq_str(Topic::parse("chitti/v2/a/b/status").unwrap_err());
        assert!(matches!(
            Topic::parse("chitti/v1/a/b/other"),
            Err(TopicError::UnknownSuffix(_))
        ));
        assert!(matches!(
            Topic::parse("chitti/v1/A/b/status"),
            Err(TopicError::BadId { .. })
        ));
        assert!(matches!(
            Topic::parse("chitti/v1/a/b"),
            Err(TopicError::UnknownSuffix(_))
        ));
        assert!(matches!(
            Topic::parse("chitti/v1/+/b/ack"),
            Err(TopicError::BadId { .. })
        ));
    }

    trait DebugEqStr {
        fn assert_debug_eq_str(&self, value: TopicError);
    }
    impl DebugEqStr for expect_test::Expect {
        fn assert_debug_eq_str(&self, value: TopicError) {
            self.assert_eq(&format!("{value:?}"));
        }
    }

    fn sample_finding() -> Finding {
        let table = SeverityCatalog::builtin();
        let severity = table.get("neta-similar").unwrap().assess(&SeverityInputs {
            max_c: 81.4,
            reference: Some(ReferenceTemperature::similar_component(
                58.4,
                "phase A bushing",
            )),
        });
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        Finding {
            id: Uuid::parse_str("0192d4f0-8f8e-7cc2-9d6a-3b1f6f0e8a11").unwrap(),
            site: "north-yard".into(),
            gateway: "gw-07".into(),
            camera: "cam-1".into(),
            asset: Some("bay3-breaker-b".into()),
            preset: Some("p4".into()),
            captured_at: at("2026-11-23T03:12:45.120+05:30"),
            observed_at: at("2026-11-22T21:42:45.300Z").with_timezone(&Utc),
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
                max_c: 81.4,
                mean_c: 74.2,
                max_at: PixelPoint { x: 316, y: 139 },
                area_px: 171,
            },
            reference: ReferenceSummary {
                ambient_c: 21.0,
                ambient_source: "camera atmospheric temperature".into(),
                similar: Some(SimilarComponent {
                    label: "phase A bushing".into(),
                    celsius: 58.4,
                }),
            },
            severity,
            measurement: Measurement {
                emissivity: 0.95,
                distance_m: 12.0,
                reflected_c: 20.0,
                atmosphere_c: 21.0,
                relative_humidity: 0.6,
                qualitative: false,
            },
            track: TrackSummary {
                id: Uuid::parse_str("0192d4f0-8000-7000-8000-000000000001").unwrap(),
                first_seen: at("2026-11-22T21:40:00Z").with_timezone(&Utc),
                last_seen: at("2026-11-22T21:42:45.300Z").with_timezone(&Utc),
                frames: 4950,
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

    #[test]
    fn ack_wire_shape() {
        // Carried inside `signing::SignedAck`; the hub signs these exact bytes.
        let ack = Ack {
            batch_id: Uuid::parse_str("0192d4f0-9000-7000-8000-0000000000aa").unwrap(),
            ids: vec![Uuid::parse_str("0192d4f0-8f8e-7cc2-9d6a-3b1f6f0e8a11").unwrap()],
            signed_at: DateTime::parse_from_rfc3339("2026-11-22T21:42:47Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        expect![[r#"{"batch_id":"0192d4f0-9000-7000-8000-0000000000aa","ids":["0192d4f0-8f8e-7cc2-9d6a-3b1f6f0e8a11"],"signed_at":"2026-11-22T21:42:47Z"}"#]]
            .assert_eq(&serde_json::to_string(&ack).unwrap());
    }

    #[test]
    fn status_wire_shape() {
        // Carried inside `signing::SignedReport`; the gateway signs these exact bytes.
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let status = AgentStatus {
            online: false,
            agent_version: "0.1.0".into(),
            cameras: Vec::new(),
            buffer: None,
            model: None,
            detector: Some("disabled".into()),
            config_version: None,
            model_update: None,
            evidence: None,
            ts: at("2026-11-22T21:40:00Z"),
            session: Some(at("2026-11-22T21:40:00Z")),
        };
        expect![[r#"{"online":false,"agent_version":"0.1.0","cameras":[],"buffer":null,"model":null,"detector":"disabled","config_version":null,"ts":"2026-11-22T21:40:00Z","session":"2026-11-22T21:40:00Z"}"#]].assert_eq(&serde_json::to_string(&status).unwrap());
    }

    #[test]
    fn finding_batch_wire_shape() {
        let batch = FindingBatch {
            batch_id: Uuid::parse_str("0192d4f0-9000-7000-8000-0000000000aa").unwrap(),
            sent_at: DateTime::parse_from_rfc3339("2026-11-22T21:42:46Z")
                .unwrap()
                .with_timezone(&Utc),
            findings: vec![sample_finding()],
        };
        let json = serde_json::to_string_pretty(&batch).unwrap();
        expect![[r#"
            {
              "batch_id": "0192d4f0-9000-7000-8000-0000000000aa",
              "sent_at": "2026-11-22T21:42:46Z",
              "findings": [
                {
                  "id": "0192d4f0-8f8e-7cc2-9d6a-3b1f6f0e8a11",
                  "site": "north-yard",
                  "gateway": "gw-07",
                  "camera": "cam-1",
                  "asset": "bay3-breaker-b",
                  "preset": "p4",
                  "captured_at": "2026-11-23T03:12:45.120+05:30",
                  "observed_at": "2026-11-22T21:42:45.300Z",
                  "source": "stream",
                  "component": {
                    "class": "bushing",
                    "confidence": 0.91,
                    "bbox": [
                      300,
                      120,
                      40,
                      90
                    ]
                  },
                  "hotspot": {
                    "bbox": [
                      310,
                      130,
                      12,
                      18
                    ],
                    "max_c": 81.4,
                    "mean_c": 74.2,
                    "max_at": [
                      316,
                      139
                    ],
                    "area_px": 171
                  },
                  "reference": {
                    "ambient_c": 21.0,
                    "ambient_source": "camera atmospheric temperature",
                    "similar": {
                      "label": "phase A bushing",
                      "celsius": 58.4
                    }
                  },
                  "severity": {
                    "table": "neta-similar",
                    "table_version": 1,
                    "level": 3,
                    "level_name": "major discrepancy",
                    "action": "repair immediately",
                    "inputs": {
                      "max_c": 81.4,
                      "reference_c": 58.4,
                      "reference_kind": "similar_component",
                      "reference_source": "phase A bushing",
                      "delta_c": 23.000000000000007,
                      "compared_c": 23.000000000000007
                    },
                    "cool_exception": false,
                    "not_assessed": null
                  },
                  "measurement": {
                    "emissivity": 0.95,
                    "distance_m": 12.0,
                    "reflected_c": 20.0,
                    "atmosphere_c": 21.0,
                    "relative_humidity": 0.6,
                    "qualitative": false
                  },
                  "track": {
                    "id": "0192d4f0-8000-7000-8000-000000000001",
                    "first_seen": "2026-11-22T21:40:00Z",
                    "last_seen": "2026-11-22T21:42:45.300Z",
                    "frames": 4950,
                    "state": "raised"
                  },
                  "evidence": {
                    "sha256": "abababababababababababababababababababababababababababababababab"
                  },
                  "historical": false
                }
              ]
            }"#]]
        .assert_eq(&json);
        let back: FindingBatch = serde_json::from_str(&json).unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn batches_are_checked_for_what_the_schema_cannot_say() {
        let mut batch = FindingBatch {
            batch_id: Uuid::now_v7(),
            sent_at: Utc::now(),
            findings: vec![sample_finding()],
        };
        batch.findings[0].id = Uuid::now_v7();
        assert_eq!(validate_batch(&batch), Ok(()));
        let mut bad = batch.clone();
        let f = &mut bad.findings[0];
        f.id = Uuid::nil();
        f.hotspot.max_c = f64::INFINITY;
        f.measurement.emissivity = 1.5;
        f.asset = Some("x".repeat(300));
        f.hotspot.bbox.w = 0;
        f.gateway = "GW".into();
        let problems = validate_batch(&bad).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "id",
                "gateway",
                "asset",
                "hotspot.max_c",
                "hotspot.bbox",
                "measurement.emissivity"
            ],
            "{problems:?}"
        );
        assert!(problems[3]
            .to_string()
            .contains("inf is not a plausible temperature"));
    }

    #[test]
    fn malformed_payloads_are_rejected_with_a_reason() {
        let err = serde_json::from_str::<Ack>(
            r#"{"batch_id": "01936f5e-0000-7000-8000-000000000000", "ids": ["not-a-uuid"], "signed_at": "2026-01-01T00:00:00Z"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("UUID"), "{err}");
        let err = serde_json::from_str::<Ack>(r#"{"ids": [], "extra": 1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
        let err = serde_json::from_str::<FindingBatch>(
            r#"{"batch_id": "0192d4f0-9000-7000-8000-0000000000aa"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }
}
