//! `chitti-hub demo`: the whole system in one process, on a machine with no database
//! server, broker or camera.
//!
//! ```text
//! seed (sites, admin, gateways) ──▶ store ◀── serve::serve (embedded rumqttd, SQLite, API)
//!                                                  ▲ MQTT + signed evidence PUTs
//! agents (chitti_agent::remote::run_managed, in-process) ┘
//!   gw-01 … gw-NN: simulated cameras over the substation's bays
//!   drone-dock-1:  a folder of FLIR R-JPEGs; offline once they are uploaded
//! ```
//!
//! - **One wiring**: the hub is [`crate::serve::serve`] with the embedded defaults; the
//!   demo only decides addresses, seeds the store and runs agents beside it (it calls
//!   `serve`, the store, [`crate::credentials`] and the agent's topology, nothing else).
//! - **Optional**: cargo feature `demo`, on by default; `--no-default-features` leaves
//!   it, and with it the agent, out of fleet builds.
//! - **Resumable**: everything lives in the data folder (default `chitti-demo/`): the
//!   SQLite database and evidence, `admin-password`, the gateways' credentials
//!   (`gateways/{site}/{gateway}/`, as `gateway add` writes them), each agent's
//!   configuration, outbox and the drone's folder (`agents/{gateway}/`). Seeding adds
//!   only what is missing, so a rerun resumes the same data; a lock file keeps a second
//!   demo off the same folder.
//! - **Ports**: 1883 and 8080 on 127.0.0.1 by default, any free port when one is taken
//!   (said in the printed block); an address given with `--http`/`--mqtt` must be free.
//! - **Stopping**: SIGINT or SIGTERM stops the agents first (each drains into its
//!   outbox and says `online: false`), then the hub; a second Ctrl-C exits at once.
//! - **Terminal**: one block says where everything is; then one line per notable event
//!   (an alert raised, changing level, a cool exception, cleared; a gateway online or
//!   offline). Other components log warnings only, unless `CHITTI_LOG` says otherwise.

mod agents;
mod ports;
mod seed;

pub use agents::{DRONE_CAMERA, DRONE_GATEWAY};
pub use ports::{resolve as resolve_listen, Listen, DEFAULT_HTTP, DEFAULT_MQTT};
pub use seed::{ADMIN, BAYS, LINE, SUBSTATION, TOWERS};

use crate::config::HubConfig;
use crate::store::{AnyStore, FindingQuery};
use crate::store::{FleetStore, IngestStore};
use anyhow::Context;
use chitti_common::finding::{Finding, FindingSource, TrackState};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// `chitti-hub demo` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Data folder (database, evidence, credentials, the agents' outboxes); running
    /// again with the same folder resumes.
    #[arg(long, default_value = "chitti-demo")]
    pub data: PathBuf,
    /// HTTP address (API, docs, health); default 127.0.0.1:8080, or a free port when
    /// that is taken.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// MQTT address of the embedded broker; default 127.0.0.1:1883, or a free port
    /// when that is taken.
    #[arg(long)]
    pub mqtt: Option<SocketAddr>,
    /// Simulated substation gateways (each with three cameras), besides the drone dock.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=99))]
    pub gateways: u8,
    /// Scene seconds per wall second of the simulated cameras (10: a fault heats up,
    /// peaks and cools within every 2 minutes).
    #[arg(long, default_value_t = 10.0)]
    pub speed: f64,
    /// Password of user `admin` (default: generated on the first run and kept in the
    /// data folder).
    #[arg(long)]
    pub admin_password: Option<String>,
}

/// The demo's log filter unless `CHITTI_LOG` is set: its own lines, warnings of the
/// rest, but not the agents' "plain http" warning (loopback, on purpose) nor rumqttd,
/// which logs every ordinary disconnect as an error.
pub const DEFAULT_LOG_FILTER: &str =
    "warn,chitti_hub::demo=info,chitti_agent::sinks::evidence=error,rumqttd=off";

/// Starts tracing for the demo: its own lines at info, everything else at warn
/// (`CHITTI_LOG` overrides).
pub fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHITTI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// The address to connect to for a listener (an unspecified address means loopback).
fn connect_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// Holds the data folder's lock for the demo's lifetime.
fn lock_data_dir(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("demo.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "another chitti-hub demo is using {} (stop it, or use another --data)",
            dir.display()
        )
    })
}

/// A running agent.
struct RunningAgent {
    gateway: String,
    stop: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Runs the demo until `shutdown` turns true.
pub async fn run(args: DemoArgs, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0 && args.speed <= 10_000.0) {
        anyhow::bail!("--speed {}: must be > 0 and at most 10000", args.speed);
    }
    let data_dir = std::env::current_dir().unwrap_or_default().join(&args.data);
    let http = resolve_listen(args.http, DEFAULT_HTTP, "HTTP", "--http ADDR")?;
    let mqtt = resolve_listen(args.mqtt, DEFAULT_MQTT, "MQTT", "--mqtt ADDR")?;
    let _lock = lock_data_dir(&data_dir)?;

    let mut config = HubConfig {
        data_dir: data_dir.clone(),
        ..HubConfig::default()
    };
    config.http.listen = http.addr;
    config.broker.embedded.listen = mqtt.addr;
    config.validate()?;

    // The store first: sites and the admin exist before anyone can sign in.
    let store = Arc::new(crate::serve::open_store(&config).await?);
    // The key `serve` signs acks with: the agents are told its public half.
    let hub_key = crate::hub_key::load_or_create(&crate::hub_key::path(&config))?;
    let hub_key = chitti_common::signing::public_key_hex(&hub_key.verifying_key());
    let counts = seed::sites(&store).await.context("seeding the sites")?;
    let admin = seed::admin(&store, &data_dir, args.admin_password.as_deref()).await?;
    if counts.created > 0 {
        tracing::info!(
            "seeded {} structures and {} assets",
            counts.structures,
            counts.assets
        );
    }

    let (hub_stop_tx, hub_stop_rx) = watch::channel(false);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let mut hub = tokio::spawn(crate::serve::serve(config, hub_stop_rx, Some(started_tx)));
    let running = tokio::select! {
        r = started_rx => r.ok(),
        r = &mut hub => {
            r.context("the hub task failed")??;
            None
        }
    };
    let Some(running) = running else {
        anyhow::bail!("the hub stopped while starting");
    };
    let mqtt_addr = connect_addr(*running.mqtt.first().context("no MQTT listener")?);
    let http_addr = connect_addr(running.http);
    let link = agents::HubLink {
        mqtt_url: format!("mqtt://{mqtt_addr}"),
        hub_url: format!("http://{http_addr}"),
        hub_key,
    };

    let result = run_agents(
        &args,
        &data_dir,
        &store,
        &link,
        Block {
            http: http_addr,
            mqtt: mqtt_addr,
            http_fallback: http.fallback_from,
            mqtt_fallback: mqtt.fallback_from,
            admin: &admin,
            counts,
        },
        &mut shutdown,
    )
    .await;

    let _ = hub_stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(15), hub).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => tracing::warn!(%err, "the hub stopped with an error"),
        Ok(Err(err)) => tracing::warn!(%err, "the hub task failed"),
        Err(_) => tracing::warn!("the hub did not stop within 15 s"),
    }
    store.close().await;
    result?;
    tracing::info!(
        "stopped; `chitti-hub demo --data {}` resumes",
        args.data.display()
    );
    Ok(())
}

/// What the printed block shows.
struct Block<'a> {
    http: SocketAddr,
    mqtt: SocketAddr,
    http_fallback: Option<SocketAddr>,
    mqtt_fallback: Option<SocketAddr>,
    admin: &'a seed::AdminLogin,
    counts: seed::SiteCounts,
}

/// Enrols the gateways, starts their agents, prints the block, and runs until
/// `shutdown`; stops the agents before returning.
async fn run_agents(
    args: &DemoArgs,
    data_dir: &Path,
    store: &Arc<AnyStore>,
    link: &agents::HubLink,
    block: Block<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let plans = agents::plan(usize::from(args.gateways));
    let detector = agents::find_onnxruntime()
        .map(|library| agents::install_detector(data_dir, library))
        .transpose()?;
    let mut agents: Vec<RunningAgent> = Vec::new();
    let mut drone: Option<(chitti_agent::config::AgentConfig, Arc<watch::Sender<bool>>)> = None;
    let mut images = 0;
    let started = async {
        for plan in &plans {
            let files = seed::gateway(
                store,
                data_dir,
                plan.site,
                &plan.gateway,
                &link.mqtt_url,
                &chitti_common::signing::parse_public_key(&link.hub_key)
                    .map_err(anyhow::Error::msg)?,
            )
            .await?;
            if !files.active {
                continue;
            }
            if plan.watches == agents::Watches::DroneDock {
                images = agents::stage_flight(&agents::drone_inbox(data_dir))?;
            }
            let text =
                agents::config_text(plan, &files, data_dir, link, args.speed, detector.as_ref());
            let config = agents::parse(&text, &plan.gateway)?;
            let dir = agents::agent_dir(data_dir, &plan.gateway);
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(dir.join("agent.toml"), &text))
                .with_context(|| format!("cannot write {}", dir.display()))?;
            let (tx, rx) = watch::channel(false);
            let tx = Arc::new(tx);
            if plan.watches == agents::Watches::DroneDock {
                drone = Some((config.clone(), Arc::clone(&tx)));
            }
            agents.push(RunningAgent {
                gateway: format!("{}/{}", plan.site, plan.gateway),
                stop: tx,
                // Managed: the demo's gateways take configuration from the hub too.
                task: tokio::spawn(chitti_agent::remote::run_managed(config, dir, rx)),
            });
        }
        anyhow::Ok(())
    }
    .await;
    if started.is_ok() {
        print_block(&block, &plans, args, data_dir, images, detector.as_ref()).await;
    }

    let (events_stop_tx, events_stop_rx) = watch::channel(false);
    let events = tokio::spawn(report_events(Arc::clone(store), events_stop_rx.clone()));
    let lander = drone.map(|(config, stop)| {
        tokio::spawn(land_drone(
            Arc::clone(store),
            config,
            agents::drone_inbox(data_dir),
            stop,
            events_stop_rx,
        ))
    });

    if started.is_ok() {
        let _ = shutdown.wait_for(|s| *s).await;
        tracing::info!("stopping: the agents first, then the hub");
        // A second Ctrl-C does not wait for the drain.
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("chitti-hub: interrupted again: exiting now");
                std::process::exit(130);
            }
        });
    }
    let _ = events_stop_tx.send(true);
    if let Some(l) = lander {
        let _ = l.await;
    }
    for a in &agents {
        let _ = a.stop.send(true);
    }
    for a in agents {
        match tokio::time::timeout(Duration::from_secs(15), a.task).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(err))) => {
                tracing::warn!("agent {} stopped with an error: {err:#}", a.gateway)
            }
            Ok(Err(err)) => tracing::warn!("agent {} failed: {err}", a.gateway),
            Err(_) => tracing::warn!("agent {} did not stop within 15 s", a.gateway),
        }
    }
    let _ = events.await;
    started
}

async fn print_block(
    b: &Block<'_>,
    plans: &[agents::GatewayPlan],
    args: &DemoArgs,
    data_dir: &Path,
    images: usize,
    detector: Option<&agents::DemoDetector>,
) {
    let fallback = |from: Option<SocketAddr>| match from {
        Some(a) => format!("   ({} is taken: using a free port)", a.port()),
        None => String::new(),
    };
    // The dashboard is part of the hub (`crate::dashboard`): it answers on the HTTP port.
    let dashboard = format!("http://{}/   (sign in as {})", b.http, b.admin.username);
    let password = match &b.admin.password {
        Some(p) => format!("{p}   (kept in {})", b.admin.file.display()),
        None => format!(
            "(set on the first run; {} was removed since)",
            b.admin.file.display()
        ),
    };
    let simulated: Vec<&str> = plans
        .iter()
        .filter(|p| p.watches != agents::Watches::DroneDock)
        .map(|p| p.gateway.as_str())
        .collect();
    let cycle_s = chitti_agent::sources::simulated::CYCLE_S / args.speed;
    let cycle = if cycle_s >= 90.0 {
        format!("{:.0} min", cycle_s / 60.0)
    } else {
        format!("{cycle_s:.0} s")
    };
    let mut out = String::new();
    out.push_str(&format!(
        "\nChitti demo: hub, broker and {} gateways in this process; data in {}\n\n",
        plans.len(),
        data_dir.display()
    ));
    out.push_str(&format!(
        "  Start here: open http://{}/ in a browser and sign in as {} with the password \
         below.\n\n",
        b.http, b.admin.username
    ));
    out.push_str(&format!("  dashboard   {dashboard}\n"));
    out.push_str(&format!("  API docs    http://{}/api/docs\n", b.http));
    out.push_str(&format!("  API         http://{}/api/v1\n", b.http));
    out.push_str(&format!(
        "  HTTP        {}{}\n",
        b.http,
        fallback(b.http_fallback)
    ));
    out.push_str(&format!(
        "  MQTT        mqtt://{}{}\n",
        b.mqtt,
        fallback(b.mqtt_fallback)
    ));
    out.push_str(&format!("  user        {}\n", b.admin.username));
    out.push_str(&format!("  password    {password}\n\n"));
    out.push_str(&format!(
        "  sites       {SUBSTATION} (Riverside 220 kV substation, {} bays) and {LINE} \
         ({} towers): {} structures, {} assets\n",
        BAYS.len(),
        TOWERS.len(),
        b.counts.structures,
        b.counts.assets
    ));
    if !simulated.is_empty() {
        out.push_str(&format!(
            "  gateways    {SUBSTATION}: {} with 3 simulated cameras each (breakers, \
             disconnectors, bushings), speed {}x\n",
            simulated.join(", "),
            args.speed,
        ));
    }
    out.push_str(&format!(
        "              {LINE}: {DRONE_GATEWAY}, {images} FLIR R-JPEGs from its last flight\n"
    ));
    let components = plans.iter().find_map(|p| match &p.watches {
        agents::Watches::Bay {
            bay,
            components: true,
            ..
        } => Some((p.gateway.as_str(), *bay)),
        _ => None,
    });
    if let Some((gateway, bay)) = components {
        match detector {
            Some(d) => out.push_str(&format!(
                "  detector    {gateway} {bay}-bushings: the shipped INT8 component detector \
                 (chitti-components-v1) on ONNX Runtime {}\n",
                d.library.display()
            )),
            None => out.push_str(&format!(
                "  detector    off: no ONNX Runtime library found; run \
                 models/fetch-onnxruntime.sh and start the demo again ({gateway}'s bushings \
                 run on thresholds meanwhile)\n"
            )),
        }
    }
    out.push_str(
        "\n  What happens in the next minutes (watch the Alert queue: new alerts arrive live):\n",
    );
    out.push_str(&format!(
        "    first minute  {DRONE_GATEWAY} uploads its flight: the hotspots of {images} FLIR \
         images, each with its thermogram; then it goes offline (Fleet page)\n"
    ));
    if !simulated.is_empty() {
        out.push_str(&format!(
            "    every {cycle:<7} a breaker connector on each bay heats through levels 1, 2 and \
             3 and cools again; a disconnector phase loses its load: a cool exception\n"
        ));
        if let Some((gateway, _)) = components {
            if detector.is_some() {
                out.push_str(&format!(
                    "                  {gateway}'s bushing B runs hot: the detector names the \
                     bushing and rates it against loaded bushing A (neta-similar ΔT); open \
                     bushing C is a cool exception\n"
                ));
            } else {
                out.push_str(&format!(
                    "                  {gateway}'s bushing B runs hot (found by threshold: \
                     no detector to name it)\n"
                ));
            }
        }
    }
    out.push_str(&format!(
        "\n  try         curl -s http://{}/api/v1/auth/login -H 'content-type: application/json' \
         -d '{{\"username\":\"{}\",\"password\":\"…\"}}'\n",
        b.http, b.admin.username
    ));
    out.push_str("  Ctrl-C stops everything; running it again resumes the same data.\n");
    println!("{out}");
}

/// Every finding of one gateway the store holds.
async fn count_findings(store: &AnyStore, site: &str, gateway: &str) -> anyhow::Result<u64> {
    let mut query = FindingQuery {
        site: Some(site.into()),
        gateway: Some(gateway.into()),
        limit: crate::store::MAX_PAGE_LIMIT,
        ..FindingQuery::default()
    };
    let mut n = 0;
    loop {
        let page = store.list_findings(&query).await?;
        n += page.items.len() as u64;
        match page.next_cursor {
            Some(c) => query.after = Some(c),
            None => return Ok(n),
        }
    }
}

/// Least time the drone dock stays online, so that its status is seen.
const DRONE_MIN_ONLINE: Duration = Duration::from_secs(5);
/// Longest it waits for the hub to hold its findings before it leaves anyway.
const DRONE_MAX_ONLINE: Duration = Duration::from_secs(180);

/// Stops the drone dock's agent once the hub holds every finding of its folder: it
/// "lands", and its gateway goes offline.
async fn land_drone(
    store: Arc<AnyStore>,
    config: chitti_agent::config::AgentConfig,
    inbox: PathBuf,
    stop: Arc<watch::Sender<bool>>,
    mut quit: watch::Receiver<bool>,
) {
    let started = tokio::time::Instant::now();
    let inbox2 = inbox.clone();
    let expected = match tokio::task::spawn_blocking(move || {
        agents::expected_drone_findings(&config, &inbox2)
    })
    .await
    {
        Ok(Ok(n)) => n,
        Ok(Err(err)) => {
            tracing::warn!("drone dock: cannot read {}: {err:#}", inbox.display());
            0
        }
        Err(_) => 0,
    };
    loop {
        let held = count_findings(&store, LINE, DRONE_GATEWAY)
            .await
            .unwrap_or(0);
        let elapsed = started.elapsed();
        if (held >= expected && elapsed >= DRONE_MIN_ONLINE) || elapsed >= DRONE_MAX_ONLINE {
            if held < expected {
                tracing::warn!(
                    "drone dock: {held} of {expected} findings at the hub; leaving anyway"
                );
            }
            tracing::info!(
                "{LINE}/{DRONE_GATEWAY}: flight uploaded ({held} findings); the drone dock goes offline"
            );
            let _ = stop.send(true);
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = quit.wait_for(|q| *q) => return,
        }
    }
}

/// What the event reporter remembers between polls.
#[derive(Default)]
struct Reported {
    /// Finding ids already seen (the most recent ones).
    seen: HashSet<uuid::Uuid>,
    order: VecDeque<uuid::Uuid>,
    /// Severity level (or -1 for a cool exception) per track.
    tracks: HashMap<uuid::Uuid, i16>,
    /// Online state per gateway.
    gateways: HashMap<String, bool>,
}

const SEEN_CAP: usize = 20_000;

impl Reported {
    fn first_time(&mut self, id: uuid::Uuid) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN_CAP {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

fn place(f: &Finding) -> String {
    match &f.asset {
        Some(a) => format!("{} {a} ({}/{})", f.site, f.gateway, f.camera),
        None => format!("{} ({}/{})", f.site, f.gateway, f.camera),
    }
}

/// The line a stream finding deserves, if any: a track raised, changing level, a
/// cool exception, cleared.
fn stream_line(r: &mut Reported, f: &Finding) -> Option<String> {
    let s = &f.severity;
    let now = if s.cool_exception {
        -1
    } else {
        i16::from(s.level)
    };
    let before = r.tracks.insert(f.track.id, now);
    let history = if f.historical {
        " [from the outbox]"
    } else {
        ""
    };
    if f.track.state == TrackState::Cleared {
        r.tracks.remove(&f.track.id);
        return Some(format!("cleared      {}{history}", place(f)));
    }
    if before == Some(now) {
        return None;
    }
    if s.cool_exception {
        let below = match (s.inputs.delta_c, &s.inputs.reference_source) {
            (Some(d), Some(what)) => format!(", {:.1} °C below {what}", -d),
            (Some(d), None) => format!(", {:.1} °C below its reference", -d),
            _ => String::new(),
        };
        return Some(format!(
            "cool         {:.1} °C at most{below}  {}: {}{history}",
            f.hotspot.max_c,
            place(f),
            s.action
        ));
    }
    Some(format!(
        "level {}      {:.1} °C {} ({})  {}: {}{history}",
        s.level,
        f.hotspot.max_c,
        s.level_name,
        s.table,
        place(f),
        s.action
    ))
}

/// Polls the store and logs one line per notable event.
async fn report_events(store: Arc<AnyStore>, mut stop: watch::Receiver<bool>) {
    let mut r = Reported::default();
    let mut since = chrono::Utc::now();
    loop {
        if let Ok(gateways) = store.list_gateways().await {
            for g in gateways {
                let key = format!("{}/{}", g.site, g.gateway);
                let online = g.online && !g.is_revoked();
                let before = r.gateways.insert(key.clone(), online);
                let changed = match before {
                    Some(b) => b != online,
                    None => online,
                };
                if changed {
                    tracing::info!(
                        "gateway      {key} is {}",
                        if online { "online" } else { "offline" }
                    );
                }
            }
        }
        let query = FindingQuery {
            since: Some(since),
            limit: crate::store::MAX_PAGE_LIMIT,
            ..FindingQuery::default()
        };
        if let Ok(page) = store.list_findings(&query).await {
            let mut stills: HashMap<(String, String), (usize, Finding)> = HashMap::new();
            // Newest first: report in arrival order.
            for row in page.items.into_iter().rev() {
                since = since.max(row.received_at);
                let f = row.finding;
                if !r.first_time(f.id) {
                    continue;
                }
                if f.source == FindingSource::Stream {
                    if let Some(line) = stream_line(&mut r, &f) {
                        tracing::info!("{line}");
                    }
                } else {
                    // A file's hotspots: one line per image, with its hottest.
                    let key = (
                        format!("{}/{}", f.site, f.gateway),
                        f.evidence
                            .as_ref()
                            .map(|e| e.sha256.clone())
                            .unwrap_or_default(),
                    );
                    let e = stills.entry(key).or_insert((0, f.clone()));
                    e.0 += 1;
                    if f.hotspot.max_c > e.1.hotspot.max_c {
                        e.1 = f;
                    }
                }
            }
            for ((gateway, sha), (n, hottest)) in stills {
                tracing::info!(
                    "image        {gateway} {}: {n} hotspot(s), hottest {:.1} °C, level {} {}",
                    sha.get(..12).unwrap_or("?"),
                    hottest.hotspot.max_c,
                    hottest.severity.level,
                    hottest.severity.level_name
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
