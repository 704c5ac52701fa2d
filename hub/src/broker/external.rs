//! External broker mode: the hub as an MQTT 3.1.1 client (rumqttc) of a broker that is
//! operated separately (Mosquitto, EMQX, …), for fleets and for several hub replicas.
//!
//! # Delivery
//!
//! - **Shared subscription**: `$share/chitti-hub/<filter>` for each of
//!   [`super::HUB_FILTERS`], so the broker hands each message to one replica of the
//!   group. (Mosquitto 2.0 honours `$share` for MQTT 3.1.1 clients too.)
//! - **Manual acks**: a QoS 1 message is PUBACKed only by [`Inbound::settle`], after
//!   the hub committed it.
//! - **Session**: a single hub keeps a persistent session (`clean_session = false`, a
//!   stable `client_id`): what it had not settled, and what arrived while it restarted,
//!   is delivered when the same client id returns (with DUP set). Replicas in a share
//!   group use clean sessions by default: Mosquitto 2.0 does not hand a dead member's
//!   un-acked messages to the rest of the group, and keeps queueing the dead member's
//!   round-robin share of new ones for it (up to `max_queued_messages`) — with a
//!   persistent session, a replica killed or replaced (a new pod name) strands half the
//!   fleet's traffic, statuses included, until its id returns (measured: a two-replica
//!   test never saw a gateway's last status). With a clean session the broker drops the
//!   dead member at once and the survivors take everything; what it had not committed
//!   comes back by the agents' end-to-end resend. See
//!   [`ExternalSettings::persistent_session`] and `broker.external.persistent_session`.
//! - **Reconnect** with exponential backoff; the subscriptions are made again on every
//!   CONNACK (a broker may have lost the session).
//!
//! # Back-pressure without stalling the event loop
//!
//! rumqttc's event loop reads the socket and also drains the client's request channel
//! (the hub's publishes and acks). If it waited for room in the inbound channel while the
//! hub waited for room in the request channel (publishing an `/ack` before taking the
//! next message), both would wait forever. So the loop waits only for QoS 1 messages,
//! whose number is bounded by the broker's in-flight window (un-acked messages per
//! client; Mosquitto's `max_inflight_messages`, 20 by default) as long as that window is
//! below [`ExternalSettings::qos1_reserve`]; QoS 0 messages (telemetry) are dropped and
//! counted ([`ExternalBus::dropped_qos0`]) once fewer than `qos1_reserve` slots are free.
//!
//! # Shutdown
//!
//! rumqttc's `EventLoop::poll` is never cancelled (a request it has taken, a PUBACK, can
//! be lost mid-write); a shutdown travels as requests instead: the ack task queues the
//! PUBACKs of everything settled so far, then DISCONNECT, and the loop keeps reading
//! until the broker closes the connection. Closing right after writing DISCONNECT would
//! lose them: with bytes from the broker still unread, the kernel resets the connection
//! and the broker discards what it had not read yet (seen with Mosquitto: the last
//! PUBACKs and the DISCONNECT vanished, the settled messages came back).

use super::{
    tls, BrokerError, Inbound, DEFAULT_INBOUND_CAPACITY, DEFAULT_MAX_PAYLOAD_BYTES, HUB_FILTERS,
    SHARE_GROUP,
};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// Room for the topic and packet id on top of the largest payload.
const TOPIC_ALLOWANCE_BYTES: usize = 512;

/// Capacity of rumqttc's request channel (publishes and acks from the hub).
const REQUEST_QUEUE: usize = 64;

/// How long a clean shutdown may take (acks and DISCONNECT written, or a connection
/// attempt in progress given up) before the connection task is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A parsed `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `mqtts://`.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port; 1883 or 8883 when the URL has none.
    pub port: u16,
}

impl FromStr for BrokerUrl {
    type Err = BrokerError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad =
            |why: &str| BrokerError::InvalidSettings(vec![format!("broker url {url:?}: {why}")]);
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(bad("must start with mqtt:// or mqtts://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "only a host and a port are allowed (credentials go in their own settings)",
            ));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
            None if tls => 8883,
            None => 1883,
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// Settings of the connection to an external broker.
#[derive(Clone)]
pub struct ExternalSettings {
    /// `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub url: String,
    /// More addresses of the same broker (the other nodes of a cluster), tried in turn
    /// after `url` when a connection attempt fails or a connection drops.
    pub failover_urls: Vec<String>,
    /// Subscribe to [`super::HUB_FILTERS`]; `false`: the connection only publishes
    /// (the NATS mode takes its messages from JetStream instead).
    pub subscribe: bool,
    /// This replica's client id: stable across restarts (its persistent session, with
    /// the messages it had not settled, is found by it) and distinct per replica.
    pub client_id: String,
    /// Login name, if the broker wants one.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// CA that signed the broker's certificate (PEM); required for `mqtts://`.
    pub ca_pem: Option<Vec<u8>>,
    /// The hub's client certificate for mutual TLS (PEM, leaf first).
    pub client_cert_pem: Option<Vec<u8>>,
    /// The key of `client_cert_pem` (PEM).
    pub client_key_pem: Option<Vec<u8>>,
    /// Keep the session across connections (`clean_session = false`, the default here;
    /// the hub's configuration turns it off for replicas in a share group): what the hub
    /// had not settled is redelivered when this client id reconnects. The cost, with
    /// Mosquitto: while this client id is offline the broker goes on queueing its
    /// round-robin share of the group's messages for it (see the module docs). `false`:
    /// messages a crashed replica had not settled are lost at the broker (the agents'
    /// end-to-end resend still delivers the findings).
    pub persistent_session: bool,
    /// Shared-subscription group; `None` subscribes plainly (one hub, or a broker
    /// without `$share`: then every replica gets every message).
    pub share_group: Option<String>,
    /// MQTT keep-alive; at least 1 s.
    pub keep_alive: Duration,
    /// Largest payload accepted from the broker (and published).
    pub max_payload_bytes: usize,
    /// Capacity of the inbound channel.
    pub inbound_capacity: usize,
    /// Inbound slots kept for QoS 1 messages: QoS 0 messages are dropped when fewer are
    /// free. Keep it above the broker's per-client in-flight window.
    pub qos1_reserve: usize,
    /// First reconnect delay; doubled after each failure up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
}

impl ExternalSettings {
    /// Settings with the defaults: shared group [`SHARE_GROUP`], keep-alive 30 s, 1 MiB
    /// payloads, backoff 100 ms … 30 s.
    pub fn new(url: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            failover_urls: Vec::new(),
            subscribe: true,
            client_id: client_id.into(),
            username: None,
            password: None,
            ca_pem: None,
            client_cert_pem: None,
            client_key_pem: None,
            persistent_session: true,
            share_group: Some(SHARE_GROUP.to_owned()),
            keep_alive: Duration::from_secs(30),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            inbound_capacity: DEFAULT_INBOUND_CAPACITY,
            qos1_reserve: 128,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(30),
        }
    }

    /// The subscriptions this replica makes.
    pub fn filters(&self) -> Vec<String> {
        HUB_FILTERS
            .iter()
            .map(|f| match &self.share_group {
                Some(group) => format!("$share/{group}/{f}"),
                None => (*f).to_owned(),
            })
            .collect()
    }

    /// The options of each address, `url` first; every problem of the settings listed.
    fn options(&self) -> Result<Vec<MqttOptions>, BrokerError> {
        let urls = std::iter::once(&self.url)
            .chain(&self.failover_urls)
            .map(|u| u.parse::<BrokerUrl>())
            .collect::<Result<Vec<_>, _>>()?;
        let mut problems = Vec::new();
        if self.client_id.is_empty() {
            problems.push("client_id is empty (a persistent session needs one)".to_owned());
        }
        if let Some(group) = &self.share_group {
            if group.is_empty() || group.contains(['/', '+', '#']) {
                problems.push(format!(
                    "share_group {group:?} must be a non-empty single topic level"
                ));
            }
        }
        if self.keep_alive < Duration::from_secs(1) {
            problems.push("keep_alive below 1 s".to_owned());
        }
        if self.inbound_capacity <= self.qos1_reserve {
            problems.push("inbound_capacity must exceed qos1_reserve".to_owned());
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            problems.push("reconnect_min must be positive and at most reconnect_max".to_owned());
        }
        if self.password.is_some() && self.username.is_none() {
            problems.push("password without username".to_owned());
        }
        if urls.iter().any(|u| u.tls != urls[0].tls) {
            problems.push("the broker addresses mix mqtt:// and mqtts://".to_owned());
        }
        if urls[0].tls && self.ca_pem.is_none() {
            problems.push("mqtts:// needs ca_pem (the CA of the broker's certificate)".to_owned());
        }
        if !urls[0].tls && (self.ca_pem.is_some() || self.client_cert_pem.is_some()) {
            problems.push("tls settings given for a plain mqtt:// url".to_owned());
        }
        if !problems.is_empty() {
            return Err(BrokerError::InvalidSettings(problems));
        }
        urls.iter().map(|url| self.options_for(url)).collect()
    }

    fn options_for(&self, url: &BrokerUrl) -> Result<MqttOptions, BrokerError> {
        let mut options = MqttOptions::new(self.client_id.clone(), url.host.clone(), url.port);
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_session(!self.persistent_session)
            .set_manual_acks(true)
            .set_max_packet_size(
                self.max_payload_bytes + TOPIC_ALLOWANCE_BYTES,
                self.max_payload_bytes + TOPIC_ALLOWANCE_BYTES,
            );
        if let Some(user) = &self.username {
            options.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        if url.tls {
            let config = tls::client_config(
                self.ca_pem.as_deref().unwrap_or_default(),
                self.client_cert_pem.as_deref(),
                self.client_key_pem.as_deref(),
            )?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            )));
        }
        Ok(options)
    }
}

impl fmt::Debug for ExternalSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalSettings")
            .field("url", &self.url)
            .field("failover_urls", &self.failover_urls)
            .field("subscribe", &self.subscribe)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(Vec::len),
            )
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("persistent_session", &self.persistent_session)
            .field("share_group", &self.share_group)
            .field("keep_alive", &self.keep_alive)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("inbound_capacity", &self.inbound_capacity)
            .field("qos1_reserve", &self.qos1_reserve)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .finish()
    }
}

/// What [`Inbound::settle`] sends: the packet id to PUBACK, to the ack task.
#[derive(Debug)]
pub(crate) struct Settle {
    tx: mpsc::UnboundedSender<Publish>,
    ack: Publish,
}

impl Settle {
    pub(crate) fn send(self) {
        // The channel is unbounded but holds at most the un-settled QoS 1 messages, which
        // the broker's in-flight window bounds. A closed channel means the connection task
        // is gone; the broker redelivers on the next session.
        let _ = self.tx.send(self.ack);
    }
}

/// A connection to an external broker.
pub struct ExternalBus {
    client: AsyncClient,
    inbound: mpsc::Receiver<Inbound>,
    subscribed: watch::Receiver<bool>,
    dropped_qos0: Arc<AtomicU64>,
    stopping: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for ExternalBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalBus")
            .field("subscribed", &*self.subscribed.borrow())
            .field("dropped_qos0", &self.dropped_qos0.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ExternalBus {
    /// Checks the settings and starts the connection task (within a tokio runtime). It
    /// returns at once; the task connects, subscribes and keeps reconnecting.
    pub fn connect(settings: ExternalSettings) -> Result<Self, BrokerError> {
        let addresses = settings.options()?;
        let (client, eventloop) = AsyncClient::new(addresses[0].clone(), REQUEST_QUEUE);
        let (inbound_tx, inbound) = mpsc::channel(settings.inbound_capacity);
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = watch::channel(false);
        let (stopping, stopping_rx) = watch::channel(false);
        let dropped_qos0 = Arc::new(AtomicU64::new(0));

        tokio::spawn(run_acks(client.clone(), settle_rx, stopping_rx.clone()));
        let filters = if settings.subscribe {
            settings.filters()
        } else {
            Vec::new()
        };
        let connection = Connection {
            eventloop,
            addresses,
            address: 0,
            client: client.clone(),
            filters: filters
                .into_iter()
                .map(|path| SubscribeFilter::new(path, QoS::AtLeastOnce))
                .collect(),
            inbound: inbound_tx,
            settle: settle_tx,
            subscribed: subscribed_tx,
            dropped_qos0: dropped_qos0.clone(),
            qos1_reserve: settings.qos1_reserve,
            reconnect_min: settings.reconnect_min,
            reconnect_max: settings.reconnect_max,
        };
        info!(url = %settings.url, client_id = %settings.client_id, share_group = ?settings.share_group, "connecting to external broker");
        let task = tokio::spawn(connection.run(stopping_rx));
        Ok(Self {
            client,
            inbound,
            subscribed,
            dropped_qos0,
            stopping,
            task: Some(task),
        })
    }

    /// Queues a QoS 1 publish; see [`super::HubBus::publish`].
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), BrokerError> {
        super::validate_publish_topic(topic)?;
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .map_err(|_| BrokerError::Closed)
    }

    /// Messages on the hub's filters; see [`super::HubBus::inbound`].
    pub fn inbound(&mut self) -> &mut mpsc::Receiver<Inbound> {
        &mut self.inbound
    }

    /// `true` from the broker's SUBACK of the hub's filters until the connection drops
    /// (for readiness checks; tests wait on it before publishing).
    pub fn subscribed(&self) -> watch::Receiver<bool> {
        self.subscribed.clone()
    }

    /// QoS 0 messages dropped because the inbound channel was nearly full.
    pub fn dropped_qos0(&self) -> u64 {
        self.dropped_qos0.load(Ordering::Relaxed)
    }

    /// Writes the PUBACKs of every message settled so far, then DISCONNECT (the broker
    /// keeps the session and every un-settled message for this client id), and ends the
    /// connection task. Messages arriving meanwhile are not handed on (nor acked).
    pub async fn shutdown(mut self) {
        self.stopping.send_replace(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                // E.g. a connection attempt to a broker that does not answer.
                warn!("external broker: no clean disconnect in time, dropping the connection");
                task.abort();
            }
        }
    }
}

impl Drop for ExternalBus {
    fn drop(&mut self) {
        // Dropped without shutdown: end the connection at once, no DISCONNECT (the
        // broker sees a lost connection, as if the hub had crashed).
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Turns settled messages into PUBACK requests. On shutdown it queues the PUBACKs of
/// everything settled before, then DISCONNECT: the event loop takes requests in order,
/// so the acks reach the broker before it.
async fn run_acks(
    client: AsyncClient,
    mut settle: mpsc::UnboundedReceiver<Publish>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            stop = stop_requested(&mut stopping) => {
                if !stop {
                    // The bus was dropped without shutdown: no goodbye.
                    return;
                }
                break;
            }
            publish = settle.recv() => match publish {
                Some(p) => {
                    if client.ack(&p).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
        }
    }
    while let Ok(p) = settle.try_recv() {
        if client.ack(&p).await.is_err() {
            return;
        }
    }
    if client.disconnect().await.is_err() {
        debug!("external broker: connection task already gone at shutdown");
    }
}

struct Connection {
    eventloop: EventLoop,
    /// One per broker address; `eventloop` uses `addresses[address]`.
    addresses: Vec<MqttOptions>,
    address: usize,
    client: AsyncClient,
    filters: Vec<SubscribeFilter>,
    inbound: mpsc::Sender<Inbound>,
    settle: mpsc::UnboundedSender<Publish>,
    subscribed: watch::Sender<bool>,
    dropped_qos0: Arc<AtomicU64>,
    qos1_reserve: usize,
    reconnect_min: Duration,
    reconnect_max: Duration,
}

impl Connection {
    async fn run(mut self, mut stopping: watch::Receiver<bool>) {
        let mut backoff = self.reconnect_min;
        let mut last_error = String::new();
        loop {
            // Never cancelled (no select around it): rumqttc's poll is not cancel-safe, a
            // request it has taken (a PUBACK) can be lost mid-write. Shutdown arrives as
            // a DISCONNECT request instead (see run_acks).
            match self.eventloop.poll().await {
                // Keep reading until the broker closes: closing our socket while bytes
                // it sent are still unread makes the kernel send RST, and the broker then
                // drops what it had not read yet, our last PUBACKs and the DISCONNECT.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    debug!("external broker: disconnect written");
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = self.reconnect_min;
                    last_error.clear();
                    info!(
                        session_present = ack.session_present,
                        "connected to external broker"
                    );
                    if self.filters.is_empty() {
                        // Publishing only: connected is ready.
                        self.subscribed.send_replace(true);
                        continue;
                    }
                    // Not awaited here: this task drains the request channel the
                    // subscribe waits on.
                    let client = self.client.clone();
                    let filters = self.filters.clone();
                    tokio::spawn(async move {
                        if let Err(e) = client.subscribe_many(filters).await {
                            warn!(error = %e, "cannot queue the hub's subscriptions");
                        }
                    });
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                        error!(return_codes = ?ack.return_codes, "broker refused a hub subscription (shared subscriptions or ACL?)");
                    } else {
                        self.subscribed.send_replace(true);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if !self.deliver(publish, &mut stopping).await {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.subscribed.send_replace(false);
                    if *stopping.borrow() {
                        break;
                    }
                    let reason = error_reason(&e);
                    if reason != last_error {
                        warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "external broker connection down");
                        last_error = reason;
                    } else {
                        debug!(error = %e, retry_in_ms = backoff.as_millis() as u64, "external broker still unreachable");
                    }
                    // Cancelling the sleep is fine: no poll is in flight.
                    tokio::select! {
                        biased;
                        _ = stop_requested(&mut stopping) => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.reconnect_max);
                    if self.addresses.len() > 1 {
                        // The next node of the cluster; the session state (un-acked
                        // publishes) goes with the event loop.
                        self.address = (self.address + 1) % self.addresses.len();
                        self.eventloop.mqtt_options = self.addresses[self.address].clone();
                        info!(broker = %format!("{}:{}", self.eventloop.mqtt_options.broker_address().0, self.eventloop.mqtt_options.broker_address().1), "trying the next broker address");
                    }
                }
            }
        }
        self.subscribed.send_replace(false);
        info!("external broker connection closed");
    }

    /// Passes a message on; `false` when the hub's receiver is gone. While stopping,
    /// messages are dropped un-acked (the broker keeps them in the session) so that the
    /// loop goes on polling until the DISCONNECT is written.
    async fn deliver(&mut self, publish: Publish, stopping: &mut watch::Receiver<bool>) -> bool {
        let qos = publish.qos;
        let settle = (qos != QoS::AtMostOnce).then(|| {
            let mut ack = Publish::new("", qos, Vec::new());
            ack.pkid = publish.pkid;
            super::Settle::Mqtt(Settle {
                tx: self.settle.clone(),
                ack,
            })
        });
        let message = Inbound {
            topic: publish.topic,
            payload: publish.payload,
            redelivered: publish.dup,
            settle,
        };
        if qos == QoS::AtMostOnce {
            if self.inbound.capacity() <= self.qos1_reserve {
                let dropped = self.dropped_qos0.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    warn!(dropped, topic = %message.topic, "inbound channel nearly full: dropping qos 0 messages");
                }
                return true;
            }
            return match self.inbound.try_send(message) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped_qos0.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
        }
        tokio::select! {
            biased;
            _ = stop_requested(stopping) => true,
            sent = self.inbound.send(message) => sent.is_ok(),
        }
    }
}

/// Resolves with `true` once shutdown is asked for, `false` when the bus is gone.
async fn stop_requested(stopping: &mut watch::Receiver<bool>) -> bool {
    // The guard wait_for returns is dropped here, not held across the caller's awaits.
    stopping.wait_for(|s| *s).await.is_ok()
}

/// A connection error without the parts that change from one attempt to the next.
fn error_reason(e: &ConnectionError) -> String {
    match e {
        ConnectionError::Io(io) => format!("io {:?}", io.kind()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> BrokerUrl {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn qos0_is_dropped_and_counted_when_only_the_qos1_reserve_is_left() {
        let settings = ExternalSettings::new("mqtt://127.0.0.1:1", "hub-a");
        let addresses = settings.options().unwrap();
        let (client, eventloop) = AsyncClient::new(addresses[0].clone(), 10);
        let (inbound, mut received) = mpsc::channel(130);
        let (settle, _settled) = mpsc::unbounded_channel();
        let mut connection = Connection {
            eventloop,
            addresses,
            address: 0,
            client,
            filters: Vec::new(),
            inbound,
            settle,
            subscribed: watch::channel(false).0,
            dropped_qos0: Arc::new(AtomicU64::new(0)),
            qos1_reserve: 128,
            reconnect_min: Duration::from_millis(1),
            reconnect_max: Duration::from_millis(1),
        };
        let (_stop, mut stopping) = watch::channel(false);
        for i in 0..10u8 {
            let p = Publish::new("chitti/v1/s/g/telemetry", QoS::AtMostOnce, vec![i]);
            assert!(connection.deliver(p, &mut stopping).await);
        }
        let mut finding = Publish::new("chitti/v1/s/g/findings", QoS::AtLeastOnce, b"f".to_vec());
        finding.pkid = 7;
        assert!(connection.deliver(finding, &mut stopping).await);

        // 130 slots, 128 kept for QoS 1: two telemetry messages fit, eight are dropped.
        assert_eq!(connection.dropped_qos0.load(Ordering::Relaxed), 8);
        let mut topics = Vec::new();
        while let Ok(m) = received.try_recv() {
            topics.push((m.topic.clone(), m.settle.is_some()));
        }
        assert_eq!(
            topics,
            vec![
                ("chitti/v1/s/g/telemetry".to_owned(), false),
                ("chitti/v1/s/g/telemetry".to_owned(), false),
                ("chitti/v1/s/g/findings".to_owned(), true),
            ]
        );
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            url("mqtt://broker"),
            BrokerUrl {
                tls: false,
                host: "broker".into(),
                port: 1883
            }
        );
        assert_eq!(
            url("mqtts://broker.example/"),
            BrokerUrl {
                tls: true,
                host: "broker.example".into(),
                port: 8883
            }
        );
        assert_eq!(
            url("mqtt://10.0.0.1:1884"),
            BrokerUrl {
                tls: false,
                host: "10.0.0.1".into(),
                port: 1884
            }
        );
        assert_eq!(
            url("mqtts://[::1]:8884"),
            BrokerUrl {
                tls: true,
                host: "::1".into(),
                port: 8884
            }
        );
        assert_eq!(
            url("mqtt://[::1]"),
            BrokerUrl {
                tls: false,
                host: "::1".into(),
                port: 1883
            }
        );
        for bad in [
            "tcp://x",
            "mqtt://",
            "mqtt://x:0",
            "mqtt://x:99999",
            "mqtt://u:p@x",
            "mqtt://x/path",
            "mqtt://[::1",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_filters() {
        let s = ExternalSettings::new("mqtt://x", "hub-1");
        assert_eq!(s.filters()[0], "$share/chitti-hub/chitti/v1/+/+/findings");
        let plain = ExternalSettings {
            share_group: None,
            ..s
        };
        assert_eq!(plain.filters()[2], "chitti/v1/+/+/telemetry");
    }

    #[test]
    fn every_settings_problem_is_reported() {
        let s = ExternalSettings {
            share_group: Some("a/b".into()),
            keep_alive: Duration::ZERO,
            password: Some("p".into()),
            ..ExternalSettings::new("mqtts://x", "")
        };
        match s.options() {
            Err(BrokerError::InvalidSettings(p)) => assert_eq!(p.len(), 5, "{p:?}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        let mixed = ExternalSettings {
            failover_urls: vec!["mqtts://y".into()],
            ..ExternalSettings::new("mqtt://x", "hub-1")
        };
        match mixed.options() {
            Err(BrokerError::InvalidSettings(p)) => {
                assert!(p[0].contains("mix mqtt:// and mqtts://"), "{p:?}")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        let bad = ExternalSettings {
            failover_urls: vec!["tcp://y".into()],
            ..ExternalSettings::new("mqtt://x", "hub-1")
        };
        assert!(bad.options().is_err());
        let three = ExternalSettings {
            failover_urls: vec!["mqtt://y:1884".into(), "mqtt://z".into()],
            ..ExternalSettings::new("mqtt://x", "hub-1")
        };
        let addresses: Vec<_> = three
            .options()
            .unwrap()
            .iter()
            .map(|o| o.broker_address())
            .collect();
        assert_eq!(
            addresses,
            vec![
                ("x".to_owned(), 1883),
                ("y".to_owned(), 1884),
                ("z".to_owned(), 1883)
            ]
        );
    }
}
