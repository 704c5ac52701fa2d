//! Agent pipeline benchmarks (criterion): per-frame analysis of a simulated 640×480
//! camera (no detector), the simulated scene itself, evidence encoding, and outbox
//! appends on each engine.
//!
//! Run: `cargo bench -p chitti-agent --bench pipeline`
//! (or `agent/benches/run-benches.sh`, which also runs the whole-process benchmark).

use chitti_agent::analysis::{CameraAnalyzer, NewFinding, NoDetector};
use chitti_agent::config::{nominal_camera_params, AgentConfig};
use chitti_agent::outbox::{Outbox, RedbEngine, SledEngine, StoreEngine};
use chitti_agent::sources::simulated::{Scene, SceneKind, SimulatedCamera};
use chitti_agent::sources::SourceFrame;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::path::Path;

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

fn scene() -> Scene {
    Scene::new(SimulatedCamera {
        camera: "sim-1".into(),
        width: 640,
        height: 480,
        fps: 30.0,
        seed: 1,
        speed: 1.0,
        scene: SceneKind::Substation,
        frames: None,
        unpaced: true,
        params: nominal_camera_params(),
        ambient_c: 15.0,
        noise_c: 0.1,
    })
    .unwrap()
}

fn frame(scene: &Scene, n: u64) -> SourceFrame {
    scene.source_frame(n, chrono::Utc::now().fixed_offset())
}

fn analysis(c: &mut Criterion) {
    let config = AgentConfig::from_toml(CONFIG, "bench", Path::new("/")).unwrap();
    let table = config
        .severity_catalog()
        .unwrap()
        .get("utility-absolute")
        .unwrap()
        .clone();
    let scene = scene();
    // Scene time 700 s: the connector is at its peak, so there are hotspots to segment
    // and track (the expensive case); frames 0..30 of that second.
    let frames: Vec<SourceFrame> = (0..30).map(|i| frame(&scene, 700 * 30 + i)).collect();
    let mut group = c.benchmark_group("agent");
    group.throughput(Throughput::Elements(1));
    group.bench_function("analyse_640x480_frame_with_hotspots", |b| {
        let mut analyzer = CameraAnalyzer::new(
            &config,
            &config.cameras[0],
            table.clone(),
            Box::new(NoDetector),
        );
        let mut i = 0usize;
        b.iter(|| {
            let out = analyzer.process(&frames[i % frames.len()]).unwrap();
            i += 1;
            out.regions
        })
    });
    let quiet: Vec<SourceFrame> = (0..30).map(|i| frame(&scene, i)).collect();
    group.bench_function("analyse_640x480_frame_quiet", |b| {
        let mut analyzer = CameraAnalyzer::new(
            &config,
            &config.cameras[0],
            table.clone(),
            Box::new(NoDetector),
        );
        let mut i = 0usize;
        b.iter(|| {
            let out = analyzer.process(&quiet[i % quiet.len()]).unwrap();
            i += 1;
            out.regions
        })
    });
    group.bench_function("simulated_scene_render_640x480", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            scene.render(n)
        })
    });
    group.bench_function("evidence_png_640x480", |b| {
        let raw = scene.render(700 * 30);
        let meta = chitti_common::evidence::RadiometricPngMeta {
            version: 1,
            camera: "sim-1".into(),
            captured_at: chrono::Utc::now().fixed_offset(),
            params: nominal_camera_params(),
            saturated_max_c: Some(180.0),
            kelvin_per_count: None,
        };
        b.iter(|| {
            chitti_common::evidence::encode_radiometric_png(&raw, &meta)
                .unwrap()
                .len()
        })
    });
    group.finish();
}

/// Findings as the analysis makes them (one real finding, fresh ids).
fn findings(n: usize) -> Vec<NewFinding> {
    let config = AgentConfig::from_toml(CONFIG, "bench", Path::new("/")).unwrap();
    let table = config
        .severity_catalog()
        .unwrap()
        .get("utility-absolute")
        .unwrap()
        .clone();
    let scene = scene();
    let mut analyzer =
        CameraAnalyzer::new(&config, &config.cameras[0], table, Box::new(NoDetector));
    let mut template = None;
    for i in 0..60 {
        if let Some(f) = analyzer
            .process(&frame(&scene, 690 * 30 + i))
            .unwrap()
            .findings
            .pop()
        {
            template = Some(f);
            break;
        }
    }
    let mut template = template.expect("the scene raises a finding");
    template.evidence = None;
    template.finding.evidence = None;
    (0..n)
        .map(|_| {
            let mut f = template.clone();
            f.finding.id = uuid::Uuid::now_v7();
            f
        })
        .collect()
}

fn outbox(c: &mut Criterion) {
    let mut group = c.benchmark_group("outbox");
    group.sample_size(20);
    for batch in [1usize, 1000] {
        group.throughput(Throughput::Elements(batch as u64));
        for engine in ["redb", "sled"] {
            group.bench_function(
                format!("{engine}_append_{batch}_findings_per_commit"),
                |b| {
                    let dir = tempfile::tempdir().unwrap();
                    let store: Box<dyn StoreEngine> = match engine {
                        "redb" => Box::new(RedbEngine::open(dir.path()).unwrap()),
                        _ => Box::new(SledEngine::open(dir.path()).unwrap()),
                    };
                    let outbox = Outbox::open(store, 8 << 30, true).unwrap();
                    b.iter_batched(
                        || findings(batch),
                        |items| outbox.append(&items, true).unwrap().stored,
                        BatchSize::LargeInput,
                    )
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, analysis, outbox);
criterion_main!(benches);
