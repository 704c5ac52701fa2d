//! The embedded broker: rumqttd inside the hub process.
//!
//! # How it is hosted
//!
//! As rumqttd documents it (`examples/singlenode.rs`, `architecture.md`):
//! `Broker::new(config)` spawns the router thread; the hub's own connection is a *link*
//! from `broker.link(..)`, made and subscribed **before** `start()`, so the router holds
//! the hub's subscriptions before any agent can connect; `start()` spawns one thread per
//! listener and joins them, so it runs on its own OS thread and never returns while a
//! listener is alive.
//!
//! The link API is synchronous: `LinkRx::recv` blocks on a flume channel and every
//! `LinkTx` method, including the `async fn send`, does a blocking `send` on the router's
//! bounded (1000) channel. So two dedicated threads drive it: `chitti-hub-link-rx`
//! bridges notifications into the tokio [`mpsc`] channel the ingest reads
//! (`blocking_send`: back-pressure), and `chitti-hub-link-tx` turns
//! [`EmbeddedBroker::publish`] calls into link packets.
//!
//! # What rumqttd does not do for us, and what is done here instead
//!
//! - **Ports.** rumqttd binds inside `start()`, on the listener's thread, and never
//!   reports the address it got: port 0 binds *some* port nobody learns. A failed bind
//!   is only logged (`Server error - V4`), that listener's thread ends, and `start()`
//!   returns `Ok(())` once all listeners have ended. So every address is checked here
//!   before starting: an explicit address that is taken is a clean
//!   [`BrokerError::AddrInUse`]; port 0 is replaced by a port the kernel hands out to a
//!   probe socket that is closed again. Between that probe and rumqttd's bind another
//!   process could take the port (a small race, only for port 0); the start-up then
//!   fails with "nothing listening" if that process does not accept either, or, if it
//!   does, the broker's listener is dead and only its log says so.
//! - **Readiness.** `start()` gives no signal; [`EmbeddedBroker::start`] returns once a
//!   TCP connection to every listener succeeds (rumqttd logs one connection error per
//!   listener for that probe).
//! - **Stopping.** rumqttd has no shutdown: its router and listener threads run until
//!   the process exits. [`EmbeddedBroker::shutdown`] disconnects the hub's link and stops
//!   the bridge threads; the ports stay bound until exit.
//! - **TLS files.** rumqttd reads the certificate, key and CA *files* again on every TLS
//!   accept, so the PEMs are written to a private temporary directory that lives as long
//!   as this handle. Being built with `verify-client-cert`, rumqttd demands a client
//!   certificate from every TLS client, trusts only the **first** certificate of the CA
//!   file, and, when a client certificate has a subject Organization (O), prefixes the
//!   client id with it (`O.client_id`) and refuses the connection unless O is purely
//!   alphanumeric. It does not tie the certificate to the client id or to topics.
//! - **TLS handshakes block the listener.** rumqttd performs the TLS handshake inside its
//!   accept loop, without a timeout: one client that opens a TCP connection to the TLS
//!   port and sends nothing stops every further TLS accept until it leaves (seen: a
//!   good client times out after 5 s while a silent socket is open). With a login check
//!   (the hub's case) TLS is therefore terminated by the authorisation front instead
//!   (`super::front`), each handshake on its own task; rumqttd's own TLS listener is
//!   used only without one (tests, anonymous demos).
//! - **No publish/subscribe authorisation, client ids up for grabs.** Both are the
//!   authorisation front's job: with a login check, every public listener is the
//!   front's and rumqttd listens on loopback only.
//! - **One thread per listener.** Each listener runs all of its connections on one
//!   current-thread runtime.
//! - **The hub's link id** is `chitti-hub-<random>`: a remote client connecting with the
//!   same id would replace the hub's link (rumqttd drops the older of two connections
//!   with one id). The password check refuses every id starting with `chitti-hub`.
//! - **Small things measured by the tests**: a failed login gets no CONNACK code, just a
//!   closed connection; keep-alive 0 is refused; with the open-files limit below its
//!   connections rumqttd's accept loop spins on `EMFILE`, so the hub warns when
//!   `ulimit -n` < `max_connections` + 256.
//!
//! # The log, and reconnect storms
//!
//! rumqttd keeps each filter's messages in an in-memory log of `LOG_SEGMENTS` segments.
//! A burst larger than the log makes it skip the hub's read cursor ahead ("Read cursor
//! start jumped …") after it has PUBACKed the publishers: nothing is lost end to end
//! (the hub never acknowledged those findings, the agents resend them), but they arrive
//! a resend period late. A fixed 16 MiB log (about 277 batches of 60 KB) lost 38–42 % of
//! the first batches of 1 000 gateways reconnecting at once. So the log is sized from
//! the fleet: [`log_bytes_for`] gives `max_connections` × one full agent batch
//! (`AGENT_BATCH_BYTES`, the agents' default `batch_max_bytes`), at least 16 MiB, or
//! `broker.embedded.log_bytes` sets it. Memory: a busy filter's log fills and stays
//! full (rumqttd drops a segment only when a new one is needed), so the hub's resident
//! set grows by up to `log_bytes` under steady ingest — 250 MiB at the default 2 000
//! connections — plus about 0.7 KB of bookkeeping per message held (1.45 KB findings
//! held ~2.2 KB each in the benchmark).
//!
//! rumqttd gives every subscribed filter such a log, and each gateway subscribes to its
//! own `/ack`, `/config/set` and `/model/set`: at the fleet's log size, a thousand
//! gateways' ack logs alone could hold 250 GiB, and the hub grew by ~1 MiB/s at 1 000
//! acks/s without end. Those filters carry few, small messages for one reader each, so
//! their logs are [`GATEWAY_LOG_SEGMENTS`] × [`GATEWAY_LOG_SEGMENT_BYTES`] (16 KiB,
//! ~45 acks; a reader further behind skips ahead and is answered again on its resend,
//! acks being idempotent; retained `/config/set` and `/model/set` live in rumqttd's
//! retained store, not in the log). The agents keep their side of the bargain: after a (re)connect each
//! opens with one batch in flight and widens on acks (slow start), and resends and
//! reconnects are jittered (`agent/src/sinks/mqtt`), so the opening burst of a fleet is
//! one batch per gateway. Measured in BENCHMARKS.md, "Reconnect storms".

use super::{
    tls, try_bind, BrokerError, Inbound, DEFAULT_INBOUND_CAPACITY, DEFAULT_MAX_PAYLOAD_BYTES,
    HUB_FILTERS,
};
use bytes::Bytes;
use chitti_common::protocol::{Topic, TopicKind};
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet, Publish};
use rumqttd::{
    Broker, Config, ConnectionSettings, Notification, RouterConfig, SegmentConfig, ServerSettings,
    TlsConfig,
};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

/// The future an [`AuthHandler`] returns.
pub type AuthFuture = Pin<Box<dyn Future<Output = bool> + Send + 'static>>;

/// Checks a remote client's login: `(client_id, username, password) -> allowed`. The
/// hub checks it against its device database. It runs on the tokio runtime that called
/// [`EmbeddedBroker::start`] (not on rumqttd's own runtimes), so it may use the hub's
/// database pool; it is given [`EmbeddedSettings::connect_timeout`] to answer.
pub type AuthHandler = Arc<dyn Fn(String, String, String) -> AuthFuture + Send + Sync>;

/// Prefix of the hub's own link id; refused to remote clients.
const HUB_LINK_PREFIX: &str = "chitti-hub";

/// rumqttd's size limit applies to a packet's remaining length (topic, packet id and
/// payload), not to the payload alone; this much is added for the topic so that a
/// payload of exactly `max_payload_bytes` is accepted on any Chitti topic (the longest
/// is about 160 bytes).
const TOPIC_ALLOWANCE_BYTES: usize = 512;

/// Each filter's in-memory commit log is kept in this many segments; a slow subscriber
/// that falls behind by more than the log skips ahead.
const LOG_SEGMENTS: usize = 4;

/// Segments of each gateway-bound filter's log (`/ack`, `/config/set`, `/model/set`).
pub const GATEWAY_LOG_SEGMENTS: usize = 4;

/// Size of a gateway-bound filter's log segment (a larger message overflows its
/// segment; it is still delivered).
pub const GATEWAY_LOG_SEGMENT_BYTES: usize = 4 << 10;

/// The topics the hub publishes to gateways, one subscriber each.
const GATEWAY_BOUND: [TopicKind; 3] = [TopicKind::Ack, TopicKind::ConfigSet, TopicKind::ModelSet];

/// Smallest log: 16 MiB, what rumqttd was given before the log was sized from the fleet.
const MIN_LOG_BYTES: usize = 16 << 20;

/// One full agent batch: the agents' default `outbox.batch_max_bytes` (128 KiB).
pub const AGENT_BATCH_BYTES: usize = 128 << 10;

/// The log a fleet of `max_connections` gateways needs so that each may have one full
/// batch in it at once (a reconnect storm's opening burst), at least 16 MiB.
pub fn log_bytes_for(max_connections: usize) -> usize {
    max_connections
        .saturating_mul(AGENT_BATCH_BYTES)
        .max(MIN_LOG_BYTES)
}

/// Capacity of the channel from [`EmbeddedBroker::publish`] to the link's writer thread.
const PUBLISH_QUEUE: usize = 256;

/// Settings of the embedded broker.
#[derive(Clone)]
pub struct EmbeddedSettings {
    /// Plain MQTT listener (password authentication). Port 0: any free port, read it
    /// back from [`EmbeddedBroker::local_addrs`].
    pub tcp: Option<SocketAddr>,
    /// Mutual-TLS listener.
    pub tls: Option<TlsListener>,
    /// Largest accepted publish payload; a client sending more is disconnected and its
    /// message dropped.
    pub max_payload_bytes: usize,
    /// Most simultaneous remote clients (the hub's link is on top of these).
    pub max_connections: usize,
    /// Bytes each topic filter's in-memory log holds before a slow reader skips ahead
    /// (see the module docs). `None`: [`log_bytes_for`] `max_connections`.
    pub log_bytes: Option<usize>,
    /// How long a new connection may take to send CONNECT, and the password check to
    /// answer. At most 65 s (rumqttd keeps it in milliseconds as a `u16`).
    pub connect_timeout: Duration,
    /// Capacity of the inbound channel.
    pub inbound_capacity: usize,
    /// The login check. `None`: anonymous clients are accepted on the TCP listener
    /// (demo only). With it, both listeners are behind the authorisation front
    /// ([`super::front`]).
    pub auth: Option<AuthHandler>,
    /// Whether the gateway a TLS client certificate names (its CN, `site/gateway`,
    /// given as the user name) may log in: enrolled, not revoked. `None`: any name
    /// the certificate carries.
    pub certificate_check: Option<AuthHandler>,
    /// How long [`EmbeddedBroker::start`] waits for the listeners to accept.
    pub start_timeout: Duration,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        Self {
            tcp: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 1883))),
            tls: None,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_connections: 1024,
            log_bytes: None,
            connect_timeout: Duration::from_secs(10),
            inbound_capacity: DEFAULT_INBOUND_CAPACITY,
            auth: None,
            certificate_check: None,
            start_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for EmbeddedSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedSettings")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("max_connections", &self.max_connections)
            .field("log_bytes", &self.log_bytes())
            .field("connect_timeout", &self.connect_timeout)
            .field("inbound_capacity", &self.inbound_capacity)
            .field("auth", &self.auth.as_ref().map(|_| "<handler>"))
            .field(
                "certificate_check",
                &self.certificate_check.as_ref().map(|_| "<handler>"),
            )
            .field("start_timeout", &self.start_timeout)
            .finish()
    }
}

impl EmbeddedSettings {
    /// The log size in effect: set, or derived from `max_connections`.
    pub fn log_bytes(&self) -> usize {
        self.log_bytes
            .unwrap_or_else(|| log_bytes_for(self.max_connections))
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.tcp.is_none() && self.tls.is_none() {
            problems.push("no listener: set tcp, tls or both".to_owned());
        }
        if let (Some(tcp), Some(tls)) = (self.tcp, &self.tls) {
            if tcp.port() != 0 && tcp == tls.addr {
                problems.push(format!("tcp and tls listeners both on {tcp}"));
            }
        }
        if self.max_payload_bytes < 1024 {
            problems.push("max_payload_bytes below 1 KiB".to_owned());
        }
        if self.max_connections == 0 {
            problems.push("max_connections is 0".to_owned());
        }
        if self.connect_timeout.is_zero() || self.connect_timeout.as_millis() > u128::from(u16::MAX)
        {
            problems.push("connect_timeout must be between 1 ms and 65 s".to_owned());
        }
        if self.inbound_capacity == 0 {
            problems.push("inbound_capacity is 0".to_owned());
        }
        if self.tls.as_ref().is_some_and(|t| t.check_password) && self.auth.is_none() {
            problems.push("tls.check_password is set but there is no auth handler".to_owned());
        }
        problems
    }
}

/// The mutual-TLS listener of the embedded broker.
#[derive(Clone)]
pub struct TlsListener {
    /// Address; port 0 as for [`EmbeddedSettings::tcp`].
    pub addr: SocketAddr,
    /// The broker's certificate chain (PEM, leaf first).
    pub cert_chain_pem: Vec<u8>,
    /// The broker's private key (PEM).
    pub key_pem: Vec<u8>,
    /// The CA that signs gateway certificates (PEM). Required: every TLS client must
    /// present a certificate it signed. Only the first certificate in it is trusted.
    pub client_ca_pem: Vec<u8>,
    /// Also run the password check on this listener. Off: the certificate is the
    /// credential (DESIGN §7: passwords are the fallback where mTLS is unavailable).
    pub check_password: bool,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("addr", &self.addr)
            .field(
                "cert_chain_pem",
                &format_args!("{} bytes", self.cert_chain_pem.len()),
            )
            .field("key_pem", &"<redacted>")
            .field(
                "client_ca_pem",
                &format_args!("{} bytes", self.client_ca_pem.len()),
            )
            .field("check_password", &self.check_password)
            .finish()
    }
}

struct PublishCommand {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    done: oneshot::Sender<Result<(), BrokerError>>,
}

/// A running embedded broker and the hub's link to it.
pub struct EmbeddedBroker {
    inbound: mpsc::Receiver<Inbound>,
    publish_tx: Option<mpsc::Sender<PublishCommand>>,
    threads: Vec<JoinHandle<()>>,
    // The authorisation fronts' accept loops; aborted (their ports freed) on shutdown.
    front: Vec<tokio::task::JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
    link_id: String,
    // rumqttd reads the PEM files on every TLS accept: they must outlive the listener's
    // use of them, i.e. this handle.
    _pem_dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addrs", &self.addrs)
            .field("link_id", &self.link_id)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Checks the settings and addresses, starts rumqttd and returns once every listener
    /// accepts connections. Must be called within a tokio runtime (the blocking parts run
    /// on its blocking pool; the auth handler runs on it).
    pub async fn start(settings: EmbeddedSettings) -> Result<Self, BrokerError> {
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || start_blocking(settings, runtime))
            .await
            .map_err(|e| BrokerError::Embedded(format!("start-up task failed: {e}")))?
    }

    /// The listener addresses actually bound: TCP first, then TLS.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Messages on the hub's filters; see [`super::HubBus::inbound`].
    pub fn inbound(&mut self) -> &mut mpsc::Receiver<Inbound> {
        &mut self.inbound
    }

    /// Hands a publish to rumqttd's router; see [`super::HubBus::publish`]. The router
    /// forwards it at each subscriber's QoS (rumqttd's local links publish at QoS 0
    /// internally; the QoS a client receives is its subscription's).
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), BrokerError> {
        super::validate_publish_topic(topic)?;
        let tx = self.publish_tx.as_ref().ok_or(BrokerError::Closed)?;
        let (done, result) = oneshot::channel();
        tx.send(PublishCommand {
            topic: topic.to_owned(),
            payload,
            retain,
            done,
        })
        .await
        .map_err(|_| BrokerError::Closed)?;
        result.await.map_err(|_| BrokerError::Closed)?
    }

    /// Disconnects the hub's link and waits for the bridge threads to end. rumqttd itself
    /// cannot be stopped: its listeners keep their ports (and accept clients the hub no
    /// longer hears) until the process exits.
    pub async fn shutdown(self) {
        let Self {
            inbound,
            publish_tx,
            threads,
            link_id,
            _pem_dir,
            front,
            ..
        } = self;
        for task in front {
            task.abort();
        }
        // Dropping the receiver unblocks a reader waiting on a full channel; closing the
        // publish queue makes the writer disconnect the link, which ends the reader.
        drop(inbound);
        drop(publish_tx);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if joined.is_err() {
            warn!(link_id = %link_id, "embedded broker: bridge threads did not end cleanly");
        }
        info!(link_id = %link_id, "embedded broker: hub link closed");
    }
}

fn start_blocking(
    settings: EmbeddedSettings,
    runtime: tokio::runtime::Handle,
) -> Result<EmbeddedBroker, BrokerError> {
    let problems = settings.problems();
    if !problems.is_empty() {
        return Err(BrokerError::InvalidSettings(problems));
    }
    if let Some(t) = &settings.tls {
        let ca_count = tls::check_server_pems(&t.cert_chain_pem, &t.key_pem, &t.client_ca_pem)?;
        if ca_count > 1 {
            warn!(
                ca_count,
                "tls client ca: rumqttd trusts only the first certificate in it"
            );
        }
    }

    check_open_files_limit(settings.max_connections);

    // With a login check, the public listeners are the authorisation front's
    // (`super::front`) and rumqttd listens on loopback only, behind it, for both.
    let fronted = settings.auth.is_some();
    let front_tcp = match settings.tcp {
        Some(public) if fronted => Some(bind_front(public, &runtime)?),
        _ => None,
    };
    let front_tls = match &settings.tls {
        Some(t) if fronted => Some((
            bind_front(t.addr, &runtime)?,
            tls::mutual_tls_server_config(&t.cert_chain_pem, &t.key_pem, &t.client_ca_pem)?,
            t.check_password,
        )),
        _ => None,
    };
    let tcp_addr = if fronted {
        Some(resolve_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?)
    } else {
        settings.tcp.map(resolve_addr).transpose()?
    };
    let tls_addr = match &settings.tls {
        Some(t) if !fronted => Some(resolve_addr(t.addr)?),
        _ => None,
    };
    // What the front logs certificate clients in with; only this process knows it.
    let front_secret: Arc<str> = {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| BrokerError::Embedded(format!("no randomness for the front: {e}")))?;
        format!("chitti-front-{}", hex::encode(bytes)).into()
    };

    let link_id = format!(
        "{HUB_LINK_PREFIX}-{:016x}",
        RandomState::new().hash_one(Instant::now())
    );
    let max_packet = settings.max_payload_bytes + TOPIC_ALLOWANCE_BYTES;
    let connections = |check_password: bool| {
        let mut c = ConnectionSettings {
            connection_timeout_ms: settings.connect_timeout.as_millis() as u16,
            max_payload_size: max_packet,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: false,
        };
        if check_password {
            if let Some(auth) = settings.auth.clone() {
                install_auth(
                    &mut c,
                    auth,
                    Arc::clone(&front_secret),
                    runtime.clone(),
                    settings.connect_timeout,
                );
            }
        }
        c
    };

    let mut v4 = HashMap::new();
    if let Some(addr) = tcp_addr {
        v4.insert(
            "tcp".to_owned(),
            ServerSettings {
                name: "chitti-mqtt-tcp".to_owned(),
                listen: addr,
                tls: None,
                next_connection_delay_ms: 1,
                connections: connections(true),
            },
        );
    }
    let mut pem_dir = None;
    if let (Some(addr), Some(t)) = (tls_addr, &settings.tls) {
        let dir = tempfile::Builder::new()
            .prefix("chitti-hub-tls-")
            .tempdir()
            .map_err(|e| {
                BrokerError::Tls(format!("cannot create a directory for the pem files: {e}"))
            })?;
        let write = |name: &str, pem: &[u8]| -> Result<String, BrokerError> {
            let path = dir.path().join(name);
            std::fs::write(&path, pem)
                .map_err(|e| BrokerError::Tls(format!("cannot write {}: {e}", path.display())))?;
            path.into_os_string()
                .into_string()
                .map_err(|p| BrokerError::Tls(format!("temporary path {p:?} is not utf-8")))
        };
        let tls = TlsConfig::Rustls {
            capath: Some(write("client-ca.pem", &t.client_ca_pem)?),
            certpath: write("server.pem", &t.cert_chain_pem)?,
            keypath: write("server-key.pem", &t.key_pem)?,
        };
        v4.insert(
            "tls".to_owned(),
            ServerSettings {
                name: "chitti-mqtt-tls".to_owned(),
                listen: addr,
                tls: Some(tls),
                next_connection_delay_ms: 1,
                connections: connections(t.check_password),
            },
        );
        pem_dir = Some(dir);
    }

    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: settings.max_connections + 1,
            max_outgoing_packet_count: 200,
            max_segment_size: (settings.log_bytes() / LOG_SEGMENTS).max(2 * max_packet),
            max_segment_count: LOG_SEGMENTS,
            custom_segment: Some(
                GATEWAY_BOUND
                    .iter()
                    .map(|kind| {
                        (
                            Topic::filter_all(*kind),
                            SegmentConfig {
                                max_segment_size: GATEWAY_LOG_SEGMENT_BYTES,
                                max_segment_count: GATEWAY_LOG_SEGMENTS,
                            },
                        )
                    })
                    .collect(),
            ),
            ..RouterConfig::default()
        },
        v4: Some(v4),
        ..Config::default()
    };

    let mut broker = Broker::new(config);
    let (mut link_tx, link_rx) = broker
        .link(&link_id)
        .map_err(|e| BrokerError::Embedded(format!("cannot create the hub's link: {e}")))?;
    for filter in HUB_FILTERS {
        // The link's own subscriptions are QoS 0: no in-flight window between router and
        // hub; reliability comes from the end-to-end /ack (DESIGN §2).
        link_tx
            .subscribe(filter)
            .map_err(|e| BrokerError::Embedded(format!("cannot subscribe the hub's link: {e}")))?;
    }

    let (exited_tx, exited_rx) = std_mpsc::channel();
    let broker_thread = thread::Builder::new()
        .name("rumqttd".to_owned())
        .spawn(move || {
            let result = broker.start();
            // start() returns only when every listener thread has ended (a failed bind
            // ends one and is only logged by rumqttd).
            error!(result = ?result, "embedded broker: all listeners stopped");
            let _ = exited_tx.send(result.map_err(|e| e.to_string()));
        })
        .map_err(|e| BrokerError::Embedded(format!("cannot spawn the broker thread: {e}")))?;
    drop(broker_thread);

    let deadline = Instant::now() + settings.start_timeout;
    for addr in tcp_addr.iter().chain(&tls_addr) {
        wait_listening(*addr, &exited_rx, deadline)?;
    }
    let limits = super::front::FrontLimits {
        max_packet,
        connect_timeout: settings.connect_timeout,
    };
    let mut front_tasks = Vec::new();
    let mut public_tcp = tcp_addr;
    let mut public_tls = tls_addr;
    if let (Some((listener, public)), Some(internal)) = (front_tcp, tcp_addr) {
        front_tasks.push(runtime.spawn(super::front::run(listener, internal, limits)));
        public_tcp = Some(public);
    } else if fronted {
        // TLS only: the loopback listener is not reachable from outside.
        public_tcp = None;
    }
    if let (Some(((listener, public), config, check_password)), Some(internal)) =
        (front_tls, tcp_addr)
    {
        let tls = super::front::TlsFront {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            certificate_check: settings.certificate_check.clone(),
            check_password,
            secret: Arc::clone(&front_secret),
        };
        front_tasks.push(runtime.spawn(super::front::run_tls(listener, internal, limits, tls)));
        public_tls = Some(public);
    }
    let addrs: Vec<SocketAddr> = public_tcp.into_iter().chain(public_tls).collect();

    let (inbound_tx, inbound) = mpsc::channel(settings.inbound_capacity);
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
    let rx_thread = thread::Builder::new()
        .name("chitti-hub-link-rx".to_owned())
        .spawn(move || run_link_rx(link_rx, inbound_tx))
        .map_err(|e| BrokerError::Embedded(format!("cannot spawn the link reader: {e}")))?;
    let tx_thread = thread::Builder::new()
        .name("chitti-hub-link-tx".to_owned())
        .spawn(move || run_link_tx(link_tx, publish_rx))
        .map_err(|e| BrokerError::Embedded(format!("cannot spawn the link writer: {e}")))?;

    info!(
        tcp = ?public_tcp,
        rumqttd_tcp = ?tcp_addr,
        authorisation_front = fronted,
        tls = ?tls_addr,
        link_id = %link_id,
        max_payload_bytes = settings.max_payload_bytes,
        max_connections = settings.max_connections,
        log_bytes = settings.log_bytes(),
        "embedded broker listening"
    );
    Ok(EmbeddedBroker {
        inbound,
        publish_tx: Some(publish_tx),
        threads: vec![rx_thread, tx_thread],
        front: front_tasks,
        addrs,
        link_id,
        _pem_dir: pem_dir,
    })
}

/// File descriptors the hub needs besides one per client connection (database, HTTP,
/// evidence files, rumqttd's own).
const SPARE_FILES: u64 = 256;

/// Warns when the process may run out of file descriptors before `max_connections`:
/// rumqttd's accept loop then retries `accept()` at once, forever, logging an error
/// each time (a CPU-bound log flood), instead of refusing the client.
fn check_open_files_limit(max_connections: usize) {
    let needed = max_connections as u64 + SPARE_FILES;
    if let Some(limit) = open_files_limit() {
        if limit < needed {
            warn!(
                limit,
                needed,
                max_connections,
                "open-files limit too low for max_connections: raise it (ulimit -n, systemd LimitNOFILE) or lower max_connections"
            );
        }
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux; `None` elsewhere or
/// when unlimited).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// An explicit address must be free now; port 0 becomes a free port now.
/// Binds the authorisation front's listener on the public address (port 0: the kernel's
/// choice, reported exactly).
fn bind_front(
    addr: SocketAddr,
    runtime: &tokio::runtime::Handle,
) -> Result<(tokio::net::TcpListener, SocketAddr), BrokerError> {
    let _context = runtime.enter();
    let bind = || -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
        let listener = super::bound_socket(addr)?.listen(1024)?;
        let bound = listener.local_addr()?;
        Ok((listener, bound))
    };
    bind().map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => BrokerError::AddrInUse { addr },
        _ => BrokerError::Bind { addr, source: e },
    })
}

fn resolve_addr(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    match try_bind(addr) {
        Ok(bound) => Ok(bound),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(BrokerError::AddrInUse { addr }),
        Err(source) => Err(BrokerError::Bind { addr, source }),
    }
}

fn install_auth(
    connections: &mut ConnectionSettings,
    auth: AuthHandler,
    front_secret: Arc<str>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
) {
    connections.set_auth_handler(
        move |client_id: String, username: String, password: String| {
            let auth = auth.clone();
            let runtime = runtime.clone();
            let front_secret = Arc::clone(&front_secret);
            async move {
                // A certificate client the TLS front verified (only the front knows the
                // secret; it checked the certificate and the gateway itself).
                if !front_secret.is_empty()
                    && password.len() == front_secret.len()
                    && password
                        .bytes()
                        .zip(front_secret.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
                {
                    debug!(client_id = ?client_id, username = ?username, "mqtt login by certificate");
                    return true;
                }
                if client_id.starts_with(HUB_LINK_PREFIX) {
                    warn!(
                        client_id,
                        username, "mqtt login refused: client id reserved for the hub"
                    );
                    return false;
                }
                // Run the hub's check on the hub's runtime (its database pool lives there),
                // not on the listener's private current-thread runtime.
                let check = runtime.spawn(auth(client_id.clone(), username.clone(), password));
                let allowed = match tokio::time::timeout(timeout, check).await {
                    Ok(Ok(allowed)) => allowed,
                    Ok(Err(e)) => {
                        error!(client_id, username, error = %e, "mqtt login check failed");
                        false
                    }
                    Err(_) => {
                        warn!(
                            client_id = ?client_id,
                            username = ?username,
                            timeout_ms = timeout.as_millis() as u64,
                            "mqtt login check timed out"
                        );
                        false
                    }
                };
                if allowed {
                    // `?`: names from the network are escaped in the log.
                    debug!(client_id = ?client_id, username = ?username, "mqtt login accepted");
                } else {
                    // rumqttd closes the connection without a CONNACK (no return code 5).
                    info!(client_id = ?client_id, username = ?username, "mqtt login refused");
                }
                allowed
            }
        },
    );
}

/// Where to connect to reach a listener bound to `addr`.
fn probe_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

fn wait_listening(
    addr: SocketAddr,
    exited: &std_mpsc::Receiver<Result<(), String>>,
    deadline: Instant,
) -> Result<(), BrokerError> {
    let probe = probe_addr(addr);
    let mut pause = Duration::from_millis(2);
    loop {
        match exited.try_recv() {
            Ok(result) => {
                return Err(BrokerError::Embedded(format!(
                    "rumqttd stopped before listening on {addr}: {result:?}"
                )))
            }
            Err(std_mpsc::TryRecvError::Disconnected) => {
                return Err(BrokerError::Embedded(format!(
                    "rumqttd thread died before listening on {addr}"
                )))
            }
            Err(std_mpsc::TryRecvError::Empty) => {}
        }
        if TcpStream::connect_timeout(&probe, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BrokerError::Embedded(format!(
                "nothing listening on {addr} (was the port taken after it was picked?)"
            )));
        }
        // Polls a listener that rumqttd binds on a thread of its own and never reports.
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

fn run_link_rx(mut link_rx: LinkRx, inbound: mpsc::Sender<Inbound>) {
    loop {
        match link_rx.recv() {
            Ok(Some(Notification::Forward(forward))) => {
                let publish = forward.publish;
                let topic = match String::from_utf8(publish.topic.to_vec()) {
                    Ok(t) => t,
                    Err(_) => {
                        warn!("embedded broker: dropped a message with a non-utf-8 topic");
                        continue;
                    }
                };
                if inbound
                    .blocking_send(Inbound::new(topic, publish.payload))
                    .is_err()
                {
                    debug!("embedded broker: inbound receiver gone, link reader ends");
                    break;
                }
            }
            // The router parks a link whose buffer filled up until it says it is ready.
            Ok(Some(Notification::Unschedule)) => {
                if link_rx.ready().is_err() {
                    break;
                }
            }
            Ok(Some(Notification::Disconnect(..))) => {
                error!("embedded broker: the router disconnected the hub's link");
                break;
            }
            // SubAcks of the link's own subscriptions, or a wake-up with nothing new.
            Ok(Some(_)) | Ok(None) => {}
            Err(e) => {
                // The router dropped the link: after our Disconnect, or the router died.
                debug!(error = %e, "embedded broker: link reader ends");
                break;
            }
        }
    }
}

fn run_link_tx(mut link_tx: LinkTx, mut commands: mpsc::Receiver<PublishCommand>) {
    // LinkTx::send is an `async fn` that blocks inside; a private current-thread runtime
    // on this dedicated thread drives it.
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "embedded broker: cannot build the link writer's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        while let Some(cmd) = commands.recv().await {
            let publish =
                Publish::new(Bytes::from(cmd.topic), Bytes::from(cmd.payload), cmd.retain);
            let result = link_tx
                .send(Packet::Publish(publish, None))
                .await
                .map(drop)
                .map_err(|e| {
                    error!(error = %e, "embedded broker: publish through the hub's link failed");
                    BrokerError::Closed
                });
            let _ = cmd.done.send(result);
        }
        // Publish queue closed (shutdown or drop): leave the router cleanly, which also
        // ends the reader thread.
        let disconnect = Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
        };
        let _ = link_tx.send(Packet::Disconnect(disconnect, None)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_files_limit() {
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some_and(|l| l > 0));
        }
    }

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        assert_eq!(
            probe_addr("0.0.0.0:1883".parse().unwrap()),
            "127.0.0.1:1883".parse().unwrap()
        );
        assert_eq!(
            probe_addr("[::]:1883".parse().unwrap()),
            "[::1]:1883".parse().unwrap()
        );
        assert_eq!(
            probe_addr("10.1.2.3:1883".parse().unwrap()),
            "10.1.2.3:1883".parse().unwrap()
        );
    }
}
