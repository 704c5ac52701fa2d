//! Status, telemetry and metrics configuration (`[health]`).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

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

crate::defaults_from_serde!(HealthConfig);

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
