//! The agent's configuration: one TOML file, versioned and strict.
//!
//! Loading never stops at the first problem. The file is read as TOML once (a syntax
//! error is the one thing that ends the load early, since nothing after it can be
//! trusted), then every section and every camera is decoded on its own with
//! `deny_unknown_fields`, and every decoded value is validated; each problem is reported
//! with its key path (`camera[1].source.fps: must be > 0`). Nothing opens a device, a
//! socket or a folder before the whole file is valid.

use crate::config::{parse_table, Problems};
pub use crate::config::{ByteSize, ConfigError, ConfigErrors};

use crate::hotspot::RegionOfInterest;
use crate::protocol::validate_id;
use crate::severity::SeverityCatalog;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub mod analysis;
pub mod detector;
pub mod evidence;
pub mod health;
pub mod mqtt;
pub mod outbox;
pub mod patrol;
pub mod remote;
pub mod sources;

pub use analysis::{
    AnalysisConfig, CameraContext, RadiometryOverrides, ReferenceConfig, TrackingConfig,
};
pub use detector::{DetectorConfig, LayoutChoice};
pub use evidence::EvidenceConfig;
pub use health::HealthConfig;
pub use mqtt::{MqttConfig, MqttContext};
pub use outbox::{OutboxConfig, OutboxEngine};
pub use patrol::{PatrolConfig, PresetConfig};
pub use remote::RemoteConfig;
pub use sources::{
    PlanckConfig, RjpegDirSourceConfig, SceneKind, SeqReplaySourceConfig, SimulatedSourceConfig,
    SourceConfig, V4l2Mode, V4l2SourceToml,
};

/// What validation may know of the user severity tables a configuration names in
/// `analysis.tables_file`: the caller reads the file (this crate does no IO).
pub trait UserTables {
    /// The text of the tables file at `path`; `Ok(None)` when it cannot be known here
    /// (the hub validating a gateway's document: the file is on the gateway), in which
    /// case table ids that are not built in are left for the gateway to check.
    fn read(&self, path: &Path) -> Result<Option<String>, String>;
}

/// For a configuration validated away from its gateway: only the built-in tables
/// are known, any other table id is the gateway's to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct TablesOnGateway;

impl UserTables for TablesOnGateway {
    fn read(&self, _path: &Path) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// The radiometric parameters assumed for a camera that reports none (a V4L2 stream):
/// a FLIR T560's nominal calibration, corrected by `radiometry` and `planck`.
pub fn nominal_camera_params() -> crate::radiometry::RadiometricParams {
    crate::radiometry::RadiometricParams {
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
    /// Configuration from the hub (`/config/set`); gateway-local.
    #[serde(default)]
    pub remote: RemoteConfig,
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

impl AgentConfig {
    /// Parses and validates configuration text; relative paths in it are taken
    /// relative to `base` (the folder of the file), and `tables` reads the user
    /// severity tables it names.
    pub fn parse(
        text: &str,
        origin: &str,
        base: &Path,
        tables: &dyn UserTables,
    ) -> Result<Self, ConfigErrors> {
        let table = parse_table(text, origin)?;
        let mut problems = Problems::default();
        let config = decode_sections(table, &mut problems);
        if let Some(mut config) = config {
            config.resolve_paths(base);
            config.validate_into(tables, &mut problems);
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

    /// What the MQTT sink needs besides `[mqtt]`.
    pub fn mqtt_context(&self) -> MqttContext<'_> {
        MqttContext {
            mqtt: &self.mqtt,
            site: &self.identity.site,
            gateway: &self.identity.gateway,
            client_id: self.client_id(),
            outbox: &self.outbox,
            health: &self.health,
        }
    }

    /// What `camera`'s analyzer needs to know besides `[analysis]`.
    pub fn camera_context<'a>(&'a self, camera: &'a CameraConfig) -> CameraContext<'a> {
        CameraContext {
            site: &self.identity.site,
            gateway: &self.identity.gateway,
            camera: &camera.id,
            asset: camera.asset.as_deref(),
            radiometry: &camera.radiometry,
            rois: &camera.rois,
            presets: camera.patrol.as_ref().map(|p| p.presets.as_slice()),
        }
    }

    /// The id of the severity table a camera uses.
    pub fn table_for<'a>(&'a self, camera: &'a CameraConfig) -> &'a str {
        camera.table.as_deref().unwrap_or(&self.analysis.table)
    }

    /// The severity catalog: built-in tables plus the user's file as `tables` reads
    /// it; `Ok(None)` when the user's tables cannot be known here.
    pub fn severity_catalog_with(
        &self,
        tables: &dyn UserTables,
    ) -> Result<Option<SeverityCatalog>, String> {
        let mut catalog = SeverityCatalog::builtin();
        if let Some(path) = &self.analysis.tables_file {
            let Some(text) = tables.read(path)? else {
                return Ok(None);
            };
            catalog
                .merge_user_tables_toml(&text)
                .map_err(|e| e.to_string().replace('\n', "; "))?;
        }
        Ok(Some(catalog))
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
        fix(&mut self.remote.state_dir);
    }

    /// Checks every value; returns every problem.
    pub fn validate(&self, tables: &dyn UserTables) -> Result<(), Vec<ConfigError>> {
        let mut problems = Problems::default();
        self.validate_into(tables, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.into_inner())
        }
    }

    fn validate_into(&self, tables: &dyn UserTables, p: &mut Problems) {
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
        let catalog = match self.severity_catalog_with(tables) {
            Ok(c) => c,
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
        self.remote.validate_into(p);
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
                if sim.scene == SceneKind::Components && (sim.width < 64 || sim.height < 48) {
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
    if let Err(errors) = crate::hotspot::RoiMask::build(8192, 8192, rois) {
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
        let tls = self.endpoint().map(|(_, _, tls)| tls);
        for (i, url) in self.failover_urls.iter().enumerate() {
            let key = format!("mqtt.failover_urls[{i}]");
            match (mqtt::parse_endpoint(url), &tls) {
                (Err(e), _) => p.push(key, e),
                (Ok((_, _, other)), Ok(tls)) if other != *tls => p.push(
                    key,
                    "uses another scheme than mqtt.url (all mqtt:// or all mqtts://)",
                ),
                _ => {}
            }
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
            if let Err(e) = crate::signing::parse_public_key(key) {
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
    let remote = take("remote");
    for key in table.keys() {
        p.push(
            key.as_str(),
            "unknown key (expected version, identity, camera, analysis, outbox, mqtt, evidence, health, detector, remote)",
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
    let remote = p.decode("remote", or_empty(remote));
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
        remote: remote?,
    })
}
