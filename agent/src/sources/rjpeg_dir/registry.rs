//! The processed-file registry: SHA-256 hashes of files already turned into findings.
//!
//! An append-only text log, one `sha256 path` line per file, fsynced after each line.
//! A line torn by a power cut is ignored at open (its file is processed again, and
//! yields the same finding ids).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

/// Hashes of processed files.
#[derive(Debug)]
pub struct ProcessedRegistry {
    known: Mutex<(HashSet<String>, File)>,
}

impl ProcessedRegistry {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut known = HashSet::new();
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines() {
                let line = line?;
                let sha = line.split(' ').next().unwrap_or("");
                if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    known.insert(sha.to_string());
                }
            }
        }
        let log = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            known: Mutex::new((known, log)),
        })
    }

    /// True when a file with this content was processed.
    pub fn contains(&self, sha256: &str) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .contains(sha256)
    }

    /// Records a processed file, durably.
    pub fn record(&self, sha256: &str, path: &Path) -> std::io::Result<()> {
        let mut guard = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if guard.0.contains(sha256) {
            return Ok(());
        }
        // Start on a fresh line even if a previous write was torn.
        let line = format!(
            "\n{sha256} {}\n",
            path.display().to_string().replace('\n', " ")
        );
        guard.1.write_all(line.as_bytes())?;
        guard.1.sync_data()?;
        guard.0.insert(sha256.to_string());
        Ok(())
    }

    /// Number of processed files.
    pub fn len(&self) -> usize {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    /// True when nothing was processed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
