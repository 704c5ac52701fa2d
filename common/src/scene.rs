//! The scene generator: random, labelled radiometric substation scenes, deterministic
//! from a seed. One generator for two users: the `simulated` camera takes its noise
//! generator, its °C → counts table and its class list from here, and `chitti-agent
//! synth` writes the training data of the component detector with it (see
//! `models/README.md`).
//!
//! A frame is drawn in °C on a [`ThermalCanvas`], then turned into raw counts through
//! the inverse of the camera's own Planck calibration ([`CountTable`]), exactly as the
//! simulated camera does, so the detector trains on what the runtime will see.
//!
//! What a frame holds (every choice drawn from the frame's own generator):
//! - **background**: a sky gradient (clear sky reads far colder than air), a horizon,
//!   warmer ground, broad low-contrast blotches;
//! - **components** of the six [`ComponentClass`]es, drawn as implicit shapes in their
//!   own coordinates (ribbed bushings and insulators, clamps on their conductors,
//!   disconnector blades on two posts, breaker tanks, CT/PT heads on columns) at random
//!   positions, scales and small tilts; mostly in **three-phase rows** of one class
//!   with a common load rise, shrinking or growing along the row (perspective);
//! - **faults**: a hot joint on one phase (+5 … +80 °C, where that class heats: a
//!   bushing's terminal, a disconnector's jaw …) or a cold phase (no load: ambient);
//! - **distractors**, never labelled: conductors between phases, steel gantry beams
//!   reflecting the sky, hot specks (lamps, birds, sun glints), warm walls; a
//!   foreground pole that **partly occludes** components;
//! - **radiometry**: ambient −15 … 40 °C, per-component emissivity against the camera's
//!   setting, reflected temperature, distance;
//! - **sensor**: optics blur, per-column fixed-pattern offsets, noise.
//!
//! Labels are the tight boxes of the pixels each component still owns after
//! occlusion; a component less than [`MIN_VISIBLE`] visible (or cut by the frame edge
//! to less than that) is not labelled and not counted.

use crate::image::{RawFrame, TemperatureImage};
use crate::radiometry::{CelsiusLut, RadiometricParams, RawToCelsius};

/// Version of the generator; bump it when the same seed would draw a different frame.
pub const GENERATOR_VERSION: u32 = 1;

/// The component classes, in class-id order (the detector's output order).
pub const CLASS_NAMES: [&str; 6] = [
    "bushing",
    "clamp",
    "insulator",
    "disconnector",
    "breaker",
    "ct_pt",
];

/// Least visible share of a component's pixels for it to be labelled.
pub const MIN_VISIBLE: f32 = 0.45;

/// A kind of substation component the detector finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentClass {
    /// A transformer or wall bushing (ribbed porcelain with a terminal on top).
    Bushing,
    /// A clamp or connector on a conductor.
    Clamp,
    /// A post or suspension insulator (stack of sheds).
    Insulator,
    /// A disconnector: a blade between two posts.
    Disconnector,
    /// A circuit breaker tank.
    Breaker,
    /// A current or voltage (potential) instrument transformer.
    CtPt,
}

impl ComponentClass {
    /// Every class, in class-id order.
    pub const ALL: [ComponentClass; 6] = [
        Self::Bushing,
        Self::Clamp,
        Self::Insulator,
        Self::Disconnector,
        Self::Breaker,
        Self::CtPt,
    ];

    /// The class id (index into [`CLASS_NAMES`]).
    pub fn id(self) -> usize {
        self as usize
    }

    /// The class name.
    pub fn name(self) -> &'static str {
        CLASS_NAMES[self.id()]
    }
}

/// SplitMix64: tiny, fast and the same on every platform and version (a seed must
/// draw the same frame when a dependency changes).
#[derive(Debug, Clone)]
pub struct SceneRng(u64);

impl SceneRng {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The generator of item `index` of stream `seed`: independent of every other item,
    /// so frames can be drawn in any order.
    pub fn for_item(seed: u64, index: u64) -> Self {
        let mut mix = Self(seed ^ 0x5EED_5CE7_E000_0001);
        let a = mix.next_u64();
        Self(a ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// Sum of four uniforms, scaled to unit variance: close enough to Gaussian for
    /// sensor noise, and cheap.
    pub fn next_gaussianish(&mut self) -> f32 {
        let r = self.next_u64();
        let sum: u32 = (0..4).map(|k| ((r >> (16 * k)) & 0xFFFF) as u32).sum();
        // Mean 2·65535, variance 4·65536²/12 ⇒ σ = 65536/√3.
        ((sum as f32 - 131_070.0) / 37_837.0).clamp(-4.0, 4.0)
    }
}

/// °C → raw counts for one parameter set, through a 0.01 °C table of the inverse
/// Planck calibration ([`RawToCelsius::raw`]).
#[derive(Debug, Clone)]
pub struct CountTable {
    counts: Vec<u16>,
}

/// Coldest temperature the table holds, °C.
pub const TABLE_MIN_C: f64 = -60.0;
/// Hottest temperature the table holds, °C.
pub const TABLE_MAX_C: f64 = 250.0;
/// Table step, °C.
pub const TABLE_STEP_C: f64 = 0.01;

impl CountTable {
    /// The table of `converter`.
    pub fn new(converter: &RawToCelsius) -> Self {
        let steps = ((TABLE_MAX_C - TABLE_MIN_C) / TABLE_STEP_C) as usize + 1;
        let counts = (0..steps)
            .map(|s| {
                let c = TABLE_MIN_C + s as f64 * TABLE_STEP_C;
                converter.raw(c).round().clamp(0.0, 65535.0) as u16
            })
            .collect();
        Self { counts }
    }

    /// The counts of an object at `celsius` (clamped to the table's range).
    pub fn count(&self, celsius: f32) -> u16 {
        let step = ((f64::from(celsius) - TABLE_MIN_C) / TABLE_STEP_C).round();
        self.counts[(step.max(0.0) as usize).min(self.counts.len() - 1)]
    }
}

/// A °C image being drawn, with the component that owns each pixel.
#[derive(Debug, Clone)]
pub struct ThermalCanvas {
    width: usize,
    height: usize,
    celsius: Vec<f32>,
    /// 0 = background or distractor, k = component k − 1.
    owner: Vec<u16>,
}

impl ThermalCanvas {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            celsius: vec![0.0; width * height],
            owner: vec![0; width * height],
        }
    }

    /// Paints an implicit shape: `field(u, v)` gives the °C of local point (u, v) or
    /// `None` outside the shape. Local coordinates: `u` across, `v` up from the anchor
    /// (`x`, `y` in frame pixels), the shape turned by `tilt` radians and scaled by
    /// nothing (fields are in pixels). `reach` bounds |u| and `v` (−reach.2 ..= reach.1).
    /// Returns the number of pixels painted.
    fn paint(
        &mut self,
        anchor: (f32, f32),
        tilt: f32,
        reach: (f32, f32, f32),
        owner: u16,
        field: &dyn Fn(f32, f32) -> Option<f32>,
    ) -> u32 {
        let (ax, ay) = anchor;
        let (half_u, v_up, v_down) = reach;
        let r = half_u.hypot(v_up.max(v_down)) + 1.0;
        let x0 = (ax - r).floor().max(0.0) as usize;
        let x1 = ((ax + r).ceil() as isize).min(self.width as isize - 1);
        let y0 = (ay - r).floor().max(0.0) as usize;
        let y1 = ((ay + r).ceil() as isize).min(self.height as isize - 1);
        if x1 < 0 || y1 < 0 {
            return 0;
        }
        let (s, c) = tilt.sin_cos();
        let mut painted = 0;
        for y in y0..=y1 as usize {
            for x in x0..=x1 as usize {
                let dx = x as f32 + 0.5 - ax;
                let dy = ay - (y as f32 + 0.5);
                // Inverse rotation into the shape's frame (v points up the image).
                let u = dx * c + dy * s;
                let v = -dx * s + dy * c;
                if u.abs() > half_u || v > v_up || v < -v_down {
                    continue;
                }
                if let Some(t) = field(u, v) {
                    let i = y * self.width + x;
                    self.celsius[i] = t;
                    self.owner[i] = owner;
                    painted += 1;
                }
            }
        }
        painted
    }

    /// A straight line of `width` pixels at `celsius`, unowned (a conductor or beam).
    fn line(&mut self, from: (f32, f32), to: (f32, f32), width: f32, celsius: f32) {
        let (dx, dy) = (to.0 - from.0, to.1 - from.1);
        let len = dx.hypot(dy).max(1e-3);
        let mid = ((from.0 + to.0) / 2.0, (from.1 + to.1) / 2.0);
        // The line's direction is its local v axis.
        let tilt = dx.atan2(-dy);
        self.paint(
            mid,
            tilt,
            (width / 2.0, len / 2.0, len / 2.0),
            0,
            &|_, _| Some(celsius),
        );
    }

    /// A hot or cold blob blended over whatever is there, unowned.
    fn blob(&mut self, centre: (f32, f32), sigma: f32, rise_c: f32) {
        let r = sigma * 3.0;
        let x0 = (centre.0 - r).floor().max(0.0) as usize;
        let y0 = (centre.1 - r).floor().max(0.0) as usize;
        let x1 = ((centre.0 + r).ceil() as usize).min(self.width.saturating_sub(1));
        let y1 = ((centre.1 + r).ceil() as usize).min(self.height.saturating_sub(1));
        for y in y0..=y1 {
            for x in x0..=x1 {
                let d2 = (x as f32 + 0.5 - centre.0).powi(2) + (y as f32 + 0.5 - centre.1).powi(2);
                let w = (-d2 / (2.0 * sigma * sigma)).exp();
                if w > 0.05 {
                    self.celsius[y * self.width + x] += rise_c * w;
                }
            }
        }
    }
}

/// What is wrong with a component, if anything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Healthy: it carries its row's load rise.
    None,
    /// A hot joint: this much above the component's body at its hot spot, °C.
    Hot {
        /// Rise over the body, °C.
        rise_c: f32,
    },
    /// No load (an open phase): the component sits at ambient.
    Cold,
}

/// One labelled component of a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneComponent {
    /// Its class.
    pub class: ComponentClass,
    /// Tight box of the pixels it owns, `[x0, y0, x1, y1]` in frame pixels (x1, y1
    /// exclusive).
    pub bbox: [u32; 4],
    /// Its row (three-phase group) within the frame, and its position in the row.
    pub row: usize,
    /// Position in the row (0 = leftmost phase).
    pub phase: usize,
    /// How many components its row has.
    pub row_len: usize,
    /// Its fault.
    pub fault: Fault,
    /// Apparent body temperature (before any fault), °C.
    pub body_c: f32,
    /// Where its hot spot is, frame pixels.
    pub hot_spot: (f32, f32),
    /// Pixels it owns in the final frame.
    pub visible_px: u32,
}

/// A generated frame: its counts, what they read as, and the labels.
#[derive(Debug, Clone)]
pub struct SynthFrame {
    /// The camera parameters the counts were made with.
    pub params: RadiometricParams,
    /// Raw counts, as a camera would deliver them.
    pub raw: RawFrame,
    /// The counts read back through the parameters (what analysis and the detector see).
    pub temperature: TemperatureImage,
    /// Ambient air, °C.
    pub ambient_c: f32,
    /// The labelled components.
    pub components: Vec<SceneComponent>,
}

/// Why a frame could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// Frame size outside what the generator draws.
    #[error("frame size {width}x{height} is outside 64x48 ..= 4096x4096")]
    Size {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// The drawn camera parameters were rejected (a bug: they are drawn in range).
    #[error("camera parameters: {0}")]
    Params(String),
}

/// How one component is drawn: its shape, size and temperatures.
#[derive(Debug, Clone, Copy)]
struct Part {
    class: ComponentClass,
    /// Overall height (along v), pixels.
    height: f32,
    /// Overall width (along u), pixels.
    width: f32,
    /// Variant of the shape (0..4), for per-class variety.
    variant: u32,
    /// Apparent body °C.
    body_c: f32,
    /// Apparent fault rise at the hot spot, °C (0 when healthy).
    hot_c: f32,
    /// Number of sheds / ribs where the class has them.
    sheds: u32,
}

impl Part {
    /// Half-width, height above the anchor and depth below it.
    fn reach(&self) -> (f32, f32, f32) {
        (self.width / 2.0 + 1.0, self.height + 1.0, 1.0)
    }

    /// Local point of the hot spot (u, v).
    fn hot_spot(&self) -> (f32, f32) {
        let (w, h) = (self.width, self.height);
        match self.class {
            ComponentClass::Bushing => (0.0, h * 0.95),
            ComponentClass::Clamp => (0.0, h * 0.5),
            ComponentClass::Insulator => (0.0, h * 0.9),
            ComponentClass::Disconnector => {
                let side = if self.variant % 2 == 0 { 1.0 } else { -1.0 };
                (side * w * 0.42, h * 0.93)
            }
            ComponentClass::Breaker => (-w * 0.25, h * 0.95),
            ComponentClass::CtPt => (
                0.0,
                if self.variant % 2 == 0 {
                    h * 0.85
                } else {
                    h * 0.25
                },
            ),
        }
    }

    /// The hot spot's spread, pixels.
    fn hot_sigma(&self) -> f32 {
        match self.class {
            ComponentClass::Clamp => self.width.min(self.height) * 0.3,
            _ => (self.width.min(self.height) * 0.18).max(1.5),
        }
    }

    /// °C at local (u, v), or `None` outside the shape.
    fn field(&self, u: f32, v: f32) -> Option<f32> {
        let base = self.shape(u, v)?;
        let (hu, hv) = self.hot_spot();
        let s = self.hot_sigma();
        let d2 = (u - hu).powi(2) + (v - hv).powi(2);
        Some(base + self.hot_c * (-d2 / (2.0 * s * s)).exp())
    }

    /// The unfaulted shape's °C at (u, v).
    fn shape(&self, u: f32, v: f32) -> Option<f32> {
        let (w, h) = (self.width, self.height);
        let au = u.abs();
        let b = self.body_c;
        if v < 0.0 || v > h {
            return None;
        }
        // Position along a ribbed stack: 0 at a shed's rim, 1 between sheds.
        let ribs = |v: f32, n: u32| {
            let phase = (v * n as f32).fract();
            (phase - 0.5).abs() * 2.0
        };
        match self.class {
            ComponentClass::Bushing => {
                // Flange at the bottom, tapered ribbed body, terminal stud on top.
                let fv = v / h;
                if fv < 0.08 {
                    return (au <= w * 0.5).then_some(b - 0.5);
                }
                if fv > 0.88 {
                    return (au <= w * 0.14).then_some(b + 1.0);
                }
                let core = w * (0.32 - 0.12 * fv);
                let rim = core + w * 0.16 * (1.0 - ribs((fv - 0.08) / 0.8, self.sheds));
                if au <= core {
                    Some(b + 1.5 * fv)
                } else if au <= rim {
                    // Sheds are thin and shed heat: a little cooler than the core.
                    Some(b - 1.2)
                } else {
                    None
                }
            }
            ComponentClass::Clamp => {
                // A bolted body with two bolt heads on the top edge.
                let r = h * 0.25;
                let dx = (au - (w * 0.5 - r)).max(0.0);
                let dy = ((v - h * 0.5).abs() - (h * 0.5 - r)).max(0.0);
                let body = dx.hypot(dy) <= r && v <= h * 0.82;
                let bolt = v > h * 0.82 && ((au - w * 0.25).abs() <= w * 0.09);
                (body || bolt).then_some(b + if bolt { 0.5 } else { 0.0 })
            }
            ComponentClass::Insulator => {
                let fv = v / h;
                if !(0.04..=0.94).contains(&fv) {
                    return (au <= w * 0.22).then_some(b + 0.3);
                }
                let core = w * 0.16;
                let rim = core + w * 0.34 * (1.0 - ribs(fv, self.sheds)).powf(0.6);
                (au <= rim).then_some(if au <= core { b + 0.3 } else { b })
            }
            ComponentClass::Disconnector => {
                // Two posts and the blade across their tops (closed), or the blade
                // swung up from one hinge (open: variant 2, 3).
                let post_half = w * 0.045;
                let post_u = w * 0.42;
                let blade_v = h * 0.9;
                let in_post = (au - post_u).abs()
                    <= post_half * (1.0 + 0.6 * (1.0 - ribs(v / h, self.sheds)));
                let open = self.variant >= 2;
                let in_blade = if open {
                    let side = if self.variant % 2 == 0 { -1.0 } else { 1.0 };
                    let (hu, hv) = (side * post_u, blade_v);
                    // A blade raised 55° from the hinge post.
                    let (du, dv) = (u - hu, v - hv);
                    let ang = 55f32.to_radians();
                    let along = -side * du * ang.cos() + dv * ang.sin();
                    let across = (side * du * ang.sin() + dv * ang.cos()).abs();
                    (0.0..=w * 0.84 * 0.55).contains(&along) && across <= h * 0.045
                } else {
                    au <= post_u + post_half && (v - blade_v).abs() <= h * 0.05
                };
                let cap = (au - post_u).abs() <= post_half * 2.2 && (v - blade_v).abs() <= h * 0.07;
                if in_blade || cap {
                    Some(b)
                } else if in_post && v < blade_v {
                    Some(b - 0.6 * (b - self.post_c()))
                } else {
                    None
                }
            }
            ComponentClass::Breaker => {
                // A tank with rounded top corners, cooling ribs, two short terminals.
                let fv = v / h;
                let tank_top = h * 0.8;
                if v <= tank_top {
                    let r = w * 0.12;
                    let dx = (au - (w * 0.5 - r)).max(0.0);
                    let dy = (v - (tank_top - r)).max(0.0);
                    if dx.hypot(dy) > r {
                        return None;
                    }
                    let rib = if self.variant % 2 == 0 && (fv * 14.0).fract() < 0.25 {
                        -0.6
                    } else {
                        0.0
                    };
                    Some(b + 1.5 * fv + rib)
                } else {
                    let t = (au - w * 0.25).abs() <= w * 0.07;
                    t.then_some(b - 0.5)
                }
            }
            ComponentClass::CtPt => {
                // A head (CT: top; PT: tank at the bottom) on a ribbed column.
                let fv = v / h;
                let head_top = self.variant % 2 == 0;
                let (hc, hr) = if head_top { (0.82, 0.18) } else { (0.18, 0.18) };
                let ey = (fv - hc) / hr;
                let ex = u / (w * 0.5);
                if ex * ex + ey * ey <= 1.0 {
                    return Some(b + 1.0);
                }
                let col_lo = if head_top { 0.0 } else { hc };
                let col_hi = if head_top { hc } else { 1.0 };
                if fv < col_lo || fv > col_hi {
                    return None;
                }
                let core = w * 0.1;
                let rim = core + w * 0.14 * (1.0 - ribs(fv, self.sheds));
                (au <= rim).then_some(b - 0.3 * (b - self.post_c()))
            }
        }
    }

    /// °C of a class's insulating post (closer to ambient than the live parts).
    fn post_c(&self) -> f32 {
        self.body_c - 2.0
    }
}

/// A part placed in the frame.
#[derive(Debug, Clone, Copy)]
struct Placed {
    part: Part,
    anchor: (f32, f32),
    tilt: f32,
    row: usize,
    phase: usize,
    row_len: usize,
    fault: Fault,
}

/// Width-to-height ratio range and height range (share of the frame height) of a class.
fn class_size(class: ComponentClass) -> ((f32, f32), (f32, f32)) {
    match class {
        ComponentClass::Bushing => ((0.24, 0.34), (0.16, 0.42)),
        ComponentClass::Clamp => ((1.2, 2.0), (0.035, 0.09)),
        ComponentClass::Insulator => ((0.14, 0.22), (0.18, 0.45)),
        ComponentClass::Disconnector => ((1.1, 1.8), (0.14, 0.3)),
        ComponentClass::Breaker => ((0.6, 0.95), (0.2, 0.42)),
        ComponentClass::CtPt => ((0.22, 0.32), (0.2, 0.42)),
    }
}

/// Generates frame `index` of the stream `seed`, `width`×`height` pixels.
pub fn generate(seed: u64, index: u64, width: u32, height: u32) -> Result<SynthFrame, SceneError> {
    if !(64..=4096).contains(&width) || !(48..=4096).contains(&height) {
        return Err(SceneError::Size { width, height });
    }
    let mut rng = SceneRng::for_item(seed, index);
    let (w, h) = (width as usize, height as usize);
    let (wf, hf) = (width as f32, height as f32);
    let mut canvas = ThermalCanvas::new(w, h);

    // Radiometry of the shot.
    let ambient = rng.range(-15.0, 40.0);
    let camera_e = rng.range(0.88, 0.98);
    let reflected = ambient - rng.range(0.0, 8.0);
    let params = RadiometricParams {
        emissivity: f64::from(camera_e),
        object_distance_m: f64::from(rng.range(3.0, 40.0)),
        reflected_c: f64::from(reflected),
        atmosphere_c: f64::from(ambient),
        ir_window_c: f64::from(ambient),
        ir_window_transmission: 1.0,
        relative_humidity: f64::from(rng.range(0.2, 0.9)),
        ..crate::agent_config::nominal_camera_params()
    };
    // What an object of true °C `t` and emissivity `e` reads as with the camera set to
    // `camera_e` (linearised radiance balance against the reflected temperature).
    let apparent = |t: f32, e: f32| reflected + (e / camera_e) * (t - reflected);

    // Background: sky above a horizon, ground below.
    let horizon = if rng.chance(0.25) {
        hf * 1.2
    } else {
        hf * rng.range(0.45, 0.95)
    };
    let sky_top = ambient - rng.range(4.0, 30.0);
    let sky_horizon = ambient - rng.range(0.5, 4.0);
    let ground_near = ambient + rng.range(-2.0, 10.0);
    let ground_far = ambient + rng.range(-1.0, 3.0);
    let mut blotches = Vec::new();
    for _ in 0..rng.below(5) {
        blotches.push((
            rng.range(0.0, wf),
            rng.range(0.0, hf),
            rng.range(0.1, 0.4) * wf,
            rng.range(-1.5, 1.5),
        ));
    }
    for y in 0..h {
        let yf = y as f32 + 0.5;
        let t = if yf < horizon {
            let f = (yf / horizon).clamp(0.0, 1.0);
            sky_top + (sky_horizon - sky_top) * f.powf(1.5)
        } else {
            let f = ((yf - horizon) / (hf - horizon).max(1.0)).clamp(0.0, 1.0);
            ground_far + (ground_near - ground_far) * f
        };
        for x in 0..w {
            canvas.celsius[y * w + x] = t;
        }
    }
    for &(bx, by, br, dt) in &blotches {
        canvas.blob((bx, by), br, dt);
    }
    // Warm walls (a control building) and steel gantry beams behind the equipment.
    if rng.chance(0.3) {
        let x0 = rng.range(-0.2, 0.8) * wf;
        let bw = rng.range(0.15, 0.5) * wf;
        let top = rng.range(0.3, 0.8) * hf;
        let t = ambient + rng.range(1.0, 8.0);
        canvas.paint(
            (x0 + bw / 2.0, hf),
            0.0,
            (bw / 2.0, hf - top, 0.0),
            0,
            &|_, v| Some(t + 0.5 * (v / hf)),
        );
    }
    for _ in 0..rng.below(3) {
        let y = rng.range(0.05, 0.5) * hf;
        let t = sky_horizon + rng.range(-3.0, 2.0);
        canvas.line(
            (-10.0, y),
            (wf + 10.0, y + rng.range(-0.05, 0.05) * hf),
            rng.range(3.0, 10.0),
            t,
        );
    }

    // Components: one to three rows, and sometimes a few on their own.
    let mut parts: Vec<Placed> = Vec::new();
    let mut occupied: Vec<[f32; 4]> = Vec::new();
    let rows = 1 + rng.below(3) as usize;
    let mut row_index = 0;
    let mut row_tops: Vec<Vec<(f32, f32)>> = Vec::new();
    for attempt in 0..(rows + 4) {
        if row_index > rows {
            break;
        }
        let class = ComponentClass::ALL[rng.below(6) as usize];
        let ((ar_lo, ar_hi), (h_lo, h_hi)) = class_size(class);
        let single = attempt >= rows;
        let n = if single {
            1
        } else {
            match rng.below(10) {
                0 | 1 => 1,
                2 => 2,
                _ => 3,
            }
        };
        let part_h = rng.range(h_lo, h_hi) * hf;
        let part_w = part_h * rng.range(ar_lo, ar_hi);
        let spacing = part_w * rng.range(1.4, 3.2) + part_h * 0.1;
        let perspective = rng.range(-0.25, 0.25);
        let tilt = if rng.chance(0.3) {
            rng.range(-0.25, 0.25)
        } else {
            rng.range(-0.04, 0.04)
        };
        let row_w = spacing * (n as f32 - 1.0) + part_w * (1.0 + perspective.abs());
        let x_start = rng.range(-0.05 * wf, (wf - row_w).max(0.0) + 0.05 * wf) + part_w / 2.0;
        let base_y = rng.range(part_h * 1.05, hf * 1.05);
        let footprint = [
            x_start - part_w,
            base_y - part_h * 1.3,
            x_start + row_w,
            base_y,
        ];
        if occupied.iter().any(|o| overlap(o, &footprint) > 0.15) {
            continue;
        }
        occupied.push(footprint);
        let load = if rng.chance(0.15) {
            rng.range(0.0, 1.5)
        } else {
            rng.range(1.5, 18.0)
        };
        let emissivity = match class {
            ComponentClass::Clamp => rng.range(0.55, 0.9),
            ComponentClass::Breaker => rng.range(0.8, 0.95),
            _ => rng.range(0.85, 0.95),
        };
        let variant = rng.below(4);
        let sheds = 4 + rng.below(10);
        let fault_at = if n >= 2 && rng.chance(0.5) {
            Some(rng.below(n as u32) as usize)
        } else if n == 1 && rng.chance(0.3) {
            Some(0)
        } else {
            None
        };
        let cold = fault_at.is_some() && n >= 2 && rng.chance(0.25);
        let fault_rise = rng.range(5.0, 80.0);
        let mut tops = Vec::new();
        for k in 0..n {
            let along = if n > 1 {
                k as f32 / (n as f32 - 1.0)
            } else {
                0.5
            };
            let scale = (1.0 + perspective * (along - 0.5) * 2.0) * rng.range(0.96, 1.04);
            let ph = part_h * scale;
            let pw = part_w * scale;
            let x = x_start + spacing * k as f32 * (1.0 + perspective * along * 0.5);
            let y = base_y - perspective * along * part_h * 0.15 + rng.range(-0.02, 0.02) * ph;
            let fault = match fault_at {
                Some(f) if f == k && cold => Fault::Cold,
                Some(f) if f == k => Fault::Hot { rise_c: fault_rise },
                _ => Fault::None,
            };
            let rise = if fault == Fault::Cold { 0.0 } else { load };
            let mut body = apparent(ambient + rise, emissivity);
            // What is behind the part: a part that reads like its background is not
            // something a thermographer (or a label) could point at; real equipment
            // in view differs from the sky or ground behind it by a few kelvin.
            let (bx, by) = to_frame((x, y), tilt, 0.0, ph * 0.5);
            let (bxi, byi) = (
                bx.clamp(0.0, wf - 1.0) as usize,
                by.clamp(0.0, hf - 1.0) as usize,
            );
            let behind = canvas.celsius[byi * w + bxi];
            if (body - behind).abs() < 2.0 && fault != Fault::Cold {
                body = behind + rng.range(2.0, 6.0);
            }
            let hot = match fault {
                Fault::Hot { rise_c } => rise_c * emissivity / camera_e,
                _ => 0.0,
            };
            let part = Part {
                class,
                height: ph,
                width: pw,
                variant,
                body_c: body,
                hot_c: hot,
                sheds,
            };
            tops.push(to_frame((x, y), tilt, 0.0, ph * 0.95));
            parts.push(Placed {
                part,
                anchor: (x, y),
                tilt,
                row: row_index,
                phase: k,
                row_len: n,
                fault,
            });
        }
        row_tops.push(tops);
        row_index += 1;
    }

    // Conductors between the rows' tops (drawn first: the components sit on them).
    for tops in &row_tops {
        if rng.chance(0.6) {
            for &(x, y) in tops {
                let t = ambient + rng.range(0.5, 6.0);
                let dy = rng.range(-0.4, -0.05) * hf;
                canvas.line(
                    (x, y),
                    (x + rng.range(-0.1, 0.1) * wf, y + dy),
                    rng.range(1.0, 3.0),
                    t,
                );
            }
        }
    }

    finish(canvas, &parts, &mut rng, params, ambient, true)
}

/// One row of components for [`generate_rows`]: a fixed, known scene (test fixtures).
#[derive(Debug, Clone, PartialEq)]
pub struct RowSpec {
    /// Class of every component in the row.
    pub class: ComponentClass,
    /// Anchor (bottom centre) of the first component, frame pixels.
    pub first: (f32, f32),
    /// Distance between neighbouring anchors, pixels.
    pub spacing: f32,
    /// Component height, pixels (the width follows from the class's middle aspect).
    pub height: f32,
    /// Load rise of the row's bodies over ambient, °C.
    pub rise_c: f32,
    /// The fault of each component, left to right (the row's length).
    pub faults: Vec<Fault>,
}

/// A frame with exactly `rows` on a plain sky-and-ground background at `ambient_c`,
/// emissivity matched to the camera's, light noise from `seed`, no distractors: what a
/// detector test can predict.
pub fn generate_rows(
    seed: u64,
    width: u32,
    height: u32,
    ambient_c: f32,
    rows: &[RowSpec],
) -> Result<SynthFrame, SceneError> {
    if !(64..=4096).contains(&width) || !(48..=4096).contains(&height) {
        return Err(SceneError::Size { width, height });
    }
    let mut rng = SceneRng::for_item(seed, 0);
    let (w, h) = (width as usize, height as usize);
    let mut canvas = ThermalCanvas::new(w, h);
    let params = RadiometricParams {
        reflected_c: f64::from(ambient_c),
        atmosphere_c: f64::from(ambient_c),
        ir_window_c: f64::from(ambient_c),
        ..crate::agent_config::nominal_camera_params()
    };
    let horizon = height as f32 * 0.6;
    for y in 0..h {
        let yf = y as f32 + 0.5;
        let t = if yf < horizon {
            ambient_c - 12.0 + 10.0 * (yf / horizon)
        } else {
            ambient_c + 2.0 * (yf - horizon) / (height as f32 - horizon)
        };
        canvas.celsius[y * w..(y + 1) * w].fill(t);
    }
    let mut parts = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let ((ar_lo, ar_hi), _) = class_size(row.class);
        for (k, fault) in row.faults.iter().enumerate() {
            let rise = if *fault == Fault::Cold {
                0.0
            } else {
                row.rise_c
            };
            let hot_c = match fault {
                Fault::Hot { rise_c } => *rise_c,
                _ => 0.0,
            };
            parts.push(Placed {
                part: Part {
                    class: row.class,
                    height: row.height,
                    width: row.height * (ar_lo + ar_hi) / 2.0,
                    variant: 0,
                    body_c: ambient_c + rise,
                    hot_c,
                    sheds: 8,
                },
                anchor: (row.first.0 + row.spacing * k as f32, row.first.1),
                tilt: 0.0,
                row: r,
                phase: k,
                row_len: row.faults.len(),
                fault: *fault,
            });
        }
    }
    finish(canvas, &parts, &mut rng, params, ambient_c, false)
}

/// Paints `parts` (and, with `distractors`, specks and an occluding pole), labels what
/// stays visible, adds the sensor's blur, fixed pattern and noise, and makes counts.
fn finish(
    mut canvas: ThermalCanvas,
    parts: &[Placed],
    rng: &mut SceneRng,
    params: RadiometricParams,
    ambient: f32,
    distractors: bool,
) -> Result<SynthFrame, SceneError> {
    let (w, h) = (canvas.width, canvas.height);
    let (wf, hf) = (w as f32, h as f32);

    // Clamps hang on conductors: one through each, behind it.
    for p in parts
        .iter()
        .filter(|p| p.part.class == ComponentClass::Clamp)
    {
        let (pw, ph) = (p.part.width, p.part.height);
        let a = to_frame(p.anchor, p.tilt, -pw * 1.8, ph * 0.5);
        let b = to_frame(p.anchor, p.tilt, pw * 1.8, ph * 0.5);
        canvas.line(a, b, (ph * 0.18).max(1.0), p.part.body_c - 0.5);
    }
    let mut painted = Vec::with_capacity(parts.len());
    for (k, p) in parts.iter().enumerate() {
        let part = p.part;
        let n = canvas.paint(p.anchor, p.tilt, part.reach(), k as u16 + 1, &|u, v| {
            part.field(u, v)
        });
        painted.push(n);
    }

    // Distractors: hot specks anywhere, and a foreground pole that may hide a part.
    let specks = if distractors { rng.below(6) } else { 0 };
    for _ in 0..specks {
        canvas.blob(
            (rng.range(0.0, wf), rng.range(0.0, hf)),
            rng.range(0.6, 2.5),
            rng.range(4.0, 60.0),
        );
    }
    if distractors && rng.chance(0.3) {
        let x = rng.range(0.0, wf);
        let pw = rng.range(4.0, 0.04 * wf + 4.0);
        let t = ambient + rng.range(-3.0, 2.0);
        let lean = rng.range(-0.1, 0.1) * hf;
        canvas.line((x, -5.0), (x + lean, hf + 5.0), pw, t);
    }

    // Labels: what each component still owns.
    let mut boxes = vec![[u32::MAX, u32::MAX, 0u32, 0u32]; parts.len()];
    let mut owned = vec![0u32; parts.len()];
    for y in 0..h {
        for x in 0..w {
            let o = canvas.owner[y * w + x];
            if o > 0 {
                let k = usize::from(o - 1);
                owned[k] += 1;
                let b = &mut boxes[k];
                b[0] = b[0].min(x as u32);
                b[1] = b[1].min(y as u32);
                b[2] = b[2].max(x as u32 + 1);
                b[3] = b[3].max(y as u32 + 1);
            }
        }
    }
    let mut components = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        // The share of the whole shape that is visible: owned pixels against the
        // shape's full area (the frame edge cuts some off before painting).
        let full = full_area(&p.part);
        if owned[k] == 0 || (owned[k] as f32) < MIN_VISIBLE * full || painted[k] == 0 {
            continue;
        }
        let (hu, hv) = p.part.hot_spot();
        components.push(SceneComponent {
            class: p.part.class,
            bbox: boxes[k],
            row: p.row,
            phase: p.phase,
            row_len: p.row_len,
            fault: p.fault,
            body_c: p.part.body_c,
            hot_spot: to_frame(p.anchor, p.tilt, hu, hv),
            visible_px: owned[k],
        });
    }

    // Sensor: optics blur, fixed pattern, noise, then counts.
    let blur = !distractors || rng.chance(0.7);
    let mut celsius = if blur {
        box_blur3(&canvas.celsius, w, h)
    } else {
        canvas.celsius.clone()
    };
    let fpn_sigma = if distractors {
        rng.range(0.0, 0.25)
    } else {
        0.03
    };
    let columns: Vec<f32> = (0..w).map(|_| fpn_sigma * rng.next_gaussianish()).collect();
    let noise = if distractors {
        rng.range(0.03, 0.25)
    } else {
        0.05
    };
    for row in celsius.chunks_mut(w) {
        for (c, offset) in row.iter_mut().zip(&columns) {
            *c += offset + noise * rng.next_gaussianish();
        }
    }
    let converter = RawToCelsius::new(params).map_err(|e| {
        SceneError::Params(
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let table = CountTable::new(&converter);
    let counts: Vec<u16> = celsius.iter().map(|&t| table.count(t)).collect();
    let raw =
        RawFrame::new(w as u32, h as u32, counts).map_err(|e| SceneError::Params(e.to_string()))?;
    let (temperature, _) = CelsiusLut::full(&converter).convert(&raw);
    Ok(SynthFrame {
        params,
        raw,
        temperature,
        ambient_c: ambient,
        components,
    })
}

/// The area of a part's whole shape, pixels (drawn on an empty canvas big enough).
fn full_area(part: &Part) -> f32 {
    let (hu, vu, _) = part.reach();
    let side = (2.0 * hu.hypot(vu) + 4.0).ceil() as usize;
    let mut canvas = ThermalCanvas::new(side, side);
    let c = side as f32 / 2.0;
    canvas.paint((c, c + vu / 2.0), 0.0, part.reach(), 1, &|u, v| {
        part.field(u, v)
    }) as f32
}

/// Overlap of `b` with `a`, as a share of the smaller one's area.
fn overlap(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: &[f32; 4]| ((r[2] - r[0]) * (r[3] - r[1])).max(1.0);
    iw * ih / area(a).min(area(b))
}

/// A 3×3 box blur (edges replicated): the camera's optics soften every edge.
fn box_blur3(src: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut tmp = vec![0f32; src.len()];
    for y in 0..h {
        for x in 0..w {
            let l = src[y * w + x.saturating_sub(1)];
            let r = src[y * w + (x + 1).min(w - 1)];
            tmp[y * w + x] = (l + src[y * w + x] + r) / 3.0;
        }
    }
    let mut out = vec![0f32; src.len()];
    for y in 0..h {
        for x in 0..w {
            let u = tmp[y.saturating_sub(1) * w + x];
            let d = tmp[(y + 1).min(h - 1) * w + x];
            out[y * w + x] = (u + tmp[y * w + x] + d) / 3.0;
        }
    }
    out
}

/// A local point (u across, v up) of a shape anchored at `anchor` and turned by `tilt`,
/// in frame pixels: the inverse of the mapping [`ThermalCanvas::paint`] applies.
fn to_frame(anchor: (f32, f32), tilt: f32, u: f32, v: f32) -> (f32, f32) {
    let (s, c) = tilt.sin_cos();
    (anchor.0 + u * c - v * s, anchor.1 - (u * s + v * c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seed: u64, index: u64) -> SynthFrame {
        generate(seed, index, 320, 240).unwrap()
    }

    #[test]
    fn a_seed_draws_the_same_frame_and_another_seed_another() {
        let a = frame(11, 3);
        let b = frame(11, 3);
        assert_eq!(a.raw, b.raw);
        assert_eq!(a.components, b.components);
        assert_eq!(a.params, b.params);
        assert_ne!(frame(12, 3).raw, a.raw);
        assert_ne!(frame(11, 4).raw, a.raw);
    }

    #[test]
    fn labels_lie_inside_the_frame_and_cover_their_own_pixels() {
        for index in 0..40 {
            let f = frame(5, index);
            let (w, h) = (f.raw.width(), f.raw.height());
            for c in &f.components {
                let [x0, y0, x1, y1] = c.bbox;
                assert!(x0 < x1 && y0 < y1 && x1 <= w && y1 <= h, "{index}: {c:?}");
                let area = (x1 - x0) * (y1 - y0);
                assert!(c.visible_px > 0 && c.visible_px <= area, "{index}: {c:?}");
            }
        }
    }

    #[test]
    fn every_class_appears_often_in_three_phase_rows() {
        let mut seen = [0usize; 6];
        let mut rows_of_three = 0;
        for index in 0..150 {
            let f = frame(21, index);
            for c in &f.components {
                seen[c.class.id()] += 1;
            }
            for row in 0..4 {
                let members: Vec<_> = f.components.iter().filter(|c| c.row == row).collect();
                if members.len() == 3 {
                    assert!(members.iter().all(|c| c.class == members[0].class));
                    rows_of_three += 1;
                }
            }
        }
        assert!(seen.iter().all(|&n| n >= 30), "{seen:?}");
        assert!(rows_of_three >= 60, "{rows_of_three}");
    }

    #[test]
    fn hot_faults_read_hot_and_cold_phases_read_near_ambient() {
        let (mut hot, mut cold) = (0, 0);
        for index in 0..120 {
            let f = frame(9, index);
            let w = f.raw.width() as usize;
            let t = f.temperature.celsius();
            let max_in = |b: [u32; 4]| {
                let mut m = f32::MIN;
                for y in b[1]..b[3] {
                    for x in b[0]..b[2] {
                        m = m.max(t[y as usize * w + x as usize]);
                    }
                }
                m
            };
            for c in &f.components {
                match c.fault {
                    Fault::Hot { rise_c } if c.visible_px > 400 => {
                        // Blur and a partly hidden hot spot take some of the peak.
                        let m = max_in(c.bbox);
                        if m >= c.body_c + 0.4 * rise_c * f.params.emissivity as f32 {
                            hot += 1;
                        }
                    }
                    Fault::Cold => {
                        // Emissivity pulls the apparent body towards the reflected sky.
                        assert!(
                            (c.body_c - f.ambient_c).abs() < 9.0,
                            "{c:?} {}",
                            f.ambient_c
                        );
                        cold += 1;
                    }
                    _ => {}
                }
            }
        }
        assert!(hot >= 20 && cold >= 5, "hot {hot}, cold {cold}");
    }

    #[test]
    fn a_fixed_row_lands_where_it_was_asked_with_its_fault() {
        let rows = [RowSpec {
            class: ComponentClass::Bushing,
            first: (160.0, 400.0),
            spacing: 160.0,
            height: 200.0,
            rise_c: 10.0,
            faults: vec![Fault::None, Fault::Hot { rise_c: 20.0 }, Fault::None],
        }];
        let f = generate_rows(1, 640, 480, 20.0, &rows).unwrap();
        assert_eq!(f.components.len(), 3);
        let t = f.temperature.celsius();
        let max_in = |b: [u32; 4]| {
            (b[1]..b[3])
                .flat_map(|y| (b[0]..b[2]).map(move |x| (x, y)))
                .map(|(x, y)| t[y as usize * 640 + x as usize])
                .fold(f32::MIN, f32::max)
        };
        let maxes: Vec<f32> = f.components.iter().map(|c| max_in(c.bbox)).collect();
        for (k, c) in f.components.iter().enumerate() {
            let cx = 160.0 + 160.0 * k as f32;
            assert!((c.bbox[0] as f32) < cx && (c.bbox[2] as f32) > cx, "{c:?}");
            assert!((c.bbox[3] as f32 - 400.0).abs() <= 2.0, "{c:?}");
            assert!((c.bbox[3] - c.bbox[1]) as f32 > 190.0, "{c:?}");
        }
        let b_over_a = maxes[1] - maxes[0];
        let b_over_c = maxes[1] - maxes[2];
        assert!(
            (b_over_a - 20.0).abs() < 2.5 && (b_over_c - 20.0).abs() < 2.5,
            "{maxes:?}"
        );
    }

    #[test]
    fn counts_read_back_through_the_parameters_as_drawn() {
        let f = generate_rows(2, 320, 240, 15.0, &[]).unwrap();
        // Plain sky at the top: ambient − 12 °C at the very top row.
        let top = f.temperature.celsius()[160];
        assert!((top - 3.0).abs() < 0.5, "{top}");
        assert!(f.components.is_empty());
    }

    #[test]
    fn sizes_outside_the_range_are_refused() {
        assert!(matches!(
            generate(1, 0, 10, 10),
            Err(SceneError::Size { .. })
        ));
    }
}
