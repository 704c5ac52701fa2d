//! The agent's configuration: one TOML file, versioned and strict.
//!
//! Loading never stops at the first problem. The file is read as TOML once (a syntax
//! error is the one thing that ends the load early, since nothing after it can be
//! trusted), then every section and every camera is decoded on its own with
//! `deny_unknown_fields`, and every decoded value is validated; each problem is reported
//! with its key path (`camera[1].source.fps: must be > 0`). Nothing opens a device, a
//! socket or a folder before the whole file is valid.

use chitti_common::config::{parse_table, Problems};
pub use chitti_common::config::{ByteSize, ConfigError, ConfigErrors};

use chitti_common::hotspot::RegionOfInterest;
use chitti_common::protocol::validate_id;
use chitti_common::radiometry::{ParamOverrides, RadiometricParams};
use chitti_common::severity::{ReferenceKind, SeverityCatalog};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The only configuration format version this agent reads.
pub const CONFIG_VERSION: u32 = 1;

/// The commented default configuration (`chitti-agent print-default-config`).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");

/// The whole agent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Format version, must be [`CONFIG_VERSION`].
    pub version: u32,
    /// Who this gateway is.
    pub identity: IdentityConfig,
    /// Cameras and where their frames come from.
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
    /// How frames are analysed.
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// The durable local outbox.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// The MQTT link to the hub.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// Evidence upload to the hub.
    #[serde(default)]
    pub evidence: EvidenceConfig,
    /// Status, telemetry and metrics.
    #[serde(default)]
    pub health: HealthConfig,
    /// The component detector (an ONNX model); off by default.
    #[serde(default)]
    pub detector: DetectorConfig,
}

/// Site and gateway ids: the topic prefix `chitti/v1/{site}/{gateway}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Site id, `[a-z0-9-]{1,64}`.
    pub site: String,
    /// Gateway id, `[a-z0-9-]{1,64}`.
    pub gateway: String,
}

/// One camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Camera id, `[a-z0-9-]{1,64}`, unique on the gateway.
    pub id: String,
    /// The asset the camera looks at (when it does not patrol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Where frames come from.
    pub source: SourceConfig,
    /// Corrections to the camera's radiometric parameters.
    #[serde(default)]
    pub radiometry: RadiometryOverrides,
    /// Only these regions are analysed (the whole frame when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rois: Vec<RegionOfInterest>,
    /// Severity table for this camera, instead of `analysis.table`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Pan-tilt patrol over presets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patrol: Option<PatrolConfig>,
    /// Run this camera's frames through the `[detector]` when it is enabled (default
    /// true); false for a camera with nothing the model knows in view (a gateway's
    /// other cameras keep theirs).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub detect_components: bool,
}

fn default_true() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

/// Where a camera's frames come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Deterministic synthetic scenes.
    Simulated(SimulatedSourceConfig),
    /// A watched folder of FLIR files.
    RjpegDir(RjpegDirSourceConfig),
    /// A V4L2 (USB video) camera.
    V4l2(V4l2SourceToml),
    /// A recorded sequence played at its frame rate.
    SeqReplay(SeqReplaySourceConfig),
}

/// A recorded sequence to replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqReplaySourceConfig {
    /// The `.seq`/`.csq` (or any FLIR file).
    pub path: PathBuf,
    /// Replay speed: 2 plays twice as fast as recorded.
    #[serde(default = "one")]
    pub speed: f64,
    /// Frame rate when the file carries no times.
    #[serde(default = "default_fps")]
    pub fallback_fps: f64,
    /// Start again at the end.
    #[serde(default)]
    pub repeat: bool,
    /// Produce frames as fast as the pipeline takes them.
    #[serde(default)]
    pub unpaced: bool,
}

/// What a V4L2 camera's stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum V4l2Mode {
    /// `Y16` raw detector counts, turned into °C with `planck` and `radiometry`.
    RadiometricCounts,
    /// `Y16` counts where kelvin = count × `kelvin_per_count`.
    TemperatureLinear,
    /// Rendered 8-bit video (`YUYV`/`MJPG`): detection only, findings qualitative. A
    /// FLIR T560's own USB video is this kind.
    Preview,
}

/// The camera's Planck calibration (from its R-JPEGs: `exiftool -Planck*`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanckConfig {
    /// R1.
    pub r1: f64,
    /// R2.
    pub r2: f64,
    /// B.
    pub b: f64,
    /// F.
    pub f: f64,
    /// O (counts).
    pub o: f64,
}

/// A V4L2 camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2SourceToml {
    /// Device node; prefer a stable `/dev/v4l/by-id/…` link or the udev name.
    pub device: PathBuf,
    /// Preferred width.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Preferred height.
    #[serde(default = "default_height")]
    pub height: u32,
    /// Highest wanted frame rate.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// What the stream carries.
    pub mode: V4l2Mode,
    /// Kelvin per count, for `temperature_linear` (often 0.01 or 0.04).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kelvin_per_count: Option<f64>,
    /// Planck calibration, for `radiometric_counts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planck: Option<PlanckConfig>,
    /// Upper saturation limit, °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturated_max_c: Option<f64>,
    /// First reopen delay after an unplug, ms (doubles up to `reconnect_max_ms`).
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    /// Longest reopen delay, ms.
    #[serde(default = "default_v4l2_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// No frame for this long: the stream is treated as lost and reopened.
    #[serde(default = "default_stall_s")]
    pub stall_timeout_s: u64,
}

/// A simulated radiometric camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedSourceConfig {
    /// Frame width, pixels.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Frame height, pixels.
    #[serde(default = "default_height")]
    pub height: u32,
    /// Frames per second.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Seed: the same seed gives the same frames.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Scene time runs this many times faster than wall time (the demo uses 10–60).
    #[serde(default = "one")]
    pub speed: f64,
    /// Which scene.
    #[serde(default)]
    pub scene: crate::sources::simulated::SceneKind,
    /// Mean ambient temperature of the scene, °C.
    #[serde(default = "default_ambient")]
    pub ambient_c: f64,
    /// Sensor noise (standard deviation), °C.
    #[serde(default = "default_noise")]
    pub noise_c: f64,
    /// Stop after this many frames (tests); run forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    /// When true, frames are produced as fast as the pipeline takes them (no pacing,
    /// no drops): benchmarks and tests.
    #[serde(default)]
    pub unpaced: bool,
}

/// A folder watched for FLIR files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RjpegDirSourceConfig {
    /// The folder (USB mass-storage or MTP mount, SD-card offload, FTP drop).
    pub path: PathBuf,
    /// Where unreadable files are moved (default: `<path>/quarantine`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<PathBuf>,
    /// A file is processed once its size and modification time have not changed for
    /// this long (a camera or FTP client may still be writing it).
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// Full rescan of the folder, in addition to file-system events (network mounts
    /// and MTP do not always deliver events).
    #[serde(default = "default_rescan_s")]
    pub rescan_s: u64,
    /// Delete a file once its findings are in the outbox (an FTP drop); default keeps it.
    #[serde(default)]
    pub delete_processed: bool,
}

/// Corrections to the radiometric parameters a camera or file reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiometryOverrides {
    /// Object emissivity, 0 < E ≤ 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emissivity: Option<f64>,
    /// Object distance, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    /// Reflected apparent temperature, °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflected_c: Option<f64>,
    /// Atmospheric temperature, °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atmosphere_c: Option<f64>,
    /// Relative humidity, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub humidity_percent: Option<f64>,
}

impl RadiometryOverrides {
    /// As the thermal core's overrides (humidity as a fraction).
    pub fn to_param_overrides(&self) -> ParamOverrides {
        ParamOverrides {
            emissivity: self.emissivity,
            object_distance_m: self.distance_m,
            reflected_c: self.reflected_c,
            atmosphere_c: self.atmosphere_c,
            relative_humidity: self.humidity_percent.map(|p| p / 100.0),
        }
    }
}

/// A pan-tilt patrol: go to each preset, let the head settle, analyse while dwelling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatrolConfig {
    /// Serial device of the pan-tilt unit (`/dev/ttyUSB0`, or a udev symlink).
    pub serial: PathBuf,
    /// Baud rate (8N1).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Pelco-D address of the unit, 1–255.
    #[serde(default = "default_pelco_address")]
    pub address: u8,
    /// Start again after the last preset.
    #[serde(default = "yes")]
    pub repeat: bool,
    /// The tour, in order.
    #[serde(rename = "preset")]
    pub presets: Vec<PresetConfig>,
}

/// One stop of a patrol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetConfig {
    /// Preset id in findings, `[a-z0-9-]{1,64}`.
    pub id: String,
    /// Preset number stored in the pan-tilt unit, 1–255.
    pub pelco_preset: u8,
    /// The asset seen from this preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Time for the head to stop moving, ms (frames are not analysed meanwhile).
    #[serde(default = "default_settle_preset_ms")]
    pub settle_ms: u64,
    /// Time spent analysing at the preset, ms.
    #[serde(default = "default_dwell_ms")]
    pub dwell_ms: u64,
    /// Regions analysed at this preset (the camera's `rois` when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rois: Vec<RegionOfInterest>,
}

/// How frames are analysed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Severity table id (built-in or from `tables_file`).
    #[serde(default = "default_table")]
    pub table: String,
    /// User severity tables (TOML, see ARCHITECTURE.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables_file: Option<PathBuf>,
    /// Hotspot threshold, °C; default: the lowest temperature that can reach the
    /// table's first level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_c: Option<f64>,
    /// Smallest hotspot, pixels.
    #[serde(default = "default_min_area")]
    pub min_area_px: u32,
    /// Most hotspots per frame, hottest first.
    #[serde(default = "default_max_hotspots")]
    pub max_hotspots: usize,
    /// Reference for ΔT tables; default: the camera's atmospheric temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceConfig>,
    /// Tracking across frames.
    #[serde(default)]
    pub tracking: TrackingConfig,
}

/// A fixed reference temperature for ΔT tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// Ambient air or a similar component.
    pub kind: ReferenceKind,
    /// Its temperature, °C.
    pub celsius: f64,
    /// Where the value comes from (weather station, sibling phase …).
    #[serde(default = "default_reference_source")]
    pub source: String,
}

/// How hotspots are followed across frames of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// Frames in a row a hotspot must be seen before it is raised.
    #[serde(default = "default_raise_after")]
    pub raise_after_frames: u32,
    /// Frames in a row a hotspot must be missing before it is cleared.
    #[serde(default = "default_clear_after")]
    pub clear_after_frames: u32,
    /// A raised hotspot is reported again when its peak rises by this much, °C.
    #[serde(default = "default_update_delta")]
    pub update_delta_c: f64,
    /// Hysteresis at severity boundaries, °C.
    #[serde(default = "one")]
    pub hysteresis_c: f64,
    /// A region belongs to a track when its hottest pixel is this close to the track's,
    /// pixels, or their boxes overlap.
    #[serde(default = "default_match_distance")]
    pub match_distance_px: u32,
}

/// Which storage engine holds the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxEngine {
    /// redb: fsync per commit, stable format (the default; see ARCHITECTURE.md).
    #[default]
    Redb,
    /// sled 0.34.
    Sled,
}

/// The durable local outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Folder of the outbox database and the processed-file registry.
    #[serde(default = "default_outbox_path")]
    pub path: PathBuf,
    /// Storage engine.
    #[serde(default)]
    pub engine: OutboxEngine,
    /// Upper bound of stored findings and evidence (`"512 MiB"` or bytes).
    #[serde(default = "default_outbox_max")]
    pub max_bytes: ByteSize,
    /// An unacknowledged finding is sent again after this long, seconds.
    #[serde(default = "default_resend_s")]
    pub resend_after_s: u64,
    /// Most findings in one `/findings` message.
    #[serde(default = "default_batch_findings")]
    pub batch_max_findings: usize,
    /// Most bytes of one `/findings` message.
    #[serde(default = "default_batch_bytes")]
    pub batch_max_bytes: ByteSize,
    /// Most findings sent and not yet acknowledged.
    #[serde(default = "default_inflight")]
    pub max_inflight: usize,
}

/// The MQTT connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    #[serde(default = "default_mqtt_url")]
    pub url: String,
    /// Client id; default `chitti-{site}-{gateway}`. The hub's embedded broker binds a
    /// gateway's session to `{site}.{gateway}` whatever is asked (and Mosquitto with
    /// `use_username_as_clientid` to the user name), so no gateway can take over
    /// another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// User name for password authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (prefer `password_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// File holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the broker's certificate (`mqtts://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// This gateway's client certificate chain (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// This gateway's private key (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// This gateway's Ed25519 signing key (64 hex characters; `chitti-agent keygen`,
    /// or the file `chitti-hub gateway add` writes). Every finding batch is signed
    /// with it so the hub can prove where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// The hub's public keys (64 hex characters each; `chitti-hub hub-key`, or
    /// `agent-credentials.toml` from `gateway add`). A finding leaves the outbox only on
    /// an `/ack` signed by one of them; list two while the hub's key is rotated. Empty:
    /// no ack can be believed and the outbox keeps everything (said at start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hub_public_keys: Vec<String>,
    /// A file of the hub's public keys, one per line (`hub-public-key`, written by
    /// `chitti-hub gateway add`); trusted together with `hub_public_keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_public_keys_file: Option<PathBuf>,
    /// Keep-alive, seconds (rumqttd rejects 0).
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// First reconnect delay, ms (doubles, with jitter).
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, ms.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Largest MQTT packet sent or received.
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: ByteSize,
}

/// Evidence upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    /// The hub's base URL (`https://hub.example.net`); without it evidence stays in the
    /// outbox until it is evicted or the finding is acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_url: Option<String>,
    /// CA certificates (PEM) for the hub's HTTPS certificate.
    ///
    /// Uploads are authenticated by signing each one with the gateway's key
    /// (`mqtt.signing_key_file`, required with a hub URL), not by a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout, seconds.
    #[serde(default = "default_http_timeout")]
    pub timeout_s: u64,
}

/// Status, telemetry and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Retained `/status` is refreshed this often, seconds.
    #[serde(default = "default_status_s")]
    pub status_interval_s: u64,
    /// `/telemetry` is published this often, seconds.
    #[serde(default = "default_telemetry_s")]
    pub telemetry_interval_s: u64,
    /// Prometheus `/metrics` listen address (local only, e.g. `127.0.0.1:9464`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Where thermal zones are read from (`/sys/class/thermal`).
    #[serde(default = "default_thermal_dir")]
    pub thermal_zones: PathBuf,
    /// Longest a graceful shutdown may take, seconds.
    #[serde(default = "default_shutdown_s")]
    pub shutdown_deadline_s: u64,
}

/// The component detector: a YOLO-family ONNX model run through ONNX Runtime
/// (ARCHITECTURE.md, "Component detector runtime"). Without it, or when its model or
/// library is missing or broken, findings come from thermal thresholds alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Run the detector.
    #[serde(default)]
    pub enabled: bool,
    /// The `.onnx` model (required when enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// The ONNX Runtime library (`libonnxruntime.so.*`); else `ORT_DYLIB_PATH`, else
    /// `libonnxruntime.so*` next to the executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<PathBuf>,
    /// Detections per second per camera on streams (the latest frame each time).
    #[serde(default = "default_detector_rate")]
    pub rate_hz: f64,
    /// Lowest score kept, 0..1.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Class-wise NMS: boxes of one class overlapping more than this are one object.
    #[serde(default = "default_iou")]
    pub iou: f64,
    /// Most detections per frame.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
    /// ONNX Runtime threads per camera (worker spinning is always off).
    #[serde(default = "default_intra_threads")]
    pub intra_threads: usize,
    /// Model input `[width, height]` for models with a dynamic input size (default:
    /// the model's `imgsz` metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<[u32; 2]>,
    /// Output layout: `auto` (from the output shape and metadata), `yolov8`, `yolov5`
    /// or `end2end`.
    #[serde(default)]
    pub layout: crate::detector::LayoutChoice,
}

fn default_detector_rate() -> f64 {
    2.0
}
fn default_confidence() -> f64 {
    0.25
}
fn default_iou() -> f64 {
    0.45
}
fn default_max_detections() -> usize {
    100
}
fn default_intra_threads() -> usize {
    1
}

fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    480
}
fn default_fps() -> f64 {
    30.0
}
fn default_seed() -> u64 {
    1
}
fn default_ambient() -> f64 {
    15.0
}
fn default_noise() -> f64 {
    0.1
}
fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_settle_ms() -> u64 {
    2000
}
fn default_rescan_s() -> u64 {
    30
}
fn default_baud() -> u32 {
    9600
}
fn default_pelco_address() -> u8 {
    1
}
fn default_settle_preset_ms() -> u64 {
    3000
}
fn default_dwell_ms() -> u64 {
    20_000
}
fn default_table() -> String {
    "utility-absolute".into()
}
fn default_min_area() -> u32 {
    4
}
fn default_max_hotspots() -> usize {
    32
}
fn default_reference_source() -> String {
    "configured reference".into()
}
fn default_raise_after() -> u32 {
    3
}
fn default_clear_after() -> u32 {
    30
}
fn default_update_delta() -> f64 {
    2.0
}
fn default_match_distance() -> u32 {
    24
}
fn default_outbox_path() -> PathBuf {
    "/var/lib/chitti-agent/outbox".into()
}
fn default_outbox_max() -> ByteSize {
    ByteSize(1 << 30)
}
fn default_resend_s() -> u64 {
    60
}
fn default_batch_findings() -> usize {
    50
}
fn default_batch_bytes() -> ByteSize {
    ByteSize(128 << 10)
}
fn default_inflight() -> usize {
    500
}
fn default_mqtt_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn default_keep_alive() -> u64 {
    30
}
fn default_reconnect_min() -> u64 {
    500
}
fn default_reconnect_max() -> u64 {
    60_000
}
fn default_max_packet() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_v4l2_reconnect_max() -> u64 {
    30_000
}
fn default_stall_s() -> u64 {
    10
}
fn default_http_timeout() -> u64 {
    30
}
fn default_status_s() -> u64 {
    30
}
fn default_telemetry_s() -> u64 {
    60
}
fn default_thermal_dir() -> PathBuf {
    "/sys/class/thermal".into()
}
fn default_shutdown_s() -> u64 {
    10
}

chitti_common::defaults_from_serde!(
    AnalysisConfig,
    TrackingConfig,
    OutboxConfig,
    MqttConfig,
    EvidenceConfig,
    HealthConfig,
    DetectorConfig
);

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::whole_file(&origin, format!("cannot read the file: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, &origin, base)
    }

    /// Parses and validates configuration text; relative paths in it are taken
    /// relative to `base` (the folder of the file).
    pub fn from_toml(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigErrors> {
        let table = parse_table(text, origin)?;
        let mut problems = Problems::default();
        let config = decode_sections(table, &mut problems);
        if let Some(mut config) = config {
            config.resolve_paths(base);
            config.validate_into(&mut problems);
            if problems.is_empty() {
                return Ok(config);
            }
        }
        // A section that did not decode has reported why.
        problems.into_result(origin)?;
        Err(ConfigErrors::whole_file(
            origin,
            "the configuration could not be decoded",
        ))
    }

    /// Checks what the configuration refers to on this machine: watched folders, TLS
    /// and password files. Run before anything opens, so that every problem of a
    /// deployment is reported at once.
    pub fn preflight(&self, origin: &str) -> Result<(), ConfigErrors> {
        let mut p = Problems::default();
        for (i, camera) in self.cameras.iter().enumerate() {
            if let SourceConfig::RjpegDir(dir) = &camera.source {
                if !dir.path.is_dir() {
                    p.push(
                        format!("camera[{i}].source.path"),
                        format!("{} is not a folder", dir.path.display()),
                    );
                }
            }
            if let SourceConfig::SeqReplay(r) = &camera.source {
                if !r.path.is_file() {
                    p.push(
                        format!("camera[{i}].source.path"),
                        format!("{} is not a file", r.path.display()),
                    );
                }
            }
            if matches!(camera.source, SourceConfig::V4l2(_)) && !crate::features::V4L2_BUILT_IN {
                p.push(
                    format!("camera[{i}].source.kind"),
                    crate::features::V4L2_MISSING,
                );
            }
            if let Some(patrol) = &camera.patrol {
                if !patrol.serial.exists() {
                    p.push(
                        format!("camera[{i}].patrol.serial"),
                        format!("{} does not exist", patrol.serial.display()),
                    );
                }
            }
        }
        for (key, file) in [
            ("mqtt.password_file", &self.mqtt.password_file),
            ("mqtt.ca_file", &self.mqtt.ca_file),
            ("mqtt.client_cert_file", &self.mqtt.client_cert_file),
            ("mqtt.client_key_file", &self.mqtt.client_key_file),
            ("mqtt.signing_key_file", &self.mqtt.signing_key_file),
            ("mqtt.hub_public_keys_file", &self.mqtt.hub_public_keys_file),
            ("evidence.ca_file", &self.evidence.ca_file),
        ] {
            if let Some(f) = file {
                if std::fs::File::open(f).is_err() {
                    p.push(key, format!("{} is not a readable file", f.display()));
                }
            }
        }
        p.into_result(origin)
    }

    /// The id of the severity table a camera uses.
    pub fn table_for<'a>(&'a self, camera: &'a CameraConfig) -> &'a str {
        camera.table.as_deref().unwrap_or(&self.analysis.table)
    }

    /// The severity catalog: built-in tables plus the user's file.
    pub fn severity_catalog(&self) -> Result<SeverityCatalog, String> {
        let mut catalog = SeverityCatalog::builtin();
        if let Some(path) = &self.analysis.tables_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            catalog
                .merge_user_tables_toml(&text)
                .map_err(|e| e.to_string().replace('\n', "; "))?;
        }
        Ok(catalog)
    }

    /// The MQTT client id.
    pub fn client_id(&self) -> String {
        self.mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| format!("chitti-{}-{}", self.identity.site, self.identity.gateway))
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let fix_opt = |p: &mut Option<PathBuf>| {
            if let Some(p) = p {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        };
        for camera in &mut self.cameras {
            match &mut camera.source {
                SourceConfig::RjpegDir(dir) => {
                    fix(&mut dir.path);
                    fix_opt(&mut dir.quarantine);
                }
                SourceConfig::SeqReplay(r) => fix(&mut r.path),
                SourceConfig::V4l2(_) | SourceConfig::Simulated(_) => {}
            }
        }
        fix_opt(&mut self.analysis.tables_file);
        fix(&mut self.outbox.path);
        fix_opt(&mut self.mqtt.password_file);
        fix_opt(&mut self.mqtt.ca_file);
        fix_opt(&mut self.mqtt.client_cert_file);
        fix_opt(&mut self.mqtt.client_key_file);
        fix_opt(&mut self.mqtt.signing_key_file);
        fix_opt(&mut self.mqtt.hub_public_keys_file);
        fix_opt(&mut self.evidence.ca_file);
        fix_opt(&mut self.detector.model);
        fix_opt(&mut self.detector.library);
    }

    /// Checks every value; returns every problem.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut problems = Problems::default();
        self.validate_into(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.into_inner())
        }
    }

    fn validate_into(&self, p: &mut Problems) {
        if self.version != CONFIG_VERSION {
            p.push(
                "version",
                format!(
                    "unsupported version {} (this agent reads version {CONFIG_VERSION})",
                    self.version
                ),
            );
        }
        if let Err(e) = validate_id("site", &self.identity.site) {
            p.push("identity.site", e.to_string());
        }
        if let Err(e) = validate_id("gateway", &self.identity.gateway) {
            p.push("identity.gateway", e.to_string());
        }
        if self.cameras.is_empty() {
            p.push("camera", "at least one [[camera]] is required");
        }
        let catalog = match self.severity_catalog() {
            Ok(c) => Some(c),
            Err(e) => {
                p.push("analysis.tables_file", e);
                None
            }
        };
        let check_table = |p: &mut Problems, path: &str, id: &str| {
            if let Some(catalog) = &catalog {
                if catalog.get(id).is_none() {
                    let known: Vec<&str> = catalog.ids().collect();
                    p.push(
                        path,
                        format!(
                            "unknown severity table {id:?} (known: {})",
                            known.join(", ")
                        ),
                    );
                }
            }
        };
        check_table(p, "analysis.table", &self.analysis.table);
        let mut ids = BTreeSet::new();
        for (i, camera) in self.cameras.iter().enumerate() {
            let at = |key: &str| format!("camera[{i}].{key}");
            if let Err(e) = validate_id("camera", &camera.id) {
                p.push(at("id"), e.to_string());
            } else if !ids.insert(camera.id.as_str()) {
                p.push(at("id"), format!("duplicate camera id {:?}", camera.id));
            }
            if let Some(table) = &camera.table {
                check_table(p, &at("table"), table);
            }
            camera.validate_into(i, p);
        }
        self.analysis.validate_into(p);
        self.outbox.validate_into(p);
        self.mqtt.validate_into(p);
        self.evidence
            .validate_into(self.mqtt.signing_key_file.is_some(), p);
        self.health.validate_into(p);
        self.detector.validate_into(p);
    }
}

impl CameraConfig {
    fn validate_into(&self, i: usize, p: &mut Problems) {
        let at = |key: &str| format!("camera[{i}].{key}");
        match &self.source {
            SourceConfig::Simulated(sim) => {
                if !(16..=4096).contains(&sim.width) {
                    p.push(at("source.width"), "must be 16 to 4096 pixels");
                }
                if !(16..=4096).contains(&sim.height) {
                    p.push(at("source.height"), "must be 16 to 4096 pixels");
                }
                if sim.scene == crate::sources::simulated::SceneKind::Components
                    && (sim.width < 64 || sim.height < 48)
                {
                    p.push(
                        at("source.scene"),
                        "\"components\" needs a frame of at least 64x48 pixels",
                    );
                }
                if !(sim.fps > 0.0 && sim.fps <= 240.0) {
                    p.push(at("source.fps"), "must be > 0 and at most 240");
                }
                if !(sim.ambient_c.is_finite() && (-50.0..=60.0).contains(&sim.ambient_c)) {
                    p.push(at("source.ambient_c"), "must be -50 to 60 °C");
                }
                if !(sim.noise_c.is_finite() && (0.0..=5.0).contains(&sim.noise_c)) {
                    p.push(at("source.noise_c"), "must be 0 to 5 °C");
                }
                if !(sim.speed > 0.0 && sim.speed <= 10_000.0) {
                    p.push(at("source.speed"), "must be > 0 and at most 10000");
                }
            }
            SourceConfig::V4l2(v) => {
                if !(v.fps > 0.0 && v.fps <= 240.0) {
                    p.push(at("source.fps"), "must be > 0 and at most 240");
                }
                if v.width == 0 || v.height == 0 || v.width > 8192 || v.height > 8192 {
                    p.push(at("source.width"), "width and height must be 1 to 8192");
                }
                match v.mode {
                    V4l2Mode::TemperatureLinear => match v.kelvin_per_count {
                        Some(k) if k.is_finite() && k > 0.0 => {}
                        Some(_) => p.push(at("source.kelvin_per_count"), "must be > 0"),
                        None => p.push(
                            at("source.kelvin_per_count"),
                            "temperature_linear needs kelvin_per_count (e.g. 0.01)",
                        ),
                    },
                    V4l2Mode::RadiometricCounts => match v.planck {
                        Some(pl) => {
                            let mut params = nominal_camera_params();
                            (
                                params.planck_r1,
                                params.planck_r2,
                                params.planck_b,
                                params.planck_f,
                                params.planck_o,
                            ) = (pl.r1, pl.r2, pl.b, pl.f, pl.o);
                            if let Err(errors) = params.validate() {
                                for e in errors {
                                    p.push(at("source.planck"), e.to_string());
                                }
                            }
                        }
                        None => p.push(
                            at("source.planck"),
                            "radiometric_counts needs the camera's planck = { r1, r2, b, f, o }",
                        ),
                    },
                    V4l2Mode::Preview => {}
                }
                if v.reconnect_min_ms == 0 || v.reconnect_min_ms > v.reconnect_max_ms {
                    p.push(
                        at("source.reconnect_min_ms"),
                        "must be > 0 and at most reconnect_max_ms",
                    );
                }
                if v.stall_timeout_s == 0 {
                    p.push(at("source.stall_timeout_s"), "must be at least 1");
                }
            }
            SourceConfig::SeqReplay(r) => {
                if !(r.speed.is_finite() && r.speed > 0.0) {
                    p.push(at("source.speed"), "must be > 0");
                }
                if !(r.fallback_fps.is_finite() && r.fallback_fps > 0.0) {
                    p.push(at("source.fallback_fps"), "must be > 0");
                }
            }
            SourceConfig::RjpegDir(dir) => {
                if dir.rescan_s == 0 {
                    p.push(at("source.rescan_s"), "must be at least 1");
                }
            }
        }
        let r = &self.radiometry;
        check_range(
            p,
            &at("radiometry.emissivity"),
            r.emissivity,
            0.0,
            1.0,
            "0 < E <= 1",
            true,
        );
        check_range(
            p,
            &at("radiometry.distance_m"),
            r.distance_m,
            0.0,
            10_000.0,
            "0 to 10000 m",
            false,
        );
        check_range(
            p,
            &at("radiometry.reflected_c"),
            r.reflected_c,
            -100.0,
            500.0,
            "-100 to 500 °C",
            false,
        );
        check_range(
            p,
            &at("radiometry.atmosphere_c"),
            r.atmosphere_c,
            -100.0,
            100.0,
            "-100 to 100 °C",
            false,
        );
        check_range(
            p,
            &at("radiometry.humidity_percent"),
            r.humidity_percent,
            0.0,
            100.0,
            "0 to 100 %",
            false,
        );
        validate_rois(p, &at("rois"), &self.rois);
        if let Some(patrol) = &self.patrol {
            if patrol.address == 0 {
                p.push(at("patrol.address"), "must be 1 to 255");
            }
            if patrol.baud == 0 {
                p.push(at("patrol.baud"), "must be > 0");
            }
            if patrol.presets.is_empty() {
                p.push(
                    at("patrol.preset"),
                    "a patrol needs at least one [[camera.patrol.preset]]",
                );
            }
            let mut seen = BTreeSet::new();
            for (j, preset) in patrol.presets.iter().enumerate() {
                let pat = |key: &str| format!("camera[{i}].patrol.preset[{j}].{key}");
                if let Err(e) = validate_id("preset", &preset.id) {
                    p.push(pat("id"), e.to_string());
                } else if !seen.insert(preset.id.as_str()) {
                    p.push(pat("id"), format!("duplicate preset id {:?}", preset.id));
                }
                if preset.pelco_preset == 0 {
                    p.push(
                        pat("pelco_preset"),
                        "must be 1 to 255 (Pelco-D presets start at 1)",
                    );
                }
                if preset.dwell_ms == 0 {
                    p.push(pat("dwell_ms"), "must be > 0");
                }
                validate_rois(p, &pat("rois"), &preset.rois);
            }
        }
    }
}

fn check_range(
    p: &mut Problems,
    path: &str,
    value: Option<f64>,
    lo: f64,
    hi: f64,
    expected: &str,
    lo_exclusive: bool,
) {
    if let Some(v) = value {
        let above_lo = if lo_exclusive { v > lo } else { v >= lo };
        if !(v.is_finite() && above_lo && v <= hi) {
            p.push(path, format!("{v} is out of range ({expected})"));
        }
    }
}

fn validate_rois(p: &mut Problems, path: &str, rois: &[RegionOfInterest]) {
    // The frame size is known only once frames arrive; build against the largest
    // supported frame so shape errors (too few vertices, NaN) are caught now.
    if let Err(errors) = chitti_common::hotspot::RoiMask::build(8192, 8192, rois) {
        for e in errors {
            p.push(path, e.to_string());
        }
    }
}

impl AnalysisConfig {
    fn validate_into(&self, p: &mut Problems) {
        if let Some(t) = self.threshold_c {
            if !t.is_finite() {
                p.push("analysis.threshold_c", "must be a finite temperature");
            }
        }
        if self.max_hotspots == 0 {
            p.push("analysis.max_hotspots", "must be at least 1");
        }
        if let Some(r) = &self.reference {
            if !r.celsius.is_finite() {
                p.push("analysis.reference.celsius", "must be a finite temperature");
            }
        }
        let t = &self.tracking;
        if t.raise_after_frames == 0 {
            p.push("analysis.tracking.raise_after_frames", "must be at least 1");
        }
        if t.clear_after_frames == 0 {
            p.push("analysis.tracking.clear_after_frames", "must be at least 1");
        }
        if !(t.update_delta_c.is_finite() && t.update_delta_c > 0.0) {
            p.push("analysis.tracking.update_delta_c", "must be > 0 °C");
        }
        if !(t.hysteresis_c.is_finite() && t.hysteresis_c >= 0.0) {
            p.push("analysis.tracking.hysteresis_c", "must be >= 0 °C");
        }
    }
}

impl OutboxConfig {
    fn validate_into(&self, p: &mut Problems) {
        if self.max_bytes.0 < (1 << 20) {
            p.push("outbox.max_bytes", "must be at least 1 MiB");
        }
        if self.resend_after_s == 0 {
            p.push("outbox.resend_after_s", "must be at least 1");
        }
        if self.batch_max_findings == 0 {
            p.push("outbox.batch_max_findings", "must be at least 1");
        }
        if self.batch_max_bytes.0 < 4096 {
            p.push("outbox.batch_max_bytes", "must be at least 4 KiB");
        }
        if self.max_inflight < self.batch_max_findings {
            p.push(
                "outbox.max_inflight",
                "must be at least outbox.batch_max_findings",
            );
        }
    }
}

impl MqttConfig {
    /// Host, port and whether TLS is used, from `url`.
    pub fn endpoint(&self) -> Result<(String, u16, bool), String> {
        let (tls, rest) = if let Some(rest) = self.url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = self.url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(format!(
                "{:?} must start with mqtt:// or mqtts://",
                self.url
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{:?}: port {p:?} is not a number", self.url))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("{:?}: no host name", self.url));
        }
        Ok((host.trim_matches(['[', ']']).to_string(), port, tls))
    }

    fn validate_into(&self, p: &mut Problems) {
        match self.endpoint() {
            Ok((_, _, tls)) => {
                if !tls && (self.client_cert_file.is_some() || self.ca_file.is_some()) {
                    p.push(
                        "mqtt.url",
                        "certificates are configured but the url is mqtt:// (use mqtts://)",
                    );
                }
            }
            Err(e) => p.push("mqtt.url", e),
        }
        if self.password.is_some() && self.password_file.is_some() {
            p.push(
                "mqtt.password_file",
                "give either password or password_file, not both",
            );
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            p.push("mqtt.username", "a password needs a username");
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            p.push(
                "mqtt.client_key_file",
                "client_cert_file and client_key_file go together",
            );
        }
        if self.keep_alive_s == 0 {
            p.push(
                "mqtt.keep_alive_s",
                "must be at least 1 (brokers such as rumqttd reject 0)",
            );
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            p.push(
                "mqtt.reconnect_min_ms",
                "must be > 0 and at most mqtt.reconnect_max_ms",
            );
        }
        if self.max_packet_bytes.0 < 16 << 10 {
            p.push("mqtt.max_packet_bytes", "must be at least 16 KiB");
        }
        for (i, key) in self.hub_public_keys.iter().enumerate() {
            if let Err(e) = chitti_common::signing::parse_public_key(key) {
                p.push(format!("mqtt.hub_public_keys[{i}]"), e);
            }
        }
    }
}

impl EvidenceConfig {
    fn validate_into(&self, has_signing_key: bool, p: &mut Problems) {
        if let Some(url) = &self.hub_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                p.push(
                    "evidence.hub_url",
                    format!("{url:?} must start with https:// or http://"),
                );
            }
            if !has_signing_key {
                p.push(
                    "evidence.hub_url",
                    "uploads are signed with the gateway's key: set mqtt.signing_key_file",
                );
            }
        }
        if self.timeout_s == 0 {
            p.push("evidence.timeout_s", "must be at least 1");
        }
    }
}

impl HealthConfig {
    fn validate_into(&self, p: &mut Problems) {
        if self.status_interval_s == 0 {
            p.push("health.status_interval_s", "must be at least 1");
        }
        if self.telemetry_interval_s == 0 {
            p.push("health.telemetry_interval_s", "must be at least 1");
        }
        if self.shutdown_deadline_s == 0 {
            p.push("health.shutdown_deadline_s", "must be at least 1");
        }
    }
}

impl DetectorConfig {
    fn validate_into(&self, p: &mut Problems) {
        if self.enabled && self.model.is_none() {
            p.push("detector.model", "required when detector.enabled = true");
        }
        check_range(
            p,
            "detector.rate_hz",
            Some(self.rate_hz),
            0.0,
            30.0,
            "> 0 and <= 30 detections per second",
            true,
        );
        check_range(
            p,
            "detector.confidence",
            Some(self.confidence),
            0.0,
            1.0,
            "> 0 and <= 1",
            true,
        );
        check_range(
            p,
            "detector.iou",
            Some(self.iou),
            0.0,
            1.0,
            "> 0 and <= 1",
            true,
        );
        if !(1..=10_000).contains(&self.max_detections) {
            p.push("detector.max_detections", "must be 1..=10000");
        }
        if !(1..=64).contains(&self.intra_threads) {
            p.push("detector.intra_threads", "must be 1..=64");
        }
        if let Some([w, h]) = self.input_size {
            if !(32..=4096).contains(&w) || !(32..=4096).contains(&h) {
                p.push(
                    "detector.input_size",
                    format!("[{w}, {h}]: width and height must be 32..=4096"),
                );
            }
        }
    }
}

/// Decodes the top-level table section by section.
fn decode_sections(mut table: toml::Table, p: &mut Problems) -> Option<AgentConfig> {
    let mut take = |key: &str| table.remove(key);
    let version = take("version");
    let identity = take("identity");
    let cameras = take("camera");
    let analysis = take("analysis");
    let outbox = take("outbox");
    let mqtt = take("mqtt");
    let evidence = take("evidence");
    let health = take("health");
    let detector = take("detector");
    for key in table.keys() {
        p.push(
            key.as_str(),
            "unknown key (expected version, identity, camera, analysis, outbox, mqtt, evidence, health, detector)",
        );
    }
    let version = match version {
        Some(v) => p.decode::<u32>("version", v),
        None => {
            p.push("version", "missing: the file must start with `version = 1`");
            None
        }
    };
    let identity = match identity {
        Some(v) => p.decode::<IdentityConfig>("identity", v),
        None => {
            p.push(
                "identity",
                "missing: [identity] with site and gateway is required",
            );
            None
        }
    };
    let cameras: Option<Vec<CameraConfig>> = match cameras {
        None => Some(Vec::new()),
        Some(toml::Value::Array(items)) => {
            let decoded: Vec<Option<CameraConfig>> = items
                .into_iter()
                .enumerate()
                .map(|(i, v)| p.decode(&format!("camera[{i}]"), v))
                .collect();
            decoded.into_iter().collect()
        }
        Some(_) => {
            p.push("camera", "must be an array of tables ([[camera]])");
            None
        }
    };
    // Absent sections take their defaults, decoded like a written one.
    let or_empty = |v: Option<toml::Value>| v.unwrap_or_else(|| toml::Table::new().into());
    let analysis = p.decode("analysis", or_empty(analysis));
    let outbox = p.decode("outbox", or_empty(outbox));
    let mqtt = p.decode("mqtt", or_empty(mqtt));
    let evidence = p.decode("evidence", or_empty(evidence));
    let health = p.decode("health", or_empty(health));
    let detector = p.decode("detector", or_empty(detector));
    Some(AgentConfig {
        version: version?,
        identity: identity?,
        cameras: cameras?,
        analysis: analysis?,
        outbox: outbox?,
        mqtt: mqtt?,
        evidence: evidence?,
        health: health?,
        detector: detector?,
    })
}

/// Reads a signing key file: 64 hex characters (the Ed25519 seed).
/// Every hub key the agent trusts: `mqtt.hub_public_keys` and the lines of
/// `mqtt.hub_public_keys_file` (blank lines and `#` comments skipped).
pub fn hub_public_keys(mqtt: &MqttConfig) -> Result<Vec<ed25519_dalek::VerifyingKey>, String> {
    let mut keys = Vec::new();
    for (i, key) in mqtt.hub_public_keys.iter().enumerate() {
        keys.push(
            chitti_common::signing::parse_public_key(key)
                .map_err(|e| format!("mqtt.hub_public_keys[{i}]: {e}"))?,
        );
    }
    if let Some(path) = &mqtt.hub_public_keys_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "mqtt.hub_public_keys_file: cannot read {}: {e}",
                path.display()
            )
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(chitti_common::signing::parse_public_key(line).map_err(|e| {
                format!(
                    "mqtt.hub_public_keys_file: {} line {}: {e}",
                    path.display(),
                    n + 1
                )
            })?);
        }
    }
    Ok(keys)
}

/// Reads a signing key file (64 hex characters).
pub fn read_signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| format!("{}: a signing key is 64 hex characters", path.display()))?;
    Ok(chitti_common::signing::signing_key_from_seed(&seed))
}

/// Radiometric parameters for sources that carry none of their own (a simulated
/// camera): the Planck calibration of the FLIR T640 fixture (a T5xx/T6xx-class
/// 640×480 detector), emissivity 0.95, 1 m, 20 °C, 50 % humidity.
pub fn nominal_camera_params() -> RadiometricParams {
    RadiometricParams {
        emissivity: 0.95,
        object_distance_m: 1.0,
        reflected_c: 20.0,
        atmosphere_c: 20.0,
        ir_window_c: 20.0,
        ir_window_transmission: 1.0,
        relative_humidity: 0.5,
        planck_r1: 15848.854,
        planck_r2: 0.014_533_112,
        planck_b: 1414.9,
        planck_f: 1.0,
        planck_o: -4405.0,
        atm_alpha1: 0.006569,
        atm_alpha2: 0.01262,
        atm_beta1: -0.002276,
        atm_beta2: -0.00667,
        atm_x: 1.9,
    }
}

#[cfg(test)]
mod tests;
