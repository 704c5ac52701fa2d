//! NATS mode: the fleet broker is a NATS cluster with JetStream; gateways speak MQTT
//! 3.1.1 to its MQTT listeners, unchanged, and the hub replicas share the work through
//! one durable JetStream consumer.
//!
//! ```text
//! agents ──MQTT──▶ any node's MQTT listener ──subject chitti.v1.{site}.{gw}.{kind}──▶
//!     stream CHITTI_INGEST (work queue, file, R3) ──▶ durable pull consumer "chitti-hub"
//!     ──▶ whichever replica pulls ──▶ Inbound ──commit──▶ settle = JetStream ack
//! replica ──MQTT (publish only, node list)──▶ /ack, retained /config/set ──▶ agents
//! ```
//!
//! # Why this shape (evidence in ARCHITECTURE.md, "The fleet broker")
//!
//! - NATS's MQTT has no `$share`: an MQTT subscription per replica would hand every
//!   message to every replica. A JetStream work-queue stream with one durable pull
//!   consumer gives competing consumers natively: each message goes to one replica, is
//!   removed from the stream only when acked, and goes to another replica when the one
//!   holding it dies (after `ack_wait`).
//! - MQTT topic levels are NATS subject tokens (`chitti/v1/s/g/config/state` is
//!   `chitti.v1.s.g.config.state`); site and gateway ids are `[a-z0-9-]`, so the mapping
//!   back is exact. Every message an agent publishes, QoS 0 or 1 (and its Last Will),
//!   lands in the stream, whichever node took it.
//! - The hub publishes over MQTT, not core NATS: `/config/set` must be *retained*, which
//!   only the MQTT side stores (in `$MQTT_rmsgs`, replicated like the stream), and an
//!   `/ack` then reaches a subscribed agent at QoS 1, or waits in its persistent session.
//!
//! # Invariants
//!
//! - A message is acked only by [`super::Inbound::settle`], after its commit; one not
//!   settled (a replica killed, a store down longer than `ack_wait`) is delivered again,
//!   to any replica, with `redelivered` set. Ingest is idempotent (findings
//!   `ON CONFLICT (id) DO NOTHING`, statuses applied only when fresh).
//! - The stream refuses new messages when full (`discard: new`) rather than dropping
//!   old ones nobody has committed; the agents keep theirs and resend.
//! - A node's MQTT PUBACK is not storage: the stream captures an MQTT publish like any
//!   core NATS publish, and while the cluster elects a stream leader after a node loss
//!   (seconds) a publish can be PUBACKed and still miss the stream (measured in
//!   `hub/tests/broker_nats.rs`). What the stream already held survives (three copies);
//!   what missed it is covered by the agents' end-to-end resend (DESIGN §2), as for
//!   every broker: nothing is deleted from an outbox before the hub's `/ack`.
//! - Pulls are bounded requests (`PULL_EXPIRES`), one after another, not one
//!   long-lived pull stream: a request lost with a node costs one expiry.
//! - The stream and consumer are created (or found) by every replica at start and again
//!   after any consumer error, so a cluster that lost them, or starts after the hubs,
//!   heals without an operator. Readiness ([`NatsBus::ready`]) is false meanwhile.

use super::external::{ExternalBus, ExternalSettings};
use super::{BrokerError, Inbound, DEFAULT_INBOUND_CAPACITY};
use async_nats::jetstream::{self, consumer, stream};
use async_nats::ServerAddr;
use futures_util::StreamExt;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Default stream name.
pub const DEFAULT_STREAM: &str = "CHITTI_INGEST";

/// Default durable consumer name (one per fleet: every replica binds to it).
pub const DEFAULT_CONSUMER: &str = "chitti-hub";

/// Longest wait between attempts to bind the consumer or reach an MQTT listener.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// How long one pull request waits for messages before the next is sent.
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// The subjects of the stream: [`super::HUB_FILTERS`] as NATS subjects.
pub fn stream_subjects() -> Vec<String> {
    super::HUB_FILTERS
        .iter()
        .map(|f| f.replace('/', ".").replace('+', "*"))
        .collect()
}

/// Whether `name` may name the stream or the consumer: letters, digits, `-` and `_`
/// (a `.` or a wildcard would change the JetStream API subjects it appears in).
pub fn is_jetstream_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The MQTT topic of a subject the stream captured (`chitti.v1.s.g.findings` →
/// `chitti/v1/s/g/findings`). Exact for Chitti's ids, which hold no `.` or `/`.
pub fn topic_of(subject: &str) -> String {
    subject.replace('.', "/")
}

/// Settings of the NATS mode.
#[derive(Clone)]
pub struct NatsSettings {
    /// NATS client addresses of the cluster's nodes (`nats://host:4222`).
    pub servers: Vec<String>,
    /// The nodes' MQTT listeners, for the hub's publishes (first, then the others in
    /// turn on failure).
    pub mqtt_urls: Vec<String>,
    /// MQTT client id of this replica's publishing connection.
    pub client_id: String,
    /// User for NATS and its MQTT listener.
    pub username: Option<String>,
    /// Password of `username`.
    pub password: Option<String>,
    /// Stream name.
    pub stream: String,
    /// Durable consumer name, shared by the replicas.
    pub consumer: String,
    /// Stream replicas (3 on a three-node cluster; 1 on one node).
    pub replicas: usize,
    /// Most bytes the stream keeps; beyond, new messages are refused.
    pub max_bytes: i64,
    /// How long a delivered message may stay un-acked before another replica gets it.
    pub ack_wait: Duration,
    /// Un-acked messages the consumer allows, all replicas together.
    pub max_ack_pending: i64,
    /// Largest message (publishes and received).
    pub max_payload_bytes: usize,
    /// Capacity of the inbound channel.
    pub inbound_capacity: usize,
    /// Wait before re-binding after a consumer error (doubled up to 2 s).
    pub retry_min: Duration,
}

impl NatsSettings {
    /// Defaults: stream [`DEFAULT_STREAM`], consumer [`DEFAULT_CONSUMER`], 3 replicas,
    /// 4 GiB, ack wait 30 s, 4 096 un-acked.
    pub fn new(servers: Vec<String>, mqtt_urls: Vec<String>, client_id: String) -> Self {
        Self {
            servers,
            mqtt_urls,
            client_id,
            username: None,
            password: None,
            stream: DEFAULT_STREAM.to_owned(),
            consumer: DEFAULT_CONSUMER.to_owned(),
            replicas: 3,
            max_bytes: 4 << 30,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 4096,
            max_payload_bytes: super::DEFAULT_MAX_PAYLOAD_BYTES,
            inbound_capacity: DEFAULT_INBOUND_CAPACITY,
            retry_min: Duration::from_millis(200),
        }
    }

    /// Every problem of the settings, at once.
    fn check(&self) -> Result<Vec<ServerAddr>, BrokerError> {
        let mut problems = Vec::new();
        let mut servers = Vec::new();
        if self.servers.is_empty() {
            problems.push("servers is empty (the cluster's nats:// addresses)".to_owned());
        }
        for s in &self.servers {
            match s.parse::<ServerAddr>() {
                Ok(a) if a.is_websocket() => {
                    problems.push(format!("server {s:?}: websocket addresses are not used"))
                }
                Ok(a) => servers.push(a),
                Err(e) => problems.push(format!("server {s:?}: {e}")),
            }
        }
        if self.mqtt_urls.is_empty() {
            problems.push("mqtt_urls is empty (the cluster's MQTT listeners)".to_owned());
        }
        if !is_jetstream_name(&self.stream) {
            problems.push(format!(
                "stream {:?}: letters, digits, - and _ only",
                self.stream
            ));
        }
        if !is_jetstream_name(&self.consumer) {
            problems.push(format!(
                "consumer {:?}: letters, digits, - and _ only",
                self.consumer
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            problems.push(format!("replicas {} not in 1..=5", self.replicas));
        }
        if self.max_bytes < 1 << 20 {
            problems.push("max_bytes below 1 MiB".to_owned());
        }
        if self.ack_wait < Duration::from_secs(1) {
            problems.push("ack_wait below 1 s".to_owned());
        }
        if self.max_ack_pending < 1 {
            problems.push("max_ack_pending below 1".to_owned());
        }
        if self.password.is_some() && self.username.is_none() {
            problems.push("password without username".to_owned());
        }
        if problems.is_empty() {
            Ok(servers)
        } else {
            Err(BrokerError::InvalidSettings(problems))
        }
    }

    fn publisher(&self) -> ExternalSettings {
        let mut p = ExternalSettings::new(self.mqtt_urls[0].clone(), self.client_id.clone());
        p.failover_urls = self.mqtt_urls[1..].to_vec();
        p.subscribe = false;
        // Nothing is subscribed: a session would hold nothing worth keeping.
        p.persistent_session = false;
        p.share_group = None;
        p.username = self.username.clone();
        p.password = self.password.clone();
        p.max_payload_bytes = self.max_payload_bytes;
        // One client per replica, not a fleet: after a node's loss the cluster refuses
        // connections while it elects (seconds); come back quickly.
        p.reconnect_max = RETRY_MAX;
        p
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            description: Some("Chitti gateways' MQTT messages, for the hub replicas".into()),
            subjects: stream_subjects(),
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            max_bytes: self.max_bytes,
            max_message_size: i32::try_from(self.max_payload_bytes + 1024).unwrap_or(i32::MAX),
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        }
    }

    fn consumer_config(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(self.consumer.clone()),
            description: Some("Every hub replica pulls from this one consumer".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            // Never give up on a message: a store down for an hour is not a reason to
            // drop findings (ingest acks what it dead-letters).
            max_deliver: -1,
            max_ack_pending: self.max_ack_pending,
            ..Default::default()
        }
    }
}

impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSettings")
            .field("servers", &self.servers)
            .field("mqtt_urls", &self.mqtt_urls)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("replicas", &self.replicas)
            .field("ack_wait", &self.ack_wait)
            .finish_non_exhaustive()
    }
}

/// What [`Inbound::settle`] sends in NATS mode: the JetStream acker.
pub(crate) struct Settle {
    tx: mpsc::UnboundedSender<jetstream::message::Acker>,
    acker: jetstream::message::Acker,
}

impl fmt::Debug for Settle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("jetstream::Settle")
    }
}

impl Settle {
    pub(crate) fn send(self) {
        // Bounded by the consumer's max_ack_pending. A closed channel: the bus is gone,
        // the message is redelivered after ack_wait.
        let _ = self.tx.send(self.acker);
    }
}

/// Counters of the NATS side (for `/metrics`).
#[derive(Debug, Default)]
pub struct NatsCounters {
    /// Messages delivered more than once (a replica died holding them, or a commit took
    /// longer than `ack_wait`).
    pub redelivered: AtomicU64,
    /// Acks the client could not send (the message comes back).
    pub ack_failures: AtomicU64,
    /// Times the consumer was (re)bound.
    pub binds: AtomicU64,
}

/// The hub's connection to a NATS cluster: JetStream in, MQTT out.
pub struct NatsBus {
    /// `None` only during shutdown.
    publisher: Option<ExternalBus>,
    inbound: mpsc::Receiver<Inbound>,
    consuming: watch::Receiver<bool>,
    counters: Arc<NatsCounters>,
    stopping: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    client: async_nats::Client,
}

impl fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBus")
            .field("consuming", &*self.consuming.borrow())
            .field("publisher", &self.publisher)
            .finish_non_exhaustive()
    }
}

impl NatsBus {
    /// Checks the settings and starts connecting (within a tokio runtime); returns at
    /// once. The client retries the servers in turn until one answers; the consumer
    /// task then creates or finds the stream and consumer and pulls.
    pub async fn connect(settings: NatsSettings) -> Result<Self, BrokerError> {
        let servers = settings.check()?;
        let publisher = ExternalBus::connect(settings.publisher())?;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("{} (chitti-hub)", settings.client_id))
            .retry_on_initial_connect()
            // The configured nodes are the ones to use: addresses a node gossips (its
            // own view of the network) would bypass a load balancer or proxy the
            // operator put in between, and a hub cut off from it would reach round it.
            .ignore_discovered_servers()
            .connection_timeout(Duration::from_secs(5))
            .ping_interval(Duration::from_secs(10));
        if let Some(user) = &settings.username {
            options = options
                .user_and_password(user.clone(), settings.password.clone().unwrap_or_default());
        }
        let client = options
            .connect(servers)
            .await
            .map_err(|e| BrokerError::Nats(e.to_string()))?;
        let (inbound_tx, inbound) = mpsc::channel(settings.inbound_capacity);
        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        let (consuming_tx, consuming) = watch::channel(false);
        let (stopping, stopping_rx) = watch::channel(false);
        let counters = Arc::new(NatsCounters::default());
        info!(servers = ?settings.servers, mqtt = ?settings.mqtt_urls, stream = %settings.stream, consumer = %settings.consumer, "connecting to the NATS cluster");
        let consume = Consume {
            jetstream: jetstream::new(client.clone()),
            settings,
            inbound: inbound_tx,
            acks: acks_tx,
            consuming: consuming_tx,
            counters: counters.clone(),
        };
        let tasks = vec![
            tokio::spawn(consume.run(stopping_rx)),
            tokio::spawn(run_acks(acks_rx, counters.clone())),
        ];
        Ok(Self {
            publisher: Some(publisher),
            inbound,
            consuming,
            counters,
            stopping,
            tasks,
            client,
        })
    }

    /// Publishes at QoS 1 over MQTT (retained when asked), see
    /// [`super::HubBus::publish`].
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), BrokerError> {
        match &self.publisher {
            Some(p) => p.publish(topic, payload, retain).await,
            None => Err(BrokerError::Closed),
        }
    }

    fn publisher_connected(&self) -> bool {
        self.publisher
            .as_ref()
            .is_some_and(|p| *p.subscribed().borrow())
    }

    /// Messages from the stream; see [`super::HubBus::inbound`].
    pub fn inbound(&mut self) -> &mut mpsc::Receiver<Inbound> {
        &mut self.inbound
    }

    /// `true` while the client is connected to a node, the consumer is bound and
    /// pulling, and the MQTT publisher is connected: `/readyz`.
    pub fn ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Why [`Self::ready`] is false, in words; `None` when ready.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            Some("not connected to a NATS node of the cluster")
        } else if !*self.consuming.borrow() {
            Some("not consuming from the JetStream stream")
        } else if !self.publisher_connected() {
            Some("not connected to an MQTT listener of the cluster")
        } else {
            None
        }
    }

    /// Watches the consumer's state (tests wait on it).
    pub fn consuming(&self) -> watch::Receiver<bool> {
        self.consuming.clone()
    }

    /// The NATS counters.
    pub fn counters(&self) -> &NatsCounters {
        &self.counters
    }

    /// Stops pulling, sends the acks of what was settled, then closes both
    /// connections. Messages delivered and not settled come back after `ack_wait`.
    pub async fn shutdown(mut self) {
        self.stopping.send_replace(true);
        let mut tasks = std::mem::take(&mut self.tasks).into_iter();
        if let Some(consume) = tasks.next() {
            let _ = tokio::time::timeout(Duration::from_secs(3), consume).await;
        }
        // The consumer task held the acks channel's last other sender; its end ends
        // the ack task once the queued acks are out.
        if let Some(acks) = tasks.next() {
            let _ = tokio::time::timeout(Duration::from_secs(3), acks).await;
        }
        // Bounded: with no node reachable a flush would wait for ever (the acks it
        // holds are then lost and their messages come back after ack_wait).
        match tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(error = %e, "nats: flush at shutdown"),
            Err(_) => warn!("nats: acks not flushed at shutdown (no node reachable)"),
        }
        if let Some(publisher) = self.publisher.take() {
            publisher.shutdown().await;
        }
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Sends the acks of settled messages.
async fn run_acks(
    mut acks: mpsc::UnboundedReceiver<jetstream::message::Acker>,
    counters: Arc<NatsCounters>,
) {
    while let Some(acker) = acks.recv().await {
        if let Err(e) = acker.ack().await {
            // The message comes back after ack_wait; ingest takes it again harmlessly.
            counters.ack_failures.fetch_add(1, Ordering::Relaxed);
            debug!(error = %e, "nats: ack not sent");
        }
    }
}

/// The consumer task: binds the durable consumer and pulls into the inbound channel.
struct Consume {
    jetstream: jetstream::Context,
    settings: NatsSettings,
    inbound: mpsc::Sender<Inbound>,
    acks: mpsc::UnboundedSender<jetstream::message::Acker>,
    consuming: watch::Sender<bool>,
    counters: Arc<NatsCounters>,
}

impl Consume {
    async fn run(self, mut stopping: watch::Receiver<bool>) {
        let mut backoff = self.settings.retry_min;
        let mut last_error = String::new();
        loop {
            let binds = self.counters.binds.load(Ordering::Relaxed);
            let outcome = tokio::select! {
                biased;
                _ = stopping.wait_for(|s| *s) => break,
                outcome = self.bind_and_pull() => outcome,
            };
            self.consuming.send_replace(false);
            if self.counters.binds.load(Ordering::Relaxed) != binds {
                // It had been pulling: the first retry comes soon again.
                backoff = self.settings.retry_min;
            }
            match outcome {
                Pulled::ReceiverGone => break,
                Pulled::Failed(reason) => {
                    if reason != last_error {
                        warn!(error = %reason, retry_in_ms = backoff.as_millis() as u64, "jetstream consumer down");
                        last_error = reason;
                    } else {
                        debug!(error = %reason, "jetstream consumer still down");
                    }
                }
            }
            tokio::select! {
                biased;
                _ = stopping.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
        self.consuming.send_replace(false);
        info!("jetstream consumer stopped");
    }

    /// Creates or finds the stream and consumer, then pulls until an error.
    async fn bind_and_pull(&self) -> Pulled {
        let stream = match self
            .jetstream
            .get_or_create_stream(self.settings.stream_config())
            .await
        {
            Ok(s) => s,
            Err(e) => return Pulled::Failed(format!("stream {}: {e}", self.settings.stream)),
        };
        let consumer: consumer::PullConsumer = match stream
            .get_or_create_consumer(&self.settings.consumer, self.settings.consumer_config())
            .await
        {
            Ok(c) => c,
            Err(e) => return Pulled::Failed(format!("consumer {}: {e}", self.settings.consumer)),
        };
        self.counters.binds.fetch_add(1, Ordering::Relaxed);
        self.consuming.send_replace(true);
        info!(stream = %self.settings.stream, consumer = %self.settings.consumer, "consuming from jetstream");
        // One bounded pull request after another rather than one long-lived pull
        // stream: a request lost with a node (or a client reconnect) costs at most one
        // request's expiry plus the client's 5 s margin, after which the next request
        // goes to whichever node leads the consumer now. (Long-lived pull streams were
        // seen to sit silent for over a minute after a node was killed.)
        let batch = self.settings.inbound_capacity.clamp(1, 256);
        loop {
            let mut messages = match consumer
                .batch()
                .max_messages(batch)
                .expires(PULL_EXPIRES)
                .messages()
                .await
            {
                Ok(m) => m,
                Err(e) => return Pulled::Failed(format!("pull: {e}")),
            };
            while let Some(message) = messages.next().await {
                let message = match message {
                    Ok(m) => m,
                    Err(e) => return Pulled::Failed(format!("pull: {e}")),
                };
                if !self.hand_on(message).await {
                    return Pulled::ReceiverGone;
                }
            }
        }
    }

    /// Passes a delivered message to ingest with its acker; `false` when ingest is gone.
    async fn hand_on(&self, message: jetstream::Message) -> bool {
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let redelivered = delivered > 1;
        if redelivered {
            self.counters.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        let (message, acker) = message.split();
        let inbound = Inbound {
            topic: topic_of(message.subject.as_str()),
            payload: message.payload,
            redelivered,
            settle: Some(super::Settle::JetStream(Settle {
                tx: self.acks.clone(),
                acker,
            })),
        };
        // Waiting here is the back-pressure: no new pull request goes out until ingest
        // took this batch, and the consumer's max_ack_pending bounds what is out.
        self.inbound.send(inbound).await.is_ok()
    }
}

enum Pulled {
    ReceiverGone,
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_topics_map_both_ways() {
        assert_eq!(
            stream_subjects(),
            vec![
                "chitti.v1.*.*.findings",
                "chitti.v1.*.*.status",
                "chitti.v1.*.*.telemetry",
                "chitti.v1.*.*.config.state",
                "chitti.v1.*.*.model.state",
            ]
        );
        assert_eq!(
            topic_of("chitti.v1.north-yard.gw-7.config.state"),
            "chitti/v1/north-yard/gw-7/config/state"
        );
    }

    #[test]
    fn every_settings_problem_is_reported() {
        let s = NatsSettings {
            stream: "a.b".into(),
            consumer: String::new(),
            replicas: 0,
            ack_wait: Duration::ZERO,
            max_ack_pending: 0,
            max_bytes: 10,
            password: Some("p".into()),
            ..NatsSettings::new(vec!["nats://x:4222".into()], Vec::new(), "hub-1".into())
        };
        match s.check() {
            Err(BrokerError::InvalidSettings(p)) => assert_eq!(p.len(), 8, "{p:?}"),
            other => panic!("{other:?}"),
        }
        let none = NatsSettings::new(Vec::new(), vec!["mqtt://x".into()], "hub-1".into());
        assert!(
            matches!(none.check(), Err(BrokerError::InvalidSettings(p)) if p[0].contains("servers is empty"))
        );
        let good = NatsSettings::new(
            vec!["nats://a:4222".into(), "b:4223".into()],
            vec!["mqtt://a:1883".into()],
            "hub-1".into(),
        );
        assert_eq!(good.check().unwrap().len(), 2);
        let consumer = good.consumer_config();
        assert_eq!(consumer.max_deliver, -1);
        assert_eq!(consumer.ack_policy, consumer::AckPolicy::Explicit);
        let stream = good.stream_config();
        assert_eq!(stream.retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(stream.discard, stream::DiscardPolicy::New);
        assert_eq!(stream.num_replicas, 3);
    }
}
