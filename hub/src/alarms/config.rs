//! The `[alarms]` section of the hub's configuration: when the hub raises an alarm
//! about its own fleet, and at which level.

use crate::store::AlertKind;
use chitti_common::config::Problems;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// When fleet alarms are raised, and their levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsConfig {
    /// How often the hub looks at every gateway, seconds.
    #[serde(default = "default_check_s")]
    pub check_interval_s: u64,
    /// A camera that delivered no frame for this long (and is not a folder waiting for
    /// files or a finished replay) is stalled, seconds.
    #[serde(default = "default_camera_s")]
    pub camera_stalled_after_s: u64,
    /// An outbox holding more than this share of its byte cap is under pressure (as is
    /// one that evicted within `outbox_eviction_hold_s`).
    #[serde(default = "default_share")]
    pub outbox_pressure_share: f64,
    /// How long an eviction keeps the outbox alarm up, seconds.
    #[serde(default = "default_eviction_hold_s")]
    pub outbox_eviction_hold_s: u64,
    /// Evidence uploads failing without a success for this long raise an alarm,
    /// seconds.
    #[serde(default = "default_evidence_s")]
    pub evidence_failing_after_s: u64,
    /// A gateway clock off the hub's by more than this is skewed, seconds.
    #[serde(default = "default_skew_s")]
    pub clock_skew_max_s: u64,
    /// Kinds never raised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_kinds: Vec<String>,
    /// The level of each kind.
    #[serde(default)]
    pub levels: AlarmLevels,
    /// Per-site levels, over `levels`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<SiteAlarmLevels>,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        Self {
            check_interval_s: default_check_s(),
            camera_stalled_after_s: default_camera_s(),
            outbox_pressure_share: default_share(),
            outbox_eviction_hold_s: default_eviction_hold_s(),
            evidence_failing_after_s: default_evidence_s(),
            clock_skew_max_s: default_skew_s(),
            disabled_kinds: Vec::new(),
            levels: AlarmLevels::default(),
            sites: Vec::new(),
        }
    }
}

/// The level (0–4, as severity levels; rules' `min_level` applies) of each fleet alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmLevels {
    /// A gateway offline: nothing is watched there.
    #[serde(default = "level_3")]
    pub gateway_offline: u8,
    /// A camera stalled: its equipment is not watched.
    #[serde(default = "level_3")]
    pub camera_stalled: u8,
    /// The outbox near its cap: findings may soon be evicted.
    #[serde(default = "level_2")]
    pub outbox_pressure: u8,
    /// The detector degraded: thresholds alone.
    #[serde(default = "level_2")]
    pub detector_degraded: u8,
    /// Evidence not reaching the hub.
    #[serde(default = "level_2")]
    pub evidence_upload_failing: u8,
    /// A clock off: timestamps of findings cannot be trusted.
    #[serde(default = "level_1")]
    pub clock_skew: u8,
    /// A configuration the gateway rejected or rolled back: it does not run what the
    /// hub says it should.
    #[serde(default = "level_2")]
    pub config_failed: u8,
    /// A model update the gateway refused, undid or did not finish in a rollout.
    #[serde(default = "level_2")]
    pub model_failed: u8,
}

impl Default for AlarmLevels {
    fn default() -> Self {
        Self {
            gateway_offline: 3,
            camera_stalled: 3,
            outbox_pressure: 2,
            detector_degraded: 2,
            evidence_upload_failing: 2,
            clock_skew: 1,
            config_failed: 2,
            model_failed: 2,
        }
    }
}

impl AlarmLevels {
    fn of(&self, kind: AlertKind) -> u8 {
        match kind {
            AlertKind::Hotspot => 0,
            AlertKind::GatewayOffline => self.gateway_offline,
            AlertKind::CameraStalled => self.camera_stalled,
            AlertKind::OutboxPressure => self.outbox_pressure,
            AlertKind::DetectorDegraded => self.detector_degraded,
            AlertKind::EvidenceUploadFailing => self.evidence_upload_failing,
            AlertKind::ClockSkew => self.clock_skew,
            AlertKind::ConfigFailed => self.config_failed,
            AlertKind::ModelFailed => self.model_failed,
        }
    }
}

/// One site's levels; a kind not named keeps the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteAlarmLevels {
    /// Site id.
    pub site: String,
    /// Level of `gateway_offline` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_offline: Option<u8>,
    /// Level of `camera_stalled` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_stalled: Option<u8>,
    /// Level of `outbox_pressure` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_pressure: Option<u8>,
    /// Level of `detector_degraded` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector_degraded: Option<u8>,
    /// Level of `evidence_upload_failing` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_upload_failing: Option<u8>,
    /// Level of `clock_skew` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<u8>,
    /// Level of `config_failed` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_failed: Option<u8>,
    /// Level of `model_failed` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_failed: Option<u8>,
}

impl SiteAlarmLevels {
    fn of(&self, kind: AlertKind) -> Option<u8> {
        match kind {
            AlertKind::Hotspot => None,
            AlertKind::GatewayOffline => self.gateway_offline,
            AlertKind::CameraStalled => self.camera_stalled,
            AlertKind::OutboxPressure => self.outbox_pressure,
            AlertKind::DetectorDegraded => self.detector_degraded,
            AlertKind::EvidenceUploadFailing => self.evidence_upload_failing,
            AlertKind::ClockSkew => self.clock_skew,
            AlertKind::ConfigFailed => self.config_failed,
            AlertKind::ModelFailed => self.model_failed,
        }
    }

    fn all(&self) -> [(&'static str, Option<u8>); 8] {
        AlertKind::FLEET.map(|k| (k.as_str(), self.of(k)))
    }
}

impl AlarmsConfig {
    /// The level of a kind at a site.
    pub fn level(&self, site: &str, kind: AlertKind) -> u8 {
        self.sites
            .iter()
            .find(|s| s.site == site)
            .and_then(|s| s.of(kind))
            .unwrap_or_else(|| self.levels.of(kind))
    }

    /// Whether the hub raises this kind.
    pub fn enabled(&self, kind: AlertKind) -> bool {
        !self.disabled_kinds.iter().any(|k| k == kind.as_str())
    }

    /// Records every problem of the section in `p`.
    pub fn validate_into(&self, p: &mut Problems) {
        for (key, value) in [
            ("check_interval_s", self.check_interval_s),
            ("camera_stalled_after_s", self.camera_stalled_after_s),
            ("outbox_eviction_hold_s", self.outbox_eviction_hold_s),
            ("evidence_failing_after_s", self.evidence_failing_after_s),
            ("clock_skew_max_s", self.clock_skew_max_s),
        ] {
            if value == 0 {
                p.push(format!("alarms.{key}"), "must be at least 1");
            }
        }
        if !(self.outbox_pressure_share > 0.0 && self.outbox_pressure_share <= 1.0) {
            p.push(
                "alarms.outbox_pressure_share",
                format!("{} is not a share in (0, 1]", self.outbox_pressure_share),
            );
        }
        for (i, kind) in self.disabled_kinds.iter().enumerate() {
            if AlertKind::parse(kind).is_none_or(|k| !k.is_fleet()) {
                p.push(
                    format!("alarms.disabled_kinds[{i}]"),
                    format!(
                        "unknown fleet alarm {kind:?} (expected {})",
                        AlertKind::FLEET.map(|k| k.as_str()).join(", ")
                    ),
                );
            }
        }
        for kind in AlertKind::FLEET {
            if self.levels.of(kind) > 4 {
                p.push(format!("alarms.levels.{}", kind.as_str()), "must be 0–4");
            }
        }
        let mut sites = HashSet::new();
        for (i, s) in self.sites.iter().enumerate() {
            if let Err(e) = chitti_common::protocol::validate_id("site", &s.site) {
                p.push(format!("alarms.sites[{i}].site"), e.to_string());
            } else if !sites.insert(s.site.as_str()) {
                p.push(
                    format!("alarms.sites[{i}].site"),
                    format!("{:?} appears twice", s.site),
                );
            }
            for (kind, level) in s.all() {
                if level.is_some_and(|l| l > 4) {
                    p.push(format!("alarms.sites[{i}].{kind}"), "must be 0–4");
                }
            }
        }
    }
}

fn default_check_s() -> u64 {
    10
}
fn default_camera_s() -> u64 {
    300
}
fn default_share() -> f64 {
    0.8
}
fn default_eviction_hold_s() -> u64 {
    900
}
fn default_evidence_s() -> u64 {
    900
}
fn default_skew_s() -> u64 {
    60
}
fn level_1() -> u8 {
    1
}
fn level_2() -> u8 {
    2
}
fn level_3() -> u8 {
    3
}
