//! A watched folder of FLIR radiometric files: how a tethered T560 (USB mass storage or
//! an MTP mount), a drone's SD card offload and an FTP drop reach the agent.
//!
//! - **Discovery**: inotify events (through `notify`, recursive) plus a full rescan every
//!   `rescan_s` (network mounts and MTP do not always deliver events). Files ending in
//!   `.jpg`, `.jpeg`, `.fff`, `.seq` or `.csq` (any case) are candidates; the quarantine
//!   folder and hidden files are skipped.
//! - **Complete files only**: a file is taken once its size and modification time have
//!   not changed for `settle_ms` (a camera or an FTP client may still be writing), or at
//!   once when the writer closes it (`IN_CLOSE_WRITE`).
//! - **Once per content**: a registry of SHA-256 hashes (an append-only, fsynced log in
//!   the outbox folder) remembers processed files across restarts, so a copy of the same
//!   image under another name, or a re-inserted SD card, is not reported twice. A file
//!   is recorded only after the findings of all its frames are durably in the outbox;
//!   if the agent dies before that, the file is processed again after restart, and its
//!   findings get the same ids (derived from the content), so nothing is duplicated.
//! - **Corrupt files** are logged with the parser's reason, moved to the quarantine
//!   folder with a `.reason.txt` beside them, and the agent carries on.
//! - **Never dropped**: frames of files wait for room in the pipeline (the file is on
//!   disk; waiting costs nothing).

pub mod config;
pub use config::RjpegDirSourceConfig;

mod registry;

pub use registry::ProcessedRegistry;

use crate::health::CameraState;
use crate::shutdown::Shutdown;
use crate::sources::{
    FileDone, FramePayload, FrameSender, RadiometricFrame, SourceError, SourceFile, SourceFrame,
};
use chitti_common::finding::FindingSource;
use chitti_common::flir::{FlirFile, ParseLimits};
use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Largest file read (a .csq of a long recording is split by the camera well below).
pub const MAX_FILE_BYTES: u64 = 512 << 20;

const EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "fff", "seq", "csq"];

/// A folder source, ready to run.
#[derive(Debug)]
pub struct RjpegDirSource {
    camera: String,
    folder: PathBuf,
    quarantine: PathBuf,
    settle: Duration,
    rescan: Duration,
    delete_processed: bool,
    registry: Arc<ProcessedRegistry>,
}

impl RjpegDirSource {
    /// Prepares the source: checks the folder, creates the quarantine folder, opens the
    /// registry at `registry_path`.
    pub fn new(
        camera: &str,
        config: &RjpegDirSourceConfig,
        registry_path: &Path,
    ) -> Result<Self, SourceError> {
        let folder = config.path.clone();
        if !folder.is_dir() {
            return Err(SourceError::Folder {
                what: "watch folder",
                path: folder,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            });
        }
        let quarantine = config
            .quarantine
            .clone()
            .unwrap_or_else(|| folder.join("quarantine"));
        std::fs::create_dir_all(&quarantine).map_err(|source| SourceError::Folder {
            what: "quarantine folder",
            path: quarantine.clone(),
            source,
        })?;
        let registry =
            ProcessedRegistry::open(registry_path).map_err(|e| SourceError::Registry {
                path: registry_path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            camera: camera.to_string(),
            folder,
            quarantine,
            settle: Duration::from_millis(config.settle_ms),
            rescan: Duration::from_secs(config.rescan_s),
            delete_processed: config.delete_processed,
            registry: Arc::new(registry),
        })
    }

    /// The registry of processed files.
    pub fn registry(&self) -> &Arc<ProcessedRegistry> {
        &self.registry
    }

    /// Starts the source on its own thread.
    pub fn spawn(
        self,
        sender: FrameSender,
        stop: Shutdown,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("rjpeg-{}", self.camera))
            .spawn(move || self.run(&sender, &stop))
    }

    fn run(self, sender: &FrameSender, stop: &Shutdown) {
        let health = sender.health().clone();
        let (tx, rx) = mpsc::channel();
        let watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .and_then(|mut w| w.watch(&self.folder, RecursiveMode::Recursive).map(|()| w));
        let _watcher = match watcher {
            Ok(w) => Some(w),
            Err(err) => {
                // Rescans still find files; say that events are off.
                tracing::warn!(camera = %self.camera, folder = %self.folder.display(), %err,
                    "file events unavailable, relying on rescans");
                None
            }
        };
        health.set_state(CameraState::Watching);
        let mut pending: HashMap<PathBuf, Candidate> = HashMap::new();
        let mut last_scan: Option<Instant> = None;
        let tick = (self.settle / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
        while !stop.is_triggered() {
            if last_scan.is_none_or(|t| t.elapsed() >= self.rescan) {
                self.scan(&mut pending);
                last_scan = Some(Instant::now());
            }
            match rx.recv_timeout(tick) {
                Ok(Ok(event)) => self.on_event(event, &mut pending),
                Ok(Err(err)) => tracing::warn!(camera = %self.camera, %err, "file watcher error"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(tick),
            }
            while let Ok(event) = rx.try_recv() {
                if let Ok(event) = event {
                    self.on_event(event, &mut pending);
                }
            }
            let ready: Vec<PathBuf> = pending
                .iter_mut()
                .filter_map(|(path, c)| c.ready(path, self.settle).then(|| path.clone()))
                .collect();
            for path in ready {
                pending.remove(&path);
                if !self.process(&path, sender) {
                    return; // pipeline closed
                }
                if stop.is_triggered() {
                    break;
                }
            }
        }
    }

    fn is_candidate(&self, path: &Path) -> bool {
        if path.starts_with(&self.quarantine) {
            return false;
        }
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        let ext_ok = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
        !hidden && ext_ok
    }

    fn on_event(&self, event: notify::Event, pending: &mut HashMap<PathBuf, Candidate>) {
        use notify::event::{AccessKind, AccessMode};
        let closed = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        let touched = matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) || closed;
        if !touched {
            return;
        }
        for path in event.paths {
            if self.is_candidate(&path) {
                let c = pending.entry(path).or_default();
                c.closed |= closed;
            } else if path.is_dir() && !path.starts_with(&self.quarantine) {
                // A folder copied in at once (an SD card's DCIM/100FLIR): scan it now.
                let mut found = Vec::new();
                walk(&path, &mut found);
                for f in found.into_iter().filter(|f| self.is_candidate(f)) {
                    pending.entry(f).or_default();
                }
            }
        }
    }

    fn scan(&self, pending: &mut HashMap<PathBuf, Candidate>) {
        let mut found = Vec::new();
        walk(&self.folder, &mut found);
        for path in found.into_iter().filter(|p| self.is_candidate(p)) {
            pending.entry(path).or_default();
        }
    }

    /// Reads, checks and hands over one file; `false` when the pipeline has closed.
    fn process(&self, path: &Path, sender: &FrameSender) -> bool {
        let bytes = match read_limited(path) {
            Ok(b) => b,
            Err(ReadError::Gone) => return true,
            Err(ReadError::Other(reason)) => {
                self.quarantine(path, &reason);
                return true;
            }
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if self.registry.contains(&sha256) {
            tracing::debug!(camera = %self.camera, file = %path.display(), "already processed");
            self.after_processed(path);
            return true;
        }
        let frames = match parse_all(&bytes) {
            Ok(f) => f,
            Err(reason) => {
                self.quarantine(path, &reason);
                return true;
            }
        };
        tracing::info!(camera = %self.camera, file = %path.display(), frames = frames.len(), sha256 = %sha256, "processing file");
        let bytes = Arc::new(bytes);
        let done = {
            let registry = Arc::clone(&self.registry);
            let sha = sha256.clone();
            let file_path = path.to_path_buf();
            let delete = self.delete_processed;
            let camera = self.camera.clone();
            Arc::new(FileDone::new(frames.len(), move || {
                if let Err(err) = registry.record(&sha, &file_path) {
                    tracing::error!(camera = %camera, file = %file_path.display(), %err,
                        "cannot record processed file: it will be processed again after a restart (same finding ids)");
                } else if delete {
                    if let Err(err) = std::fs::remove_file(&file_path) {
                        tracing::warn!(file = %file_path.display(), %err, "cannot delete processed file");
                    }
                }
            }))
        };
        for frame in frames {
            let frame_index = frame.index;
            let captured_at = frame
                .camera
                .captured_at
                .map(|t| t.0)
                .unwrap_or_else(|| file_time(path).fixed_offset());
            let source_frame = SourceFrame {
                camera: self.camera.clone(),
                seq: frame_index as u64,
                captured_at,
                source: FindingSource::Rjpeg,
                payload: FramePayload::Radiometric(RadiometricFrame {
                    saturated_max_c: frame.camera.limits.saturated_max_c,
                    params: frame.camera.params,
                    raw: frame.raw,
                }),
                file: Some(Arc::new(SourceFile {
                    path: path.to_path_buf(),
                    sha256: sha256.clone(),
                    bytes: Arc::clone(&bytes),
                    frame_index,
                    done: Arc::clone(&done),
                })),
                position: None,
            };
            if !sender.send_blocking(source_frame) {
                return false;
            }
        }
        true
    }

    fn after_processed(&self, path: &Path) {
        if self.delete_processed {
            let _ = std::fs::remove_file(path);
        }
    }

    fn quarantine(&self, path: &Path, reason: &str) {
        tracing::warn!(camera = %self.camera, file = %path.display(), reason, "corrupt file quarantined");
        let name = path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let mut target = self.quarantine.join(&name);
        // Never overwrite an earlier quarantined file of the same name.
        let mut n = 1;
        while target.exists() {
            let mut alt = name.clone();
            alt.push(format!(".{n}"));
            target = self.quarantine.join(alt);
            n += 1;
        }
        let moved = std::fs::rename(path, &target).or_else(|_| {
            // Another file system (an SD card mount): copy, then remove.
            std::fs::copy(path, &target).and_then(|_| std::fs::remove_file(path))
        });
        match moved {
            Ok(()) => {
                let mut note = target.clone().into_os_string();
                note.push(".reason.txt");
                let _ = std::fs::write(note, format!("{}\n{reason}\n", path.display()));
            }
            Err(err) => {
                tracing::error!(file = %path.display(), %err, "cannot move corrupt file to quarantine")
            }
        }
    }
}

/// A file seen and not yet processed.
#[derive(Debug, Default)]
struct Candidate {
    last: Option<(u64, SystemTime)>,
    stable_since: Option<Instant>,
    closed: bool,
}

impl Candidate {
    fn ready(&mut self, path: &Path, settle: Duration) -> bool {
        let Ok(meta) = std::fs::metadata(path) else {
            return true; // gone: process() notices and forgets it
        };
        let now = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        if self.last != Some(now) {
            self.last = Some(now);
            self.stable_since = Some(Instant::now());
            if !self.closed {
                return false;
            }
        }
        if self.closed {
            self.closed = false;
            return true;
        }
        self.stable_since.is_some_and(|t| t.elapsed() >= settle)
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

enum ReadError {
    Gone,
    Other(String),
}

fn read_limited(path: &Path) -> Result<Vec<u8>, ReadError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Gone),
        Err(e) => return Err(ReadError::Other(format!("cannot read: {e}"))),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadError::Other(format!(
            "file is {} bytes, more than the {MAX_FILE_BYTES} bytes accepted",
            meta.len()
        )));
    }
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ReadError::Gone),
        Err(e) => Err(ReadError::Other(format!("cannot read: {e}"))),
    }
}

/// Every frame of a file, or the reason the file is unusable.
fn parse_all(bytes: &[u8]) -> Result<Vec<chitti_common::flir::FlirFrame>, String> {
    let mut file =
        FlirFile::open(Cursor::new(bytes), ParseLimits::default()).map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    for frame in file.frames() {
        let frame = frame.map_err(|e| format!("frame {}: {e}", frames.len()))?;
        // Parameters the formula cannot use make every temperature meaningless.
        frame
            .converter(&Default::default())
            .map_err(|e| format!("frame {}: {e}", frames.len()))?;
        frames.push(frame);
    }
    if frames.is_empty() {
        return Err("no radiometric frames".into());
    }
    Ok(frames)
}

fn file_time(path: &Path) -> chrono::DateTime<chrono::Utc> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(chrono::DateTime::<chrono::Utc>::from)
        .unwrap_or_else(|_| chrono::Utc::now())
}
