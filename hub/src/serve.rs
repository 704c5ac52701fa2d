//! `chitti-hub serve`: the one place the hub's parts are wired.
//!
//! ```text
//! gateways ──MQTT──▶ HubBus (embedded rumqttd | external broker, $share) ──Inbound──▶ Ingest ──▶ Store
//!                        ▲                                                  │ after commit
//!                        └──────────────────────── /ack ◀───────────────────┘
//! operators, Prometheus ──HTTP──▶ /healthz /readyz /metrics, the API, the dashboard (http.rs)
//! ```

use crate::broker::{
    AuthHandler, EmbeddedBroker, EmbeddedSettings, ExternalBus, ExternalSettings, HubBus, NatsBus,
    NatsSettings, TlsListener,
};
use crate::config::{BrokerMode, EvidenceBackend, HubConfig};
use crate::credentials::PasswordChecker;
use crate::evidence::EvidenceStore;
use crate::ingest::{
    AckError, AckPublisher, InboundMessage, Ingest, IngestMetrics, IngestSettings,
};
use crate::store::FleetStore;
use crate::store::{AnyStore, Store, StoreOptions};
use chitti_common::metrics_text::MetricsWriter;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Why the hub could not start; the message names what to change.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A port is taken.
    #[error("cannot listen for {what} on {addr}: the address is in use (change it with {flag})")]
    PortInUse {
        /// MQTT or HTTP.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The flag and key that change it.
        flag: &'static str,
    },
    /// The database cannot be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The evidence store cannot be opened.
    #[error("evidence: {0}")]
    Evidence(#[from] crate::evidence::EvidenceError),
    /// The hub's ack-signing key cannot be read or made.
    #[error(transparent)]
    HubKey(#[from] crate::hub_key::HubKeyError),
    /// The MQTT side failed to start.
    #[error("mqtt: {0}")]
    Broker(#[from] crate::broker::BrokerError),
    /// A file the configuration names cannot be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory cannot be made.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A setting names something unusable (say, a metrics token file that is empty).
    #[error("{0}")]
    Setting(String),
    /// Other I/O (the HTTP listener).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where the running hub listens, for the demo and tests.
#[derive(Debug, Clone)]
pub struct Running {
    /// MQTT listeners (embedded mode).
    pub mqtt: Vec<SocketAddr>,
    /// The HTTP listener.
    pub http: SocketAddr,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::File {
        path: path.display().to_string(),
        source,
    })
}

/// Opens the configured store and applies the migrations.
pub async fn open_store(config: &HubConfig) -> Result<AnyStore, ServeError> {
    let store = open_store_unmigrated(config).await?;
    store.migrate().await?;
    Ok(store)
}

/// Opens the configured store without touching its schema.
pub async fn open_store_unmigrated(config: &HubConfig) -> Result<AnyStore, ServeError> {
    if config.store.url.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
    }
    let options = StoreOptions {
        max_connections: config.store.max_connections,
        ..StoreOptions::default()
    };
    Ok(AnyStore::connect_with(&config.store_url(), &options).await?)
}

/// Successful logins: (user name, SHA-256 of the password) → when checked.
type LoginCache = HashMap<(String, [u8; 32]), Instant>;

/// Checks gateway logins against the store; successful checks are remembered for a
/// minute so that reconnect storms do not cost an argon2 hash each.
/// Whether the gateway a verified TLS client certificate names (`site/gateway`, given
/// as the user name) may log in: enrolled and not revoked.
fn certificate_check(store: Arc<AnyStore>) -> AuthHandler {
    Arc::new(
        move |_client_id: String, username: String, _password: String| {
            let store = Arc::clone(&store);
            Box::pin(async move {
                match store.gateway_by_username(&username).await {
                    Ok(Some(r)) if !r.is_revoked() => true,
                    Ok(_) => {
                        tracing::warn!(username = ?username, "mqtt certificate login refused: unknown or revoked gateway");
                        false
                    }
                    Err(err) => {
                        tracing::error!(%err, "mqtt certificate login not checked: store unavailable");
                        false
                    }
                }
            })
        },
    )
}

fn auth_handler(store: Arc<AnyStore>, passwords: PasswordChecker) -> AuthHandler {
    let cache: Arc<Mutex<LoginCache>> = Arc::default();
    // argon2 costs ~20 ms of CPU and 19 MiB per check: a reconnect storm of a whole
    // fleet queues for the checker's threads (one per core), it does not run a
    // thousand hashes at once.
    Arc::new(
        move |_client_id: String, username: String, password: String| {
            let store = Arc::clone(&store);
            let cache = Arc::clone(&cache);
            let passwords = passwords.clone();
            Box::pin(async move {
                let key = (username.clone(), Sha256::digest(password.as_bytes()).into());
                if cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
                {
                    return true;
                }
                let record = match store.gateway_by_username(&username).await {
                    Ok(Some(r)) if !r.is_revoked() => r,
                    Ok(_) => {
                        tracing::warn!(username = ?username, "mqtt login refused: unknown or revoked gateway");
                        return false;
                    }
                    Err(err) => {
                        tracing::error!(%err, "mqtt login not checked: store unavailable");
                        return false;
                    }
                };
                let hash = record.password_hash.clone();
                let ok = passwords.verify(hash, password).await;
                if ok {
                    cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, Instant::now());
                } else {
                    tracing::warn!(username = ?username, "mqtt login refused: wrong password");
                }
                ok
            }) as Pin<Box<dyn Future<Output = bool> + Send>>
        },
    )
}

/// Acks go out through the bus.
struct BusAcks(Arc<HubBus>);

impl AckPublisher for BusAcks {
    fn publish(
        &self,
        topic: String,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), AckError>> + Send + '_>> {
        Box::pin(async move { Ok(self.0.publish(&topic, payload, false).await?) })
    }
}

/// Starts the MQTT side.
async fn start_bus(config: &HubConfig, store: Arc<AnyStore>) -> Result<HubBus, ServeError> {
    match config.broker.mode {
        BrokerMode::Embedded => {
            let e = &config.broker.embedded;
            if !crate::broker::port_is_free(e.listen) {
                return Err(ServeError::PortInUse {
                    what: "MQTT",
                    addr: e.listen,
                    flag: "--mqtt ADDR or broker.embedded.listen",
                });
            }
            let tls = match (e.tls_listen, &e.cert_file, &e.key_file, &e.client_ca_file) {
                (Some(addr), Some(cert), Some(key), Some(ca)) => Some(TlsListener {
                    addr,
                    cert_chain_pem: read(cert)?,
                    key_pem: read(key)?,
                    client_ca_pem: read(ca)?,
                    // The certificate is the credential (DESIGN.md §7).
                    check_password: false,
                }),
                _ => None,
            };
            let settings = EmbeddedSettings {
                tcp: Some(e.listen),
                tls,
                max_payload_bytes: usize::try_from(e.max_payload_bytes.0).unwrap_or(usize::MAX),
                max_connections: e.max_connections,
                log_bytes: e
                    .log_bytes
                    .map(|b| usize::try_from(b.0).unwrap_or(usize::MAX)),
                inbound_capacity: config.ingest.queue,
                auth: Some(auth_handler(
                    Arc::clone(&store),
                    PasswordChecker::per_core()?,
                )),
                certificate_check: Some(certificate_check(store)),
                ..EmbeddedSettings::default()
            };
            Ok(HubBus::Embedded(EmbeddedBroker::start(settings).await?))
        }
        BrokerMode::External => {
            let x = &config.broker.external;
            let client_id = x.client_id.clone().unwrap_or_else(default_client_id);
            let mut s = ExternalSettings::new(x.url.clone(), client_id);
            s.failover_urls = x.failover_urls.clone();
            s.share_group = (!x.group.is_empty()).then(|| x.group.clone());
            s.username = x.username.clone();
            s.password = x.password_file.as_deref().map(read_password).transpose()?;
            s.ca_pem = x.ca_file.as_deref().map(read).transpose()?;
            s.client_cert_pem = x.client_cert_file.as_deref().map(read).transpose()?;
            s.client_key_pem = x.client_key_file.as_deref().map(read).transpose()?;
            s.persistent_session = x.persistent_session.unwrap_or(s.share_group.is_none());
            s.inbound_capacity = config.ingest.queue;
            s.max_payload_bytes =
                usize::try_from(config.broker.embedded.max_payload_bytes.0).unwrap_or(usize::MAX);
            Ok(HubBus::External(ExternalBus::connect(s)?))
        }
        BrokerMode::Nats => {
            let n = &config.broker.nats;
            let client_id = n.client_id.clone().unwrap_or_else(default_client_id);
            let mut s = NatsSettings::new(n.servers.clone(), n.mqtt_urls.clone(), client_id);
            s.username = n.username.clone();
            s.password = n.password_file.as_deref().map(read_password).transpose()?;
            s.stream = n.stream.clone();
            s.consumer = n.consumer.clone();
            s.replicas = n.replicas;
            s.max_bytes = i64::try_from(n.max_bytes.0).unwrap_or(i64::MAX);
            s.ack_wait = Duration::from_secs(n.ack_wait_s);
            s.max_ack_pending = i64::from(n.max_ack_pending);
            s.inbound_capacity = config.ingest.queue;
            s.max_payload_bytes =
                usize::try_from(config.broker.embedded.max_payload_bytes.0).unwrap_or(usize::MAX);
            Ok(HubBus::Nats(NatsBus::connect(s).await?))
        }
    }
}

/// A broker password file's contents, without surrounding white space.
fn read_password(file: &std::path::Path) -> Result<String, ServeError> {
    Ok(String::from_utf8_lossy(&read(file)?).trim().to_string())
}

/// The evidence store of the configuration.
pub fn open_evidence(config: &HubConfig) -> Result<EvidenceStore, ServeError> {
    let e = &config.evidence;
    Ok(match e.backend {
        EvidenceBackend::Local => EvidenceStore::local(&config.evidence_dir(), e.max_bytes.0)?,
        EvidenceBackend::S3 => EvidenceStore::s3(
            e.bucket.as_deref().unwrap_or_default(),
            e.region.as_deref(),
            e.endpoint.as_deref(),
            e.max_bytes.0,
        )?,
    })
}

/// `chitti-hub-{host name}`: stable across restarts on one host or in one pod (a
/// single hub finds its persistent session again), distinct between pods. Not the process
/// id, which is 1 in every container. Two replicas on one host need `client_id` set.
fn default_client_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    match host {
        Some(h) => format!("chitti-hub-{h}"),
        None => format!("chitti-hub-{}", std::process::id()),
    }
}

/// Runs the hub until `shutdown` turns true. `started` receives the bound addresses.
pub async fn serve(
    config: HubConfig,
    mut shutdown: watch::Receiver<bool>,
    started: Option<tokio::sync::oneshot::Sender<Running>>,
) -> Result<(), ServeError> {
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                ServeError::PortInUse {
                    what: "HTTP",
                    addr: config.http.listen,
                    flag: "--http ADDR or http.listen",
                }
            } else {
                ServeError::Io(e)
            }
        })?;
    let metrics_token = config
        .http
        .metrics_token_file
        .as_deref()
        .map(crate::http::read_metrics_token)
        .transpose()
        .map_err(ServeError::Setting)?;
    let store = Arc::new(open_store(&config).await?);
    let evidence = Arc::new(open_evidence(&config)?);
    let hub_key = Arc::new(crate::hub_key::load_or_create(&crate::hub_key::path(
        &config,
    ))?);
    let live = Arc::new(crate::live::LiveEvents::new(
        crate::live::DEFAULT_LIVE_HISTORY,
    ));
    let publisher = tokio::spawn(crate::api::stream::run_publisher(
        Arc::clone(&live),
        Arc::clone(&store),
    ));
    // Replicas share one Postgres: each tells the others what changed (SQLite is one
    // process).
    let relay = match &*store {
        crate::store::AnyStore::Postgres(pg) => {
            let mut relay_stop = shutdown.clone();
            crate::live_relay::spawn(Arc::clone(&live), pg.pool().clone(), async move {
                let _ = relay_stop.wait_for(|s| *s).await;
            })
        }
        crate::store::AnyStore::Sqlite(_) => None,
    };
    let mut bus = start_bus(&config, Arc::clone(&store)).await?;
    let mqtt = bus.local_addrs();
    let inbound = bus.take_inbound();
    let bus = Arc::new(bus);
    let metrics = Arc::new(IngestMetrics::default());
    let (tx, rx) = mpsc::channel::<InboundMessage>(config.ingest.queue);
    let _ = metrics.queue.set(tx.downgrade());
    let bridge = tokio::spawn(bridge_inbound(inbound, tx));
    let config_publisher = crate::remote_config::ConfigPublisher::new(
        Arc::clone(&store),
        Arc::clone(&bus),
        Arc::clone(&hub_key),
        live.config_signal(),
    );
    let mut config_stop = shutdown.clone();
    let config_task = tokio::spawn(config_publisher.run(async move {
        let _ = config_stop.wait_for(|s| *s).await;
    }));
    let rollout_driver = crate::rollouts::RolloutDriver::new(
        Arc::clone(&store),
        live.rollout_signal(),
        live.config_signal(),
        Some(Arc::clone(&live)),
    );
    let mut rollout_stop = shutdown.clone();
    let rollout_task = tokio::spawn(rollout_driver.run(async move {
        let _ = rollout_stop.wait_for(|s| *s).await;
    }));
    let ingest = Ingest::new(
        Arc::clone(&store),
        Arc::new(BusAcks(Arc::clone(&bus))),
        hub_key,
        IngestSettings {
            require_signatures: config.ingest.require_signatures,
            commit_max_findings: config.ingest.commit_max_findings,
            commit_max_wait: Duration::from_millis(config.ingest.commit_max_wait_ms),
            max_payload_bytes: usize::try_from(config.broker.embedded.max_payload_bytes.0)
                .unwrap_or(usize::MAX),
        },
        Arc::clone(&metrics),
    )
    .with_live(Arc::clone(&live));
    let ingest_task = tokio::spawn(ingest.run(rx));
    let notify_metrics = Arc::new(crate::notify::NotifyMetrics::default());
    let notifier = crate::notify::Notifier::new(
        Arc::clone(&store),
        config.notifications.clone(),
        config.dashboard_url(),
        Arc::clone(&notify_metrics),
        live.alert_signal(),
    )
    .map_err(|e| ServeError::Setting(e.to_string()))?;
    let (notify_stop_tx, notify_stop_rx) = watch::channel(false);
    let notify_task = tokio::spawn(notifier.run(notify_stop_rx));
    let fleet_watch = crate::alarms::FleetWatch::new(
        Arc::clone(&store),
        config.watch_rules(),
        Some(Arc::clone(&live)),
    );
    let mut watch_stop = shutdown.clone();
    let watch_task = tokio::spawn(fleet_watch.run(async move {
        let _ = watch_stop.wait_for(|s| *s).await;
    }));
    let retention_task = config.retention.enabled.then(|| {
        let job = crate::retention::RetentionJob::new(
            Arc::clone(&store),
            Arc::clone(&evidence),
            config.retention.clone(),
            crate::retention::RetentionJob::<AnyStore>::holder_name(),
        );
        let mut retention_stop = shutdown.clone();
        tokio::spawn(job.run(async move {
            let _ = retention_stop.wait_for(|s| *s).await;
        }))
    });
    let http_addr = http.local_addr()?;
    let app = crate::http::router(crate::http::HttpState {
        store: Arc::clone(&store),
        ingest: Arc::clone(&metrics),
        notify: notify_metrics,
        notifications: Arc::new(config.notifications.clone()),
        dashboard_url: config.dashboard_url(),
        bus: Arc::clone(&bus),
        started: Instant::now(),
        evidence,
        live,
        settings: config.http.clone(),
        metrics_token,
        models: config.models.clone(),
        retention: config.retention.clone(),
    });
    let (http_stop_tx, http_stop_rx) = watch::channel(false);
    let limits = crate::listener::ListenerLimits {
        header_read_timeout: Duration::from_secs(config.http.header_read_timeout_s),
        max_connections: config.http.max_connections,
    };
    let http_task = tokio::spawn(crate::listener::serve(http, app, limits, http_stop_rx));
    tracing::info!(mqtt = ?mqtt, http = %http_addr, store = store.backend().name(), "hub running");
    if let Some(started) = started {
        let _ = started.send(Running {
            mqtt,
            http: http_addr,
        });
    }
    let _ = shutdown.wait_for(|s| *s).await;
    tracing::info!("shutting down");
    let _ = http_stop_tx.send(true);
    let _ = notify_stop_tx.send(true);
    bridge.abort();
    publisher.abort();
    if let Some(relay) = relay {
        relay.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), watch_task).await;
    if let Some(task) = retention_task {
        // A batch in flight commits or rolls back; the next run goes on from there.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), config_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), rollout_task).await;
    // Ingest finishes what it holds (its channel closes with the bridge).
    let _ = tokio::time::timeout(Duration::from_secs(5), ingest_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    // A send in flight finishes or is left to its lease; nothing is lost either way.
    let _ = tokio::time::timeout(Duration::from_secs(2), notify_task).await;
    if let Ok(bus) = Arc::try_unwrap(bus) {
        bus.shutdown().await;
    }
    Ok(())
}

/// Moves broker messages into ingest, carrying the settle handle.
async fn bridge_inbound(
    mut inbound: mpsc::Receiver<crate::broker::Inbound>,
    tx: mpsc::Sender<InboundMessage>,
) {
    while let Some(message) = inbound.recv().await {
        let topic = message.topic.clone();
        let payload = message.payload.clone();
        let m = InboundMessage {
            topic,
            payload,
            settle: Some(Box::new(move || message.settle())),
        };
        if tx.send(m).await.is_err() {
            return;
        }
    }
}

/// Writes the hub's metrics.
pub fn render_metrics(out: &mut MetricsWriter, m: &IngestMetrics, bus: &HubBus) {
    out.gauge(
        "chitti_hub_ingest_queued_messages",
        "Messages received and waiting for ingest (ingest lag; the autoscaling signal).",
        &[],
        m.queued() as f64,
    );
    out.counter(
        "chitti_hub_messages_total",
        "MQTT messages received.",
        &[],
        m.messages.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_findings_inserted_total",
        "Findings newly stored.",
        &[],
        m.findings_inserted.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_findings_duplicate_total",
        "Findings received again (already stored).",
        &[],
        m.findings_duplicate.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_commits_total",
        "Ingest transactions committed.",
        &[],
        m.commits.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_committed_findings_total",
        "Findings in committed transactions (with commits_total: the batch size).",
        &[],
        m.committed_findings.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_commit_seconds_total",
        "Time spent committing.",
        &[],
        m.commit_micros.load(Relaxed) as f64 / 1e6,
    );
    out.counter(
        "chitti_hub_acks_total",
        "Acks published after commit.",
        &[],
        m.acks.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_ack_latency_seconds_total",
        "Receive-to-ack time, summed (with acks_total: the mean).",
        &[],
        m.ack_micros.load(Relaxed) as f64 / 1e6,
    );
    out.counter(
        "chitti_hub_store_errors_total",
        "Failed store calls (retried).",
        &[],
        m.store_errors.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_status_messages_total",
        "Gateway status messages applied.",
        &[],
        m.statuses.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_status_messages_repeated_total",
        "Gateway statuses received again after being applied (retained copies).",
        &[],
        m.statuses_repeated.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_reports_superseded_total",
        "Gateway statuses overtaken by a newer one (replicas take them in parallel).",
        &[],
        m.reports_superseded.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_telemetry_samples_total",
        "Telemetry samples stored.",
        &[],
        m.telemetry.load(Relaxed) as f64,
    );
    let dead = m
        .dead_letters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for (class, n) in dead {
        out.counter(
            "chitti_hub_dead_letters_total",
            "Messages not used, by reason.",
            &[("reason", class)],
            n as f64,
        );
    }
    if let HubBus::External(x) = bus {
        out.counter(
            "chitti_hub_dropped_qos0_total",
            "QoS 0 messages dropped while ingest was behind.",
            &[],
            x.dropped_qos0() as f64,
        );
    }
    if let HubBus::Nats(n) = bus {
        let c = n.counters();
        out.counter(
            "chitti_hub_nats_redelivered_total",
            "JetStream messages delivered again (a replica died holding them, or ack_wait passed).",
            &[],
            c.redelivered.load(Relaxed) as f64,
        );
        out.counter(
            "chitti_hub_nats_ack_failures_total",
            "JetStream acks that could not be sent (the message comes back).",
            &[],
            c.ack_failures.load(Relaxed) as f64,
        );
        out.counter(
            "chitti_hub_nats_consumer_binds_total",
            "Times the durable consumer was bound (1 + recoveries).",
            &[],
            c.binds.load(Relaxed) as f64,
        );
        out.gauge(
            "chitti_hub_nats_consuming",
            "1 while pulling from the JetStream consumer.",
            &[],
            if *n.consuming().borrow() { 1.0 } else { 0.0 },
        );
    }
}
