//! The agent's configuration: one TOML file, versioned and strict.
//!
//! The schema, its decoding and its validation are `chitti_common::agent_config` (pure,
//! so that the hub validates a gateway's document with exactly this code); this module
//! adds what needs the gateway's file system: reading the file and the user severity
//! tables it names, and the preflight of the folders, devices and key files a
//! configuration refers to. Re-exported under their historic paths
//! (`chitti_agent::config::OutboxConfig`, …).

pub use chitti_common::agent_config::*;
pub use chitti_common::config::{ByteSize, ConfigError, ConfigErrors};

pub use crate::sinks::mqtt::config::{hub_public_keys, read_signing_key};
use chitti_common::config::Problems;
use chitti_common::severity::SeverityCatalog;
use std::path::Path;

/// The user severity tables, read from the gateway's disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct TablesOnDisk;

impl UserTables for TablesOnDisk {
    fn read(&self, path: &Path) -> Result<Option<String>, String> {
        std::fs::read_to_string(path)
            .map(Some)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}

/// What the agent does with its configuration on its own machine.
pub trait AgentConfigFile: Sized {
    /// Reads and validates a configuration file.
    fn load(path: &Path) -> Result<Self, ConfigErrors>;

    /// Parses and validates configuration text; relative paths in it are taken
    /// relative to `base` (the folder of the file), user tables read from disk.
    fn from_toml(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigErrors>;

    /// Checks what the configuration refers to on this machine: watched folders, TLS
    /// and password files. Run before anything opens, so that every problem of a
    /// deployment is reported at once.
    fn preflight(&self, origin: &str) -> Result<(), ConfigErrors>;

    /// The severity catalog: built-in tables plus the user's file.
    fn severity_catalog(&self) -> Result<SeverityCatalog, String>;
}

impl AgentConfigFile for AgentConfig {
    fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::whole_file(&origin, format!("cannot read the file: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        <Self as AgentConfigFile>::from_toml(&text, &origin, base)
    }

    fn from_toml(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigErrors> {
        AgentConfig::parse(text, origin, base, &TablesOnDisk)
    }

    fn preflight(&self, origin: &str) -> Result<(), ConfigErrors> {
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

    fn severity_catalog(&self) -> Result<SeverityCatalog, String> {
        // The disk always answers, so the catalog is always known here.
        self.severity_catalog_with(&TablesOnDisk)
            .map(|c| c.unwrap_or_else(SeverityCatalog::builtin))
    }
}

#[cfg(test)]
mod tests;
