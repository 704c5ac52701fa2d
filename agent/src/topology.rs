//! The one place the agent's components are wired:
//!
//! ```text
//! source thread ──frames (bounded, drop+count)──▶ analysis thread ─┐   (one pair per camera)
//! patrol thread ──PatrolPosition (stamps frames)──┘               │
//!                       findings (bounded, back-pressure) ◀────────┘
//!                                   │
//!                        outbox writer thread ──durable append──▶ Outbox (redb | sled)
//!                                   │ notify                        ▲  │
//!                                   ▼                               │  ▼
//!                          MQTT sink task ──/findings──▶ broker ──/ack┘  status, telemetry
//! ```
//!
//! Shutdown runs in two phases: sources stop, the pipeline drains into the outbox
//! under the configured deadline (what is still running is logged), then the sink
//! publishes `online: false` and disconnects.

use crate::analysis::{CameraAnalyzer, Detector, NewFinding, NoDetector};
use crate::backoff::Backoff;
use crate::config::{AgentConfig, AgentConfigFile, SourceConfig};
use crate::detector::{DetectorHealth, DetectorState};
use crate::health::metrics::{self as m, MetricsSource, MetricsWriter};
use crate::health::{CameraHealth, FindingCounters, LatencyWindow, StatusBoard};
use crate::outbox::Outbox;
use crate::patrol::{spawn_patrol, PatrolPosition, SerialPanTiltPort};
use crate::shutdown::Shutdown;
use crate::sinks::evidence::{EvidenceStore, EvidenceUploaderConfig, UploaderHandle};
use crate::sinks::mqtt::{LinkState, MqttSink};
use crate::sources::config::SourceContext;
use crate::sources::simulated::{Scene, SimulatedCamera};
use crate::sources::{FileDone, FrameSender, SourceFrame};
use anyhow::Context;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

/// Frames queued per camera before new ones are dropped.
pub const FRAME_QUEUE: usize = 4;
/// Findings queued between analysis and the outbox writer (back-pressure beyond).
pub const FINDING_QUEUE: usize = 1024;
/// Most findings the writer commits in one transaction.
pub const MAX_GROUP_COMMIT: usize = 2048;

/// Retries of a failed outbox append: 0.1 s doubling to 10 s.
const APPEND_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

/// Findings of one frame on their way to the outbox.
struct FrameFindings {
    findings: Vec<NewFinding>,
    done: Option<Arc<FileDone>>,
}

/// What a run did, for logs and tests.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Frames analysed.
    pub frames: u64,
    /// Findings stored in the outbox.
    pub findings_stored: u64,
}

/// The next `[mqtt]` to run the sink on; pending forever without remote configuration.
async fn next_link(
    relink: &mut Option<watch::Receiver<Option<crate::config::MqttConfig>>>,
) -> Option<crate::config::MqttConfig> {
    match relink {
        Some(rx) => match rx.changed().await {
            Ok(()) => rx.borrow_and_update().clone(),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Runs the agent until `shutdown` turns true (or its sender is dropped).
pub async fn run(
    config: AgentConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<RunSummary> {
    run_with(config, shutdown, None).await
}

/// [`run`], with the MQTT sink also carrying configuration from the hub to `remote`
/// (the remote-configuration supervisor, `remote::run_managed`).
pub async fn run_with(
    config: AgentConfig,
    shutdown: watch::Receiver<bool>,
    remote: Option<crate::sinks::mqtt::RemoteLink>,
) -> anyhow::Result<RunSummary> {
    // A camera this build cannot drive stops the agent at once, naming it, rather than
    // leaving a source that retries forever.
    if !crate::features::V4L2_BUILT_IN {
        if let Some(camera) = config
            .cameras
            .iter()
            .find(|c| matches!(c.source, SourceConfig::V4l2(_)))
        {
            anyhow::bail!("camera {}: {}", camera.id, crate::features::V4L2_MISSING);
        }
    }
    let catalog = config
        .severity_catalog()
        .map_err(|e| anyhow::anyhow!("severity tables: {e}"))?;
    let uploads_evidence = config.evidence.hub_url.is_some();
    let outbox_config = config.outbox.clone();
    let outbox = tokio::task::spawn_blocking(move || {
        Outbox::open_configured(&outbox_config, uploads_evidence)
    })
    .await?
    .context("cannot open the outbox")?;
    let outbox = Arc::new(outbox);
    tracing::info!(engine = outbox.engine_name(), path = %config.outbox.path.display(),
        pending = outbox.status().depth, "outbox open");

    let stop = Shutdown::new();
    let link = Arc::new(LinkState::default());
    let new_findings = Arc::new(Notify::new());
    let latency = Arc::new(LatencyWindow::default());
    let counters = Arc::new(FindingCounters::default());
    let (findings_tx, findings_rx) = std::sync::mpsc::sync_channel::<FrameFindings>(FINDING_QUEUE);

    // Component detectors first (model loading is blocking work, and a camera's frames
    // should not queue up behind it). A detector that cannot load degrades to none:
    // the agent runs on thresholds alone and /status says why.
    let detector_health = Arc::new(DetectorHealth::new(DetectorState::Disabled));
    let switch = remote.as_ref().map(|r| Arc::clone(&r.models));
    if let Some(s) = &switch {
        s.watch_health(&detector_health);
    }
    let mut detectors = if config.detector.enabled {
        let switch = switch.clone();
        let detector_config = config.detector.clone();
        let cameras: Vec<_> = config
            .cameras
            .iter()
            .map(|c| (c.id.clone(), c.source.clone(), c.detect_components))
            .collect();
        let health = Arc::clone(&detector_health);
        tokio::task::spawn_blocking(move || {
            cameras
                .iter()
                .map(|(id, source, detect)| -> Box<dyn Detector> {
                    if *detect {
                        crate::detector::camera_detector(
                            &detector_config,
                            id,
                            matches!(source, SourceConfig::RjpegDir(_)),
                            &health,
                            switch.as_ref(),
                        )
                    } else {
                        Box::new(NoDetector)
                    }
                })
                .collect::<Vec<Box<dyn Detector>>>()
        })
        .await?
    } else {
        Vec::new()
    }
    .into_iter();

    let mut cameras = Vec::new();
    let mut sources: Vec<(String, JoinHandle<()>)> = Vec::new();
    let mut analyzers: Vec<JoinHandle<u64>> = Vec::new();
    let mut patrols = Vec::new();
    for camera in &config.cameras {
        let health = Arc::new(CameraHealth::new(&camera.id));
        cameras.push(Arc::clone(&health));
        let (tx, rx) = mpsc::channel::<SourceFrame>(FRAME_QUEUE);
        let mut sender = FrameSender::new(tx, Arc::clone(&health));
        if let Some(p) = &camera.patrol {
            let position = PatrolPosition::new();
            sender = sender.with_position(position.clone());
            let run = crate::patrol::config::plan(p);
            let port = SerialPanTiltPort::from_config(&run)
                .with_context(|| format!("camera {}: pan-tilt unit", camera.id))?;
            patrols.push(
                spawn_patrol(port, run, position)
                    .with_context(|| format!("camera {}: patrol", camera.id))?,
            );
        }
        let context = SourceContext {
            camera: &camera.id,
            state_dir: &config.outbox.path,
        };
        let handle = crate::sources::config::spawn(&camera.source, context, sender, stop.clone())
            .with_context(|| format!("camera {}", camera.id))?;
        sources.push((camera.id.clone(), handle));
        let table = catalog
            .get(config.table_for(camera))
            .cloned()
            .context("severity table vanished after validation")?;
        let detector = detectors
            .next()
            .unwrap_or_else(|| Box::new(NoDetector) as Box<dyn Detector>);
        let analyzer = CameraAnalyzer::new(
            &config.analysis,
            &config.camera_context(camera),
            table,
            detector,
        );
        analyzers.push(spawn_analysis(
            analyzer,
            rx,
            findings_tx.clone(),
            Arc::clone(&latency),
            Arc::clone(&counters),
        )?);
    }
    drop(findings_tx);

    let new_findings_evidence = Arc::new(Notify::new());
    let writer = spawn_writer(
        findings_rx,
        Arc::clone(&outbox),
        Arc::clone(&link),
        [
            Arc::clone(&new_findings),
            Arc::clone(&new_findings_evidence),
        ],
    )?;

    let mut board = StatusBoard::new(
        cameras,
        Arc::clone(&outbox) as Arc<dyn crate::health::BufferGauge>,
        latency,
        config.health.thermal_zones.clone(),
        config.outbox.path.clone(),
    );
    board.detector = Some(Arc::clone(&detector_health));
    board.model_update = remote.as_ref().map(|r| r.model_state.clone());
    // Evidence upload (optional: without a hub URL, evidence stays until its findings go).
    let uploader_stop = Shutdown::new();
    let uploader = match &config.evidence.hub_url {
        Some(url) => {
            // Validation makes the key mandatory with a hub URL; uploads are signed
            // with the same key as the finding batches.
            let key_file = config
                .mqtt
                .signing_key_file
                .as_ref()
                .context("evidence upload needs mqtt.signing_key_file")?;
            let key = crate::config::read_signing_key(key_file)
                .map_err(anyhow::Error::msg)
                .context("mqtt.signing_key_file")?;
            let mut up = EvidenceUploaderConfig::new(
                url.clone(),
                &config.identity.site,
                &config.identity.gateway,
                key,
            );
            up.timeout = Duration::from_secs(config.evidence.timeout_s);
            if let Some(file) = &config.evidence.ca_file {
                up.ca_pem = Some(
                    std::fs::read(file)
                        .with_context(|| format!("evidence.ca_file {}", file.display()))?,
                );
            }
            let store: Arc<dyn EvidenceStore> = Arc::clone(&outbox) as Arc<dyn EvidenceStore>;
            let (handle, control) =
                crate::sinks::evidence::spawn(up, store, uploader_stop.clone())?;
            Some((handle, control))
        }
        None => None,
    };
    let uploader_control = uploader.as_ref().map(|(_, c)| c.clone());
    board.evidence = uploader_control
        .clone()
        .map(|c| Arc::new(c) as Arc<dyn crate::health::EvidenceGauge>);
    let board = Arc::new(board);
    if let Some(control) = &uploader_control {
        // New findings usually bring new evidence: upload it promptly.
        let control = control.clone();
        let notify = Arc::clone(&new_findings_evidence);
        tokio::spawn(async move {
            loop {
                notify.notified().await;
                control.wake();
            }
        });
    }

    // Prometheus /metrics on a local address.
    let metrics_stop = Shutdown::new();
    let metrics_task = match config.health.metrics_listen {
        Some(addr) => {
            let listener = crate::health::metrics::bind(addr).await?;
            let source = Arc::new(AgentMetrics {
                board: Arc::clone(&board),
                counters: Arc::clone(&counters),
                link: Arc::clone(&link),
                uploader: uploader_control.clone(),
            });
            Some(tokio::spawn(crate::health::metrics::serve(
                listener,
                source,
                metrics_stop.clone(),
            )))
        }
        None => None,
    };

    let mut relink = remote.as_ref().map(|r| r.relink.clone());
    let start_sink = |mqtt: &crate::config::MqttConfig| -> anyhow::Result<(Shutdown, _)> {
        let mut cx = config.mqtt_context();
        cx.mqtt = mqtt;
        let sink = MqttSink::new(
            &cx,
            Arc::clone(&outbox),
            Arc::clone(&board),
            Arc::clone(&link),
            Arc::clone(&new_findings),
        )?
        .with_remote(remote.clone());
        let sink_stop = Shutdown::new();
        let task = tokio::spawn(sink.run(sink_stop.clone()));
        Ok((sink_stop, task))
    };
    let mut linked = config.mqtt.clone();
    let (mut sink_stop, mut sink_task) = start_sink(&linked)?;

    // Phase 0: running. Sources that end by themselves (a replay, a test's frame limit)
    // do not stop the agent: the findings still have to reach the hub. A change of
    // `[mqtt]` alone (remote configuration) replaces only the sink: cameras, analysis
    // and their trackers run on.
    let stopping = Shutdown::follow(shutdown);
    loop {
        tokio::select! {
            () = stopping.triggered() => break,
            Some(mqtt) = next_link(&mut relink) => {
                sink_stop.trigger();
                let _ = sink_task.await;
                match start_sink(&mqtt) {
                    Ok(started) => {
                        tracing::info!(url = %mqtt.url, "mqtt link replaced; the pipeline runs on");
                        linked = mqtt;
                        (sink_stop, sink_task) = started;
                    }
                    Err(err) => {
                        tracing::error!(%err, "the new mqtt link cannot be built; keeping the one before");
                        (sink_stop, sink_task) = start_sink(&linked)?;
                    }
                }
            }
        }
    }
    tracing::info!("shutting down: stopping sources");
    let deadline = Instant::now() + Duration::from_secs(config.health.shutdown_deadline_s);

    // Phase 1: stop sources and patrols, drain analysis and the writer into the outbox.
    stop.trigger();
    for p in &patrols {
        p.request_stop();
    }
    let drained = tokio::task::spawn_blocking(move || {
        let mut frames = 0;
        for (camera, handle) in sources {
            if join_until(handle, deadline).is_none() {
                tracing::warn!(camera, "source still running at the shutdown deadline");
            }
        }
        for handle in analyzers {
            match join_until(handle, deadline) {
                Some(n) => frames += n,
                None => tracing::warn!("analysis still running at the shutdown deadline"),
            }
        }
        let stored = join_until(writer, deadline);
        if stored.is_none() {
            tracing::warn!("outbox writer still running at the shutdown deadline");
        }
        for p in patrols {
            let _ = p.join();
        }
        RunSummary {
            frames,
            findings_stored: stored.unwrap_or(0),
        }
    })
    .await?;

    // Phase 2: tell the hub we are going, on purpose.
    sink_stop.trigger();
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    if tokio::time::timeout(remaining, sink_task).await.is_err() {
        tracing::warn!("mqtt sink still running at the shutdown deadline");
    }
    metrics_stop.trigger();
    if let Some(task) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    uploader_stop.trigger();
    if let Some((handle, control)) = uploader {
        control.wake();
        let deadline = Instant::now() + Duration::from_secs(2);
        let joined = tokio::task::spawn_blocking(move || join_until(handle, deadline)).await;
        if !matches!(joined, Ok(Some(()))) {
            tracing::warn!("evidence uploader still running at the shutdown deadline");
        }
    }
    tracing::info!(
        frames = drained.frames,
        stored = drained.findings_stored,
        pending = outbox.status().depth,
        "stopped"
    );
    Ok(drained)
}

/// The findings a configuration's simulated cameras produce over their `frames`, found
/// by running the same frames through the same analysis in-process: what an agent
/// with this configuration must deliver (ids and clocks aside). For tests and the demo's
/// self-check; cameras without a frame limit are skipped.
pub fn predicted_findings(
    config: &AgentConfig,
) -> Result<Vec<chitti_common::finding::Finding>, String> {
    let catalog = config.severity_catalog()?;
    let mut out = Vec::new();
    for camera in &config.cameras {
        let SourceConfig::Simulated(sim) = &camera.source else {
            continue;
        };
        let Some(frames) = sim.frames else {
            continue;
        };
        let scene = Scene::new(SimulatedCamera::from_config(&camera.id, sim))?;
        let table = catalog
            .get(config.table_for(camera))
            .ok_or_else(|| format!("camera {}: unknown severity table", camera.id))?
            .clone();
        let mut analyzer = CameraAnalyzer::new(
            &config.analysis,
            &config.camera_context(camera),
            table,
            Box::new(NoDetector),
        );
        for n in 0..frames {
            let frame = scene.source_frame(n, chrono::Utc::now().fixed_offset());
            let outcome = analyzer.process(&frame).map_err(|e| e.to_string())?;
            out.extend(outcome.findings.into_iter().map(|f| f.finding));
        }
    }
    Ok(out)
}

/// What `/metrics` reports.
struct AgentMetrics {
    board: Arc<StatusBoard>,
    counters: Arc<FindingCounters>,
    link: Arc<LinkState>,
    uploader: Option<UploaderHandle>,
}

impl MetricsSource for AgentMetrics {
    fn render(&self, out: &mut MetricsWriter) {
        use std::sync::atomic::Ordering::Relaxed;
        for c in &self.board.cameras {
            let labels = [(m::LABEL_CAMERA, c.id())];
            out.counter(
                m::FRAMES_TOTAL,
                "Frames handed to analysis.",
                &labels,
                c.frames() as f64,
            );
            out.counter(
                m::FRAME_DROPS_TOTAL,
                "Frames dropped because analysis was behind.",
                &labels,
                c.drops() as f64,
            );
        }
        let status = self.board.outbox.status();
        out.gauge(
            m::OUTBOX_FINDINGS,
            "Findings in the outbox, not yet acknowledged by the hub.",
            &[],
            status.depth as f64,
        );
        out.gauge(
            m::OUTBOX_BYTES,
            "Bytes of findings and evidence in the outbox.",
            &[],
            status.bytes as f64,
        );
        out.counter(
            m::OUTBOX_EVICTED_TOTAL,
            "Outbox evictions to stay within its cap.",
            &[(m::LABEL_KIND, "evidence")],
            status.evicted.evidence as f64,
        );
        out.counter(
            m::OUTBOX_EVICTED_TOTAL,
            "Outbox evictions to stay within its cap.",
            &[(m::LABEL_KIND, "findings")],
            status.evicted.findings as f64,
        );
        for (state, n) in [
            ("raised", &self.counters.raised),
            ("updated", &self.counters.updated),
            ("cleared", &self.counters.cleared),
        ] {
            out.counter(
                m::FINDINGS_TOTAL,
                "Findings produced, by track state.",
                &[(m::LABEL_STATE, state)],
                n.load(Relaxed) as f64,
            );
        }
        out.gauge(
            m::MQTT_CONNECTED,
            "1 while connected to the broker.",
            &[],
            if self.link.is_up() { 1.0 } else { 0.0 },
        );
        out.counter(
            m::ACKS_REFUSED_TOTAL,
            "Acks refused (not signed by a configured hub key for this gateway): nothing deleted.",
            &[],
            self.link.acks_refused() as f64,
        );
        out.counter(
            m::ACKS_UNMATCHED_TOTAL,
            "Verified acks that answered no batch in flight (replays, duplicates): nothing deleted.",
            &[],
            self.link.acks_unmatched() as f64,
        );
        if let Some(ms) = self.board.latency.last_median_ms() {
            out.gauge(
                m::ANALYSIS_LATENCY_SECONDS,
                "Median analysis time per frame over the last telemetry interval.",
                &[],
                ms / 1000.0,
            );
        }
        if let Some(d) = &self.board.detector {
            out.gauge(
                m::DETECTOR_DEGRADED,
                "1 while the component detector is degraded (thresholds alone).",
                &[],
                if d.is_degraded() { 1.0 } else { 0.0 },
            );
            out.counter(
                m::DETECTOR_RUNS_TOTAL,
                "Component detections completed.",
                &[],
                d.runs() as f64,
            );
            out.counter(
                m::DETECTOR_ERRORS_TOTAL,
                "Component detections that failed.",
                &[],
                d.errors() as f64,
            );
            out.counter(
                m::DETECTOR_SKIPPED_TOTAL,
                "Frames replaced by a newer one before the detector took them.",
                &[],
                d.skipped() as f64,
            );
            out.gauge(
                m::DETECTOR_SECONDS,
                "Duration of the last component detection.",
                &[],
                d.last_inference_seconds(),
            );
        }
        if let Some(u) = &self.uploader {
            out.counter(
                m::EVIDENCE_UPLOADED_TOTAL,
                "Evidence blobs uploaded to the hub.",
                &[],
                u.stats().uploaded as f64,
            );
        }
    }
}

/// Joins a thread, giving up (and leaving it detached) at `deadline`.
fn join_until<T: Send + 'static>(handle: JoinHandle<T>, deadline: Instant) -> Option<T> {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.join().ok()
}

fn spawn_analysis(
    mut analyzer: CameraAnalyzer,
    mut frames: mpsc::Receiver<SourceFrame>,
    findings: std::sync::mpsc::SyncSender<FrameFindings>,
    latency: Arc<LatencyWindow>,
    counters: Arc<FindingCounters>,
) -> std::io::Result<JoinHandle<u64>> {
    std::thread::Builder::new()
        .name(format!("analysis-{}", analyzer.camera()))
        .spawn(move || {
            let mut analysed = 0u64;
            while let Some(frame) = frames.blocking_recv() {
                let done = frame.file.as_ref().map(|f| Arc::clone(&f.done));
                let span = tracing::debug_span!("frame", camera = %frame.camera, seq = frame.seq);
                let _enter = span.enter();
                match analyzer.process(&frame) {
                    Ok(outcome) => {
                        analysed += 1;
                        latency.record(outcome.latency);
                        for f in &outcome.findings {
                            counters.count(f.finding.track.state);
                            tracing::info!(finding = %f.finding.id, track = %f.finding.track.id,
                                state = ?f.finding.track.state, level = f.finding.severity.level,
                                max_c = f.finding.hotspot.max_c, "finding");
                        }
                        if outcome.findings.is_empty() {
                            if let Some(done) = done {
                                done.frame_finished();
                            }
                        } else if findings
                            .send(FrameFindings {
                                findings: outcome.findings,
                                done,
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::error!(camera = %analyzer.camera(), seq = frame.seq, %err, "frame not analysed");
                        if let Some(done) = done {
                            done.frame_finished();
                        }
                    }
                }
            }
            analysed
        })
}

fn spawn_writer(
    rx: std::sync::mpsc::Receiver<FrameFindings>,
    outbox: Arc<Outbox>,
    link: Arc<LinkState>,
    notify: [Arc<Notify>; 2],
) -> std::io::Result<JoinHandle<u64>> {
    std::thread::Builder::new().name("outbox-writer".into()).spawn(move || {
        let mut stored = 0u64;
        while let Ok(first) = rx.recv() {
            // Group commit: everything already queued goes into one transaction.
            let mut group = vec![first];
            let mut count = group[0].findings.len();
            while count < MAX_GROUP_COMMIT {
                match rx.try_recv() {
                    Ok(more) => {
                        count += more.findings.len();
                        group.push(more);
                    }
                    Err(_) => break,
                }
            }
            let items: Vec<NewFinding> = group.iter().flat_map(|g| g.findings.iter().cloned()).collect();
            let mut retries = APPEND_RETRY.retries();
            loop {
                match outbox.append(&items, link.is_up()) {
                    Ok(report) => {
                        stored += report.stored as u64;
                        if report.evicted.evidence + report.evicted.findings > 0 {
                            tracing::warn!(evidence = report.evicted.evidence, findings = report.evicted.findings,
                                "outbox full: evicted");
                        }
                        break;
                    }
                    Err(err) => {
                        // Keep the findings in memory and retry: the disk may come back
                        // (full, remounted). Analysis backs up behind us meanwhile.
                        let wait = retries.next_delay();
                        tracing::error!(%err, findings = items.len(), retry_in_ms = wait.as_millis() as u64, "outbox append failed");
                        std::thread::sleep(wait);
                    }
                }
            }
            for g in group {
                if let Some(done) = g.done {
                    done.frame_finished();
                }
            }
            for n in &notify {
                n.notify_one();
            }
        }
        stored
    })
}
