//! The values the store takes and returns.

use chitti_common::finding::{Finding, ModelIdentity};
use chitti_common::protocol::{AgentStatus, CameraStatus};
use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

use super::cursor::Cursor;

/// Most rows one page returns, whatever the query asks for.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// Page size when a query does not say.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;

/// Connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a connection (also bounds connecting to an unreachable
    /// database, which sqlx otherwise retries).
    pub acquire_timeout: Duration,
    /// SQLite: how long a writer waits for the file lock before failing.
    pub sqlite_busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

/// One embedded migration and whether this database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    /// Version (the file name's timestamp).
    pub version: i64,
    /// Description (the rest of the file name).
    pub description: String,
    /// Whether it has been applied successfully.
    pub applied: bool,
}

/// A finding as ingest hands it to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedFinding {
    /// The finding as the agent sent it.
    pub finding: Finding,
    /// When the hub received it, by the hub's clock (stored to the microsecond).
    pub received_at: DateTime<Utc>,
    /// The batch it came in.
    pub batch_id: Uuid,
}

/// What [`IngestStore::insert_findings`](super::IngestStore::insert_findings) did. Both lists are
/// durably committed when it returns: acknowledge all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertReport {
    /// Ids stored by this call, in input order.
    pub inserted: Vec<Uuid>,
    /// Ids that were already stored (by an earlier call, or earlier in the same batch),
    /// in input order, once per repeated occurrence.
    pub duplicates: Vec<Uuid>,
    /// Alerts created or changed by the inserted findings (each once).
    pub alerts: Vec<Uuid>,
}

impl InsertReport {
    /// Every id now committed: what the `/ack` names.
    pub fn committed(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.inserted.iter().chain(&self.duplicates).copied()
    }
}

/// A stored finding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFinding {
    /// The finding as received.
    pub finding: Finding,
    /// When the hub received it (microsecond precision).
    pub received_at: DateTime<Utc>,
    /// The batch it came in.
    pub batch_id: Uuid,
}

/// Which findings to list, newest received first.
#[derive(Debug, Clone)]
pub struct FindingQuery {
    /// Only this site.
    pub site: Option<String>,
    /// Only this gateway id (in every site, unless `site` is set too).
    pub gateway: Option<String>,
    /// Only this camera id.
    pub camera: Option<String>,
    /// Only this asset.
    pub asset: Option<String>,
    /// Only severity levels at or above this.
    pub min_level: Option<u8>,
    /// Only findings received at or after this (hub clock).
    pub since: Option<DateTime<Utc>>,
    /// Only findings received before this (hub clock).
    pub until: Option<DateTime<Utc>>,
    /// Only this detected component class.
    pub component_class: Option<String>,
    /// Only this track (episode) id.
    pub track: Option<Uuid>,
    /// Only findings whose site, gateway, camera, asset or component class contains
    /// this text, case-insensitively ([`super::IngestStore::list_findings`] says how).
    pub text: Option<String>,
    /// Page size, clamped to `1..=`[`MAX_PAGE_LIMIT`].
    pub limit: u32,
    /// Continue after this cursor (from a previous page's `next_cursor`).
    pub after: Option<Cursor>,
}

impl Default for FindingQuery {
    fn default() -> Self {
        Self {
            site: None,
            gateway: None,
            camera: None,
            asset: None,
            min_level: None,
            since: None,
            until: None,
            component_class: None,
            track: None,
            text: None,
            limit: DEFAULT_PAGE_LIMIT,
            after: None,
        }
    }
}

/// One page of a keyset-paginated listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, in listing order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// Where an alert is in its operator workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertStatus {
    /// Nobody has looked at it yet.
    Open,
    /// An operator has seen it.
    Acknowledged,
    /// Dealt with. A resolved alert stays resolved: a new episode gets a new track id,
    /// and so a new alert.
    Resolved,
}

impl AlertStatus {
    /// Every status's stored (and API) name.
    pub const NAMES: &'static [&'static str] = &["open", "acknowledged", "resolved"];

    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, super::StoreError> {
        match s {
            "open" => Ok(Self::Open),
            "acknowledged" => Ok(Self::Acknowledged),
            "resolved" => Ok(Self::Resolved),
            other => Err(super::StoreError::corrupt("alert status", other)),
        }
    }
}

/// What an alert is about: a thermal track, or a problem of the fleet itself that the
/// hub raises (a fleet alarm). Cool exceptions are thermal (`Hotspot`) alerts; see
/// [`AlertRecord::presented_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A thermal track's findings.
    Hotspot,
    /// Nothing heard from the gateway (or its Last Will) for `offline_after_s`.
    GatewayOffline,
    /// A camera delivers no frames, or its state is not ok, for the configured time.
    CameraStalled,
    /// The gateway's outbox is near its byte cap, or has started evicting.
    OutboxPressure,
    /// The component detector runs degraded (thresholds alone).
    DetectorDegraded,
    /// The gateway has failed to upload evidence for the configured time.
    EvidenceUploadFailing,
    /// The gateway's clock is off the hub's by more than the bound.
    ClockSkew,
    /// The gateway rejected its newest desired configuration, or rolled it back.
    ConfigFailed,
    /// The gateway failed the model update of its newest rollout (refused, undone, or
    /// no answer in time).
    ModelFailed,
}

impl AlertKind {
    /// Every kind's stored (and API) name.
    pub const NAMES: &'static [&'static str] = &[
        "hotspot",
        "gateway_offline",
        "camera_stalled",
        "outbox_pressure",
        "detector_degraded",
        "evidence_upload_failing",
        "clock_skew",
        "config_failed",
        "model_failed",
    ];

    /// The fleet alarms' kinds.
    pub const FLEET: [AlertKind; 8] = [
        Self::GatewayOffline,
        Self::CameraStalled,
        Self::OutboxPressure,
        Self::DetectorDegraded,
        Self::EvidenceUploadFailing,
        Self::ClockSkew,
        Self::ConfigFailed,
        Self::ModelFailed,
    ];

    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hotspot => "hotspot",
            Self::GatewayOffline => "gateway_offline",
            Self::CameraStalled => "camera_stalled",
            Self::OutboxPressure => "outbox_pressure",
            Self::DetectorDegraded => "detector_degraded",
            Self::EvidenceUploadFailing => "evidence_upload_failing",
            Self::ClockSkew => "clock_skew",
            Self::ConfigFailed => "config_failed",
            Self::ModelFailed => "model_failed",
        }
    }

    /// The kind a stored (or API) name names.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Hotspot]
            .into_iter()
            .chain(Self::FLEET)
            .find(|k| k.as_str() == s)
    }

    /// Whether the hub raises it about the fleet (not a thermal track).
    pub fn is_fleet(self) -> bool {
        self != Self::Hotspot
    }

    /// How people read it ("gateway offline").
    pub fn title(self) -> &'static str {
        match self {
            Self::Hotspot => "hotspot",
            Self::GatewayOffline => "gateway offline",
            Self::CameraStalled => "camera stalled",
            Self::OutboxPressure => "outbox under pressure",
            Self::DetectorDegraded => "detector degraded",
            Self::EvidenceUploadFailing => "evidence upload failing",
            Self::ClockSkew => "clock skew",
            Self::ConfigFailed => "configuration failed",
            Self::ModelFailed => "model update failed",
        }
    }
}

/// One alert: the operator's view of one track (site, gateway, camera, track id), or a
/// fleet alarm the hub raised (its `kind` says which; it has no findings).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    /// Alert id (assigned by the hub).
    pub id: Uuid,
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// What the alert is about.
    pub kind: AlertKind,
    /// Camera id; empty for a fleet alarm about the whole gateway.
    pub camera: String,
    /// The agent's track (episode) id; a fleet alarm's own episode id.
    pub track_id: Uuid,
    /// Asset, as the latest finding that named one said.
    pub asset: Option<String>,
    /// Component class, as the latest finding that named one said.
    pub component_class: Option<String>,
    /// Severity table of the track's findings (`None` for a fleet alarm).
    pub severity_table: Option<String>,
    /// Workflow status.
    pub status: AlertStatus,
    /// Highest severity level of any finding of the track (a fleet alarm: its level).
    pub worst_level: u8,
    /// Highest max °C of any finding of the track (`None` for a fleet alarm).
    pub worst_max_c: Option<f64>,
    /// Severity level of the latest finding (by `observed_at`).
    pub last_level: u8,
    /// Max °C of the latest finding (`None` for a fleet alarm).
    pub last_max_c: Option<f64>,
    /// The earliest finding (by `observed_at`; `None` for a fleet alarm).
    pub first_finding_id: Option<Uuid>,
    /// Its `observed_at` (a fleet alarm: when its condition began).
    pub first_finding_at: DateTime<Utc>,
    /// The latest finding (by `observed_at`; `None` for a fleet alarm).
    pub last_finding_id: Option<Uuid>,
    /// Its `observed_at` (a fleet alarm: when its condition was last seen to hold).
    pub last_finding_at: DateTime<Utc>,
    /// Distinct findings stored for the track (0 for a fleet alarm).
    pub finding_count: u64,
    /// `observed_at` of the first finding with track state `cleared` (a fleet alarm:
    /// when its condition ended).
    pub cleared_at: Option<DateTime<Utc>>,
    /// Whether any finding of the track is a cool exception (level 0, the component
    /// far colder than its reference: an open phase, a lost load).
    pub cool_exception: bool,
    /// When the first finding arrived (hub clock).
    pub created_at: DateTime<Utc>,
    /// When the latest finding arrived (hub clock).
    pub updated_at: DateTime<Utc>,
    /// When an operator last changed the status.
    pub status_changed_at: Option<DateTime<Utc>>,
    /// What the hub saw, for a fleet alarm ("no status or telemetry for 130 s").
    pub detail: Option<String>,
}

impl AlertRecord {
    /// The kind people and rules see: a thermal alert whose worst is a cool exception
    /// at level 0 is `cool_exception`, never "L0 none"; otherwise [`AlertKind::as_str`].
    pub fn presented_kind(&self) -> &'static str {
        if self.kind == AlertKind::Hotspot && self.cool_exception && self.worst_level == 0 {
            "cool_exception"
        } else {
            self.kind.as_str()
        }
    }

    /// How long a fleet alarm's condition lasted (to its end, or to `now` while it
    /// holds); `None` for a thermal alert.
    pub fn outage(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        self.kind
            .is_fleet()
            .then(|| self.cleared_at.unwrap_or(now) - self.first_finding_at)
    }
}

/// Which alerts to list, newest created first (creation time never changes, so pages
/// stay stable while alerts are updated).
#[derive(Debug, Clone)]
pub struct AlertQuery {
    /// Only this site.
    pub site: Option<String>,
    /// Only this gateway id.
    pub gateway: Option<String>,
    /// Only this asset.
    pub asset: Option<String>,
    /// Only this status.
    pub status: Option<AlertStatus>,
    /// Only alerts whose worst level is at or above this.
    pub min_level: Option<u8>,
    /// Only this component class.
    pub component_class: Option<String>,
    /// Only alerts of this presented kind ([`AlertRecord::presented_kind`]), or of
    /// this group ([`KindFilter`]).
    pub kind: Option<KindFilter>,
    /// Only alerts created at or after this (hub clock).
    pub since: Option<DateTime<Utc>>,
    /// Only alerts created before this (hub clock).
    pub until: Option<DateTime<Utc>>,
    /// Only alerts whose site, gateway, camera, asset or component class contains this
    /// text, case-insensitively ([`super::AlertStore::list_alerts`] says how).
    pub text: Option<String>,
    /// The order, and so the keyset a cursor continues.
    pub sort: AlertSort,
    /// Page size, clamped to `1..=`[`MAX_PAGE_LIMIT`].
    pub limit: u32,
    /// Continue after this cursor (of the same `sort`).
    pub after: Option<Cursor>,
}

impl Default for AlertQuery {
    fn default() -> Self {
        Self {
            site: None,
            gateway: None,
            asset: None,
            status: None,
            min_level: None,
            component_class: None,
            kind: None,
            since: None,
            until: None,
            text: None,
            sort: AlertSort::default(),
            limit: DEFAULT_PAGE_LIMIT,
            after: None,
        }
    }
}

/// The alert list's kind filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindFilter {
    /// One stored kind (`Hotspot` without its cool exceptions).
    Kind(AlertKind),
    /// Thermal alerts graded as cool exceptions.
    CoolException,
    /// Every thermal alert (hot spots and cool exceptions).
    Thermal,
    /// Every fleet alarm.
    Fleet,
}

impl KindFilter {
    /// Every filter's API name: the presented kinds, then the groups.
    pub const NAMES: &'static [&'static str] = &[
        "hotspot",
        "cool_exception",
        "gateway_offline",
        "camera_stalled",
        "outbox_pressure",
        "detector_degraded",
        "evidence_upload_failing",
        "clock_skew",
        "config_failed",
        "thermal",
        "fleet",
    ];

    /// The kinds an alert presents as ([`AlertRecord::presented_kind`]): every name but
    /// the groups.
    pub fn presented_kinds() -> &'static [&'static str] {
        &Self::NAMES[..Self::NAMES.len() - 2]
    }

    /// The filter an API name names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cool_exception" => Some(Self::CoolException),
            "thermal" => Some(Self::Thermal),
            "fleet" => Some(Self::Fleet),
            other => AlertKind::parse(other).map(Self::Kind),
        }
    }

    /// Whether an alert passes the filter.
    pub fn matches(self, alert: &AlertRecord) -> bool {
        match self {
            Self::Kind(AlertKind::Hotspot) => alert.presented_kind() == "hotspot",
            Self::Kind(kind) => alert.kind == kind,
            Self::CoolException => alert.presented_kind() == "cool_exception",
            Self::Thermal => !alert.kind.is_fleet(),
            Self::Fleet => alert.kind.is_fleet(),
        }
    }
}

/// The orders of the alert list, each with its own keyset (ties broken by id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AlertSort {
    /// Newest created first: (`created_at`, `id`) descending.
    #[default]
    CreatedDesc,
    /// Worst first, newest first within a level: (`worst_level`, `created_at`, `id`)
    /// descending.
    WorstLevelDesc,
    /// Most recently changed first (a hot-first queue): (`updated_at`, `id`)
    /// descending. An alert that changes while a client pages moves to the top, so it
    /// is seen once more or, if it was still ahead of the cursor, not in this pass.
    UpdatedDesc,
}

impl AlertSort {
    /// Every order's API name.
    pub const NAMES: &'static [&'static str] =
        &["created_desc", "worst_level_desc", "updated_desc"];

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreatedDesc => "created_desc",
            Self::WorstLevelDesc => "worst_level_desc",
            Self::UpdatedDesc => "updated_desc",
        }
    }
}

impl std::str::FromStr for AlertSort {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "created_desc" => Ok(Self::CreatedDesc),
            "worst_level_desc" => Ok(Self::WorstLevelDesc),
            "updated_desc" => Ok(Self::UpdatedDesc),
            other => Err(UnknownName {
                what: "alert order",
                value: other.to_string(),
            }),
        }
    }
}

/// What an operator does to an alert (the audit trail's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertEventKind {
    /// Open → acknowledged.
    Acknowledge,
    /// Open or acknowledged → resolved.
    Resolve,
    /// Acknowledged or resolved → open.
    Reopen,
    /// A note; no status change.
    Comment,
    /// Assigned to someone (in `detail`); no status change.
    Assign,
}

impl AlertEventKind {
    /// Every kind's stored (and API) name.
    pub const NAMES: &'static [&'static str] =
        &["acknowledge", "resolve", "reopen", "comment", "assign"];

    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acknowledge => "acknowledge",
            Self::Resolve => "resolve",
            Self::Reopen => "reopen",
            Self::Comment => "comment",
            Self::Assign => "assign",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, super::StoreError> {
        match s {
            "acknowledge" => Ok(Self::Acknowledge),
            "resolve" => Ok(Self::Resolve),
            "reopen" => Ok(Self::Reopen),
            "comment" => Ok(Self::Comment),
            "assign" => Ok(Self::Assign),
            other => Err(super::StoreError::corrupt("alert event kind", other)),
        }
    }

    /// The status this action moves an alert in `from` to (`from` itself when the
    /// action does not change the status).
    pub fn transition(self, from: AlertStatus) -> Result<AlertStatus, super::StoreError> {
        use AlertStatus::*;
        let to = match (self, from) {
            (Self::Comment | Self::Assign, s) => Some(s),
            (Self::Acknowledge, Open) => Some(Acknowledged),
            (Self::Resolve, Open | Acknowledged) => Some(Resolved),
            (Self::Reopen, Acknowledged | Resolved) => Some(Open),
            _ => None,
        };
        to.ok_or(super::StoreError::InvalidTransition {
            action: self.as_str(),
            status: from.as_str(),
        })
    }
}

/// An operator action to record on an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlertEvent {
    /// The alert.
    pub alert_id: Uuid,
    /// What was done.
    pub kind: AlertEventKind,
    /// Who did it (username or token name).
    pub actor: String,
    /// When (hub clock).
    pub at: DateTime<Utc>,
    /// From where (client address).
    pub from_address: Option<String>,
    /// Free text.
    pub note: Option<String>,
    /// Structured detail (e.g. the assignee).
    pub detail: Option<serde_json::Value>,
}

/// A recorded operator action.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// Sequence number (increasing).
    pub id: i64,
    /// What was recorded.
    pub event: NewAlertEvent,
}

/// A gateway to enrol.
#[derive(Clone, PartialEq, Eq)]
pub struct NewGateway {
    /// Site id.
    pub site: String,
    /// Gateway id (unique within the site).
    pub gateway: String,
    /// Password hash (argon2 PHC string) for brokers without mTLS.
    pub password_hash: String,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
}

impl std::fmt::Debug for NewGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewGateway")
            .field("site", &self.site)
            .field("gateway", &self.gateway)
            .field("password_hash", &"<redacted>")
            .field("public_key", &hex::encode(self.public_key))
            .finish()
    }
}

/// The MQTT username of a gateway: `{site}/{gateway}`.
///
/// Gateway ids are unique only within a site, so the bare id is ambiguous; `/` cannot
/// occur in an id and the form mirrors the topic prefix `chitti/v1/{site}/{gateway}/`,
/// so a broker ACL can be the pattern `chitti/v1/%u/#` (Mosquitto) or
/// `chitti/v1/${username}/#` (EMQX).
pub fn gateway_username(site: &str, gateway: &str) -> String {
    format!("{site}/{gateway}")
}

/// Splits a gateway username into (site, gateway); `None` when it is not one.
pub fn parse_gateway_username(username: &str) -> Option<(&str, &str)> {
    let (site, gateway) = username.split_once('/')?;
    let valid = chitti_common::protocol::validate_id("site", site).is_ok()
        && chitti_common::protocol::validate_id("gateway", gateway).is_ok();
    valid.then_some((site, gateway))
}

/// Outbox state from the latest `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferStats {
    /// Findings waiting for an ack.
    pub depth: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Oldest unacknowledged finding.
    pub oldest_at: Option<DateTime<Utc>>,
    /// Evidence blobs evicted since the agent started.
    pub evicted_evidence: u64,
    /// Findings evicted since the agent started.
    pub evicted_findings: u64,
}

/// What became of a `/status` given to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusOutcome {
    /// Recorded.
    Applied,
    /// No such gateway: nothing stored.
    NotEnrolled,
    /// Not newer than the status last applied (`last`, gateway clock), and not the Last
    /// Will of the current session: a replay, a retained copy seen again, or a gateway
    /// whose clock went back. Nothing stored.
    Stale {
        /// `ts` of the status last applied.
        last: DateTime<Utc>,
    },
}

/// An enrolled gateway and what it last reported.
#[derive(Clone, PartialEq)]
pub struct GatewayRecord {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// Password hash (argon2 PHC string). Redacted from `Debug`.
    pub password_hash: String,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// When enrolled.
    pub created_at: DateTime<Utc>,
    /// When revoked; a revoked gateway must not connect.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Online according to the latest status (the Last Will says `false`).
    pub online: bool,
    /// When the hub last heard from it: a status, its Last Will or telemetry (hub
    /// clock).
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The newest applied status' own timestamp (gateway clock); a Last Will applied
    /// after it does not move it back.
    pub status_at: Option<DateTime<Utc>>,
    /// Agent version.
    pub agent_version: Option<String>,
    /// Applied configuration version.
    pub config_version: Option<u32>,
    /// Detection model.
    pub model: Option<ModelIdentity>,
    /// Outbox state.
    pub buffer: Option<BufferStats>,
    /// Cameras as the latest status listed them.
    pub cameras: Vec<CameraStatus>,
    /// The latest status as received.
    pub last_status: Option<AgentStatus>,
    /// Its clock against the hub's, measured on its latest online status or telemetry
    /// (its `ts` minus the hub's receipt), milliseconds.
    pub clock_offset_ms: Option<i64>,
    /// The measurement before it.
    pub clock_offset_prev_ms: Option<i64>,
    /// When a status last showed its outbox evicting (hub clock).
    pub evicted_at: Option<DateTime<Utc>>,
}

impl GatewayRecord {
    /// The MQTT username ([`gateway_username`]).
    pub fn username(&self) -> String {
        gateway_username(&self.site, &self.gateway)
    }

    /// Whether the gateway has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

impl std::fmt::Debug for GatewayRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayRecord")
            .field("site", &self.site)
            .field("gateway", &self.gateway)
            .field("password_hash", &"<redacted>")
            .field("public_key", &hex::encode(self.public_key))
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .field("online", &self.online)
            .field("last_seen_at", &self.last_seen_at)
            .field("agent_version", &self.agent_version)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// A camera as its gateway last reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraRecord {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// Camera id.
    pub camera: String,
    /// `streaming`, `reconnecting`, `idle`, `failed` …
    pub state: String,
    /// Frames per second.
    pub fps: f64,
    /// Last frame time.
    pub last_frame_at: Option<DateTime<Utc>>,
    /// When a status last listed it (hub clock).
    pub updated_at: DateTime<Utc>,
}

/// One minute of a gateway's telemetry.
///
/// Downsampling rule: a sample belongs to the minute of its own `ts` (gateway clock,
/// truncated to the minute). Temperatures and latency keep the mean and the maximum of
/// the samples that had a value; free disk keeps the minimum (the worst moment); frame
/// drops are summed (each sample counts the drops of its own interval).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryMinute {
    /// The minute.
    pub bucket_start: DateTime<Utc>,
    /// Samples aggregated.
    pub samples: u64,
    /// Mean CPU temperature, °C.
    pub cpu_temp_avg_c: Option<f64>,
    /// Highest CPU temperature, °C.
    pub cpu_temp_max_c: Option<f64>,
    /// Mean GPU temperature, °C.
    pub gpu_temp_avg_c: Option<f64>,
    /// Highest GPU temperature, °C.
    pub gpu_temp_max_c: Option<f64>,
    /// Least free disk, bytes.
    pub disk_free_min_bytes: Option<u64>,
    /// Mean of the samples' median analysis latency, ms.
    pub analysis_latency_avg_ms: Option<f64>,
    /// Highest median analysis latency, ms.
    pub analysis_latency_max_ms: Option<f64>,
    /// Frames dropped in the minute.
    pub frame_drops: u64,
    /// Earliest sample ts.
    pub first_ts: DateTime<Utc>,
    /// Latest sample ts.
    pub last_ts: DateTime<Utc>,
}

/// A message ingest could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// When it arrived (hub clock).
    pub received_at: DateTime<Utc>,
    /// Its MQTT topic.
    pub topic: String,
    /// Why it was not used.
    pub reason: String,
    /// The payload, byte for byte.
    pub payload: Vec<u8>,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// Sequence number.
    pub id: i64,
    /// The message.
    pub letter: DeadLetter,
    /// Why, in one word: the reason's text before its first colon (`signature`,
    /// `schema`, `store`, …).
    pub class: String,
    /// The site the topic names (`None`: not a `chitti/v1/{site}/{gateway}/…` topic).
    pub site: Option<String>,
    /// The gateway the topic names.
    pub gateway: Option<String>,
}

impl DeadLetter {
    /// Its class: the reason's text before the first colon (all of it when none).
    pub fn class(&self) -> &str {
        self.reason
            .split_once(':')
            .map_or(self.reason.as_str(), |(class, _)| class)
    }

    /// (site, gateway) when the topic is `chitti/v1/{site}/{gateway}/…`.
    pub fn gateway(&self) -> Option<(&str, &str)> {
        let mut parts = self.topic.strip_prefix("chitti/v1/")?.splitn(3, '/');
        let (site, gateway) = (parts.next()?, parts.next()?);
        parts.next()?;
        (!site.is_empty() && !gateway.is_empty()).then_some((site, gateway))
    }
}

/// Which dead letters to list, newest first; the filters combine.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterQuery {
    /// Only this class ([`DeadLetterRecord::class`]).
    pub class: Option<String>,
    /// Only this site.
    pub site: Option<String>,
    /// Only this gateway id (in every site, unless `site` is set too).
    pub gateway: Option<String>,
    /// Only letters received at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only letters received before this.
    pub until: Option<DateTime<Utc>>,
    /// Page size, clamped to `1..=`[`MAX_PAGE_LIMIT`] (0 reads as 1).
    pub limit: u32,
    /// Continue after this cursor (a previous page's `next_cursor`).
    pub after: Option<Cursor>,
}

/// How many dead letters one (class, site, gateway) has, and the newest one's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterGroup {
    /// Class.
    pub class: String,
    /// Site (`None` for topics outside `chitti/v1/`).
    pub site: Option<String>,
    /// Gateway.
    pub gateway: Option<String>,
    /// How many.
    pub count: u64,
    /// When the newest arrived.
    pub last_at: DateTime<Utc>,
}

/// A stored or parsed name that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    /// Which kind of name ("role", "site kind" …).
    pub what: &'static str,
    /// The offending value.
    pub value: String,
}

/// Declares a stored enum: its names, `as_str`, `Display` and `FromStr`.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value's stored (and API) name, in order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The stored (and API) name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            pub(crate) fn parse_stored(s: &str) -> Result<Self, super::StoreError> {
                s.parse().map_err(|_| super::StoreError::corrupt($what, s))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownName { what: $what, value: other.to_string() }),
                }
            }
        }
    };
}

named_enum! {
    /// What a user may do. Ordered: `Viewer < Operator < Admin`, so a check is
    /// `user.role >= Role::Operator`.
    Role, "role", {
        /// Reads everything.
        Viewer => "viewer",
        /// Also acts on alerts.
        Operator => "operator",
        /// Also manages users, tokens, sites and gateways.
        Admin => "admin",
    }
}

named_enum! {
    /// What a site is.
    SiteKind, "site kind", {
        /// A substation (whose structures are usually bays; not enforced).
        Substation => "substation",
        /// A line section (whose structures are usually towers; not enforced).
        Line => "line",
    }
}

named_enum! {
    /// What a structure is.
    StructureKind, "structure kind", {
        /// A bay in a substation.
        Bay => "bay",
        /// A tower on a line.
        Tower => "tower",
    }
}

named_enum! {
    /// The electrical phase an asset is on.
    Phase, "phase", {
        /// Phase A.
        A => "A",
        /// Phase B.
        B => "B",
        /// Phase C.
        C => "C",
    }
}

/// A user to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Login name (unique; 1 to 64 characters, no whitespace or control characters).
    pub username: String,
    /// Password hash (argon2 PHC string). Redacted from `Debug`.
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

/// A stored user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// User id (UUIDv7, assigned by the store).
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// Password hash (argon2 PHC string). Redacted from `Debug`.
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When disabled; a disabled user's sessions and tokens do not authenticate.
    pub disabled_at: Option<DateTime<Utc>>,
}

impl UserRecord {
    /// Whether the user is disabled.
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .finish()
    }
}

/// A login session to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Lowercase hex SHA-256 of the bearer token (the token itself is never stored).
    /// Redacted from `Debug`.
    pub token_hash: String,
    /// Whose session.
    pub user_id: Uuid,
    /// The session's CSRF token. Redacted from `Debug`.
    pub csrf_token: String,
    /// When created (also the first `last_seen_at`).
    pub created_at: DateTime<Utc>,
    /// When it stops authenticating.
    pub expires_at: DateTime<Utc>,
    /// Client address at login.
    pub from_address: Option<String>,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("token_hash", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("csrf_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("from_address", &self.from_address)
            .finish()
    }
}

/// A stored login session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session id (UUIDv7, assigned by the store).
    pub id: Uuid,
    /// Whose session.
    pub user_id: Uuid,
    /// The session's CSRF token. Redacted from `Debug`.
    pub csrf_token: String,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When it stops authenticating.
    pub expires_at: DateTime<Utc>,
    /// The latest `now` a lookup authenticated with it (never moves back).
    pub last_seen_at: DateTime<Utc>,
    /// Client address at login.
    pub from_address: Option<String>,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("csrf_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("from_address", &self.from_address)
            .finish()
    }
}

/// An API (integration) token to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// Lowercase hex SHA-256 of the token (the token itself is never stored). Redacted
    /// from `Debug`.
    pub token_hash: String,
    /// The user the token acts as.
    pub user_id: Uuid,
    /// A label for people.
    pub name: String,
    /// Scopes, in order; each non-empty and without whitespace (they are stored
    /// space-separated, as OAuth writes them).
    pub scopes: Vec<String>,
    /// When it stops authenticating; `None` never.
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiToken")
            .field("token_hash", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A stored API token (without its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    /// Token id (UUIDv7, assigned by the store).
    pub id: Uuid,
    /// The user the token acts as.
    pub user_id: Uuid,
    /// A label for people.
    pub name: String,
    /// Scopes, as given.
    pub scopes: Vec<String>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When revoked; a revoked token does not authenticate.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last authenticated.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops authenticating; `None` never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A site to create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSite {
    /// Site id, `[a-z0-9-]{1,64}` (as in topics).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Substation or line.
    pub kind: SiteKind,
}

/// A stored site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    /// Site id.
    pub id: String,
    /// Display name (a site created by enrolling a gateway is named after its id).
    pub name: String,
    /// Substation or line (`substation` for sites created by enrolling a gateway).
    pub kind: SiteKind,
    /// When created.
    pub created_at: DateTime<Utc>,
}

/// A structure (bay or tower) to create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStructure {
    /// The site it is in.
    pub site: String,
    /// Structure id, `[a-z0-9-]{1,64}`, unique within the site.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Bay or tower.
    pub kind: StructureKind,
}

/// A stored structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureRecord {
    /// The site it is in.
    pub site: String,
    /// Structure id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Bay or tower.
    pub kind: StructureKind,
    /// When created.
    pub created_at: DateTime<Utc>,
}

/// An asset (a piece of equipment) to create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAsset {
    /// The site it is in.
    pub site: String,
    /// The structure it is on, in the same site.
    pub structure: Option<String>,
    /// Asset id, `[a-z0-9-]{1,64}`, unique within the site (a finding's `asset`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Electrical phase.
    pub phase: Option<Phase>,
    /// Component class (as the detector names it, e.g. `bushing`).
    pub component_class: Option<String>,
}

/// A stored asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRecord {
    /// The site it is in.
    pub site: String,
    /// The structure it is on.
    pub structure: Option<String>,
    /// Asset id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Electrical phase.
    pub phase: Option<Phase>,
    /// Component class.
    pub component_class: Option<String>,
    /// When created.
    pub created_at: DateTime<Utc>,
}

/// An evidence blob's metadata (the bytes are in the blob store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRecord {
    /// Lowercase hex SHA-256 of the bytes: the key.
    pub sha256: String,
    /// Size in bytes (at most `i64::MAX`).
    pub size: u64,
    /// MIME type.
    pub content_type: String,
    /// Where the blob store keeps it.
    pub location: String,
    /// When first recorded (stored to the microsecond).
    pub created_at: DateTime<Utc>,
}

/// A state change to record in the audit log (everything but alert actions, which have
/// their own trail: [`AlertEvent`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// When (hub clock; stored to the microsecond).
    pub at: DateTime<Utc>,
    /// Who (username, token name, `system` …).
    pub actor: String,
    /// What was done (e.g. `user.create`, `gateway.revoke`).
    pub action: String,
    /// To what (e.g. a username, `site/gateway`).
    pub target: String,
    /// From where (client address).
    pub from_address: Option<String>,
    /// Structured detail (`null` when there is none).
    pub detail: serde_json::Value,
}

/// A recorded audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Row id (increasing in insert order).
    pub id: i64,
    /// Place in the hash chain: 1, 2, 3 … in append order, no gaps.
    pub seq: i64,
    /// The row's hash in the chain (hex SHA-256).
    pub hash: String,
    /// Whether a person named in it was pseudonymised (its actor or target is a
    /// pseudonym).
    pub pseudonymised: bool,
    /// What was recorded.
    pub event: AuditEvent,
}

/// Filters and page of the audit log; they combine.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action; `user.*` is every action starting `user.`.
    pub action: Option<String>,
    /// Only this target (object).
    pub target: Option<String>,
    /// Only entries at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this.
    pub until: Option<DateTime<Utc>>,
    /// Page size, clamped to `1..=`[`MAX_PAGE_LIMIT`] (0 reads as 1).
    pub limit: u32,
    /// Continue after this cursor (a previous page's `next_cursor`).
    pub after: Option<Cursor>,
}

/// What `audit verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditVerification {
    /// Chained rows checked.
    pub rows: u64,
    /// The chain head's seq.
    pub head_seq: i64,
    /// The chain head's hash (record it elsewhere to detect a rewrite of the whole
    /// chain later).
    pub head_hash: String,
    /// How many problems there were.
    pub problem_count: u64,
    /// The first problems, in chain order (at most 100).
    pub problems: Vec<AuditProblem>,
}

impl AuditVerification {
    /// Whether the chain is intact.
    pub fn is_intact(&self) -> bool {
        self.problem_count == 0
    }
}

/// What pseudonymising a user changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pseudonymised {
    /// The user's new name (`former-user-…`).
    pub pseudonym: String,
    /// Audit fields replaced (actor and target count apart).
    pub audit_rows: u64,
    /// Alert-trail entries whose actor was replaced.
    pub alert_events: u64,
}

/// One thing wrong with the audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditProblem {
    /// The row's seq (`None`: the chain as a whole, e.g. its head).
    pub seq: Option<i64>,
    /// What is wrong, in words.
    pub what: String,
}

/// What keeps findings past their retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldKind {
    /// A legal hold (litigation, an investigation, an insurer's request).
    LegalHold,
    /// An inspection report marked as kept: its inputs must stay reproducible.
    KeptReport,
}

impl HoldKind {
    /// Every kind's name.
    pub const NAMES: &'static [&'static str] = &["legal_hold", "kept_report"];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LegalHold => "legal_hold",
            Self::KeptReport => "kept_report",
        }
    }
}

impl std::str::FromStr for HoldKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "legal_hold" => Ok(Self::LegalHold),
            "kept_report" => Ok(Self::KeptReport),
            other => Err(format!(
                "unknown hold kind {other:?} (legal_hold or kept_report)"
            )),
        }
    }
}

/// A hold to create: the findings it covers are kept while it is not released. Every
/// field of the scope is optional; none set covers every finding.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRetentionHold {
    /// Legal hold or kept report.
    pub kind: HoldKind,
    /// Only this site's findings.
    pub site: Option<String>,
    /// Only this asset's findings.
    pub asset: Option<String>,
    /// Only findings observed at or after this.
    pub from: Option<DateTime<Utc>>,
    /// Only findings observed before this.
    pub until: Option<DateTime<Utc>>,
    /// Why (case number, report title …).
    pub reason: String,
    /// Who placed it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A stored hold.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionHold {
    /// Its id.
    pub id: Uuid,
    /// What was placed.
    pub hold: NewRetentionHold,
    /// Who released it, and when (`None` while it holds).
    pub released: Option<(String, DateTime<Utc>)>,
}

/// What one retention run removed, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionRemoved {
    /// Findings past their retention (not held, alert not open).
    pub findings: u64,
    /// Resolved alerts with no finding left (with their trails and notifications).
    pub alerts: u64,
    /// Telemetry minutes rolled up into hours.
    pub telemetry_minutes: u64,
    /// Telemetry hours past their retention.
    pub telemetry_hours: u64,
    /// Dead letters past their retention.
    pub dead_letters: u64,
    /// Evidence no finding or resolution refers to (index rows; blobs deleted too).
    pub evidence: u64,
    /// Their bytes.
    pub evidence_bytes: u64,
    /// Findings past their retention that were kept (open alert, hold, kept report).
    pub findings_kept: u64,
}

/// How much one kind of data takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StorageUsage {
    /// `findings`, `alerts`, `telemetry`, `dead_letters`, `audit_log`, `evidence` …
    pub kind: String,
    /// Rows (files, for evidence).
    pub rows: u64,
    /// Bytes on disk (tables with their indexes; evidence: the blobs' sizes).
    pub bytes: u64,
}

/// A recorded retention run.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionRun {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Which replica ran it.
    pub holder: String,
    /// What it removed (up to the failure, when it failed).
    pub removed: RetentionRemoved,
    /// Storage per kind after it.
    pub usage: Vec<StorageUsage>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One time bucket of an asset's findings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendPoint {
    /// The asset.
    pub asset: String,
    /// The bucket's start.
    pub bucket_start: DateTime<Utc>,
    /// Findings in it.
    pub findings: u64,
    /// The hottest, °C.
    pub max_c: f64,
    /// The largest ΔT, when any finding had a reference.
    pub max_delta_c: Option<f64>,
    /// The worst severity level.
    pub worst_level: u8,
    /// How many came from handheld inspections (uploads).
    pub uploads: u64,
}
