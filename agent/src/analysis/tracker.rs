//! Following hotspots across the frames of a stream, so that a hotspot seen 30 times a
//! second is one finding episode: raised once, updated when its severity or peak
//! changes materially, cleared when it has been gone for a while.
//!
//! - **Association**: a region belongs to a track of the same kind (hot or cool) and the
//!   same severity table (a hotspot and the phase comparison of the component around it
//!   are two episodes) when
//!   their hottest (coldest) pixels are within `match_distance_px`, or their boxes,
//!   grown by that distance, overlap; the nearest track wins, hottest regions first.
//! - **Raise** after `raise_after_frames` frames in a row with a reportable severity
//!   (one noisy frame does not raise a finding).
//! - **Update** when the level changes (after hysteresis) or the peak rises
//!   `update_delta_c` above the last reported one.
//! - **Clear** after `clear_after_frames` frames in a row without it.
//! - **Hysteresis**: a track's level is assessed with
//!   [`SeverityTable::assess_with_hysteresis`] against its previous level, so a peak
//!   wandering over a boundary does not flap between levels — with the region's own table
//!   and reference (a phase comparison's is its sibling), and keeping its `qualitative`
//!   flag.

use super::config::TrackingConfig;
use chitti_common::analysis::AssessedHotspot;
use chitti_common::finding::{TrackState, TrackSummary};
use chitti_common::geometry::PixelRect;
use chitti_common::severity::{
    ReferenceTemperature, SeverityAssessment, SeverityInputs, SeverityTable,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A change in a tracked episode that becomes a finding.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackEvent {
    /// The episode at this event.
    pub track: TrackSummary,
    /// The region and its (hysteresis-held) severity at this event; for a clear, the
    /// last time it was seen.
    pub observation: AssessedHotspot,
}

#[derive(Debug, Clone)]
struct Track {
    id: Uuid,
    cool: bool,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    frames: u32,
    consecutive: u32,
    missing: u32,
    raised: bool,
    reported_level: u8,
    reported_peak_c: f64,
    latest: AssessedHotspot,
}

impl Track {
    fn summary(&self, state: TrackState) -> TrackSummary {
        TrackSummary {
            id: self.id,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            frames: self.frames,
            state,
        }
    }

    /// The pixel that identifies the region: hottest for hot tracks, coldest for cool.
    fn anchor(&self) -> (u32, u32) {
        anchor(&self.latest, self.cool)
    }
}

fn anchor(a: &AssessedHotspot, cool: bool) -> (u32, u32) {
    let p = if cool {
        a.hotspot.min_at
    } else {
        a.hotspot.max_at
    };
    (p.x, p.y)
}

fn peak(a: &AssessedHotspot, cool: bool) -> f64 {
    if cool {
        -a.hotspot.min_c
    } else {
        a.hotspot.max_c
    }
}

fn grown_overlap(a: &PixelRect, b: &PixelRect, margin: u32) -> bool {
    let (ax0, ay0) = (a.x.saturating_sub(margin), a.y.saturating_sub(margin));
    let (ax1, ay1) = (a.x + a.w + margin, a.y + a.h + margin);
    ax0 < b.x + b.w && b.x < ax1 && ay0 < b.y + b.h && b.y < ay1
}

/// Tracks of one camera position (a fixed camera, or one preset of a patrol).
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackingConfig,
    tracks: Vec<Track>,
}

impl Tracker {
    /// A tracker with no tracks.
    pub fn new(config: TrackingConfig) -> Self {
        Self {
            config,
            tracks: Vec::new(),
        }
    }

    /// Tracks currently followed (raised or not).
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Feeds one frame's regions (hot ones, cool exceptions and phase comparisons, each
    /// assessed without hysteresis) and returns the episodes raised, updated or cleared by
    /// it. `tables` are the tables the regions may have been assessed with (a region whose
    /// table is not among them is not held by hysteresis); `reference` is the frame's, for
    /// regions whose assessment recorded none.
    pub fn observe(
        &mut self,
        observed: Vec<AssessedHotspot>,
        tables: &[&SeverityTable],
        reference: &ReferenceTemperature,
        at: DateTime<Utc>,
    ) -> Vec<TrackEvent> {
        let cfg = &self.config;
        let mut events = Vec::new();
        let mut matched = vec![false; self.tracks.len()];
        let limit = u64::from(cfg.match_distance_px).pow(2);
        for mut obs in observed {
            let cool = obs.severity.cool_exception;
            let (ox, oy) = anchor(&obs, cool);
            let candidate = self
                .tracks
                .iter()
                .enumerate()
                .filter(|(i, t)| {
                    !matched[*i] && t.cool == cool && t.latest.severity.table == obs.severity.table
                })
                .filter_map(|(i, t)| {
                    let (tx, ty) = t.anchor();
                    let d2 = u64::from(tx.abs_diff(ox)).pow(2) + u64::from(ty.abs_diff(oy)).pow(2);
                    let near = d2 <= limit
                        || grown_overlap(
                            &t.latest.hotspot.bbox,
                            &obs.hotspot.bbox,
                            cfg.match_distance_px,
                        );
                    near.then_some((i, d2))
                })
                .min_by_key(|&(_, d2)| d2)
                .map(|(i, _)| i);
            match candidate {
                Some(i) => {
                    matched[i] = true;
                    let track = &mut self.tracks[i];
                    let table = tables.iter().find(|t| t.id == obs.severity.table);
                    if let (false, Some(table)) = (cool, table) {
                        // Damp level changes at the boundaries with the track's level.
                        let qualitative = obs.severity.qualitative;
                        obs.severity = table.assess_with_hysteresis(
                            &SeverityInputs {
                                max_c: obs.hotspot.max_c,
                                reference: Some(
                                    assessed_reference(&obs.severity)
                                        .unwrap_or_else(|| reference.clone()),
                                ),
                            },
                            track.latest.severity.level,
                            cfg.hysteresis_c,
                        );
                        obs.severity.qualitative = qualitative;
                    }
                    if !obs.severity.is_reportable() {
                        // Still segmented but below every level: counts as absent.
                        track.consecutive = 0;
                        track.missing += 1;
                        continue;
                    }
                    track.latest = obs;
                    track.last_seen = at;
                    track.frames += 1;
                    track.consecutive += 1;
                    track.missing = 0;
                }
                None if obs.severity.is_reportable() => {
                    self.tracks.push(Track {
                        id: Uuid::now_v7(),
                        cool,
                        first_seen: at,
                        last_seen: at,
                        frames: 1,
                        consecutive: 1,
                        missing: 0,
                        raised: false,
                        reported_level: 0,
                        reported_peak_c: f64::NEG_INFINITY,
                        latest: obs,
                    });
                    matched.push(true);
                }
                None => {}
            }
        }
        for (i, track) in self.tracks.iter_mut().enumerate() {
            if !matched[i] {
                track.consecutive = 0;
                track.missing += 1;
                continue;
            }
            if track.missing > 0 {
                continue; // matched but below every level this frame
            }
            let level = track.latest.severity.level;
            let peak_now = peak(&track.latest, track.cool);
            let state = if !track.raised {
                (track.consecutive >= cfg.raise_after_frames).then_some(TrackState::Raised)
            } else if level != track.reported_level
                || peak_now >= track.reported_peak_c + cfg.update_delta_c
            {
                Some(TrackState::Updated)
            } else {
                None
            };
            if let Some(state) = state {
                track.raised = true;
                track.reported_level = level;
                track.reported_peak_c = peak_now;
                events.push(TrackEvent {
                    track: track.summary(state),
                    observation: track.latest.clone(),
                });
            }
        }
        let clear_after = cfg.clear_after_frames;
        self.tracks.retain(|track| {
            if track.missing < clear_after {
                return true;
            }
            if track.raised {
                events.push(TrackEvent {
                    track: track.summary(TrackState::Cleared),
                    observation: track.latest.clone(),
                });
            }
            false
        });
        events
    }
}

/// The reference an assessment was made against, as it recorded it.
fn assessed_reference(severity: &SeverityAssessment) -> Option<ReferenceTemperature> {
    let i = &severity.inputs;
    Some(ReferenceTemperature {
        celsius: i.reference_c?,
        kind: i.reference_kind?,
        source: i.reference_source.clone()?,
    })
}

/// Findings of a still image (a file): every reportable region is its own episode,
/// raised at once.
pub fn still_events(observed: Vec<AssessedHotspot>, at: DateTime<Utc>) -> Vec<TrackEvent> {
    observed
        .into_iter()
        .filter(|o| o.severity.is_reportable())
        .map(|observation| TrackEvent {
            track: TrackSummary {
                id: Uuid::now_v7(),
                first_seen: at,
                last_seen: at,
                frames: 1,
                state: TrackState::Raised,
            },
            observation,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chitti_common::geometry::PixelPoint;
    use chitti_common::hotspot::Hotspot;
    use chitti_common::severity::SeverityCatalog;

    fn config() -> TrackingConfig {
        TrackingConfig {
            raise_after_frames: 3,
            clear_after_frames: 2,
            update_delta_c: 5.0,
            hysteresis_c: 2.0,
            match_distance_px: 10,
        }
    }

    fn region(x: u32, y: u32, max_c: f64, table: &SeverityTable) -> AssessedHotspot {
        let hotspot = Hotspot {
            bbox: PixelRect {
                x: x - 2,
                y: y - 2,
                w: 5,
                h: 5,
            },
            area_px: 25,
            max_c,
            max_at: PixelPoint { x, y },
            mean_c: max_c - 3.0,
            min_c: max_c - 6.0,
            min_at: PixelPoint { x: x - 2, y: y - 2 },
        };
        let severity = table.assess(&SeverityInputs {
            max_c,
            reference: None,
        });
        AssessedHotspot { hotspot, severity }
    }

    struct Run {
        tracker: Tracker,
        table: SeverityTable,
        frame: i64,
    }

    impl Run {
        fn new() -> Self {
            Self {
                tracker: Tracker::new(config()),
                table: SeverityCatalog::builtin()
                    .get("utility-absolute")
                    .unwrap()
                    .clone(),
                frame: 0,
            }
        }
        /// One frame with regions at (x, y, °C); returns (state, level, max °C) per event.
        fn step(&mut self, regions: &[(u32, u32, f64)]) -> Vec<(TrackState, u8, f64)> {
            self.frame += 1;
            let obs = regions
                .iter()
                .map(|&(x, y, c)| region(x, y, c, &self.table))
                .collect();
            let reference = ReferenceTemperature::ambient(20.0, "test");
            let at = DateTime::from_timestamp(1_800_000_000 + self.frame, 0).unwrap();
            self.tracker
                .observe(obs, &[&self.table], &reference, at)
                .into_iter()
                .map(|e| {
                    (
                        e.track.state,
                        e.observation.severity.level,
                        e.observation.hotspot.max_c,
                    )
                })
                .collect()
        }
    }

    #[test]
    fn raised_after_n_frames_then_silent_while_steady() {
        let mut run = Run::new();
        assert!(run.step(&[(50, 50, 40.0)]).is_empty());
        assert!(run.step(&[(51, 50, 40.5)]).is_empty());
        assert_eq!(
            run.step(&[(52, 51, 40.2)]),
            vec![(TrackState::Raised, 1, 40.2)]
        );
        for _ in 0..10 {
            assert!(run.step(&[(52, 51, 41.0)]).is_empty());
        }
    }

    #[test]
    fn a_single_noisy_frame_raises_nothing() {
        let mut run = Run::new();
        assert!(run.step(&[(50, 50, 40.0)]).is_empty());
        assert!(run.step(&[]).is_empty());
        assert!(run.step(&[(50, 50, 40.0)]).is_empty());
        assert!(run.step(&[]).is_empty());
        assert!(run.step(&[]).is_empty());
        assert_eq!(
            run.tracker.track_count(),
            0,
            "never raised, silently dropped"
        );
    }

    #[test]
    fn updated_on_level_change_and_on_peak_rise_cleared_when_gone() {
        let mut run = Run::new();
        for _ in 0..3 {
            run.step(&[(50, 50, 40.0)]);
        }
        // Peak +5 °C within level 1: update.
        assert_eq!(
            run.step(&[(50, 50, 45.0)]),
            vec![(TrackState::Updated, 1, 45.0)]
        );
        // Level 2 at 54 °C.
        assert_eq!(
            run.step(&[(50, 50, 55.0)]),
            vec![(TrackState::Updated, 2, 55.0)]
        );
        // One frame missing does not clear (clear_after = 2).
        assert!(run.step(&[]).is_empty());
        assert!(run.step(&[(50, 50, 55.5)]).is_empty());
        assert!(run.step(&[]).is_empty());
        let cleared = run.step(&[]);
        assert_eq!(cleared, vec![(TrackState::Cleared, 2, 55.5)]);
        assert_eq!(run.tracker.track_count(), 0);
    }

    #[test]
    fn hysteresis_holds_a_level_on_its_boundary() {
        let mut run = Run::new();
        for _ in 0..3 {
            run.step(&[(50, 50, 54.5)]);
        }
        // 53 °C is below the 54 °C bound but within the 2 °C band: level 2 holds.
        assert!(run.step(&[(50, 50, 53.0)]).is_empty());
        assert!(run.step(&[(50, 50, 54.2)]).is_empty());
        // 51.9 °C is below the band: level 1.
        assert_eq!(
            run.step(&[(50, 50, 51.9)]),
            vec![(TrackState::Updated, 1, 51.9)]
        );
    }

    #[test]
    fn separate_regions_are_separate_episodes() {
        let mut run = Run::new();
        for _ in 0..2 {
            run.step(&[(20, 20, 60.0), (200, 100, 40.0)]);
        }
        let events = run.step(&[(200, 101, 40.0), (21, 20, 60.0)]);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.0 == TrackState::Raised));
        assert_eq!(run.tracker.track_count(), 2);
    }

    #[test]
    fn stills_raise_every_reportable_region() {
        let table = SeverityCatalog::builtin()
            .get("utility-absolute")
            .unwrap()
            .clone();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let events = still_events(
            vec![region(10, 10, 80.0, &table), region(40, 40, 20.0, &table)],
            at,
        );
        assert_eq!(events.len(), 1, "20 °C is below every level");
        assert_eq!(events[0].track.state, TrackState::Raised);
        assert_eq!(events[0].observation.severity.level, 3);
    }
}
