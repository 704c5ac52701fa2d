//! The `[retention]` section of the hub's configuration: how long each kind of data is
//! kept, and how the job that removes the rest runs.

use chitti_common::config::Problems;
use serde::{Deserialize, Serialize};

/// The longest period any key takes, days (a century).
pub const MAX_DAYS: u64 = 36_500;

/// How long data is kept, per kind; how the retention job runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Whether this hub runs the job at all (one replica at a time runs it, by a lease).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How often the job runs, seconds.
    #[serde(default = "default_interval_s")]
    pub interval_s: u64,
    /// Findings (and their evidence) are kept this many days after they were received
    /// (default 1 096: three calendar years, NERC CIP's evidence period) — longer while
    /// their alert is open, under a legal hold, or in a kept inspection report.
    #[serde(default = "default_finding_days")]
    pub finding_days: u64,
    /// Gateway telemetry is kept per minute this many days, then per hour.
    #[serde(default = "default_minute_days")]
    pub telemetry_minute_days: u64,
    /// Hourly telemetry is kept this many days.
    #[serde(default = "default_hour_days")]
    pub telemetry_hour_days: u64,
    /// Dead letters are kept this many days.
    #[serde(default = "default_dead_letter_days")]
    pub dead_letter_days: u64,
    /// Evidence no finding refers to is removed once this many days old (a gateway
    /// uploads evidence before or after its finding arrives: the grace covers a gateway
    /// offline that long between the two).
    #[serde(default = "default_evidence_grace_days")]
    pub unreferenced_evidence_days: u64,
    /// Rows removed per transaction: bounds how long ingest waits for the job (SQLite
    /// has one writer).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: u32,
}

fn yes() -> bool {
    true
}
fn default_interval_s() -> u64 {
    3600
}
fn default_finding_days() -> u64 {
    1096
}
fn default_minute_days() -> u64 {
    30
}
fn default_hour_days() -> u64 {
    1096
}
fn default_dead_letter_days() -> u64 {
    90
}
fn default_evidence_grace_days() -> u64 {
    30
}
fn default_batch_rows() -> u32 {
    2000
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_s: default_interval_s(),
            finding_days: default_finding_days(),
            telemetry_minute_days: default_minute_days(),
            telemetry_hour_days: default_hour_days(),
            dead_letter_days: default_dead_letter_days(),
            unreferenced_evidence_days: default_evidence_grace_days(),
            batch_rows: default_batch_rows(),
        }
    }
}

impl RetentionConfig {
    /// Adds every problem to `p` (keys relative to `retention.`).
    pub fn validate_into(&self, p: &mut Problems) {
        for (key, value, least) in [
            ("interval_s", self.interval_s, 60),
            ("finding_days", self.finding_days, 1),
            ("telemetry_minute_days", self.telemetry_minute_days, 1),
            ("telemetry_hour_days", self.telemetry_hour_days, 1),
            ("dead_letter_days", self.dead_letter_days, 1),
            (
                "unreferenced_evidence_days",
                self.unreferenced_evidence_days,
                1,
            ),
            ("batch_rows", u64::from(self.batch_rows), 10),
        ] {
            if value < least {
                p.push(
                    format!("retention.{key}"),
                    format!("must be at least {least}"),
                );
            }
        }
        for (key, value) in [
            ("finding_days", self.finding_days),
            ("telemetry_minute_days", self.telemetry_minute_days),
            ("telemetry_hour_days", self.telemetry_hour_days),
            ("dead_letter_days", self.dead_letter_days),
            (
                "unreferenced_evidence_days",
                self.unreferenced_evidence_days,
            ),
        ] {
            if value > MAX_DAYS {
                p.push(
                    format!("retention.{key}"),
                    format!("must be at most {MAX_DAYS}"),
                );
            }
        }
        if self.telemetry_hour_days < self.telemetry_minute_days {
            p.push(
                "retention.telemetry_hour_days",
                "must be at least telemetry_minute_days (hours are made from minutes)",
            );
        }
        if self.batch_rows > 100_000 {
            p.push(
                "retention.batch_rows",
                "must be at most 100000 (a batch holds the writer lock)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::HubConfig;
    use std::path::Path;

    #[test]
    fn bad_retention_settings_are_each_named() {
        let text = "version = 1\n[retention]\ninterval_s = 5\nbatch_rows = 200000\n\
                    telemetry_minute_days = 90\ntelemetry_hour_days = 30\nfinding_days = 99999\n";
        let err = HubConfig::from_toml(text, "hub.toml", Path::new(".")).unwrap_err();
        let text = err.to_string();
        for key in [
            "retention.interval_s: must be at least 60",
            "retention.batch_rows: must be at most 100000",
            "retention.telemetry_hour_days: must be at least telemetry_minute_days",
            "retention.finding_days: must be at most 36500",
        ] {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
        let unknown = "version = 1\n[retention]\nkeep_forever = true\n";
        let err = HubConfig::from_toml(unknown, "hub.toml", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("keep_forever"), "{err}");
        assert!(
            HubConfig::from_toml("version = 1\n", "hub.toml", Path::new("."))
                .unwrap()
                .retention
                .enabled
        );
    }
}
