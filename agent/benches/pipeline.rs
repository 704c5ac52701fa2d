//! Agent pipeline benchmarks (criterion): per-frame analysis of a simulated 640×480
//! camera (no detector), the simulated scene itself, evidence encoding, and outbox
//! appends on each engine.
//!
//! Run: `cargo bench -p chitti-agent --bench pipeline`
//! (or `agent/benches/run-benches.sh`, which also runs the whole-process benchmark).

mod support;

use chitti_agent::analysis::{CameraAnalyzer, NewFinding, NoDetector};
use chitti_agent::outbox::{Outbox, RedbEngine, SledEngine, StoreEngine};
use chitti_agent::sources::simulated::SceneKind;
use chitti_agent::sources::SourceFrame;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn analysis(c: &mut Criterion) {
    let (config, table) = support::config_and_table();
    let scene = support::scene(SceneKind::Substation);
    // Scene time 700 s: the connector is at its peak, so there are hotspots to segment
    // and track (the expensive case); frames 0..30 of that second.
    let frames: Vec<SourceFrame> = (0..30)
        .map(|i| support::source_frame(&scene, 700 * 30 + i))
        .collect();
    let mut group = c.benchmark_group("agent");
    group.throughput(Throughput::Elements(1));
    group.bench_function("analyse_640x480_frame_with_hotspots", |b| {
        let mut analyzer = CameraAnalyzer::new(
            &config.analysis,
            &config.camera_context(&config.cameras[0]),
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
    let quiet: Vec<SourceFrame> = (0..30).map(|i| support::source_frame(&scene, i)).collect();
    group.bench_function("analyse_640x480_frame_quiet", |b| {
        let mut analyzer = CameraAnalyzer::new(
            &config.analysis,
            &config.camera_context(&config.cameras[0]),
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
            params: chitti_agent::config::nominal_camera_params(),
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
    let (config, table) = support::config_and_table();
    let scene = support::scene(SceneKind::Substation);
    let mut analyzer = CameraAnalyzer::new(
        &config.analysis,
        &config.camera_context(&config.cameras[0]),
        table,
        Box::new(NoDetector),
    );
    let mut template = None;
    for i in 0..60 {
        if let Some(f) = analyzer
            .process(&support::source_frame(&scene, 690 * 30 + i))
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
