//! A simulated radiometric camera: deterministic synthetic substation scenes.
//!
//! The scene is a bay seen from the front: a sky-to-ground gradient behind three
//! phases of the same equipment (bushing or insulator stacks with their connectors),
//! warmed by their load. Over a 20-minute cycle of scene time:
//!
//! | scene time (mod 1200 s) | what happens |
//! |---|---|
//! | 60 → 660 s | phase B's top connector heats from +0 to +75 °C above its phase (a loose joint) |
//! | 660 → 780 s | it holds at its peak |
//! | 780 → 1080 s | it cools back (repaired / load dropped) |
//! | 300 → 900 s | phase C loses its load (open circuit): it falls to ambient |
//!
//! Ambient drifts ±3 °C over an hour of scene time, and every pixel carries sensor noise
//! (`noise_c`, roughly Gaussian). The same seed gives the same counts: noise comes from a
//! counter-based generator keyed by (seed, frame number), so a dropped frame does not
//! change the ones after it. `speed` runs scene time faster than wall time.
//!
//! Temperatures are turned into raw counts with the inverse of the camera's own Planck
//! calibration ([`RawToCelsius::raw`]) through a 0.01 °C table, so analysis sees counts
//! exactly as it would from a real detector.
//!
//! The °C → counts table, the noise generator and the component classes are the
//! [`scene`] generator's, which also draws the random labelled scenes `chitti-agent
//! synth` writes for training the component detector. [`SceneKind::Components`] streams
//! the same fault cycle drawn by that generator (three bushings), for running the
//! detector on a live stream.

pub mod config;
pub use chitti_common::scene;

pub use config::{SceneKind, SimulatedSourceConfig};

use crate::health::{CameraHealth, CameraState};
use crate::shutdown::Shutdown;
use crate::sources::{FramePayload, FrameSender, Offer, RadiometricFrame, SourceFrame};
use chitti_common::finding::FindingSource;
use chitti_common::image::RawFrame;
use chitti_common::radiometry::{RadiometricParams, RawToCelsius};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use scene::{CountTable, SceneRng};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Scene length of one fault cycle, seconds.
pub const CYCLE_S: f64 = 1200.0;

/// Parameters of one simulated camera.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedCamera {
    /// Camera id.
    pub camera: String,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second (wall time).
    pub fps: f64,
    /// Noise seed.
    pub seed: u64,
    /// Scene seconds per wall second.
    pub speed: f64,
    /// Which scene.
    pub scene: SceneKind,
    /// Stop after this many frames.
    pub frames: Option<u64>,
    /// No pacing: produce as fast as the pipeline accepts, waiting instead of dropping.
    pub unpaced: bool,
    /// Radiometric parameters of the simulated camera.
    pub params: RadiometricParams,
    /// Mean ambient temperature, °C.
    pub ambient_c: f64,
    /// Sensor noise, °C (standard deviation).
    pub noise_c: f64,
}

impl SimulatedCamera {
    /// The camera a configuration describes, with the nominal radiometric parameters
    /// ([`nominal_camera_params`](crate::sources::nominal_camera_params)).
    pub fn from_config(camera: &str, c: &SimulatedSourceConfig) -> Self {
        Self {
            camera: camera.to_string(),
            width: c.width,
            height: c.height,
            fps: c.fps,
            seed: c.seed,
            speed: c.speed,
            scene: c.scene,
            frames: c.frames,
            unpaced: c.unpaced,
            params: crate::sources::nominal_camera_params(),
            ambient_c: c.ambient_c,
            noise_c: c.noise_c,
        }
    }
}

/// The scene's temperatures at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneState {
    /// Ambient air, °C.
    pub ambient_c: f64,
    /// Rise of each phase's body over ambient (A, B, C), °C.
    pub phase_rise_c: [f64; 3],
    /// Extra rise of phase B's top connector over its phase, °C.
    pub connector_rise_c: f64,
}

/// Precomputed scene geometry and the °C → counts table.
#[derive(Debug, Clone)]
pub struct Scene {
    config: SimulatedCamera,
    /// Per pixel: background offset from ambient (sky gradient), °C.
    background: Vec<f32>,
    /// Per pixel: which phase body it belongs to (0 = none, 1..=3 = A..C).
    phase: Vec<u8>,
    /// Per pixel: weight of the hot connector (0..1).
    connector: Vec<f32>,
    /// °C → counts for the camera's parameters.
    counts: CountTable,
}

/// Rise of a loaded phase over ambient, °C.
const LOADED_RISE_C: f64 = 14.0;
/// Upper saturation limit of the simulated detector, °C (the T640's).
pub const SATURATED_MAX_C: f64 = 180.0;
/// Peak rise of the failing connector over its phase, °C.
const CONNECTOR_PEAK_C: f64 = 75.0;

impl Scene {
    /// Lays out the scene for the camera's size and builds the count table.
    pub fn new(config: SimulatedCamera) -> Result<Self, String> {
        let converter = RawToCelsius::new(config.params).map_err(|e| {
            format!(
                "simulated camera {}: {}",
                config.camera,
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        let (w, h) = (config.width as usize, config.height as usize);
        let n = w * h;
        let mut background = vec![0f32; n];
        let mut phase = vec![0u8; n];
        let mut connector = vec![0f32; n];
        let bar_half_w = (w as f64 * 0.03).max(1.0);
        let top = h as f64 * 0.35;
        let bottom = h as f64 * 0.85;
        let blob_r = (w.min(h) as f64 * 0.035).max(1.5);
        let centres = [0.25, 0.5, 0.75].map(|f| w as f64 * f);
        for y in 0..h {
            // Sky at the top reads colder than air; the ground near the bottom warmer.
            let fy = y as f64 / h as f64;
            let gradient = -6.0 + 7.0 * fy;
            for x in 0..w {
                let i = y * w + x;
                background[i] = gradient as f32;
                let (xf, yf) = (x as f64 + 0.5, y as f64 + 0.5);
                for (k, cx) in centres.iter().enumerate() {
                    if (xf - cx).abs() <= bar_half_w && yf >= top && yf <= bottom {
                        phase[i] = k as u8 + 1;
                    }
                }
                let d2 = (xf - centres[1]).powi(2) + (yf - top).powi(2);
                let weight = (-d2 / (2.0 * (blob_r / 1.5).powi(2))).exp();
                if weight > 0.02 {
                    connector[i] = weight as f32;
                }
            }
        }
        let counts = CountTable::new(&converter);
        Ok(Self {
            config,
            background,
            phase,
            connector,
            counts,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SimulatedCamera {
        &self.config
    }

    /// Scene time of frame `n`, seconds.
    pub fn scene_time_s(&self, n: u64) -> f64 {
        n as f64 / self.config.fps * self.config.speed
    }

    /// The scene's temperatures at scene time `t` seconds.
    pub fn state_at(&self, t: f64) -> SceneState {
        let ambient_c =
            self.config.ambient_c + 3.0 * (2.0 * std::f64::consts::PI * t / 3600.0).sin();
        let mut state = SceneState {
            ambient_c,
            phase_rise_c: [LOADED_RISE_C; 3],
            connector_rise_c: 0.0,
        };
        if self.config.scene == SceneKind::Quiet {
            return state;
        }
        let u = t.rem_euclid(CYCLE_S);
        state.connector_rise_c = CONNECTOR_PEAK_C
            * if (60.0..660.0).contains(&u) {
                (u - 60.0) / 600.0
            } else if (660.0..780.0).contains(&u) {
                1.0
            } else if (780.0..1080.0).contains(&u) {
                1.0 - (u - 780.0) / 300.0
            } else {
                0.0
            };
        // Open circuit on phase C: the load (and its heat) goes within 30 s and returns.
        let cold = if (300.0..900.0).contains(&u) {
            ((u - 300.0) / 30.0).min(1.0).min((900.0 - u) / 30.0)
        } else {
            0.0
        };
        state.phase_rise_c[2] = LOADED_RISE_C * (1.0 - cold.clamp(0.0, 1.0));
        state
    }

    /// Frame `n` as the source hands it to analysis, stamped `captured_at`.
    pub fn source_frame(&self, n: u64, captured_at: DateTime<chrono::FixedOffset>) -> SourceFrame {
        let (raw, params) = match self.config.scene {
            SceneKind::Components => {
                let frame = self.components_frame(n);
                (frame.raw, frame.params)
            }
            _ => (self.render(n), self.config.params),
        };
        SourceFrame {
            camera: self.config.camera.clone(),
            seq: n,
            captured_at,
            source: FindingSource::Stream,
            payload: FramePayload::Radiometric(RadiometricFrame {
                raw,
                params,
                saturated_max_c: Some(SATURATED_MAX_C),
            }),
            file: None,
            position: None,
        }
    }

    /// Frame `n` of the [`SceneKind::Components`] scene, as the generator draws it: its
    /// counts, their parameters (the generator sets the reflected and atmospheric
    /// temperatures to the scene's ambient), what they read as, and the labelled
    /// bushings. Any scene kind can be drawn this way; only `components` streams it.
    pub fn components_frame(&self, n: u64) -> scene::SynthFrame {
        let s = self.state_at(self.scene_time_s(n));
        let (w, h) = (self.config.width as f32, self.config.height as f32);
        let rise = |k: usize| s.phase_rise_c[k] as f32;
        let faults = [0, 1, 2].map(|k| {
            if rise(k) < LOADED_RISE_C as f32 / 2.0 {
                scene::Fault::Cold
            } else if k == 1 && s.connector_rise_c > 0.05 {
                scene::Fault::Hot {
                    rise_c: s.connector_rise_c as f32,
                }
            } else {
                scene::Fault::None
            }
        });
        // The proportions of the detector's three-bushing test fixture (640×480:
        // anchors 160 px apart at y = 400, 200 px tall).
        let row = scene::RowSpec {
            class: scene::ComponentClass::Bushing,
            first: (w * 0.25, h * 0.833),
            spacing: w * 0.25,
            height: h * 0.417,
            rise_c: LOADED_RISE_C as f32,
            faults: faults.to_vec(),
        };
        scene::generate_rows(
            self.config.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            self.config.width,
            self.config.height,
            s.ambient_c as f32,
            &[row],
        )
        // Sizes validated by config (at least 64×48 for this scene).
        .expect("the components scene has a size the generator draws")
    }

    /// Renders frame `n` of the bar scenes (`substation`, `quiet`) as raw counts.
    pub fn render(&self, n: u64) -> RawFrame {
        let s = self.state_at(self.scene_time_s(n));
        let mut rng = SceneRng::new(self.config.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let noise = self.config.noise_c as f32;
        let rises = [
            0.0,
            s.phase_rise_c[0] as f32,
            s.phase_rise_c[1] as f32,
            s.phase_rise_c[2] as f32,
        ];
        let ambient = s.ambient_c as f32;
        let connector = s.connector_rise_c as f32;
        let counts: Vec<u16> = (0..self.background.len())
            .map(|i| {
                let w = self.connector[i];
                // The connector sits on top of phase B: it carries B's body rise where
                // it overlaps it, plus its own fault heating.
                let body = rises[usize::from(self.phase[i])].max(w * rises[2]);
                let mut c = ambient + self.background[i] + body + w * connector;
                c += noise * rng.next_gaussianish();
                self.counts.count(c)
            })
            .collect();
        RawFrame::new(self.config.width, self.config.height, counts)
            .expect("the scene has the configured shape") // sizes validated by config
    }
}

/// The pixel rectangles `[x, y, width, height]` of the three phase bodies (A, B, C) in a
/// `width`×`height` scene, exactly the pixels the scene draws as phases: regions of
/// interest that compare the phases with each other and leave sky and ground out.
pub fn phase_body_rects(width: u32, height: u32) -> [[u32; 4]; 3] {
    let (w, h) = (f64::from(width), f64::from(height));
    let half = (w * 0.03).max(1.0);
    // A pixel belongs to a body when its centre (x + 0.5, y + 0.5) lies within it.
    let y0 = (h * 0.35 - 0.5).ceil().max(0.0);
    let y1 = (h * 0.85 - 0.5).floor().min(h - 1.0);
    [0.25, 0.5, 0.75].map(|f| {
        let cx = w * f;
        let x0 = (cx - half - 0.5).ceil().max(0.0);
        let x1 = (cx + half - 0.5).floor().min(w - 1.0);
        [
            x0 as u32,
            y0 as u32,
            (x1 - x0 + 1.0) as u32,
            (y1 - y0 + 1.0) as u32,
        ]
    })
}

/// Starts the camera on its own thread.
pub fn spawn(
    scene: Scene,
    sender: FrameSender,
    stop: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = format!("sim-{}", scene.config.camera);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&scene, &sender, &stop))
}

fn run(scene: &Scene, sender: &FrameSender, stop: &Shutdown) {
    let health: &Arc<CameraHealth> = sender.health();
    health.set_state(CameraState::Streaming);
    let c = &scene.config;
    let period = Duration::from_secs_f64(1.0 / c.fps);
    let started = Instant::now();
    let started_at: DateTime<Utc> = Utc::now();
    let mut n = 0u64;
    while !stop.is_triggered() && c.frames.is_none_or(|limit| n < limit) {
        let captured_at = (started_at
            + ChronoDuration::microseconds((n as f64 / c.fps * 1e6) as i64))
        .fixed_offset();
        let frame = scene.source_frame(n, captured_at);
        if c.unpaced {
            if !sender.send_blocking(frame) {
                break;
            }
        } else {
            if sender.offer(frame) == Offer::Closed {
                break;
            }
            // Pace by deadline, not by sleeping a period: rendering time is absorbed.
            let due = started + period.mul_f64((n + 1) as f64);
            let now = Instant::now();
            if due > now && stop.sleep(due - now) {
                break;
            }
        }
        n += 1;
    }
    health.set_state(CameraState::Finished);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::nominal_camera_params;

    fn camera(scene: SceneKind) -> SimulatedCamera {
        SimulatedCamera {
            camera: "sim".into(),
            width: 160,
            height: 120,
            fps: 1.0,
            seed: 7,
            speed: 60.0,
            scene,
            frames: None,
            unpaced: true,
            params: nominal_camera_params(),
            ambient_c: 15.0,
            noise_c: 0.1,
        }
    }

    #[test]
    fn same_seed_same_counts_other_seed_other_noise() {
        let a = Scene::new(camera(SceneKind::Substation)).unwrap();
        let b = Scene::new(camera(SceneKind::Substation)).unwrap();
        assert_eq!(a.render(5), b.render(5));
        let mut other = camera(SceneKind::Substation);
        other.seed = 8;
        let c = Scene::new(other).unwrap();
        assert_ne!(a.render(5), c.render(5));
    }

    #[test]
    fn connector_heats_and_phase_c_goes_cold_on_schedule() {
        let scene = Scene::new(camera(SceneKind::Substation)).unwrap();
        let s0 = scene.state_at(0.0);
        assert_eq!(s0.connector_rise_c, 0.0);
        assert_eq!(s0.phase_rise_c, [LOADED_RISE_C; 3]);
        let peak = scene.state_at(700.0);
        assert_eq!(peak.connector_rise_c, CONNECTOR_PEAK_C);
        assert_eq!(peak.phase_rise_c[2], 0.0, "phase C is open at 700 s");
        let later = scene.state_at(CYCLE_S + 100.0);
        assert!(later.connector_rise_c < 10.0 && later.phase_rise_c[2] == LOADED_RISE_C);
        let quiet = Scene::new(camera(SceneKind::Quiet)).unwrap();
        assert_eq!(quiet.state_at(700.0).connector_rise_c, 0.0);
    }

    #[test]
    fn phase_body_rects_are_exactly_the_phase_pixels() {
        for (w, h) in [(160u32, 120u32), (320, 240), (640, 480), (97, 61)] {
            let mut c = camera(SceneKind::Substation);
            (c.width, c.height) = (w, h);
            let scene = Scene::new(c).unwrap();
            let rects = phase_body_rects(w, h);
            for y in 0..h {
                for x in 0..w {
                    let inside = rects
                        .iter()
                        .position(|r| x >= r[0] && x < r[0] + r[2] && y >= r[1] && y < r[1] + r[3]);
                    let phase = scene.phase[(y * w + x) as usize];
                    assert_eq!(
                        inside.map_or(0, |k| k as u8 + 1),
                        phase,
                        "{w}x{h} at ({x}, {y})"
                    );
                }
            }
        }
    }

    #[test]
    fn rendered_counts_read_back_as_the_scene_temperatures() {
        let scene = Scene::new(camera(SceneKind::Substation)).unwrap();
        // Frame 12 at speed 60, 1 fps: 720 s, connector at peak.
        let raw = scene.render(12);
        let conv = RawToCelsius::new(nominal_camera_params()).unwrap();
        let s = scene.state_at(720.0);
        let (w, h) = (160u32, 120u32);
        let connector_c =
            conv.celsius_or_nan(f64::from(raw.get(w / 2, (h as f64 * 0.35) as u32).unwrap()));
        // The pixel centre is half a pixel off the blob's centre: weight ≈ 0.97.
        let expected = s.ambient_c - 6.0 + 7.0 * 0.35 + LOADED_RISE_C + 0.97 * CONNECTOR_PEAK_C;
        assert!(
            (connector_c - expected).abs() < 1.0,
            "{connector_c} vs {expected}"
        );
        let sky_c = conv.celsius_or_nan(f64::from(raw.get(5, 0).unwrap()));
        assert!((sky_c - (s.ambient_c - 6.0)).abs() < 0.6, "{sky_c}");
    }

    #[test]
    fn the_components_scene_draws_three_bushings_through_the_fault_cycle_deterministically() {
        let scene = Scene::new(SimulatedCamera {
            width: 320,
            height: 240,
            ..camera(SceneKind::Components)
        })
        .unwrap();
        // speed 60: frame n is scene minute n. Minute 11 (660 s): B at its peak, C open.
        let peak = scene.components_frame(11);
        let faults: Vec<scene::Fault> = peak.components.iter().map(|c| c.fault).collect();
        assert_eq!(
            faults,
            [
                scene::Fault::None,
                scene::Fault::Hot { rise_c: 75.0 },
                scene::Fault::Cold
            ]
        );
        assert!(peak
            .components
            .iter()
            .all(|c| c.class == scene::ComponentClass::Bushing));
        let quiet = scene.components_frame(20);
        assert!(quiet
            .components
            .iter()
            .all(|c| c.fault == scene::Fault::None));
        // The stream hands analysis exactly the generator's counts and parameters.
        let frame = scene.source_frame(11, Utc::now().fixed_offset());
        let FramePayload::Radiometric(rad) = frame.payload else {
            panic!("radiometric");
        };
        assert_eq!(rad.raw, peak.raw);
        assert_eq!(rad.params, peak.params);
        assert_eq!(
            scene.components_frame(11).raw,
            peak.raw,
            "same seed, same frame"
        );
    }
}
