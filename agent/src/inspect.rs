//! `chitti-agent inspect FILE`: the thermographer's view of one FLIR file.
//!
//! Parses the file with `chitti-common`, converts the chosen frame to °C with the
//! file's parameters (and any corrections given on the command line), finds hotspots,
//! assesses them against a severity table, and prints a summary — or one JSON object
//! with `--json` — and optionally renders a palette PNG with the hotspots boxed.
//!
//! Every frame passes the image-quality gate (`quality` in the JSON, always). With
//! `--model MODEL.onnx` a detector finds the components, each is measured and the phases
//! compared (`components` in the JSON); the detector comes from [`detector_for_model`].
//!
//! Besides FLIR files it reads the agent's own stream evidence (DESIGN.md §2: a 16-bit
//! PNG of raw counts with the radiometric parameters in a text chunk), which is also
//! what `chitti-agent synth` writes, so a synthetic frame inspects like a real one.

use crate::analysis::{Detection, Detector};
use anyhow::{bail, Context};
use chitti_common::analysis::{analyze_frame, AnalysisOptions, AssessedHotspot, FrameAnalysis};
use chitti_common::components::{ComponentMeasurement, GroupAxis};
use chitti_common::evidence::evidence_png_frame;
use chitti_common::finding::DetectedComponent;
use chitti_common::flir::{ContainerKind, FlirFile, FlirFrame, ParseLimits};
use chitti_common::geometry::{PixelPoint, PixelRect};
use chitti_common::inspection::CameraIdentity;
use chitti_common::inspection::{ambient_of, measure_frame_components};
use chitti_common::quality::ImageQuality;
use chitti_common::radiometry::{ParamOverrides, RadiometricParams};
use chitti_common::render::{self, Overlay, Palette, RenderOptions, TemperatureSpan};
use chitti_common::severity::{ReferenceTemperature, SeverityAssessment, SeverityCatalog};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// The FLIR file: R-JPEG (.jpg), .fff, .seq or .csq.
    pub file: PathBuf,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Report the temperature at column X, row Y (0-based; repeatable).
    #[arg(long = "pixel", value_name = "X,Y", value_parser = parse_pixel)]
    pub pixels: Vec<PixelPoint>,
    /// Frame of a sequence to analyse (0-based; default the first).
    #[arg(long, value_name = "N")]
    pub frame: Option<usize>,
    /// Object emissivity (0 < E ≤ 1) instead of the file's.
    #[arg(long, value_name = "E")]
    pub emissivity: Option<f64>,
    /// Object distance in metres instead of the file's.
    #[arg(long, value_name = "METRES")]
    pub distance: Option<f64>,
    /// Reflected apparent temperature in °C instead of the file's.
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    pub reflected: Option<f64>,
    /// Atmospheric temperature in °C instead of the file's.
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    pub atmosphere: Option<f64>,
    /// Relative humidity in percent (0–100) instead of the file's.
    #[arg(long, value_name = "PERCENT")]
    pub humidity: Option<f64>,
    /// Hotspot threshold in °C (default: the lowest temperature that can reach the
    /// table's first level).
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// Severity table: utility-absolute, neta-ambient, neta-similar, tuv, military, or
    /// an id from --tables.
    #[arg(long, value_name = "ID", default_value = "utility-absolute")]
    pub table: String,
    /// TOML file with your own severity tables (format: `chitti_common::severity::parse_user_tables`).
    #[arg(long, value_name = "FILE")]
    pub tables: Option<PathBuf>,
    /// Reference temperature in °C for ΔT tables (default: the file's atmospheric
    /// temperature as ambient).
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    pub reference: Option<f64>,
    /// What --reference is: ambient air, or a similar component under similar load
    /// (e.g. the healthy phase).
    #[arg(long, value_enum, default_value = "ambient", requires = "reference")]
    pub reference_kind: ReferenceKindArg,
    /// Smallest hotspot reported, in pixels.
    #[arg(long, value_name = "PX", default_value_t = 4)]
    pub min_area: u32,
    /// Write a palette image with the hotspots boxed and a °C scale bar.
    #[arg(long, value_name = "OUT.png")]
    pub render: Option<PathBuf>,
    /// Palette for --render: iron, rainbow or grey.
    #[arg(long, value_name = "NAME", default_value = "iron")]
    pub palette: Palette,
    /// °C span for --render as LOW,HIGH (default: the frame's min and max).
    #[arg(long, value_name = "LOW,HIGH", value_parser = parse_span, allow_negative_numbers = true)]
    pub span: Option<TemperatureSpan>,
    /// ONNX detection model: find the components, measure each and compare the phases.
    #[arg(long, value_name = "MODEL.onnx")]
    pub model: Option<PathBuf>,
}

/// The detector of `--model`: the ONNX runtime, synchronous (a still needs no mailbox).
/// A model or library that cannot load is an error naming it, never ignored.
pub fn detector_for_model(path: &Path) -> Result<Box<dyn Detector>, String> {
    // The library comes from ORT_DYLIB_PATH or sits next to the binary, as for the
    // agent's own `[detector]` without a `library` key.
    let settings = crate::detector::DetectorSettings::new(path);
    let detector = crate::detector::OnnxDetector::load(&settings).map_err(|e| e.to_string())?;
    Ok(Box::new(detector))
}

/// `--reference-kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReferenceKindArg {
    /// Ambient air.
    Ambient,
    /// A similar component under similar load.
    Similar,
}

fn parse_pixel(s: &str) -> Result<PixelPoint, String> {
    let (x, y) = s
        .split_once(',')
        .ok_or_else(|| format!("expected X,Y (column,row), got {s:?}"))?;
    let coord = |v: &str, name| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{name} in {s:?} is not a non-negative integer"))
    };
    Ok(PixelPoint {
        x: coord(x, "X")?,
        y: coord(y, "Y")?,
    })
}

fn parse_span(s: &str) -> Result<TemperatureSpan, String> {
    let (lo, hi) = s
        .split_once(',')
        .ok_or_else(|| format!("expected LOW,HIGH in °C, got {s:?}"))?;
    let num = |v: &str| {
        v.trim()
            .parse::<f32>()
            .map_err(|_| format!("{v:?} is not a number"))
    };
    TemperatureSpan::new(num(lo)?, num(hi)?).map_err(|e| e.to_string())
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct InspectReport {
    /// The path as given.
    pub file: String,
    /// `r-jpeg`, `fff-sequence` or `evidence-png`.
    pub container: Container,
    /// Camera identity.
    pub camera: CameraSummary,
    /// Capture time from the camera clock (RFC 3339 with the camera's offset).
    pub captured_at: Option<String>,
    /// Raw image width.
    pub width: u32,
    /// Raw image height.
    pub height: u32,
    /// Frames in the file.
    pub frames: usize,
    /// The frame analysed (0-based).
    pub frame: usize,
    /// How the raw counts were stored.
    pub raw_encoding: chitti_common::flir::RawEncoding,
    /// Every radiometric parameter used (file values with overrides applied).
    pub params: RadiometricParams,
    /// Names of the parameters that were overridden.
    pub overridden: Vec<&'static str>,
    /// Coldest pixel, °C.
    pub min_c: f64,
    /// Hottest pixel, °C.
    pub max_c: f64,
    /// Mean over all pixels, °C.
    pub mean_c: f64,
    /// Position of the hottest pixel, `[x, y]`.
    pub max_at: [u32; 2],
    /// Temperatures at the requested pixels.
    pub pixels: Vec<PixelReading>,
    /// Threshold used for hotspots, °C.
    pub threshold_c: f64,
    /// Reference used by ΔT tables.
    pub reference: ReferenceTemperature,
    /// The severity table.
    pub severity_table: TableSummary,
    /// Hotspots, hottest first.
    pub hotspots: Vec<HotspotReport>,
    /// Regions far colder than a similar-component reference.
    pub cool_exceptions: Vec<HotspotReport>,
    /// Regions dropped as smaller than `--min-area`.
    pub below_min_area: u32,
    /// Regions dropped beyond the report limit.
    pub dropped_hotspots: u32,
    /// Pixels below the formula's physical floor, clamped.
    pub clamped_below_floor_px: u64,
    /// Pixels at or above the camera's saturation limit (true °C may be higher).
    pub saturated_px: u64,
    /// GPS fix, when the file has one.
    pub gps: Option<chitti_common::flir::GpsInfo>,
    /// The embedded visual image, when present.
    pub visual_image: Option<VisualSummary>,
    /// Non-fatal problems (a malformed GPS record, a short last frame …).
    pub warnings: Vec<String>,
    /// Where the rendered image was written.
    pub render: Option<String>,
    /// The image-quality gate's verdict: when not quantitative, every severity above is
    /// flagged `qualitative`.
    pub quality: ImageQuality,
    /// The detected components, measured (only with `--model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<ComponentReport>>,
}

/// One detected component in the report.
#[derive(Debug, Serialize)]
pub struct ComponentReport {
    /// Class name.
    pub class: String,
    /// Detector confidence 0..1.
    pub confidence: f64,
    /// Box `[x, y, w, h]`, clipped to the image.
    pub bbox: PixelRect,
    /// Hottest pixel in the box, °C.
    pub max_c: f64,
    /// Mean over the box, °C.
    pub mean_c: f64,
    /// Hottest pixel, `[x, y]`.
    pub max_at: [u32; 2],
    /// `max_c` over the ambient reference, °C.
    pub delta_t_ambient_c: f64,
    /// Its phase group, when it lines up with siblings of its class.
    pub phase_group: Option<PhaseGroupReport>,
    /// The sibling it is compared with, e.g. "bushing #1 of 3 (left)" (group members
    /// other than the group's reference).
    pub similar_to: Option<String>,
    /// `max_c` minus the sibling's, °C.
    pub delta_t_similar_c: Option<f64>,
    /// Against the sibling (`neta-similar`) or, outside a group and for the group's
    /// reference, against ambient.
    pub severity: SeverityAssessment,
}

/// A component's place in its phase group.
#[derive(Debug, Serialize)]
pub struct PhaseGroupReport {
    /// Group number in this frame (0-based).
    pub group: usize,
    /// Position along the line (0-based: left to right, top to bottom).
    pub index: usize,
    /// Members in the group.
    pub size: usize,
    /// `row` or `column`.
    pub axis: GroupAxis,
    /// E.g. "bushing #2 of 3 (middle)".
    pub label: String,
    /// True for the group's reference (its coolest loaded member).
    pub reference: bool,
}

/// Camera identity in the report.
#[derive(Debug, Serialize)]
pub struct CameraSummary {
    /// Model (FLIR's field, or the EXIF model when FLIR's is empty).
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// EXIF make, when present.
    pub make: Option<String>,
    /// Firmware.
    pub software: String,
    /// Lens.
    pub lens: Option<String>,
}

/// One `--pixel` reading.
#[derive(Debug, Serialize)]
pub struct PixelReading {
    /// Column.
    pub x: u32,
    /// Row.
    pub y: u32,
    /// °C (exact formula, f64).
    pub c: f64,
    /// Raw count.
    pub raw: u16,
}

/// The table that assessed the hotspots.
#[derive(Debug, Serialize)]
pub struct TableSummary {
    /// Table id.
    pub id: String,
    /// Table version.
    pub version: u32,
    /// Title.
    pub title: String,
}

/// One hotspot in the report.
#[derive(Debug, Serialize)]
pub struct HotspotReport {
    /// Bounding box `[x, y, w, h]`.
    pub bbox: PixelRect,
    /// Pixels in the region.
    pub area_px: u32,
    /// Hottest pixel, °C.
    pub max_c: f64,
    /// Mean, °C.
    pub mean_c: f64,
    /// Coldest pixel, °C.
    pub min_c: f64,
    /// Hottest pixel, `[x, y]`.
    pub max_at: [u32; 2],
    /// Severity.
    pub severity: SeverityAssessment,
}

/// The embedded visual image in the report.
#[derive(Debug, Serialize)]
pub struct VisualSummary {
    /// jpeg, png or raw.
    pub kind: chitti_common::flir::VisualImageKind,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Size in bytes.
    pub bytes: usize,
}

/// What kind of file was inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Container {
    /// A FLIR R-JPEG.
    RJpeg,
    /// FLIR FFF frames (`.fff`, `.seq`, `.csq`).
    FffSequence,
    /// Chitti stream evidence: 16-bit PNG of counts with a radiometry chunk.
    EvidencePng,
}

impl From<ContainerKind> for Container {
    fn from(kind: ContainerKind) -> Self {
        match kind {
            ContainerKind::RJpeg => Self::RJpeg,
            ContainerKind::FffSequence => Self::FffSequence,
        }
    }
}

/// The PNG signature.
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Largest evidence PNG `inspect` reads, bytes.
const MAX_EVIDENCE_BYTES: u64 = 512 << 20;

/// True when the file starts with the PNG signature.
fn is_png(path: &Path) -> anyhow::Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = f
        .read(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(n == head.len() && head == PNG_MAGIC)
}

/// Runs `inspect`, writing the summary or JSON to `out`.
pub fn run(args: &InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut detector: Option<Box<dyn Detector>> = match &args.model {
        Some(path) => Some(detector_for_model(path).map_err(|e| anyhow::anyhow!("--model {e}"))?),
        None => None,
    };
    match detector.as_mut() {
        Some(detector) => run_with(args, out, Some(detector.as_mut())),
        None => run_with(args, out, None),
    }
}

/// Runs `inspect` with `detector` finding the components (`--model` is not read).
pub fn run_with(
    args: &InspectArgs,
    out: &mut dyn Write,
    detector: Option<&mut dyn Detector>,
) -> anyhow::Result<()> {
    let catalog = load_catalog(args.tables.as_deref())?;
    let Some(table) = catalog.get(&args.table) else {
        bail!(
            "unknown severity table {:?}; known tables: {}",
            args.table,
            catalog.ids().collect::<Vec<_>>().join(", ")
        );
    };
    let overrides = overrides(args)?;
    let path = args.file.display().to_string();
    let index = args.frame.unwrap_or(0);
    let (container, identity, frames, frame) = if is_png(&args.file)? {
        let size = std::fs::metadata(&args.file)
            .with_context(|| format!("cannot open {path}"))?
            .len();
        if size > MAX_EVIDENCE_BYTES {
            bail!(
                "{path}: {size} bytes is larger than an evidence png may be ({MAX_EVIDENCE_BYTES})"
            );
        }
        let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {path}"))?;
        // The hub reads evidence through the same function: the same counts, parameters
        // and (temperature-linear) conversion.
        let frame = evidence_png_frame(&bytes).with_context(|| path.clone())?;
        if index > 0 {
            bail!("{path}: frame {index} does not exist (an evidence png holds one frame)");
        }
        let identity = CameraIdentity {
            model: String::new(),
            serial: String::new(),
            make: None,
        };
        (Container::EvidencePng, identity, 1, frame)
    } else {
        let file =
            std::fs::File::open(&args.file).with_context(|| format!("cannot open {path}"))?;
        let mut flir = FlirFile::open(std::io::BufReader::new(file), ParseLimits::default())
            .with_context(|| path.clone())?;
        let frames = flir.frame_count().with_context(|| path.clone())?;
        let frame = flir.frame(index).with_context(|| path.clone())?;
        let identity = CameraIdentity::of(&flir, &frame);
        (flir.kind().into(), identity, frames, frame)
    };
    let options = AnalysisOptions {
        overrides,
        threshold_c: args.threshold,
        min_area_px: args.min_area,
        reference: args.reference.map(|c| match args.reference_kind {
            ReferenceKindArg::Ambient => ReferenceTemperature::ambient(c, "--reference"),
            ReferenceKindArg::Similar => ReferenceTemperature::similar_component(c, "--reference"),
        }),
        ..AnalysisOptions::default()
    };
    let analysis = analyze_frame(&frame, table, &options).with_context(|| path.clone())?;
    let converter = frame.converter(&overrides)?;
    let mut pixels = Vec::new();
    for p in &args.pixels {
        let Some(raw) = frame.raw.get(p.x, p.y) else {
            bail!(
                "pixel {},{} is outside the {}x{} image (x = column 0..{}, y = row 0..{})",
                p.x,
                p.y,
                frame.raw.width(),
                frame.raw.height(),
                frame.raw.width() - 1,
                frame.raw.height() - 1
            );
        };
        pixels.push(PixelReading {
            x: p.x,
            y: p.y,
            c: round(converter.celsius_or_nan(f64::from(raw))),
            raw,
        });
    }
    let components = detector.map(|detector| {
        let detections: Vec<DetectedComponent> = detector
            .detect(&analysis.image)
            .iter()
            .map(Detection::to_component)
            .collect();
        measure_frame_components(
            &analysis.image,
            &detections,
            &ambient_of(&analysis.reference, &analysis.params),
            table,
            &analysis.quality,
            &options,
        )
    });
    let mut rendered = None;
    if let Some(target) = &args.render {
        render_png(&analysis, args, target)?;
        rendered = Some(target.display().to_string());
    }
    let report = build_report(
        path,
        container,
        identity,
        frames,
        &frame,
        table_summary(table),
        &analysis,
        &overrides,
        pixels,
        rendered,
        components.as_ref(),
    );
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        write_summary(out, &report)?;
    }
    Ok(())
}

fn load_catalog(tables: Option<&Path>) -> anyhow::Result<SeverityCatalog> {
    let Some(path) = tables else {
        return Ok(SeverityCatalog::builtin());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    SeverityCatalog::with_user_tables_toml(&text)
        // All problems at once, on one line each would break "one line"; join them.
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().replace('\n', "; ")))
}

fn overrides(args: &InspectArgs) -> anyhow::Result<ParamOverrides> {
    let relative_humidity = match args.humidity {
        Some(h) if !(0.0..=100.0).contains(&h) => bail!("--humidity {h} is not a percentage 0–100"),
        Some(h) => Some(h / 100.0),
        None => None,
    };
    Ok(ParamOverrides {
        emissivity: args.emissivity,
        object_distance_m: args.distance,
        reflected_c: args.reflected,
        atmosphere_c: args.atmosphere,
        relative_humidity,
    })
}

fn table_summary(table: &chitti_common::severity::SeverityTable) -> TableSummary {
    TableSummary {
        id: table.id.clone(),
        version: table.version,
        title: table.title.clone(),
    }
}

/// Rounds °C to 0.0001 for output: 100× finer than the reader's accuracy, and free of
/// the f32 noise digits a full f64 print would show.
fn round(c: f64) -> f64 {
    (c * 1e4).round() / 1e4
}

fn hotspot_report(a: &AssessedHotspot) -> HotspotReport {
    let h = &a.hotspot;
    HotspotReport {
        bbox: h.bbox,
        area_px: h.area_px,
        max_c: round(h.max_c),
        mean_c: round(h.mean_c),
        min_c: round(h.min_c),
        max_at: [h.max_at.x, h.max_at.y],
        severity: a.severity.clone(),
    }
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn build_report(
    file: String,
    container: Container,
    identity: CameraIdentity,
    frames: usize,
    frame: &FlirFrame,
    severity_table: TableSummary,
    analysis: &FrameAnalysis,
    overrides: &ParamOverrides,
    pixels: Vec<PixelReading>,
    render: Option<String>,
    components: Option<&ComponentMeasurement>,
) -> InspectReport {
    let mut overridden = Vec::new();
    for (name, set) in [
        ("emissivity", overrides.emissivity.is_some()),
        ("object_distance_m", overrides.object_distance_m.is_some()),
        ("reflected_c", overrides.reflected_c.is_some()),
        ("atmosphere_c", overrides.atmosphere_c.is_some()),
        ("relative_humidity", overrides.relative_humidity.is_some()),
    ] {
        if set {
            overridden.push(name);
        }
    }
    let mut warnings = frame.warnings.clone();
    if frame.truncated_bytes > 0 {
        warnings.push(format!(
            "frame {} declares {} byte(s) past the end of the file",
            frame.index, frame.truncated_bytes
        ));
    }
    if analysis.conversion.clamped_below_floor_px > 0 {
        warnings.push(format!(
            "{} pixel(s) below the physical floor of the radiometric formula were clamped (dead pixels or wrong parameters)",
            analysis.conversion.clamped_below_floor_px
        ));
    }
    if analysis.saturated_px > 0 {
        warnings.push(format!(
            "{} pixel(s) at or above the camera's saturation limit ({:.1} °C): their true temperature may be higher",
            analysis.saturated_px,
            frame.camera.limits.saturated_max_c.unwrap_or(f64::NAN)
        ));
    }
    let stats = &analysis.stats;
    InspectReport {
        file,
        container,
        camera: CameraSummary {
            model: identity.model,
            serial: identity.serial,
            make: identity.make,
            software: frame.camera.software.clone(),
            lens: frame.camera.lens_model.clone(),
        },
        captured_at: frame
            .camera
            .captured_at
            .map(|t| t.0.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)),
        width: frame.raw.width(),
        height: frame.raw.height(),
        frames,
        frame: frame.index,
        raw_encoding: frame.raw_encoding,
        params: analysis.params,
        overridden,
        min_c: round(stats.min_c),
        max_c: round(stats.max_c),
        mean_c: round(stats.mean_c),
        max_at: [stats.max_at.x, stats.max_at.y],
        pixels,
        threshold_c: round(analysis.threshold_c),
        reference: analysis.reference.clone(),
        severity_table,
        hotspots: analysis.hotspots.iter().map(hotspot_report).collect(),
        cool_exceptions: analysis
            .cool_exceptions
            .iter()
            .map(hotspot_report)
            .collect(),
        below_min_area: analysis.below_min_area,
        dropped_hotspots: analysis.dropped_hotspots,
        clamped_below_floor_px: analysis.conversion.clamped_below_floor_px,
        saturated_px: analysis.saturated_px,
        gps: frame.gps,
        visual_image: frame.visual.as_ref().map(|v| VisualSummary {
            kind: v.kind,
            width: v.width,
            height: v.height,
            bytes: v.bytes.len(),
        }),
        warnings,
        render,
        quality: analysis.quality.clone(),
        components: components.map(|m| m.components.iter().map(component_report).collect()),
    }
}

fn component_report(c: &chitti_common::components::MeasuredComponent) -> ComponentReport {
    ComponentReport {
        class: c.component.class.clone(),
        confidence: c.component.confidence,
        bbox: c.component.bbox,
        max_c: round(c.max_c),
        mean_c: round(c.mean_c),
        max_at: [c.max_at.x, c.max_at.y],
        delta_t_ambient_c: round(c.delta_t_ambient_c),
        phase_group: c.phase.as_ref().map(|p| PhaseGroupReport {
            group: p.group,
            index: p.index,
            size: p.size,
            axis: p.axis,
            label: p.label.clone(),
            reference: p.reference,
        }),
        similar_to: c.similar.as_ref().map(|s| s.reference_label.clone()),
        delta_t_similar_c: c.similar.as_ref().map(|s| round(s.delta_t_similar_c)),
        severity: c.severity.clone(),
    }
}

fn render_png(analysis: &FrameAnalysis, args: &InspectArgs, target: &Path) -> anyhow::Result<()> {
    let mut overlays: Vec<Overlay> = analysis
        .hotspots
        .iter()
        .enumerate()
        .map(|(i, a)| Overlay {
            rect: a.hotspot.bbox,
            // Labels on every box of a busy scene would hide the image; the hottest ones
            // are labelled, the rest are boxed (and all are in the summary and JSON).
            label: if i < SUMMARY_HOTSPOTS {
                format!("{:.1}°C L{}", a.hotspot.max_c, a.severity.level)
            } else {
                String::new()
            },
            level: a.severity.level,
        })
        .collect();
    overlays.extend(analysis.cool_exceptions.iter().map(|a| Overlay {
        rect: a.hotspot.bbox,
        label: format!("{:.1}°C cool", a.hotspot.min_c),
        level: 0,
    }));
    let options = RenderOptions {
        palette: args.palette,
        span: args.span,
        ..RenderOptions::default()
    };
    let image = render::render(&analysis.image, &overlays, &options)?;
    let png = render::encode_png(&image)?;
    std::fs::write(target, png).with_context(|| format!("cannot write {}", target.display()))?;
    Ok(())
}

/// Hotspots listed in the human summary; `--json` has them all.
const SUMMARY_HOTSPOTS: usize = 10;

fn write_summary(out: &mut dyn Write, r: &InspectReport) -> std::io::Result<()> {
    let cam = &r.camera;
    writeln!(out, "{}", r.file)?;
    writeln!(
        out,
        "  camera      {}{}{}",
        if cam.model.is_empty() {
            "unknown model"
        } else {
            &cam.model
        },
        if cam.serial.is_empty() {
            String::new()
        } else {
            format!(", serial {}", cam.serial)
        },
        if cam.software.is_empty() {
            String::new()
        } else {
            format!(", firmware {}", cam.software)
        },
    )?;
    if let Some(t) = &r.captured_at {
        writeln!(out, "  captured    {t}")?;
    }
    writeln!(
        out,
        "  image       {}x{} {} raw, frame {} of {}",
        r.width,
        r.height,
        r.raw_encoding,
        r.frame + 1,
        r.frames
    )?;
    let p = &r.params;
    writeln!(
        out,
        "  params      emissivity {:.3}, distance {:.1} m, reflected {:.1} °C, atmosphere {:.1} °C, humidity {:.0} %, IR window {:.1} °C × {:.2}{}",
        p.emissivity,
        p.object_distance_m,
        p.reflected_c,
        p.atmosphere_c,
        p.relative_humidity * 100.0,
        p.ir_window_c,
        p.ir_window_transmission,
        if r.overridden.is_empty() { String::new() } else { format!("  (overridden: {})", r.overridden.join(", ")) }
    )?;
    writeln!(
        out,
        "  temperature min {:.2} °C, max {:.2} °C at ({}, {}), mean {:.2} °C",
        r.min_c, r.max_c, r.max_at[0], r.max_at[1], r.mean_c
    )?;
    for px in &r.pixels {
        writeln!(
            out,
            "  pixel       ({}, {}): {:.2} °C (raw {})",
            px.x, px.y, px.c, px.raw
        )?;
    }
    writeln!(
        out,
        "  hotspots    {} at or above {:.1} °C, assessed with {} v{} (reference {:.1} °C, {})",
        r.hotspots.len(),
        r.threshold_c,
        r.severity_table.id,
        r.severity_table.version,
        r.reference.celsius,
        r.reference.source
    )?;
    for (i, h) in r.hotspots.iter().enumerate().take(SUMMARY_HOTSPOTS) {
        writeln!(
            out,
            "    #{:<3} max {:.1} °C at ({}, {}), mean {:.1} °C, {} px, box {}x{} at ({}, {}) — {}",
            i + 1,
            h.max_c,
            h.max_at[0],
            h.max_at[1],
            h.mean_c,
            h.area_px,
            h.bbox.w,
            h.bbox.h,
            h.bbox.x,
            h.bbox.y,
            severity_text(&h.severity)
        )?;
    }
    if r.hotspots.len() > SUMMARY_HOTSPOTS {
        writeln!(
            out,
            "    … {} more (all of them with --json)",
            r.hotspots.len() - SUMMARY_HOTSPOTS
        )?;
    }
    for h in &r.cool_exceptions {
        writeln!(
            out,
            "    cool  min {:.1} °C, {} px, box {}x{} at ({}, {}) — {}",
            h.min_c, h.area_px, h.bbox.w, h.bbox.h, h.bbox.x, h.bbox.y, h.severity.action
        )?;
    }
    if r.below_min_area > 0 || r.dropped_hotspots > 0 {
        writeln!(
            out,
            "    ({} smaller than the minimum area, {} beyond the report limit)",
            r.below_min_area, r.dropped_hotspots
        )?;
    }
    if let Some(g) = &r.gps {
        writeln!(
            out,
            "  gps         {:.6}, {:.6}",
            g.latitude_deg, g.longitude_deg
        )?;
    }
    if let Some(v) = &r.visual_image {
        writeln!(
            out,
            "  visual      {} {}x{}, {} bytes",
            v.kind, v.width, v.height, v.bytes
        )?;
    }
    if r.quality.quantitative {
        writeln!(out, "  quality     quantitative")?;
    } else {
        writeln!(
            out,
            "  quality     QUALITATIVE: severities are indicative, not measurements"
        )?;
        for reason in &r.quality.reasons {
            writeln!(out, "    {}", reason.message)?;
        }
    }
    if let Some(components) = &r.components {
        writeln!(out, "  components  {} detected", components.len())?;
        for c in components {
            writeln!(
                out,
                "    {} {:.2} box {}x{} at ({}, {}): max {:.1} °C, mean {:.1} °C{}{} — {}",
                c.class,
                c.confidence,
                c.bbox.w,
                c.bbox.h,
                c.bbox.x,
                c.bbox.y,
                c.max_c,
                c.mean_c,
                c.phase_group
                    .as_ref()
                    .map(|p| format!(", {}", p.label))
                    .unwrap_or_default(),
                match (&c.similar_to, c.delta_t_similar_c) {
                    (Some(to), Some(d)) => format!(", ΔT {d:+.1} °C over {to}"),
                    _ => format!(", ΔT {:+.1} °C over ambient", c.delta_t_ambient_c),
                },
                severity_text(&c.severity)
            )?;
        }
    }
    for w in &r.warnings {
        writeln!(out, "  warning     {w}")?;
    }
    if let Some(path) = &r.render {
        writeln!(out, "  rendered    {path}")?;
    }
    Ok(())
}

fn severity_text(s: &SeverityAssessment) -> String {
    if let Some(reason) = &s.not_assessed {
        return format!("not assessed: {reason}");
    }
    if s.cool_exception {
        return s.action.clone();
    }
    if s.level == 0 {
        return "below level 1".to_string();
    }
    format!("level {} {}: {}", s.level, s.level_name, s.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_argument_is_column_then_row() {
        assert_eq!(parse_pixel("12,34"), Ok(PixelPoint { x: 12, y: 34 }));
        assert!(parse_pixel("12").unwrap_err().contains("X,Y"));
        assert!(parse_pixel("-1,3").unwrap_err().contains("X"));
    }

    #[test]
    fn span_argument_needs_low_below_high() {
        assert!(parse_span("20,80").is_ok());
        assert!(parse_span("-10.5,5").is_ok());
        assert!(parse_span("80,20").is_err());
        assert!(parse_span("x,20").unwrap_err().contains("not a number"));
    }

    /// A detector that finds the same boxes in every frame.
    struct FixedBoxes(Vec<(&'static str, PixelRect)>);

    impl Detector for FixedBoxes {
        fn detect(&mut self, _image: &chitti_common::image::TemperatureImage) -> Vec<Detection> {
            self.0
                .iter()
                .map(|&(class, bbox)| Detection {
                    class: class.into(),
                    confidence: 0.8,
                    bbox,
                })
                .collect()
        }
        fn model(&self) -> Option<chitti_common::finding::ModelIdentity> {
            None
        }
    }

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/flir")
            .join(name)
    }

    #[test]
    fn json_lists_every_detected_component_measured_with_its_phase_group() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: InspectArgs,
        }
        let path = fixture("flir_t640_png.jpg");
        let cli = Cli::parse_from([
            "inspect",
            path.to_str().unwrap(),
            "--json",
            "--table",
            "neta-ambient",
        ]);
        let rect = |x, y, w, h| PixelRect { x, y, w, h };
        // Three same-size boxes in a row, and one lone clamp elsewhere.
        let mut detector = FixedBoxes(vec![
            ("bushing", rect(100, 200, 40, 60)),
            ("bushing", rect(200, 200, 40, 60)),
            ("bushing", rect(300, 200, 40, 60)),
            ("clamp", rect(500, 20, 30, 30)),
        ]);
        let mut out = Vec::new();
        run_with(&cli.args, &mut out, Some(&mut detector)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["quality"]["quantitative"], true);
        let components = v["components"]
            .as_array()
            .expect("components with a detector");
        assert_eq!(components.len(), 4);
        for c in components {
            for key in [
                "class",
                "confidence",
                "bbox",
                "max_c",
                "mean_c",
                "phase_group",
                "delta_t_similar_c",
                "severity",
            ] {
                assert!(c.get(key).is_some(), "missing {key} in {c}");
            }
            assert!(c["max_c"].as_f64().unwrap() >= c["mean_c"].as_f64().unwrap());
        }
        assert_eq!(components[0]["bbox"], serde_json::json!([100, 200, 40, 60]));
        let grouped: Vec<&serde_json::Value> = components[..3].iter().collect();
        assert!(grouped.iter().all(|c| c["phase_group"]["size"] == 3));
        let reference: Vec<&&serde_json::Value> = grouped
            .iter()
            .filter(|c| c["phase_group"]["reference"] == true)
            .collect();
        assert_eq!(reference.len(), 1);
        assert!(reference[0]["delta_t_similar_c"].is_null());
        for c in grouped
            .iter()
            .filter(|c| c["phase_group"]["reference"] == false)
        {
            assert_eq!(c["severity"]["table"], "neta-similar");
            assert_eq!(c["similar_to"], reference[0]["phase_group"]["label"]);
            assert!(c["delta_t_similar_c"].as_f64().unwrap() >= 0.0);
        }
        assert!(components[3]["phase_group"].is_null());
        assert_eq!(components[3]["severity"]["table"], "neta-ambient");
    }

    #[test]
    fn output_rounds_to_a_ten_thousandth() {
        assert_eq!(round(1.234_56), 1.2346);
        assert_eq!(round(-0.000_04), -0.0);
    }
}
