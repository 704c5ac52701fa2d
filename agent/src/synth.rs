//! `chitti-agent synth`: writes a training set for the component detector from the
//! [scene generator](crate::sources::simulated::scene).
//!
//! Per frame `NNNNNN` (0-based, six digits) in `DIR`:
//! - `images/NNNNNN.png`: the evidence format (16-bit greyscale PNG of raw counts with
//!   the radiometric parameters in a text chunk, [`encode_radiometric_png`]) — what a
//!   stream camera would leave, readable by `chitti-agent inspect`;
//! - `inputs/NNNNNN.png`: 16-bit greyscale of the frame's [unit image](unit_image)
//!   (value × 65535), computed from the counts read back through the parameters —
//!   exactly what the agent's runtime letterboxes into the model, so training sees what
//!   deployment sees;
//! - `labels/NNNNNN.txt`: YOLO labels, `class cx cy w h` normalised to the frame;
//! - one line of `components.jsonl`: the same components with their row, phase, fault
//!   and temperatures (for tests and evaluation by fault).
//!
//! And once: `classes.txt` (one name a line, class-id order) and `manifest.json` (seed,
//! count, size, generator version). The same seed, count and size write the same bytes.

use crate::sources::simulated::scene::{self, Fault, SceneError, SynthFrame, CLASS_NAMES};
use crate::sources::simulated::SATURATED_MAX_C;
use chitti_common::detector_input::unit_image;
use chitti_common::evidence::{encode_radiometric_png, EvidenceError, RadiometricPngMeta};
use chrono::{DateTime, Duration};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Camera id written into the evidence of synthetic frames.
pub const SYNTH_CAMERA: &str = "synth";

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthRequest {
    /// Output folder (created; existing files of the same names are replaced).
    pub out: PathBuf,
    /// Number of frames.
    pub count: u64,
    /// Seed of the whole set.
    pub seed: u64,
    /// Frame width, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
}

/// Writing a set failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A frame could not be drawn.
    #[error("frame {index}: {source}")]
    Scene {
        /// Frame index.
        index: u64,
        /// Why.
        source: SceneError,
    },
    /// A PNG could not be encoded.
    #[error("frame {index}: {source}")]
    Evidence {
        /// Frame index.
        index: u64,
        /// Why.
        source: EvidenceError,
    },
    /// The unit-image PNG could not be encoded.
    #[error("frame {index}: cannot encode the input png: {reason}")]
    Input {
        /// Frame index.
        index: u64,
        /// Why.
        reason: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing to write.
    #[error("--count must be at least 1")]
    Empty,
}

/// The set's `manifest.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SynthManifest {
    /// What wrote it.
    pub generator: String,
    /// [`scene::GENERATOR_VERSION`].
    pub generator_version: u32,
    /// Seed.
    pub seed: u64,
    /// Frames.
    pub count: u64,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Class names in id order.
    pub classes: Vec<String>,
    /// How `inputs/` was made.
    pub inputs: String,
}

/// One line of `components.jsonl`.
#[derive(Debug, Clone, Serialize)]
struct FrameRecord<'a> {
    frame: String,
    ambient_c: f32,
    emissivity: f64,
    components: Vec<ComponentRecord<'a>>,
}

#[derive(Debug, Clone, Serialize)]
struct ComponentRecord<'a> {
    class: &'a str,
    class_id: usize,
    /// `[x0, y0, x1, y1]`, pixels.
    bbox: [u32; 4],
    row: usize,
    phase: usize,
    row_len: usize,
    fault: &'static str,
    fault_rise_c: f32,
    body_c: f32,
    hot_spot: [f32; 2],
}

/// The YOLO label lines of a frame: `class cx cy w h`, normalised.
pub fn yolo_labels(frame: &SynthFrame) -> String {
    let (w, h) = (f64::from(frame.raw.width()), f64::from(frame.raw.height()));
    let mut out = String::new();
    for c in &frame.components {
        let [x0, y0, x1, y1] = c.bbox.map(f64::from);
        out.push_str(&format!(
            "{} {:.6} {:.6} {:.6} {:.6}\n",
            c.class.id(),
            (x0 + x1) / 2.0 / w,
            (y0 + y1) / 2.0 / h,
            (x1 - x0) / w,
            (y1 - y0) / h
        ));
    }
    out
}

/// The evidence PNG of a frame (camera [`SYNTH_CAMERA`], captured `index` seconds
/// after 2026-01-01T00:00:00Z).
pub fn evidence_png(frame: &SynthFrame, index: u64) -> Result<Vec<u8>, EvidenceError> {
    let epoch = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("a valid constant");
    let meta = RadiometricPngMeta {
        version: 1,
        camera: SYNTH_CAMERA.to_string(),
        captured_at: epoch + Duration::seconds(index.min(1 << 40) as i64),
        params: frame.params,
        saturated_max_c: Some(SATURATED_MAX_C),
        kelvin_per_count: None,
    };
    encode_radiometric_png(&frame.raw, &meta)
}

/// The detector input of a frame as a 16-bit greyscale PNG (unit value × 65535).
pub fn input_png(frame: &SynthFrame) -> Result<Vec<u8>, String> {
    let unit = unit_image(&frame.temperature);
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, unit.width, unit.height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Sixteen);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        let bytes: Vec<u8> = unit
            .values
            .iter()
            .flat_map(|v| (((v * 65535.0).round()) as u16).to_be_bytes())
            .collect();
        writer.write_image_data(&bytes).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SynthError> {
    std::fs::write(path, bytes).map_err(|source| SynthError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn record(frame: &SynthFrame, name: &str) -> String {
    let record = FrameRecord {
        frame: name.to_string(),
        ambient_c: frame.ambient_c,
        emissivity: frame.params.emissivity,
        components: frame
            .components
            .iter()
            .map(|c| {
                let (fault, rise) = match c.fault {
                    Fault::None => ("none", 0.0),
                    Fault::Hot { rise_c } => ("hot", rise_c),
                    Fault::Cold => ("cold", 0.0),
                };
                ComponentRecord {
                    class: c.class.name(),
                    class_id: c.class.id(),
                    bbox: c.bbox,
                    row: c.row,
                    phase: c.phase,
                    row_len: c.row_len,
                    fault,
                    fault_rise_c: rise,
                    body_c: c.body_c,
                    hot_spot: [c.hot_spot.0, c.hot_spot.1],
                }
            })
            .collect(),
    };
    serde_json::to_string(&record).expect("records serialise")
}

/// Writes frame `index`'s three files; returns its `components.jsonl` line.
fn write_frame(req: &SynthRequest, index: u64) -> Result<String, SynthError> {
    let frame = scene::generate(req.seed, index, req.width, req.height)
        .map_err(|source| SynthError::Scene { index, source })?;
    let name = format!("{index:06}");
    let evidence =
        evidence_png(&frame, index).map_err(|source| SynthError::Evidence { index, source })?;
    write(
        &req.out.join("images").join(format!("{name}.png")),
        &evidence,
    )?;
    let input = input_png(&frame).map_err(|reason| SynthError::Input { index, reason })?;
    write(&req.out.join("inputs").join(format!("{name}.png")), &input)?;
    write(
        &req.out.join("labels").join(format!("{name}.txt")),
        yolo_labels(&frame).as_bytes(),
    )?;
    Ok(record(&frame, &name))
}

/// Writes the set; returns its manifest. Frames are drawn on every core (each frame's
/// generator is its own, so the order of drawing does not change a byte).
pub fn write_set(req: &SynthRequest) -> Result<SynthManifest, SynthError> {
    if req.count == 0 {
        return Err(SynthError::Empty);
    }
    for dir in ["images", "inputs", "labels"] {
        let path = req.out.join(dir);
        std::fs::create_dir_all(&path).map_err(|source| SynthError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8) as u64;
    let mut lines: Vec<Option<String>> = vec![None; req.count as usize];
    let results: Vec<Result<Vec<(u64, String)>, SynthError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut index = worker;
                    while index < req.count {
                        out.push((index, write_frame(req, index)?));
                        index += workers;
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a synth worker does not panic"))
            .collect()
    });
    for result in results {
        for (index, line) in result? {
            lines[index as usize] = Some(line);
        }
    }
    let mut jsonl = String::new();
    for line in lines.into_iter().flatten() {
        jsonl.push_str(&line);
        jsonl.push('\n');
    }
    write(&req.out.join("components.jsonl"), jsonl.as_bytes())?;
    let mut classes = CLASS_NAMES.join("\n");
    classes.push('\n');
    write(&req.out.join("classes.txt"), classes.as_bytes())?;
    let manifest = SynthManifest {
        generator: "chitti-agent synth".into(),
        generator_version: scene::GENERATOR_VERSION,
        seed: req.seed,
        count: req.count,
        width: req.width,
        height: req.height,
        classes: CLASS_NAMES.iter().map(|c| c.to_string()).collect(),
        inputs: "chitti_common::detector_input::unit_image of the counts read back \
                 through the frame's parameters (1st..99.5th percentile °C -> 0..1), \
                 16-bit greyscale, value*65535"
            .into(),
    };
    let json = serde_json::to_string_pretty(&manifest).expect("the manifest serialises");
    write(&req.out.join("manifest.json"), json.as_bytes())?;
    Ok(manifest)
}
