//! The demo's gateways: what each one watches and the agent configuration it runs
//! with (TOML text, validated by the agent's own loader, and written beside its outbox
//! so it can be read, or run with `chitti-agent run --config`).
//!
//! - `gw-01` … `gw-NN` at the substation, each over one bay, with three simulated
//!   cameras: the breakers (`utility-absolute`: a phase-B connector heats through every
//!   level and cools again), the disconnectors compared phase against phase
//!   (`neta-similar` over the phase bodies, against the loaded phases' temperature:
//!   phase C losing its load is a cool exception) and the bushings. `gw-01`'s bushings
//!   camera streams the `components` scene (three bushings drawn by the generator the
//!   shipped detector was trained on) through the shipped INT8 detector, when an ONNX
//!   Runtime library is found ([`find_onnxruntime`]): its findings name the bushing and
//!   compare it with its loaded sibling (`neta-similar`). Without the library it runs on
//!   thresholds. The other gateways' bushings are healthy: nothing to report. Ambient
//!   and seeds differ per gateway and camera.
//! - `drone-dock-1` on the line: a folder of FLIR R-JPEGs from the last flight
//!   (`rjpeg_dir`). Once the hub holds every finding of its files it "lands": its agent
//!   stops and the gateway goes offline.

use super::seed::GatewayFiles;
use super::seed::{asset_id, BAYS, LINE, SUBSTATION};
use chitti_agent::config::{AgentConfig, AgentConfigFile};
use chitti_common::inspection::{inspect_file, InspectionOptions};
use std::path::{Path, PathBuf};

/// The drone dock's gateway id.
pub const DRONE_GATEWAY: &str = "drone-dock-1";
/// The drone dock's camera id.
pub const DRONE_CAMERA: &str = "drone-ir";
/// Simulated frame size (small enough for a laptop: 9 cameras use a few % of a core).
const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
/// Simulated frames per second.
const FPS: f64 = 2.0;

/// What a gateway of the demo watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Watches {
    /// A bay of the substation, with simulated cameras.
    Bay {
        /// Bay id.
        bay: &'static str,
        /// The scene's mean ambient, °C.
        ambient_c: f64,
        /// Base of the cameras' seeds.
        seed: u64,
        /// The bushings camera streams the `components` scene for the detector.
        components: bool,
    },
    /// The drone dock's folder.
    DroneDock,
}

/// One gateway of the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayPlan {
    /// Site id.
    pub site: &'static str,
    /// Gateway id.
    pub gateway: String,
    /// What it watches.
    pub watches: Watches,
}

/// The demo's gateways: `simulated` bay gateways (1 to 99), then the drone dock.
pub fn plan(simulated: usize) -> Vec<GatewayPlan> {
    let mut v: Vec<GatewayPlan> = (1..=simulated)
        .map(|k| GatewayPlan {
            site: SUBSTATION,
            gateway: format!("gw-{k:02}"),
            watches: Watches::Bay {
                bay: BAYS[(k - 1) % BAYS.len()].0,
                // 11, 13, 15 °C: warm enough to see, cool enough that loaded, healthy
                // phases stay below the first level (34 °C) through the ±3 °C drift.
                ambient_c: 11.0 + 2.0 * ((k - 1) % 3) as f64,
                seed: 100 * k as u64,
                components: k == 1,
            },
        })
        .collect();
    v.push(GatewayPlan {
        site: LINE,
        gateway: DRONE_GATEWAY.into(),
        watches: Watches::DroneDock,
    });
    v
}

/// Where a gateway's agent keeps its files.
pub fn agent_dir(data_dir: &Path, gateway: &str) -> PathBuf {
    data_dir.join("agents").join(gateway)
}

/// The drone dock's watch folder.
pub fn drone_inbox(data_dir: &Path) -> PathBuf {
    agent_dir(data_dir, DRONE_GATEWAY).join("inbox")
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

/// The shipped INT8 component detector, compiled in so the demo runs it from a release
/// binary anywhere (MIT OR Apache-2.0, `models/chitti-components-v1/MODEL.md`).
const SHIPPED_MODEL: &[u8] = include_bytes!("../../../models/chitti-components-v1/model.int8.onnx");

/// What the demo's component detector runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoDetector {
    /// The shipped model, written into the data folder.
    pub model: PathBuf,
    /// The ONNX Runtime library found on this machine.
    pub library: PathBuf,
}

/// An ONNX Runtime library on this machine: `ORT_DYLIB_PATH`, then where
/// `models/fetch-onnxruntime.sh` puts it in this checkout (`target/onnxruntime/<arch>/`),
/// then `libonnxruntime.so*` next to the executable.
pub fn find_onnxruntime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from) {
        if path.is_file() {
            return Some(path);
        }
    }
    let arch = std::env::consts::ARCH;
    let mut folders = vec![PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/onnxruntime"
    ))
    .join(arch)];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(bin) = exe.parent() {
            // target/<profile>/chitti-hub → target/onnxruntime/<arch>/
            if let Some(target) = bin.parent() {
                folders.push(target.join("onnxruntime").join(arch));
            }
            folders.push(bin.to_path_buf());
        }
    }
    folders.iter().find_map(|dir| {
        let mut libs: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
            })
            .collect();
        libs.sort();
        libs.pop()
    })
}

/// The demo's detector: the shipped model written to `data_dir/models/` (unless it is
/// there already) and the ONNX Runtime `library`.
pub fn install_detector(data_dir: &Path, library: PathBuf) -> anyhow::Result<DemoDetector> {
    use anyhow::Context;
    let model = data_dir
        .join("models")
        .join("chitti-components-v1.int8.onnx");
    if std::fs::read(&model).ok().as_deref() != Some(SHIPPED_MODEL) {
        std::fs::create_dir_all(model.parent().expect("a folder"))
            .and_then(|()| std::fs::write(&model, SHIPPED_MODEL))
            .with_context(|| format!("cannot write {}", model.display()))?;
    }
    Ok(DemoDetector { model, library })
}

/// How the demo's agents reach the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct HubLink {
    /// The embedded broker, `mqtt://…`.
    pub mqtt_url: String,
    /// The HTTP base for evidence uploads, `http://…`.
    pub hub_url: String,
    /// The hub's ack-signing public key, hex.
    pub hub_key: String,
}

/// The agent configuration of one gateway, as TOML text.
pub fn config_text(
    plan: &GatewayPlan,
    files: &GatewayFiles,
    data_dir: &Path,
    hub: &HubLink,
    speed: f64,
    detector: Option<&DemoDetector>,
) -> String {
    let dir = agent_dir(data_dir, &plan.gateway);
    let mut t = format!(
        "# Written by chitti-hub demo on every start; edits are overwritten.\n\
         version = 1\n\n[identity]\nsite = {}\ngateway = {}\n\n",
        toml_str(plan.site),
        toml_str(&plan.gateway)
    );
    match &plan.watches {
        Watches::Bay {
            bay,
            ambient_c,
            seed,
            components,
        } => {
            // The detector runs on the components scene only: the bars of the other
            // scenes are nothing the model knows.
            let detector = detector.filter(|_| *components);
            let not_detected = if detector.is_some() {
                "detect_components = false\n"
            } else {
                ""
            };
            // Keys of a [[camera]] come before its [camera.source] table.
            let camera = |t: &mut String, id: &str, asset: &str, extra: &str, scene: &str, seed| {
                t.push_str(&format!(
                    "[[camera]]\nid = {}\nasset = {}\n{extra}[camera.source]\nkind = \"simulated\"\n\
                     width = {WIDTH}\nheight = {HEIGHT}\nfps = {FPS:?}\nseed = {seed}\n\
                     speed = {speed:?}\nscene = \"{scene}\"\nambient_c = {ambient_c:?}\n\n",
                    toml_str(&format!("{bay}-{id}")),
                    toml_str(asset),
                ));
            };
            camera(
                &mut t,
                "breakers",
                &asset_id(bay, "cb", "b"),
                not_detected,
                "substation",
                seed + 1,
            );
            // Phase against phase: only the phase bodies are compared (sky and ground
            // would read as "colder than a loaded phase").
            let mut extra = format!("{not_detected}table = \"neta-similar\"\nrois = [\n");
            let rects = chitti_agent::sources::simulated::phase_body_rects(WIDTH, HEIGHT);
            for (r, phase) in rects.iter().zip(["A", "B", "C"]) {
                extra.push_str(&format!(
                    "  {{ name = \"phase {phase}\", rect = [{}, {}, {}, {}] }},\n",
                    r[0], r[1], r[2], r[3]
                ));
            }
            extra.push_str("]\n");
            camera(
                &mut t,
                "disconnectors",
                &asset_id(bay, "ds", "c"),
                &extra,
                "substation",
                seed + 2,
            );
            camera(
                &mut t,
                "bushings",
                &asset_id(bay, "bushing", "a"),
                "",
                if *components { "components" } else { "quiet" },
                seed + 3,
            );
            // A loaded phase reads ambient + ~12 °C: the similar-component reference
            // of the phase comparison. The threshold keeps healthy bodies out of the
            // ΔT table (and equals utility-absolute's own first level).
            t.push_str(&format!(
                "[analysis]\ntable = \"utility-absolute\"\nthreshold_c = 34.0\n\
                 reference = {{ kind = \"similar_component\", celsius = {:?}, \
                 source = \"loaded sibling phases\" }}\n\n",
                ambient_c + 12.0
            ));
            t.push_str(
                "[analysis.tracking]\nraise_after_frames = 3\nclear_after_frames = 10\n\
                 update_delta_c = 5.0\n\n",
            );
            if let Some(d) = detector {
                // One detection a second is plenty for a scene that changes over
                // minutes, and keeps the demo light on a laptop.
                t.push_str(&format!(
                    "[detector]\nenabled = true\nmodel = {}\nlibrary = {}\nrate_hz = 1.0\n\n",
                    toml_path(&d.model),
                    toml_path(&d.library)
                ));
            }
        }
        Watches::DroneDock => {
            t.push_str(&format!(
                "[[camera]]\nid = \"{DRONE_CAMERA}\"\n[camera.source]\nkind = \"rjpeg_dir\"\n\
                 path = {}\nsettle_ms = 300\nrescan_s = 5\n\n\
                 [analysis]\ntable = \"utility-absolute\"\n\n",
                toml_path(&drone_inbox(data_dir))
            ));
        }
    }
    t.push_str(&format!(
        "[outbox]\npath = {}\nmax_bytes = \"256 MiB\"\nresend_after_s = 10\n\n\
         [mqtt]\nurl = {}\nusername = {}\npassword_file = {}\nsigning_key_file = {}\n\
         hub_public_keys = [{}]\n\
         reconnect_min_ms = 200\nreconnect_max_ms = 5000\n\n\
         [evidence]\nhub_url = {}\n\n\
         [health]\nstatus_interval_s = 5\ntelemetry_interval_s = 30\nshutdown_deadline_s = 5\n\n\
         [remote]\nstate_dir = {}\n",
        toml_path(&dir.join("outbox")),
        toml_str(&hub.mqtt_url),
        toml_str(&format!("{}/{}", plan.site, plan.gateway)),
        toml_path(&files.password_file()),
        toml_path(&files.signing_key_file()),
        toml_str(&hub.hub_key),
        toml_str(&hub.hub_url),
        toml_path(&dir.join("remote-config")),
    ));
    t
}

/// Parses and validates a configuration made by [`config_text`].
pub fn parse(text: &str, gateway: &str) -> anyhow::Result<AgentConfig> {
    AgentConfig::from_toml(text, &format!("demo agent {gateway}"), Path::new("/"))
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A FLIR file the drone dock receives.
struct FlightImage {
    name: &'static str,
    bytes: std::borrow::Cow<'static, [u8]>,
}

/// Files compiled into the hub: public-domain (CC0) FLIR R-JPEGs, so the demo works
/// from a release binary anywhere. See `tests/fixtures/flir/MANIFEST.md`.
const EMBEDDED: [(&str, &[u8]); 3] = [
    (
        "flir_one_png_portrait.jpg",
        include_bytes!("../../../tests/fixtures/flir/flir_one_png_portrait.jpg"),
    ),
    (
        "flir_ax8_png_80x60.jpg",
        include_bytes!("../../../tests/fixtures/flir/flir_ax8_png_80x60.jpg"),
    ),
    (
        "flir_b60_png_embedded_png.jpg",
        include_bytes!("../../../tests/fixtures/flir/flir_b60_png_embedded_png.jpg"),
    ),
];

/// Drone R-JPEGs (MIT-licensed test data, not compiled in) used when the repository's
/// fixtures are at hand, with their sha256 from the MANIFEST.
const FROM_CHECKOUT: [(&str, &str); 2] = [
    (
        "dji_zenmuse_xtr.jpg",
        "c2ae58509119695cea72c27a344569e6e53196e968e5e091671e8f7d1813a74f",
    ),
    (
        "dji_xt2_le_header.jpg",
        "efdbc4e51a87a5f38943055fcd04dfb2bdd97ef549b1cdef034c0d7f5b1e6eaa",
    ),
];

/// The repository's fixture folder, when this binary runs from a checkout.
fn checkout_fixtures() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/flir"
    ))];
    // target/<profile>/chitti-hub → the workspace root.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(root.join("tests/fixtures/flir"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.join("MANIFEST.md").is_file())
}

fn flight_images() -> Vec<FlightImage> {
    let mut v: Vec<FlightImage> = EMBEDDED
        .iter()
        .map(|(name, bytes)| FlightImage {
            name,
            bytes: std::borrow::Cow::Borrowed(*bytes),
        })
        .collect();
    if let Some(dir) = checkout_fixtures() {
        for (name, sha) in FROM_CHECKOUT {
            match std::fs::read(dir.join(name)) {
                Ok(bytes) if chitti_common::inspection::sha256_hex(&bytes) == sha => {
                    v.push(FlightImage {
                        name,
                        bytes: std::borrow::Cow::Owned(bytes),
                    });
                }
                _ => tracing::debug!(name, "fixture not found in the checkout"),
            }
        }
    }
    v
}

/// Puts the flight's images into the drone dock's folder (those not there yet);
/// returns how many the folder holds. Each is written under a hidden name and renamed,
/// so the agent only ever sees complete files.
pub fn stage_flight(inbox: &Path) -> anyhow::Result<usize> {
    use anyhow::Context;
    std::fs::create_dir_all(inbox).with_context(|| format!("cannot create {}", inbox.display()))?;
    let images = flight_images();
    for image in &images {
        let path = inbox.join(image.name);
        if path.exists() {
            continue;
        }
        let tmp = inbox.join(format!(".{}.part", image.name));
        std::fs::write(&tmp, &image.bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(images.len())
}

/// How many findings the drone dock's agent reports for the files in `inbox`: the
/// same analysis as the agent's (`common::inspection`, the camera's table and
/// options), run here.
pub fn expected_drone_findings(config: &AgentConfig, inbox: &Path) -> anyhow::Result<u64> {
    let camera = config
        .cameras
        .first()
        .ok_or_else(|| anyhow::anyhow!("the drone dock has no camera"))?;
    let catalog = config.severity_catalog().map_err(anyhow::Error::msg)?;
    let table = catalog
        .get(config.table_for(camera))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("unknown severity table"))?;
    let a = &config.analysis;
    let options = InspectionOptions {
        table,
        analysis: chitti_common::analysis::AnalysisOptions {
            overrides: camera.radiometry.to_param_overrides(),
            threshold_c: a.threshold_c,
            min_area_px: a.min_area_px,
            max_hotspots: a.max_hotspots,
            rois: camera.rois.clone(),
            reference: None,
            ..Default::default()
        },
        limits: chitti_common::flir::ParseLimits::default(),
    };
    let mut n = 0u64;
    for entry in std::fs::read_dir(inbox)? {
        let path = entry?.path();
        let is_jpg = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jpg"));
        let hidden = path
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with('.'));
        if !path.is_file() || !is_jpg || hidden {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        if let Ok(inspection) = inspect_file(&bytes, &options) {
            n += inspection
                .frames
                .iter()
                .map(|f| f.regions.len() as u64)
                .sum::<u64>();
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the configurations point (any valid hub key).
    fn link() -> HubLink {
        HubLink {
            mqtt_url: "mqtt://127.0.0.1:1883".into(),
            hub_url: "http://127.0.0.1:8080".into(),
            hub_key: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a".into(),
        }
    }

    fn files(dir: &Path, site: &str, gateway: &str) -> GatewayFiles {
        GatewayFiles {
            dir: dir.join("gateways").join(site).join(gateway),
            active: true,
        }
    }

    #[test]
    fn every_planned_configuration_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let plans = plan(5);
        assert_eq!(plans.len(), 6);
        assert_eq!(plans[4].gateway, "gw-05");
        assert_eq!(plans[5].gateway, DRONE_GATEWAY);
        for p in &plans {
            let text = config_text(
                p,
                &files(dir.path(), p.site, &p.gateway),
                dir.path(),
                &link(),
                10.0,
                None,
            );
            let config = parse(&text, &p.gateway).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(config.identity.gateway, p.gateway);
            assert_eq!(config.identity.site, p.site);
        }
    }

    #[test]
    fn the_first_bay_streams_components_through_the_detector_alone() {
        let dir = tempfile::tempdir().unwrap();
        let detector = DemoDetector {
            model: dir.path().join("m.onnx"),
            library: dir.path().join("libonnxruntime.so.1"),
        };
        let plans = plan(2);
        let text = |p: &GatewayPlan, d: Option<&DemoDetector>| {
            let text = config_text(
                p,
                &files(dir.path(), p.site, &p.gateway),
                dir.path(),
                &link(),
                10.0,
                d,
            );
            parse(&text, &p.gateway).unwrap_or_else(|e| panic!("{e}\n{text}"))
        };
        let first = text(&plans[0], Some(&detector));
        assert!(first.detector.enabled);
        assert_eq!(
            first.detector.model.as_deref(),
            Some(detector.model.as_path())
        );
        let detected: Vec<(&str, bool)> = first
            .cameras
            .iter()
            .map(|c| (c.id.as_str(), c.detect_components))
            .collect();
        assert_eq!(
            detected,
            [
                ("bay-01-breakers", false),
                ("bay-01-disconnectors", false),
                ("bay-01-bushings", true)
            ]
        );
        let chitti_agent::config::SourceConfig::Simulated(sim) = &first.cameras[2].source else {
            panic!("simulated");
        };
        assert_eq!(
            sim.scene,
            chitti_agent::sources::simulated::SceneKind::Components
        );
        // Without a library the same camera runs on thresholds; other bays have none.
        assert!(!text(&plans[0], None).detector.enabled);
        assert!(!text(&plans[1], Some(&detector)).detector.enabled);
    }

    #[test]
    fn the_shipped_model_is_written_once_into_the_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("models/chitti-components-v1.int8.onnx");
        std::fs::create_dir_all(model.parent().unwrap()).unwrap();
        std::fs::write(&model, b"stale").unwrap();
        let d = install_detector(dir.path(), dir.path().join("libonnxruntime.so")).unwrap();
        assert_eq!(d.model, model);
        assert_eq!(std::fs::read(&model).unwrap(), SHIPPED_MODEL);
    }

    #[test]
    fn the_drone_dock_expects_the_findings_of_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = drone_inbox(dir.path());
        let n = stage_flight(&inbox).unwrap();
        assert!(n >= EMBEDDED.len());
        // Staging again writes nothing new.
        assert_eq!(stage_flight(&inbox).unwrap(), n);
        let p = &plan(1)[1];
        let text = config_text(
            p,
            &files(dir.path(), p.site, &p.gateway),
            dir.path(),
            &link(),
            10.0,
            None,
        );
        let config = parse(&text, &p.gateway).unwrap();
        // The FLIR ONE image has two hotspots at or above 34 °C; the AX8 and b60
        // images none.
        assert!(expected_drone_findings(&config, &inbox).unwrap() >= 2);
    }
}
