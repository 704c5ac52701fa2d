//! The evidence uploader's configuration (`[evidence]`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

crate::defaults_from_serde!(EvidenceConfig);

fn default_http_timeout() -> u64 {
    30
}
