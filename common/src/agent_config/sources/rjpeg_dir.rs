//! The `rjpeg_dir` source's configuration (`[camera.source] kind = "rjpeg_dir"`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

fn default_settle_ms() -> u64 {
    2000
}

fn default_rescan_s() -> u64 {
    30
}
