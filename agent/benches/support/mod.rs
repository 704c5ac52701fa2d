//! What the agent's benches share: one simulated 640×480 camera and the configuration
//! its analysis runs with.

use chitti_agent::config::{nominal_camera_params, AgentConfig, AgentConfigFile};
use chitti_agent::sources::simulated::{Scene, SceneKind, SimulatedCamera};
use chitti_agent::sources::SourceFrame;
use chitti_common::severity::SeverityTable;
use std::path::Path;

/// One simulated camera, defaults otherwise.
const CONFIG: &str = r#"
version = 1
[identity]
site = "bench"
gateway = "gw-1"
[[camera]]
id = "sim-1"
[camera.source]
kind = "simulated"
"#;

/// The benches' configuration and its `utility-absolute` severity table.
pub fn config_and_table() -> (AgentConfig, SeverityTable) {
    let config = AgentConfig::from_toml(CONFIG, "bench", Path::new("/")).unwrap();
    let table = config
        .severity_catalog()
        .unwrap()
        .get("utility-absolute")
        .unwrap()
        .clone();
    (config, table)
}

/// A 640×480, 30 fps simulated camera showing `kind` (seed 1, ambient 15 °C, 0.1 °C
/// noise): frame `700 * 30` is scene time 700 s, the connector at its peak.
pub fn scene(kind: SceneKind) -> Scene {
    Scene::new(SimulatedCamera {
        camera: "sim-1".into(),
        width: 640,
        height: 480,
        fps: 30.0,
        seed: 1,
        speed: 1.0,
        scene: kind,
        frames: None,
        unpaced: true,
        params: nominal_camera_params(),
        ambient_c: 15.0,
        noise_c: 0.1,
    })
    .unwrap()
}

/// Frame `n` of `scene`, stamped now.
pub fn source_frame(scene: &Scene, n: u64) -> SourceFrame {
    scene.source_frame(n, chrono::Utc::now().fixed_offset())
}
