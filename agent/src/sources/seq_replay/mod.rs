//! Replay of a recorded FLIR sequence (`.seq`, `.csq`, or any FLIR file) at its frame
//! rate: recorded inspections analysed as if live, with tracking across frames.
//!
//! The pace comes from the frames' own capture times (the camera clock), or from the
//! camera's `FrameRate` field, or from the configured fallback, divided by `speed`.
//! Frames are read one at a time (a long `.csq` never sits in memory whole) and are
//! never dropped: the file is on disk, so the replay waits for the pipeline. A frame
//! that cannot be read ends the replay with the reason in the camera's state.

pub mod config;
pub use config::SeqReplaySourceConfig;

use crate::health::CameraState;
use crate::shutdown::Shutdown;
use crate::sources::{FramePayload, FrameSender, RadiometricFrame, SourceFrame};
use chitti_common::finding::FindingSource;
use chitti_common::flir::{FlirFile, ParseLimits};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A replay, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqReplay {
    /// Camera id.
    pub camera: String,
    /// The recording.
    pub path: PathBuf,
    /// Replay speed (2 = twice as fast as recorded).
    pub speed: f64,
    /// Frame rate when the file says nothing about time.
    pub fallback_fps: f64,
    /// Start again at the end.
    pub repeat: bool,
    /// No pacing at all (tests, batch re-analysis).
    pub unpaced: bool,
}

impl SeqReplay {
    /// Starts the replay on its own thread.
    pub fn spawn(
        self,
        sender: FrameSender,
        stop: Shutdown,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("replay-{}", self.camera))
            .spawn(move || {
                let health = sender.health().clone();
                health.set_state(CameraState::Streaming);
                let mut seq = 0u64;
                loop {
                    match self.play_once(&sender, &stop, &mut seq) {
                        Ok(true) if self.repeat && !stop.is_triggered() => continue,
                        Ok(_) => {
                            health.set_state(CameraState::Finished);
                            return;
                        }
                        Err(reason) => {
                            tracing::error!(camera = %self.camera, file = %self.path.display(), %reason, "replay stopped");
                            health.set_state(CameraState::Failed(reason));
                            return;
                        }
                    }
                }
            })
    }

    /// Plays the file once; `Ok(true)` when it reached the end.
    fn play_once(
        &self,
        sender: &FrameSender,
        stop: &Shutdown,
        seq: &mut u64,
    ) -> Result<bool, String> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        let mut flir = FlirFile::open(std::io::BufReader::new(file), ParseLimits::default())
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut first_at = None;
        let mut elapsed_recorded = Duration::ZERO;
        for (index, frame) in flir.frames().enumerate() {
            if stop.is_triggered() {
                return Ok(false);
            }
            let frame = frame.map_err(|e| format!("frame {index}: {e}"))?;
            let captured = frame.camera.captured_at.map(|t| t.0);
            // Where this frame sits on the recording's own time line.
            elapsed_recorded = match (first_at, captured) {
                (None, Some(t)) => {
                    first_at = Some(t);
                    Duration::ZERO
                }
                (Some(first), Some(t)) => (t - first).to_std().unwrap_or(elapsed_recorded),
                _ => {
                    let fps = frame
                        .camera
                        .frame_rate_hz
                        .filter(|&r| r > 0)
                        .map_or(self.fallback_fps, f64::from);
                    Duration::from_secs_f64(index as f64 / fps)
                }
            };
            if !self.unpaced {
                let due = started + elapsed_recorded.div_f64(self.speed);
                let now = Instant::now();
                if due > now && stop.sleep(due - now) {
                    return Ok(false);
                }
            }
            let source_frame = SourceFrame {
                camera: self.camera.clone(),
                seq: *seq,
                captured_at: captured.unwrap_or_else(|| chrono::Utc::now().fixed_offset()),
                source: FindingSource::Rjpeg,
                payload: FramePayload::Radiometric(RadiometricFrame {
                    saturated_max_c: frame.camera.limits.saturated_max_c,
                    params: frame.camera.params,
                    raw: frame.raw,
                }),
                // Tracked like a stream; each finding's evidence is its frame (a
                // radiometric PNG), not the whole recording.
                file: None,
                position: None,
            };
            if !sender.send_blocking(source_frame) {
                return Ok(false);
            }
            *seq += 1;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::CameraHealth;
    use std::sync::Arc;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/flir")
            .join(name)
    }

    #[test]
    fn every_frame_of_a_sequence_is_replayed_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let health = Arc::new(CameraHealth::new("replay"));
        let sender = FrameSender::new(tx, Arc::clone(&health));
        let replay = SeqReplay {
            camera: "replay".into(),
            path: fixture("flir_t1030sc_8frames_jpegls.csq"),
            speed: 1.0,
            fallback_fps: 30.0,
            repeat: false,
            unpaced: true,
        };
        let handle = replay.spawn(sender, Shutdown::new()).unwrap();
        let mut seqs = Vec::new();
        while let Some(frame) = rx.blocking_recv() {
            assert!(frame.file.is_none());
            let FramePayload::Radiometric(r) = &frame.payload else {
                panic!("radiometric")
            };
            assert_eq!((r.raw.width(), r.raw.height()), (1024, 768));
            seqs.push(frame.seq);
        }
        handle.join().unwrap();
        assert_eq!(seqs, (0..8).collect::<Vec<_>>());
        assert_eq!(health.state(), CameraState::Finished);
        assert_eq!(health.frames(), 8);
    }

    #[test]
    fn an_unreadable_recording_fails_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("broken.seq");
        std::fs::write(&bad, b"FFF\0 not really").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let health = Arc::new(CameraHealth::new("replay"));
        let replay = SeqReplay {
            camera: "replay".into(),
            path: bad,
            speed: 1.0,
            fallback_fps: 30.0,
            repeat: true,
            unpaced: true,
        };
        let handle = replay
            .spawn(FrameSender::new(tx, Arc::clone(&health)), Shutdown::new())
            .unwrap();
        assert!(rx.blocking_recv().is_none());
        handle.join().unwrap();
        assert!(
            matches!(health.state(), CameraState::Failed(ref why) if !why.is_empty()),
            "{:?}",
            health.state()
        );
    }
}
