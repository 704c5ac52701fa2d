//! The outbox's configuration (`[outbox]`).

use crate::config::ByteSize;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which storage engine holds the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxEngine {
    /// redb: fsync per commit, stable format (the default; see the `outbox` module header).
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

crate::defaults_from_serde!(OutboxConfig);

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
