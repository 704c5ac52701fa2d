//! The hub's configuration: one TOML file, versioned and strict, every problem
//! reported at once with its key path (the same machinery as the agent's,
//! `chitti_common::config`). `serve` works with no file at all: embedded broker,
//! SQLite and evidence in the data directory. `default.toml` is what
//! `print-default-config` prints and equals the built-in defaults (a test keeps them
//! equal); the `--data`, `--http` and `--mqtt` flags override the file.

use chitti_common::config::{parse_table, Problems};
pub use chitti_common::config::{ByteSize, ConfigError, ConfigErrors};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use crate::notify::config::NotificationsConfig;

/// The only configuration format version this hub reads.
pub const CONFIG_VERSION: u32 = 1;

/// The commented default configuration (`chitti-hub print-default-config`).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");

/// The whole hub configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Format version, must be [`CONFIG_VERSION`].
    pub version: u32,
    /// Folder for the SQLite file, evidence and generated keys.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The database.
    #[serde(default)]
    pub store: StoreConfig,
    /// The MQTT side.
    #[serde(default)]
    pub broker: BrokerConfig,
    /// The HTTP side (health, metrics; the API in later issues).
    #[serde(default)]
    pub http: HttpConfig,
    /// Where evidence blobs live.
    #[serde(default)]
    pub evidence: EvidenceStoreConfig,
    /// How finding batches are taken in.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Who is told of alerts, and escalation.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// Alarms about the fleet itself (gateways offline, cameras stalled, …).
    #[serde(default)]
    pub alarms: crate::alarms::AlarmsConfig,
    /// The model registry and rollouts.
    #[serde(default)]
    pub models: ModelsConfig,
    /// How long each kind of data is kept.
    #[serde(default)]
    pub retention: crate::retention::RetentionConfig,
}

/// The model registry (`POST /api/v1/models`) and rollouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Largest model file accepted.
    #[serde(default = "default_max_model")]
    pub max_bytes: ByteSize,
    /// The ONNX Runtime library uploaded models are checked with (default:
    /// `ORT_DYLIB_PATH`, else `libonnxruntime.so` next to the executable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnxruntime_library: Option<PathBuf>,
}

/// Default largest model file, bytes.
pub const DEFAULT_MODEL_MAX_BYTES: u64 = 256 << 20;

fn default_max_model() -> ByteSize {
    ByteSize(DEFAULT_MODEL_MAX_BYTES)
}

/// The database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://user@host/db`; default: `chitti.db` in the data
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Pool size.
    #[serde(default = "default_pool")]
    pub max_connections: u32,
}

/// How the hub meets the gateways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerMode {
    /// The hub runs rumqttd itself (one site, the demo).
    #[default]
    Embedded,
    /// The hub is a client of an existing broker (Mosquitto, EMQX) and shares the
    /// work with other replicas through a shared subscription.
    External,
    /// The fleet broker is a NATS cluster with JetStream: gateways speak MQTT to its
    /// nodes, the replicas share one durable work-queue consumer.
    Nats,
}

/// The MQTT side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Embedded or external.
    #[serde(default)]
    pub mode: BrokerMode,
    /// The embedded broker.
    #[serde(default)]
    pub embedded: EmbeddedBrokerConfig,
    /// The external broker.
    #[serde(default)]
    pub external: ExternalBrokerConfig,
    /// The NATS cluster.
    #[serde(default)]
    pub nats: NatsBrokerConfig,
}

/// A NATS cluster with JetStream and its MQTT listeners (`mode = "nats"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsBrokerConfig {
    /// The nodes' NATS client addresses (`nats://host:4222`); the client fails over
    /// between them.
    #[serde(default = "default_nats_servers")]
    pub servers: Vec<String>,
    /// The nodes' MQTT listeners (`mqtt://host:1883`), where the hub publishes `/ack`
    /// and the retained `/config/set`; the first, then the others in turn.
    #[serde(default = "default_nats_mqtt_urls")]
    pub mqtt_urls: Vec<String>,
    /// The JetStream stream the gateways' messages land in (made if missing).
    #[serde(default = "default_nats_stream")]
    pub stream: String,
    /// The durable consumer every replica pulls from (made if missing).
    #[serde(default = "default_nats_consumer")]
    pub consumer: String,
    /// Copies of the stream in the cluster (3 for a three-node cluster, 1 for one node).
    #[serde(default = "default_nats_replicas")]
    pub replicas: usize,
    /// Most the stream holds; beyond, the cluster refuses new messages (the agents
    /// keep theirs and resend) rather than drop uncommitted ones.
    #[serde(default = "default_nats_max_bytes")]
    pub max_bytes: ByteSize,
    /// A message delivered and not acknowledged within this goes to another replica.
    #[serde(default = "default_nats_ack_wait_s")]
    pub ack_wait_s: u64,
    /// Delivered and unacknowledged messages allowed, all replicas together.
    #[serde(default = "default_nats_max_ack_pending")]
    pub max_ack_pending: u32,
    /// MQTT client id of this replica's publishing connection; default
    /// `chitti-hub-{host name}` (set it when two replicas share a host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// User name (NATS and MQTT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// The embedded rumqttd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBrokerConfig {
    /// Plain TCP listener (gateways authenticate with user name and password).
    #[serde(default = "default_mqtt_listen")]
    pub listen: SocketAddr,
    /// TLS listener (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<SocketAddr>,
    /// The broker's certificate chain (PEM), for `tls_listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The broker's private key (PEM), for `tls_listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// CA whose certificates gateways present (mutual TLS), for `tls_listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// Largest MQTT payload accepted.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: ByteSize,
    /// Most simultaneous connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bytes each topic's in-memory message log may hold before a slow reader skips
    /// ahead (and the agents resend). Unset: `max_connections` × 128 KiB (one full
    /// agent batch per gateway: a reconnect storm's opening burst), at least 16 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<ByteSize>,
}

/// An external broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalBrokerConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    #[serde(default = "default_external_url")]
    pub url: String,
    /// More addresses of the same broker, tried in turn when `url` fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_urls: Vec<String>,
    /// Shared-subscription group: replicas with the same group split the messages.
    /// Empty: plain subscriptions, for one hub replica on a broker without shared
    /// subscriptions (NATS's MQTT takes `$share/…` literally).
    #[serde(default = "default_group")]
    pub group: String,
    /// Client id (unique and stable per replica); default `chitti-hub-{host name}`
    /// (set it when two replicas share a host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Keep the MQTT session across connections. Unset: kept by a single hub (`group`
    /// empty: the broker queues while it restarts), not by replicas in a group — a
    /// broker such as Mosquitto goes on queueing a dead member's round-robin share
    /// (statuses included) for it, stranded until that client id returns, while with a
    /// clean session the survivors take everything at once (findings the dead replica
    /// had not committed come back by the agents' resend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_session: Option<bool>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// CA of the broker's certificate (`mqtts://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// Client key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

/// The HTTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/healthz`, `/readyz`, `/metrics` (and the API).
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Mark session cookies `Secure`: set this when the hub is served over TLS (by a
    /// proxy in front of it).
    #[serde(default)]
    pub secure_cookies: bool,
    /// Browser origins other than the hub's own allowed to call the API with CORS
    /// (exact `scheme://host[:port]`; empty: same origin only).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// The origins the hub is served under (`scheme://host[:port]`, as users type
    /// them). Set: requests for any other `Host` get 421 (health and metrics excepted)
    /// and only these count as the hub's own origin. Empty: any host, the hub's own
    /// origin being the request's host under `https` with `secure_cookies`, else `http`.
    #[serde(default)]
    pub public_origins: Vec<String>,
    /// A file holding the bearer token `/metrics` requires (Prometheus
    /// `authorization.credentials_file`). Unset: `/metrics` is open to anyone who can
    /// reach the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token_file: Option<PathBuf>,
    /// Requests a minute one client address may make to the API (429 beyond).
    #[serde(default = "default_rate_limit")]
    pub requests_per_minute: u32,
    /// Largest multipart upload of handheld inspections (all files together).
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: ByteSize,
    /// Longest life of an API token, days: a token asked for without an expiry gets
    /// this one, and a longer one is refused. 0: tokens may never expire.
    #[serde(default = "default_token_max_days")]
    pub token_max_days: u32,
    /// Most pixels one frame of an uploaded or stored FLIR file may declare (checked
    /// from its header, before decoding).
    #[serde(default = "default_max_frame_pixels")]
    pub max_frame_pixels: u64,
    /// Most pixels × frames one uploaded file may declare.
    #[serde(default = "default_max_file_pixels")]
    pub max_file_pixels: u64,
    /// Analyses (uploads, thermograms, temperature grids, reports) running at once;
    /// beyond it the API answers 503 with `Retry-After`.
    #[serde(default = "default_max_concurrent_analyses")]
    pub max_concurrent_analyses: u32,
    /// Seconds a client has to send a request's header (each request on a kept-alive
    /// connection too); then the connection is closed.
    #[serde(default = "default_header_read_timeout_s")]
    pub header_read_timeout_s: u64,
    /// Most HTTP connections open at once; beyond it new ones are closed.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
}

/// Where evidence blobs are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceBackend {
    /// A local folder (default: `evidence/` in the data directory).
    #[default]
    Local,
    /// S3-compatible object storage.
    S3,
}

/// Evidence storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceStoreConfig {
    /// Local folder or S3.
    #[serde(default)]
    pub backend: EvidenceBackend,
    /// The folder, for `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Bucket, for `s3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Region, for `s3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible service (MinIO, Ceph), for `s3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Largest evidence blob accepted.
    #[serde(default = "default_max_evidence")]
    pub max_bytes: ByteSize,
}

/// Ingest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Accept only batches signed by the gateway's registered key (DESIGN.md §7).
    #[serde(default = "yes")]
    pub require_signatures: bool,
    /// Most findings committed in one transaction.
    #[serde(default = "default_commit_findings")]
    pub commit_max_findings: usize,
    /// Longest a batch waits for company before it is committed, ms.
    #[serde(default = "default_commit_wait")]
    pub commit_max_wait_ms: u64,
    /// Messages queued between the broker and the database (back-pressure beyond).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// A gateway is offline when nothing was heard from it for this long, seconds.
    #[serde(default = "default_offline_s")]
    pub offline_after_s: u64,
    /// The hub's Ed25519 key that signs every `/ack` (default `hub-signing.key` in the
    /// data directory, made on first start; replicas share one file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_key_file: Option<PathBuf>,
}

fn default_data_dir() -> PathBuf {
    "chitti-data".into()
}
fn default_pool() -> u32 {
    8
}
fn default_mqtt_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1883))
}
fn default_max_payload() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_max_connections() -> usize {
    2000
}
fn default_external_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn default_group() -> String {
    "chitti-hub".into()
}
fn default_nats_servers() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".into()]
}
fn default_nats_mqtt_urls() -> Vec<String> {
    vec!["mqtt://127.0.0.1:1883".into()]
}
fn default_nats_stream() -> String {
    crate::broker::nats::DEFAULT_STREAM.into()
}
fn default_nats_consumer() -> String {
    crate::broker::nats::DEFAULT_CONSUMER.into()
}
fn default_nats_replicas() -> usize {
    3
}
fn default_nats_max_bytes() -> ByteSize {
    ByteSize(4 << 30)
}
fn default_nats_ack_wait_s() -> u64 {
    30
}
fn default_nats_max_ack_pending() -> u32 {
    4096
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_rate_limit() -> u32 {
    6000
}
/// Largest upload request unless configured (`http.max_upload_bytes`).
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 256 << 20;

fn default_max_upload() -> ByteSize {
    ByteSize(DEFAULT_MAX_UPLOAD_BYTES)
}
/// Largest evidence blob accepted unless configured (`evidence.max_bytes`).
pub const DEFAULT_EVIDENCE_MAX_BYTES: u64 = 64 << 20;

fn default_max_evidence() -> ByteSize {
    ByteSize(DEFAULT_EVIDENCE_MAX_BYTES)
}
fn yes() -> bool {
    true
}
fn default_commit_findings() -> usize {
    5000
}
fn default_commit_wait() -> u64 {
    20
}
fn default_token_max_days() -> u32 {
    365
}
fn default_max_frame_pixels() -> u64 {
    chitti_common::flir::DEFAULT_MAX_FRAME_PIXELS
}
/// 64 frames of the largest frame, or about 870 of a 640×480 camera.
fn default_max_file_pixels() -> u64 {
    64 * chitti_common::flir::DEFAULT_MAX_FRAME_PIXELS
}
fn default_max_concurrent_analyses() -> u32 {
    4
}
fn default_header_read_timeout_s() -> u64 {
    10
}
fn default_http_max_connections() -> usize {
    1024
}
fn default_queue() -> usize {
    1024
}
fn default_offline_s() -> u64 {
    120
}

chitti_common::defaults_from_serde!(
    StoreConfig,
    BrokerConfig,
    EmbeddedBrokerConfig,
    ExternalBrokerConfig,
    NatsBrokerConfig,
    HttpConfig,
    EvidenceStoreConfig,
    IngestConfig,
    ModelsConfig
);

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            data_dir: default_data_dir(),
            store: StoreConfig::default(),
            broker: BrokerConfig::default(),
            http: HttpConfig::default(),
            evidence: EvidenceStoreConfig::default(),
            ingest: IngestConfig::default(),
            notifications: NotificationsConfig::default(),
            alarms: crate::alarms::AlarmsConfig::default(),
            models: ModelsConfig::default(),
            retention: crate::retention::RetentionConfig::default(),
        }
    }
}

impl HubConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::whole_file(&origin, format!("cannot read the file: {e}")))?;
        Self::from_toml(&text, &origin, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and validates configuration text; relative paths are taken from `base`.
    pub fn from_toml(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigErrors> {
        let mut table = parse_table(text, origin)?;
        let mut p = Problems::default();
        let mut take = |key: &str| table.remove(key);
        let (version, data_dir, store, broker, http, evidence, ingest, notifications, alarms) = (
            take("version"),
            take("data_dir"),
            take("store"),
            take("broker"),
            take("http"),
            take("evidence"),
            take("ingest"),
            take("notifications"),
            take("alarms"),
        );
        let models = take("models");
        let retention = take("retention");
        for key in table.keys() {
            p.push(
                key.as_str(),
                "unknown key (expected version, data_dir, store, broker, http, evidence, \
                 ingest, notifications, alarms, models, retention)",
            );
        }
        let or_empty = |v: Option<toml::Value>| v.unwrap_or_else(|| toml::Table::new().into());
        let version = match version {
            Some(v) => p.decode::<u32>("version", v),
            None => {
                p.push("version", "missing: the file must start with `version = 1`");
                None
            }
        };
        let data_dir = match data_dir {
            Some(v) => p.decode::<PathBuf>("data_dir", v),
            None => Some(default_data_dir()),
        };
        let store = p.decode::<StoreConfig>("store", or_empty(store));
        let broker = p.decode::<BrokerConfig>("broker", or_empty(broker));
        let http = p.decode::<HttpConfig>("http", or_empty(http));
        let evidence = p.decode::<EvidenceStoreConfig>("evidence", or_empty(evidence));
        let ingest = p.decode::<IngestConfig>("ingest", or_empty(ingest));
        let notifications =
            p.decode::<NotificationsConfig>("notifications", or_empty(notifications));
        let alarms = p.decode::<crate::alarms::AlarmsConfig>("alarms", or_empty(alarms));
        let models = p.decode::<ModelsConfig>("models", or_empty(models));
        let retention =
            p.decode::<crate::retention::RetentionConfig>("retention", or_empty(retention));
        if let (
            Some(version),
            Some(data_dir),
            Some(store),
            Some(broker),
            Some(http),
            Some(evidence),
            Some(ingest),
            Some(notifications),
            Some(alarms),
            Some(models),
            Some(retention),
        ) = (
            version,
            data_dir,
            store,
            broker,
            http,
            evidence,
            ingest,
            notifications,
            alarms,
            models,
            retention,
        ) {
            let mut config = HubConfig {
                version,
                data_dir,
                store,
                broker,
                http,
                evidence,
                ingest,
                notifications,
                alarms,
                models,
                retention,
            };
            config.resolve_paths(base);
            config.validate_into(&mut p);
            p.into_result(origin)?;
            return Ok(config);
        }
        p.into_result(origin)?;
        Err(ConfigErrors::whole_file(
            origin,
            "the configuration could not be decoded",
        ))
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        for p in [
            &mut self.broker.embedded.cert_file,
            &mut self.broker.embedded.key_file,
            &mut self.broker.embedded.client_ca_file,
            &mut self.broker.external.password_file,
            &mut self.broker.external.ca_file,
            &mut self.broker.external.client_cert_file,
            &mut self.broker.external.client_key_file,
            &mut self.broker.nats.password_file,
            &mut self.evidence.path,
            &mut self.ingest.hub_key_file,
            &mut self.models.onnxruntime_library,
        ]
        .into_iter()
        .chain(self.notifications.paths_mut())
        .flatten()
        {
            fix(p);
        }
    }

    /// Checks every value; returns every problem.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut p = Problems::default();
        self.validate_into(&mut p);
        p.into_result("configuration")
    }

    fn validate_into(&self, p: &mut Problems) {
        if self.version != CONFIG_VERSION {
            p.push(
                "version",
                format!(
                    "unsupported version {} (this hub reads version {CONFIG_VERSION})",
                    self.version
                ),
            );
        }
        if let Some(url) = &self.store.url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                p.push(
                    "store.url",
                    format!("{url:?} must be sqlite://PATH or postgres://…"),
                );
            }
        }
        if self.store.max_connections == 0 {
            p.push("store.max_connections", "must be at least 1");
        }
        let e = &self.broker.embedded;
        if e.tls_listen.is_some()
            && (e.cert_file.is_none() || e.key_file.is_none() || e.client_ca_file.is_none())
        {
            p.push(
                "broker.embedded.tls_listen",
                "needs cert_file, key_file and client_ca_file (gateways present certificates)",
            );
        }
        if e.tls_listen.is_none() && (e.cert_file.is_some() || e.client_ca_file.is_some()) {
            p.push(
                "broker.embedded.cert_file",
                "certificates are set but tls_listen is not",
            );
        }
        if e.max_payload_bytes.0 < 16 << 10 {
            p.push(
                "broker.embedded.max_payload_bytes",
                "must be at least 16 KiB",
            );
        }
        if e.max_connections == 0 {
            p.push("broker.embedded.max_connections", "must be at least 1");
        }
        if let Some(log) = e.log_bytes {
            // A segment holds at least two packets; four segments make the log.
            if log.0 < 8 * e.max_payload_bytes.0 {
                p.push(
                    "broker.embedded.log_bytes",
                    "must be at least 8 × max_payload_bytes (four segments of two messages)",
                );
            }
        }
        let x = &self.broker.external;
        let mqtt_url = |u: &str| u.starts_with("mqtt://") || u.starts_with("mqtts://");
        if !mqtt_url(&x.url) {
            p.push(
                "broker.external.url",
                format!("{:?} must start with mqtt:// or mqtts://", x.url),
            );
        }
        for (i, u) in x.failover_urls.iter().enumerate() {
            if !mqtt_url(u) {
                p.push(
                    format!("broker.external.failover_urls[{i}]"),
                    format!("{u:?} must start with mqtt:// or mqtts://"),
                );
            }
        }
        let n = &self.broker.nats;
        if n.servers.is_empty() {
            p.push("broker.nats.servers", "needs at least one nats:// address");
        }
        for (i, u) in n.servers.iter().enumerate() {
            // TLS to NATS is not offered yet (say so rather than half-work).
            if !u.starts_with("nats://") {
                p.push(
                    format!("broker.nats.servers[{i}]"),
                    format!("{u:?} must start with nats:// (TLS is not supported yet)"),
                );
            }
        }
        if n.mqtt_urls.is_empty() {
            p.push(
                "broker.nats.mqtt_urls",
                "needs at least one mqtt:// address",
            );
        }
        for (i, u) in n.mqtt_urls.iter().enumerate() {
            if !u.starts_with("mqtt://") {
                p.push(
                    format!("broker.nats.mqtt_urls[{i}]"),
                    format!("{u:?} must start with mqtt:// (TLS is not supported yet)"),
                );
            }
        }
        for (key, name) in [("stream", &n.stream), ("consumer", &n.consumer)] {
            if !crate::broker::nats::is_jetstream_name(name) {
                p.push(
                    format!("broker.nats.{key}"),
                    format!("{name:?}: letters, digits, - and _ only"),
                );
            }
        }
        if !(1..=5).contains(&n.replicas) {
            p.push("broker.nats.replicas", "must be 1 to 5");
        }
        if n.ack_wait_s == 0 {
            p.push("broker.nats.ack_wait_s", "must be at least 1");
        }
        if n.max_ack_pending == 0 {
            p.push("broker.nats.max_ack_pending", "must be at least 1");
        }
        if x.group.contains(['/', '+', '#']) {
            p.push(
                "broker.external.group",
                "must be a name without / + # (or empty: no shared subscription)",
            );
        }
        if x.client_cert_file.is_some() != x.client_key_file.is_some() {
            p.push(
                "broker.external.client_key_file",
                "client_cert_file and client_key_file go together",
            );
        }
        if self.evidence.backend == EvidenceBackend::S3 && self.evidence.bucket.is_none() {
            p.push("evidence.bucket", "the s3 backend needs a bucket");
        }
        let origins = [
            ("allowed_origins", &self.http.allowed_origins),
            ("public_origins", &self.http.public_origins),
        ];
        for (key, list) in origins {
            for (i, origin) in list.iter().enumerate() {
                let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
                    && origin.split_once("://").is_some_and(|(_, rest)| {
                        !rest.is_empty() && !rest.contains('/') && !rest.contains('*')
                    });
                if !ok {
                    p.push(
                        format!("http.{key}[{i}]"),
                        format!(
                            "{origin:?} is not an origin (scheme://host[:port], no path, no *)"
                        ),
                    );
                }
            }
        }
        if self.http.max_frame_pixels == 0 {
            p.push("http.max_frame_pixels", "must be > 0");
        }
        if self.http.max_file_pixels < self.http.max_frame_pixels {
            p.push(
                "http.max_file_pixels",
                "must be at least http.max_frame_pixels",
            );
        }
        if self.http.header_read_timeout_s == 0 {
            p.push("http.header_read_timeout_s", "must be at least 1");
        }
        if self.http.max_connections == 0 {
            p.push("http.max_connections", "must be at least 1");
        }
        if self.http.max_concurrent_analyses == 0 {
            p.push("http.max_concurrent_analyses", "must be at least 1");
        }
        if self.http.requests_per_minute == 0 {
            p.push("http.requests_per_minute", "must be at least 1");
        }
        if self.http.max_upload_bytes.0 == 0 {
            p.push("http.max_upload_bytes", "must be > 0");
        }
        if self.evidence.max_bytes.0 == 0 {
            p.push("evidence.max_bytes", "must be > 0");
        }
        let i = &self.ingest;
        if i.commit_max_findings == 0 {
            p.push("ingest.commit_max_findings", "must be at least 1");
        }
        if i.queue == 0 {
            p.push("ingest.queue", "must be at least 1");
        }
        if i.offline_after_s == 0 {
            p.push("ingest.offline_after_s", "must be at least 1");
        }
        self.notifications.validate_into(p);
        self.alarms.validate_into(p);
        self.retention.validate_into(p);
    }

    /// The dashboard's base URL for links in notifications: the configured one, else
    /// the first public origin.
    pub fn dashboard_url(&self) -> Option<String> {
        self.notifications
            .dashboard_url
            .clone()
            .or_else(|| self.http.public_origins.first().cloned())
    }

    /// What the fleet watch needs: `[alarms]` and `ingest.offline_after_s`.
    pub fn watch_rules(&self) -> crate::alarms::WatchRules {
        crate::alarms::WatchRules {
            alarms: self.alarms.clone(),
            offline_after: chrono::Duration::seconds(
                i64::try_from(self.ingest.offline_after_s).unwrap_or(i64::MAX / 1_000_000),
            ),
        }
    }

    /// The database URL: the configured one, or `chitti.db` in the data directory.
    pub fn store_url(&self) -> String {
        self.store.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("chitti.db").display()
            )
        })
    }

    /// The evidence folder for the local backend.
    pub fn evidence_dir(&self) -> PathBuf {
        self.evidence
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("evidence"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_and_the_default_file_give_the_same_configuration() {
        let parsed =
            HubConfig::from_toml(DEFAULT_CONFIG_TOML, "default", Path::new("/srv")).unwrap();
        let mut expected = HubConfig::default();
        expected.resolve_paths(Path::new("/srv"));
        assert_eq!(parsed, expected);
        assert_eq!(
            parsed.store_url(),
            "sqlite:///srv/chitti-data/chitti.db?mode=rwc"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
version = 3
colour = 1
[store]
url = "mysql://x"
[broker]
mode = "embedded"
[broker.embedded]
tls_listen = "0.0.0.0:8883"
max_payload_bytes = 10
log_bytes = 5
[broker.external]
group = "a/b"
failover_urls = ["tcp://x"]
[broker.nats]
servers = ["http://x"]
mqtt_urls = []
replicas = 7
ack_wait_s = 0
stream = "chitti.ingest"
max_ack_pending = 0
[ingest]
queue = 0
[http]
listn = "1.2.3.4:5"
public_origins = ["https://hub.example.net/dashboard"]
max_frame_pixels = 0
max_file_pixels = 0
max_concurrent_analyses = 0
header_read_timeout_s = 0
max_connections = 0
"#;
        let err = HubConfig::from_toml(text, "hub.toml", Path::new("/")).unwrap_err();
        let message = err.to_string();
        for expected in ["colour: unknown key", "http.listn: unknown field"] {
            assert!(
                message.contains(expected),
                "{expected} missing in\n{message}"
            );
        }
        let text = text.replace("listn", "listen");
        let message = HubConfig::from_toml(&text, "hub.toml", Path::new("/"))
            .unwrap_err()
            .to_string();
        for expected in [
            "version: unsupported version 3",
            "store.url: \"mysql://x\" must be",
            "broker.embedded.tls_listen: needs cert_file, key_file and client_ca_file",
            "broker.embedded.max_payload_bytes: must be at least 16 KiB",
            "broker.embedded.log_bytes: must be at least 8 × max_payload_bytes",
            "broker.external.group:",
            "broker.external.failover_urls[0]: \"tcp://x\" must start with mqtt://",
            "broker.nats.servers[0]: \"http://x\" must start with nats://",
            "broker.nats.mqtt_urls: needs at least one",
            "broker.nats.replicas: must be 1 to 5",
            "broker.nats.ack_wait_s: must be at least 1",
            "broker.nats.stream: \"chitti.ingest\": letters, digits, - and _ only",
            "broker.nats.max_ack_pending: must be at least 1",
            "ingest.queue: must be at least 1",
            "http.public_origins[0]: \"https://hub.example.net/dashboard\" is not an origin",
            "http.max_frame_pixels: must be > 0",
            "http.max_concurrent_analyses: must be at least 1",
            "http.header_read_timeout_s: must be at least 1",
            "http.max_connections: must be at least 1",
        ] {
            assert!(
                message.contains(expected),
                "{expected} missing in\n{message}"
            );
        }
    }
}
