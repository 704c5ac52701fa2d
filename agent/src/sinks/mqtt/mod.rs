//! The MQTT link to the hub, with rumqttc.
//!
//! rumqttc's `publish()` returns when a message is queued, not when the broker has it;
//! on a reconnect without a saved session it discards what was queued or in flight. So
//! the [outbox](crate::outbox) is the source of truth and this sink only moves findings
//! out of it: a finding leaves the outbox when the hub's `/ack` names it, never when a
//! PUBACK arrives.
//!
//! - **Connect**: MQTT 3.1.1, persistent session (`clean_session = false`), keep-alive
//!   from the configuration (never 0: rumqttd rejects it), Last Will = retained
//!   `/status` with `online: false`; TLS through rustls (CA file or the system roots,
//!   optional client certificate), or user name and password.
//! - **On every ConnAck**: subscribe to `/ack` (QoS 1), publish the retained `/status`,
//!   forget what was in flight and send the whole backlog again, oldest first, in
//!   bounded batches (count, bytes, in-flight window).
//! - **Acks**: an `/ack` deletes findings only when it is signed by one of the hub keys
//!   in `mqtt.hub_public_keys` over this gateway's ack topic
//!   (`chitti_common::signing::open_ack`) **and** answers a batch this sink sent and
//!   has not yet seen answered ([`SentBatches`]); then only that batch's ids go.
//!   Anything else — unsigned, forged, for another gateway, replayed — is counted and
//!   logged, and deletes nothing (the findings stay and are resent).
//! - **Reconnect** after a failure with jittered exponential backoff between
//!   `reconnect_min_ms` and `reconnect_max_ms`, to the next of `url` and
//!   `failover_urls` (a clustered broker's nodes) each time. A refused subscription
//!   (SUBACK failure: a NATS node while its cluster elects) counts as a failure too —
//!   without the `/ack` subscription nothing would ever leave the outbox — and the
//!   backoff starts over only once subscriptions are accepted, not at CONNACK.
//! - **Silence is a failure too**: connected and subscribed, batches waiting, and nothing
//!   on `/ack` for [`ACK_SILENCE_PERIODS`] resend periods: the sink drops the connection
//!   and connects again (a clustered broker can keep a subscription that delivers
//!   nothing; with the hub itself down it costs one reconnect per such period).
//! - **Slow start** ([`SendWindow`]): after every ConnAck one batch may be in flight;
//!   each verified ack widens the window by a batch, up to `outbox.max_inflight`. A
//!   fleet reconnecting at once (a cellular network recovering) opens with one batch per
//!   gateway, which the hub's broker log is sized for, instead of every backlog at once.
//! - **Resend period** `outbox.resend_after_s`, stretched once per sink by up to 25 % at
//!   random, so gateways that lost the hub together do not resend in step.
//! - **Shutdown**: publish `online: false` (retained), disconnect cleanly.

pub mod config;
mod tls;

use crate::backoff::{Backoff, Jitter};

pub use config::{hub_public_keys, read_signing_key, MqttConfig, MqttContext};

use crate::health::StatusBoard;
use crate::outbox::{BatchLimits, Outbox};
use crate::shutdown::Shutdown;
use chitti_common::protocol::{Ack, FindingBatch, Topic, TopicKind};
use chitti_common::signing::ReportKind;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, Transport};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

/// The sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttSinkError {
    /// The configuration cannot be used.
    #[error("mqtt: {0}")]
    Config(String),
    /// TLS material cannot be loaded.
    #[error("mqtt tls: {0}")]
    Tls(String),
}

/// Whether the link to the broker is up: shared with the outbox writer, which marks
/// findings stored while it is down as backlog. Also counts the acks refused.
#[derive(Debug, Default)]
pub struct LinkState {
    up: AtomicBool,
    connects: std::sync::atomic::AtomicU64,
    acks_refused: std::sync::atomic::AtomicU64,
    acks_unmatched: std::sync::atomic::AtomicU64,
}

impl LinkState {
    /// `/ack`s that did not verify (unsigned, forged, another gateway's): nothing was
    /// deleted for them.
    pub fn acks_refused(&self) -> u64 {
        self.acks_refused.load(Ordering::Relaxed)
    }

    /// Verified `/ack`s that answer no batch in flight (a replay, a duplicate, or a
    /// batch sent before a restart): nothing was deleted for them.
    pub fn acks_unmatched(&self) -> u64 {
        self.acks_unmatched.load(Ordering::Relaxed)
    }

    /// True while connected.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Successful connections since start.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }

    fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if up {
            self.connects.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// What the pipeline shares with the remote supervisor (`crate::remote::run_managed`):
/// the sink's side of `/config/*` and `/model/*`, and the detectors' model switch.
#[derive(Debug, Clone)]
pub struct RemoteLink {
    /// Verified `/config/set` documents, newest wins.
    pub desired: tokio::sync::watch::Sender<Option<chitti_common::protocol::DesiredConfig>>,
    /// What to report on `/config/state` (published when it changes and on connect).
    pub state: tokio::sync::watch::Receiver<chitti_common::protocol::ConfigState>,
    /// Verified `/model/set` documents, newest wins.
    pub desired_model: tokio::sync::watch::Sender<Option<chitti_common::protocol::DesiredModel>>,
    /// What to report on `/model/state` (published when it changes and on connect).
    pub model_state: tokio::sync::watch::Receiver<chitti_common::protocol::ModelState>,
    /// The model the detectors run, and the running detectors to change with it.
    pub models: Arc<crate::detector::ModelSwitch>,
    /// Notified on every connection to the broker.
    pub connected: Arc<Notify>,
    /// A new `[mqtt]` to replace the sink with, the rest of the pipeline running on.
    pub relink: tokio::sync::watch::Receiver<Option<MqttConfig>>,
}

/// Topics of this gateway.
#[derive(Debug, Clone)]
pub struct GatewayTopics {
    /// `/status`.
    pub status: String,
    /// `/findings`.
    pub findings: String,
    /// `/telemetry`.
    pub telemetry: String,
    /// `/ack`.
    pub ack: String,
    /// `/config/set`.
    pub config_set: String,
    /// `/config/state`.
    pub config_state: String,
    /// `/model/set`.
    pub model_set: String,
    /// `/model/state`.
    pub model_state: String,
}

impl GatewayTopics {
    /// The topics of `site`/`gateway` (ids already validated by the configuration).
    pub fn new(site: &str, gateway: &str) -> Result<Self, MqttSinkError> {
        let t = |kind| {
            Topic::new(site, gateway, kind)
                .map(|t| t.to_string())
                .map_err(|e| MqttSinkError::Config(e.to_string()))
        };
        Ok(Self {
            status: t(TopicKind::Status)?,
            findings: t(TopicKind::Findings)?,
            telemetry: t(TopicKind::Telemetry)?,
            ack: t(TopicKind::Ack)?,
            config_set: t(TopicKind::ConfigSet)?,
            config_state: t(TopicKind::ConfigState)?,
            model_set: t(TopicKind::ModelSet)?,
            model_state: t(TopicKind::ModelState)?,
        })
    }
}

/// Batches sent and not yet answered, oldest first, bounded: an ack may delete only
/// ids of one of these, once. A batch pushed out by newer ones just waits for its
/// resend (its findings are still in the outbox).
#[derive(Debug, Default)]
pub struct SentBatches {
    batches: std::collections::VecDeque<(Uuid, Vec<Uuid>)>,
}

impl SentBatches {
    /// Most batches remembered.
    pub const CAPACITY: usize = 4096;

    /// Whether no batch waits for its answer.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Remembers a sent batch.
    pub fn sent(&mut self, batch_id: Uuid, ids: Vec<Uuid>) {
        if self.batches.len() == Self::CAPACITY {
            self.batches.pop_front();
        }
        self.batches.push_back((batch_id, ids));
    }

    /// The ids `ack` may delete: those of its batch that it names; `None` when it
    /// answers no batch in flight. The batch is answered either way.
    pub fn answer(&mut self, ack: &Ack) -> Option<Vec<Uuid>> {
        let at = self
            .batches
            .iter()
            .position(|(id, _)| *id == ack.batch_id)?;
        let (_, ids) = self.batches.remove(at)?;
        Some(ids.into_iter().filter(|id| ack.ids.contains(id)).collect())
    }
}

/// A `/status` or `/telemetry` payload: signed with the gateway's key (the hub
/// believes nothing else), plain JSON only for a gateway without one (accepted only by
/// a hub with `ingest.require_signatures = false`).
fn report_payload<T: serde::Serialize>(
    kind: ReportKind,
    topic: &str,
    report: &T,
    key: Option<&ed25519_dalek::SigningKey>,
) -> Result<Vec<u8>, String> {
    match key {
        Some(key) => chitti_common::signing::sign_report(kind, topic, report, key),
        None => serde_json::to_vec(report).map_err(|e| e.to_string()),
    }
}

/// The MQTT sink.
pub struct MqttSink {
    /// One set of options per broker address (`url`, then `failover_urls`).
    brokers: Vec<MqttOptions>,
    topics: GatewayTopics,
    outbox: Arc<Outbox>,
    board: Arc<StatusBoard>,
    link: Arc<LinkState>,
    new_findings: Arc<Notify>,
    limits: BatchLimits,
    window: SendWindow,
    reconnect: Backoff,
    status_every: Duration,
    telemetry_every: Duration,
    signing_key: Option<ed25519_dalek::SigningKey>,
    hub_keys: Vec<ed25519_dalek::VerifyingKey>,
    sent: std::sync::Mutex<SentBatches>,
    remote: Option<RemoteLink>,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSink")
            .field("broker", &self.brokers[0].broker_address())
            .finish_non_exhaustive()
    }
}

impl MqttSink {
    /// Builds the sink from its configuration and context (reads TLS files and the
    /// password file).
    pub fn new(
        cx: &MqttContext<'_>,
        outbox: Arc<Outbox>,
        board: Arc<StatusBoard>,
        link: Arc<LinkState>,
        new_findings: Arc<Notify>,
    ) -> Result<Self, MqttSinkError> {
        let m = cx.mqtt;
        let (endpoints, use_tls) = m.endpoints().map_err(MqttSinkError::Config)?;
        let topics = GatewayTopics::new(cx.site, cx.gateway)?;
        let max_packet = usize::try_from(m.max_packet_bytes.0).unwrap_or(usize::MAX);
        let signing_key = match &m.signing_key_file {
            Some(file) => Some(read_signing_key(file).map_err(MqttSinkError::Config)?),
            None => None,
        };
        let will = report_payload(
            ReportKind::Status,
            &topics.status,
            &board.last_will(),
            signing_key.as_ref(),
        )
        .map_err(MqttSinkError::Config)?;
        let will = LastWill::new(topics.status.clone(), will, QoS::AtLeastOnce, true);
        let login = match &m.username {
            Some(user) => {
                let password = match (&m.password, &m.password_file) {
                    (Some(p), _) => p.clone(),
                    (None, Some(file)) => std::fs::read_to_string(file)
                        .map_err(|e| {
                            MqttSinkError::Config(format!("cannot read {}: {e}", file.display()))
                        })?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                    (None, None) => String::new(),
                };
                Some((user.clone(), password))
            }
            None => None,
        };
        let transport = if use_tls {
            let tls = tls::client_config(
                m.ca_file.as_deref(),
                m.client_cert_file.as_deref(),
                m.client_key_file.as_deref(),
            )?;
            Some(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(tls)),
            ))
        } else {
            None
        };
        let brokers = endpoints
            .into_iter()
            .map(|(host, port)| {
                let mut options = MqttOptions::new(cx.client_id.clone(), host, port);
                options.set_keep_alive(Duration::from_secs(m.keep_alive_s));
                // A persistent session lets the broker queue our acks while we are
                // away; we never rely on it for durability (rumqttd keeps sessions in
                // memory only).
                options.set_clean_session(false);
                options.set_max_packet_size(max_packet, max_packet);
                options.set_inflight(100);
                options.set_last_will(will.clone());
                if let Some((user, password)) = &login {
                    options.set_credentials(user.clone(), password.clone());
                }
                if let Some(transport) = &transport {
                    options.set_transport(transport.clone());
                }
                options
            })
            .collect();
        let hub_keys = hub_public_keys(m).map_err(MqttSinkError::Config)?;
        if hub_keys.is_empty() {
            tracing::warn!(
                "no hub key (mqtt.hub_public_keys, mqtt.hub_public_keys_file): no /ack can \
                 be verified, so every finding stays in the outbox (use the output of \
                 `chitti-hub hub-key`)"
            );
        }
        let o = cx.outbox;
        Ok(Self {
            signing_key,
            hub_keys,
            sent: std::sync::Mutex::new(SentBatches::default()),
            remote: None,
            brokers,
            topics,
            outbox,
            board,
            link,
            new_findings,
            limits: BatchLimits {
                max_findings: o.batch_max_findings,
                // Leave room for the batch envelope under the packet limit.
                max_bytes: usize::try_from(o.batch_max_bytes.0)
                    .unwrap_or(usize::MAX)
                    .min(max_packet.saturating_sub(1024)),
                max_inflight: o.max_inflight,
                resend_after: crate::backoff::spread_period(
                    Duration::from_secs(o.resend_after_s),
                    RESEND_SPREAD,
                ),
            },
            window: SendWindow::new(o.batch_max_findings, o.max_inflight),
            // Jittered: gateways reconnecting after a broker restart do not stampede
            // it in step.
            reconnect: Backoff::new(
                Duration::from_millis(m.reconnect_min_ms),
                Duration::from_millis(m.reconnect_max_ms),
            )
            .with_jitter(Jitter::Equal),
            status_every: Duration::from_secs(cx.health.status_interval_s),
            telemetry_every: Duration::from_secs(cx.health.telemetry_interval_s),
        })
    }

    /// The same sink, also subscribing to `/config/set` (what verifies goes to
    /// `remote.desired`) and reporting `remote.state` on `/config/state`.
    pub fn with_remote(mut self, remote: Option<RemoteLink>) -> Self {
        self.remote = remote;
        self
    }

    /// The gateway's topics.
    pub fn topics(&self) -> &GatewayTopics {
        &self.topics
    }

    /// Runs until `shutdown` is triggered; then publishes the offline status and
    /// disconnects.
    pub async fn run(self, shutdown: Shutdown) {
        let (client, eventloop) = AsyncClient::new(self.brokers[0].clone(), 64);
        let (events_tx, mut events) = mpsc::channel(256);
        let relink = Arc::new(Notify::new());
        let poller = tokio::spawn(poll_events(
            eventloop,
            self.brokers.clone(),
            events_tx,
            self.reconnect,
            Arc::clone(&relink),
        ));
        // When the link last proved that answers reach us (connected, or anything on
        // `/ack`): see `ack_silence`.
        let mut heard = tokio::time::Instant::now();
        let ack_silence = self.limits.resend_after * ACK_SILENCE_PERIODS;
        let mut broker = self.brokers[0].broker_address();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status_tick = tokio::time::interval(self.status_every);
        let mut telemetry_tick = tokio::time::interval(self.telemetry_every);
        let mut last_reason: Option<String> = None;
        let mut config_state = self.remote.as_ref().map(|r| r.state.clone());
        let mut model_state = self.remote.as_ref().map(|r| r.model_state.clone());
        loop {
            tokio::select! {
                () = shutdown.triggered() => break,
                event = events.recv() => match event {
                    Some(LinkEvent::Connected(address)) => {
                        heard = tokio::time::Instant::now();
                        self.link.set(true);
                        last_reason = None;
                        broker = address;
                        tracing::info!(broker = ?broker, pending = self.outbox.status().depth, "mqtt connected");
                        self.outbox.reset_inflight();
                        self.window.reset();
                        if let Err(err) = client.subscribe(self.topics.ack.clone(), QoS::AtLeastOnce).await {
                            tracing::warn!(%err, "cannot subscribe to acks");
                        }
                        if let Some(remote) = &self.remote {
                            // QoS 0: a persistent session must not queue every version
                            // published while the gateway was away (it would apply each in
                            // turn); the retained newest one comes with every subscribe.
                            if let Err(err) = client.subscribe(self.topics.config_set.clone(), QoS::AtMostOnce).await {
                                tracing::warn!(%err, "cannot subscribe to /config/set");
                            }
                            if let Err(err) = client.subscribe(self.topics.model_set.clone(), QoS::AtMostOnce).await {
                                tracing::warn!(%err, "cannot subscribe to /model/set");
                            }
                            let state = remote.state.borrow().clone();
                            self.publish_config_state(&client, &state).await;
                            let state = remote.model_state.borrow().clone();
                            self.publish_model_state(&client, &state).await;
                            remote.connected.notify_one();
                        }
                        self.publish_status(&client).await;
                        self.send_due(&client).await;
                    }
                    Some(LinkEvent::Disconnected(reason)) => {
                        // Say why once per change of reason (a refused login or an
                        // unreachable broker repeats at every retry), and every time
                        // a working link drops.
                        if self.link.is_up() || last_reason.as_deref() != Some(reason.as_str()) {
                            tracing::warn!(broker = ?broker, %reason,
                                pending = self.outbox.status().depth,
                                "mqtt link down; findings stay in the outbox");
                            last_reason = Some(reason);
                        }
                        self.link.set(false);
                    }
                    Some(LinkEvent::Publish(topic, payload)) => {
                        if topic == self.topics.ack {
                            heard = tokio::time::Instant::now();
                            self.on_ack(&payload).await;
                            self.send_due(&client).await;
                        } else if topic == self.topics.config_set {
                            self.on_config_set(&payload);
                        } else if topic == self.topics.model_set {
                            self.on_model_set(&payload);
                        }
                    }
                    None => break,
                },
                () = self.new_findings.notified() => self.send_due(&client).await,
                Some(state) = next_state(&mut config_state) => {
                    if self.link.is_up() {
                        self.publish_config_state(&client, &state).await;
                    }
                }
                Some(state) = next_state(&mut model_state) => {
                    if self.link.is_up() {
                        self.publish_model_state(&client, &state).await;
                    }
                }
                _ = tick.tick() => {
                    // Connected, subscribed, batches sent and resent, and not one
                    // answer for several resend periods: a clustered broker can keep a
                    // subscription that delivers nothing (seen on NATS after a node
                    // restart). Connecting again makes a new one; with the hub itself
                    // down it costs one reconnect per silence period.
                    let waiting = !self.sent.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
                    if self.link.is_up() && waiting && heard.elapsed() >= ack_silence {
                        tracing::warn!(broker = ?broker, silent_s = heard.elapsed().as_secs(),
                            pending = self.outbox.status().depth,
                            "no acknowledgement from the hub for several resend periods; connecting again");
                        heard = tokio::time::Instant::now();
                        relink.notify_one();
                    }
                    self.send_due(&client).await;
                }
                _ = status_tick.tick() => {
                    if self.link.is_up() {
                        self.publish_status(&client).await;
                    }
                }
                _ = telemetry_tick.tick() => {
                    if self.link.is_up() {
                        let telemetry = self.board.telemetry();
                        match report_payload(ReportKind::Telemetry, &self.topics.telemetry, &telemetry, self.signing_key.as_ref()) {
                            Ok(payload) => {
                                let _ = client.publish(self.topics.telemetry.clone(), QoS::AtMostOnce, false, payload).await;
                            }
                            Err(err) => tracing::warn!(%err, "cannot encode telemetry"),
                        }
                    }
                }
            }
        }
        // Graceful end: the hub sees us go offline on purpose, not by the Last Will.
        if self.link.is_up() {
            match report_payload(
                ReportKind::Status,
                &self.topics.status,
                &self.board.status(false),
                self.signing_key.as_ref(),
            ) {
                Ok(offline) => {
                    let _ = client
                        .publish(self.topics.status.clone(), QoS::AtLeastOnce, true, offline)
                        .await;
                }
                Err(err) => tracing::warn!(%err, "cannot encode the offline status"),
            }
            let _ = client.disconnect().await;
            // Let the event loop write the last packets out.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(event) = events.recv().await {
                    if matches!(event, LinkEvent::Disconnected(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        self.link.set(false);
        poller.abort();
    }

    /// A `/config/set` message: handed on only when it is the hub's, for this gateway.
    fn on_config_set(&self, payload: &[u8]) {
        let Some(remote) = &self.remote else { return };
        match chitti_common::signing::open_desired_config(
            &self.topics.config_set,
            payload,
            &self.hub_keys,
        ) {
            Ok(desired) => {
                tracing::debug!(version = desired.version, "configuration document received");
                remote.desired.send_replace(Some(desired));
            }
            Err(err) => {
                tracing::warn!(bytes = payload.len(), %err, "/config/set ignored");
            }
        }
    }

    /// A `/model/set` message: handed on only when it is the hub's, for this gateway.
    fn on_model_set(&self, payload: &[u8]) {
        let Some(remote) = &self.remote else { return };
        match chitti_common::signing::open_desired_model(
            &self.topics.model_set,
            payload,
            &self.hub_keys,
        ) {
            Ok(desired) => {
                tracing::debug!(seq = desired.seq, "desired model received");
                remote.desired_model.send_replace(Some(desired));
            }
            Err(err) => {
                tracing::warn!(bytes = payload.len(), %err, "/model/set ignored");
            }
        }
    }

    async fn publish_config_state(
        &self,
        client: &AsyncClient,
        state: &chitti_common::protocol::ConfigState,
    ) {
        self.publish_retained_report(
            client,
            ReportKind::ConfigState,
            &self.topics.config_state,
            state,
        )
        .await;
    }

    async fn publish_model_state(
        &self,
        client: &AsyncClient,
        state: &chitti_common::protocol::ModelState,
    ) {
        self.publish_retained_report(
            client,
            ReportKind::ModelState,
            &self.topics.model_state,
            state,
        )
        .await;
    }

    /// A signed report, retained (`/config/state`, `/model/state`).
    async fn publish_retained_report<T: serde::Serialize>(
        &self,
        client: &AsyncClient,
        kind: ReportKind,
        topic: &str,
        report: &T,
    ) {
        // The hub believes only signed reports; without a key there is nothing to say.
        if self.signing_key.is_none() {
            tracing::debug!(topic, "no mqtt.signing_key_file: report not published");
            return;
        }
        match report_payload(kind, topic, report, self.signing_key.as_ref()) {
            Ok(json) => {
                if let Err(err) = client
                    .publish(topic.to_string(), QoS::AtLeastOnce, true, json)
                    .await
                {
                    tracing::warn!(%err, topic, "cannot queue a report");
                }
            }
            Err(err) => tracing::warn!(%err, topic, "cannot encode a report"),
        }
    }

    async fn publish_status(&self, client: &AsyncClient) {
        let status = self.board.status(true);
        match report_payload(
            ReportKind::Status,
            &self.topics.status,
            &status,
            self.signing_key.as_ref(),
        ) {
            Ok(json) => {
                if let Err(err) = client
                    .publish(self.topics.status.clone(), QoS::AtLeastOnce, true, json)
                    .await
                {
                    tracing::warn!(%err, "cannot queue status");
                }
            }
            Err(err) => tracing::warn!(%err, "cannot encode status"),
        }
    }

    async fn on_ack(&self, payload: &[u8]) {
        let ack = match chitti_common::signing::open_ack(&self.topics.ack, payload, &self.hub_keys)
        {
            Ok(a) => a,
            Err(err) => {
                self.link.acks_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(bytes = payload.len(), %err, "/ack refused: nothing deleted");
                return;
            }
        };
        let ids = self
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .answer(&ack);
        let Some(ids) = ids else {
            self.link.acks_unmatched.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(batch = %ack.batch_id, "/ack for no batch in flight (replayed, duplicate, or sent before a restart): nothing deleted");
            return;
        };
        self.window.widen();
        let outbox = Arc::clone(&self.outbox);
        let count = ids.len();
        // A deletion commits with fsync: off the async workers.
        match tokio::task::spawn_blocking(move || outbox.acknowledge(&ids)).await {
            Ok(Ok(deleted)) => tracing::debug!(acked = count, deleted, "ack"),
            Ok(Err(err)) => {
                tracing::error!(%err, "cannot delete acknowledged findings; they will be resent")
            }
            Err(err) => tracing::error!(%err, "ack task failed"),
        }
    }

    /// Publishes due findings while the link is up and the window has room.
    async fn send_due(&self, client: &AsyncClient) {
        // At most one window per call, so a long backlog does not starve acks.
        let limits = BatchLimits {
            max_inflight: self.window.findings(),
            ..self.limits
        };
        let mut budget = limits.max_inflight;
        while self.link.is_up() && budget > 0 {
            let outbox = Arc::clone(&self.outbox);
            let batch = match tokio::task::spawn_blocking(move || {
                outbox.take_batch(Instant::now(), limits)
            })
            .await
            {
                Ok(Ok(b)) => b,
                Ok(Err(err)) => {
                    tracing::error!(%err, "cannot read the outbox");
                    return;
                }
                Err(_) => return,
            };
            if batch.is_empty() {
                return;
            }
            budget = budget.saturating_sub(batch.len());
            let message = FindingBatch {
                batch_id: Uuid::now_v7(),
                sent_at: chrono::Utc::now(),
                findings: batch,
            };
            let encoded = match &self.signing_key {
                Some(key) => {
                    chitti_common::signing::sign_batch(&self.topics.findings, &message, key)
                }
                None => serde_json::to_vec(&message).map_err(|e| e.to_string()),
            };
            let json = match encoded {
                Ok(j) => j,
                Err(err) => {
                    tracing::error!(%err, "cannot encode a finding batch");
                    return;
                }
            };
            tracing::debug!(batch = %message.batch_id, findings = message.findings.len(), bytes = json.len(), "publish findings");
            self.sent.lock().unwrap_or_else(|e| e.into_inner()).sent(
                message.batch_id,
                message.findings.iter().map(|f| f.id).collect(),
            );
            if let Err(err) = client
                .publish(self.topics.findings.clone(), QoS::AtLeastOnce, false, json)
                .await
            {
                tracing::warn!(%err, "cannot queue findings; they stay in the outbox");
                return;
            }
        }
    }
}

/// Resend periods without any answer on `/ack`, while batches wait for one, after
/// which the agent drops its connection and connects again.
pub const ACK_SILENCE_PERIODS: u32 = 3;

/// Share of the resend period added at random, once per sink.
const RESEND_SPREAD: f64 = 0.25;

/// How many findings may be in flight now: one batch after a (re)connect, one batch
/// more per verified ack, at most `max_inflight` (slow start; see the module docs).
#[derive(Debug)]
pub struct SendWindow {
    batch: usize,
    max: usize,
    current: std::sync::atomic::AtomicUsize,
}

impl SendWindow {
    /// A window of batches of `batch` findings, growing to `max`.
    pub fn new(batch: usize, max: usize) -> Self {
        let batch = batch.max(1);
        Self {
            batch,
            max,
            current: std::sync::atomic::AtomicUsize::new(batch.min(max)),
        }
    }

    /// Findings that may be in flight now.
    pub fn findings(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Back to one batch (a new connection: the broker may be in a storm).
    pub fn reset(&self) {
        self.current
            .store(self.batch.min(self.max), Ordering::Relaxed);
    }

    /// One batch more, after a verified ack.
    pub fn widen(&self) {
        let _ = self
            .current
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w.saturating_add(self.batch).min(self.max))
            });
    }
}

/// What the event loop reports to the sink.
#[derive(Debug)]
enum LinkEvent {
    /// Connected to this broker address.
    Connected((String, u16)),
    Disconnected(String),
    Publish(String, Vec<u8>),
}

/// The next state to report (configuration, model); pending forever without remote
/// management.
async fn next_state<T: Clone>(rx: &mut Option<tokio::sync::watch::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Polls rumqttc's event loop forever (it reconnects on the next poll after an error),
/// waiting a jittered, growing delay after each failure; with several broker
/// addresses, each failure moves on to the next one (a clustered broker's node that
/// died is left at once; the delay still grows, so a fleet does not hammer the
/// survivors).
async fn poll_events(
    mut eventloop: EventLoop,
    brokers: Vec<MqttOptions>,
    tx: mpsc::Sender<LinkEvent>,
    reconnect: Backoff,
    relink: Arc<Notify>,
) {
    let mut retries = reconnect.retries();
    let mut current = 0usize;
    loop {
        let polled = tokio::select! {
            polled = eventloop.poll() => polled,
            // The sink gave up on this connection (no acknowledgement for too long):
            // dropped like after a failure (an interrupted read goes with it).
            () = relink.notified() => {
                eventloop.clean();
                if tx
                    .send(LinkEvent::Disconnected("no acknowledgement for several resend periods".into()))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(retries.next_delay()).await;
                if brokers.len() > 1 {
                    current = (current + 1) % brokers.len();
                    eventloop.mqtt_options = brokers[current].clone();
                }
                continue;
            }
        };
        let failure = match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ack.code == rumqttc::ConnectReturnCode::Success
                    && tx
                        .send(LinkEvent::Connected(
                            eventloop.mqtt_options.broker_address(),
                        ))
                        .await
                        .is_err()
                {
                    return;
                }
                None
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx
                    .send(LinkEvent::Publish(p.topic.clone(), p.payload.to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
                None
            }
            Ok(Event::Incoming(Packet::SubAck(ack)))
                if ack
                    .return_codes
                    .contains(&rumqttc::SubscribeReasonCode::Failure) =>
            {
                // Without its /ack subscription the gateway would send forever and never
                // delete a finding. A clustered broker refuses subscriptions for a few
                // seconds while it elects leaders (NATS JetStream after a node loss):
                // drop this connection and connect again like after any failure.
                eventloop.clean();
                Some(format!(
                    "broker refused a subscription (return codes {:?})",
                    ack.return_codes
                ))
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                // Connected and subscribed: the link works, the next failure starts
                // over from the shortest delay. (Not at CONNACK: a broker that accepts
                // connections and refuses subscriptions must not be hammered.)
                retries.reset();
                None
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                let _ = tx
                    .send(LinkEvent::Disconnected("disconnect sent".into()))
                    .await;
                None
            }
            Ok(_) => None,
            Err(err) => Some(err.to_string()),
        };
        if let Some(reason) = failure {
            if tx.send(LinkEvent::Disconnected(reason)).await.is_err() {
                return;
            }
            tokio::time::sleep(retries.next_delay()).await;
            if brokers.len() > 1 {
                current = (current + 1) % brokers.len();
                eventloop.mqtt_options = brokers[current].clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(batch_id: Uuid, ids: &[Uuid]) -> Ack {
        Ack {
            batch_id,
            ids: ids.to_vec(),
            signed_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn the_window_opens_at_one_batch_grows_per_ack_to_the_cap_and_resets() {
        let w = SendWindow::new(50, 500);
        assert_eq!(w.findings(), 50);
        w.widen();
        assert_eq!(w.findings(), 100);
        for _ in 0..20 {
            w.widen();
        }
        assert_eq!(w.findings(), 500);
        w.reset();
        assert_eq!(w.findings(), 50);
        // A cap below one batch is the cap.
        let small = SendWindow::new(50, 10);
        assert_eq!(small.findings(), 10);
        small.widen();
        assert_eq!(small.findings(), 10);
    }

    #[test]
    fn an_ack_deletes_only_ids_of_its_own_batch_and_only_once() {
        let mut sent = SentBatches::default();
        let (b1, b2) = (Uuid::now_v7(), Uuid::now_v7());
        let (f1, f2, f3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        sent.sent(b1, vec![f1, f2]);
        sent.sent(b2, vec![f3]);
        // An ack naming another batch's finding deletes only its own batch's ids.
        assert_eq!(sent.answer(&ack(b1, &[f1, f3])), Some(vec![f1]));
        // Replayed: the batch is answered already.
        assert_eq!(sent.answer(&ack(b1, &[f1, f2])), None);
        // An unknown batch.
        assert_eq!(sent.answer(&ack(Uuid::now_v7(), &[f3])), None);
        assert_eq!(sent.answer(&ack(b2, &[f3])), Some(vec![f3]));
    }

    #[test]
    fn the_oldest_batches_are_forgotten_beyond_capacity() {
        let mut sent = SentBatches::default();
        let first = Uuid::now_v7();
        sent.sent(first, vec![Uuid::now_v7()]);
        for _ in 0..SentBatches::CAPACITY {
            sent.sent(Uuid::now_v7(), Vec::new());
        }
        assert_eq!(sent.batches.len(), SentBatches::CAPACITY);
        assert_eq!(sent.answer(&ack(first, &[])), None);
    }
}
