//! The hub's MQTT layer: where findings, status and telemetry come in and where `/ack`
//! and `/config/set` go out. The rest of the hub (ingest) sees only [`HubBus`] and
//! [`Inbound`]; which broker is behind it is a deployment choice (DESIGN §6).
//!
//! # Three modes
//!
//! - **Embedded** ([`embedded`]): an in-process rumqttd, hosted the way its crate
//!   documents it: `Broker::new(config)`, the hub's own link from `broker.link(..)`
//!   before `start()`, `start()` on its own OS thread. One process, no broker to
//!   operate: the single-site and demo shape. Sessions live only in memory and only
//!   MQTT 3.1.1 (rumqttd's v4 listener) is offered.
//! - **External** ([`external`]): the hub is an ordinary MQTT 3.1.1 client (rumqttc)
//!   of a broker someone else runs (Mosquitto, EMQX, …). It subscribes with the shared
//!   subscription `$share/chitti-hub/…` so N hub replicas split the load, keeps a
//!   persistent session (`clean_session = false`) and acknowledges each QoS 1 message
//!   only when the hub has committed it ([`Inbound::settle`]).
//! - **NATS** ([`nats`]): the fleet broker is a NATS cluster with JetStream; the hub
//!   pulls the gateways' messages from one durable work-queue consumer shared by every
//!   replica (acked after commit) and publishes over the nodes' MQTT listeners.
//!
//! # Invariants
//!
//! - The hub subscribes to exactly [`HUB_FILTERS`], at QoS 1.
//! - [`HubBus::inbound`] is bounded. A full channel is back-pressure, never a silent
//!   drop of a QoS 1 message (what exactly pushes back is documented per mode on
//!   [`HubBus::inbound`]).
//! - Nothing here blocks a tokio worker: rumqttd's link API blocks (it sends on the
//!   router's bounded flume channel even from its `async fn send`), so it is driven from
//!   dedicated threads.
//! - The broker's PUBACK is not the end-to-end acknowledgement: the agent keeps a finding
//!   until the hub's `/ack` names it (DESIGN §2). This layer only moves bytes.

pub mod embedded;
pub mod external;
pub mod front;
pub mod nats;
pub(crate) mod tls;

use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use tokio::sync::mpsc;

pub use embedded::{
    log_bytes_for, AuthFuture, AuthHandler, EmbeddedBroker, EmbeddedSettings, TlsListener,
    AGENT_BATCH_BYTES,
};
pub use external::{BrokerUrl, ExternalBus, ExternalSettings};
pub use nats::{NatsBus, NatsSettings};

/// The topic filters the hub subscribes to (QoS 1), in this order.
pub const HUB_FILTERS: [&str; 5] = [
    "chitti/v1/+/+/findings",
    "chitti/v1/+/+/status",
    "chitti/v1/+/+/telemetry",
    "chitti/v1/+/+/config/state",
    "chitti/v1/+/+/model/state",
];

/// The shared-subscription group hub replicas join in external mode
/// (`$share/chitti-hub/<filter>`).
pub const SHARE_GROUP: &str = "chitti-hub";

/// Default capacity of the inbound channel.
pub const DEFAULT_INBOUND_CAPACITY: usize = 1024;

/// Default largest accepted MQTT payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Errors of the MQTT layer.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// An explicitly configured listener address is already bound by someone else.
    #[error("listener address {addr} is already in use (another broker, e.g. Mosquitto, on it?)")]
    AddrInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A listener address could not be bound for another reason.
    #[error("cannot bind listener address {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The settings are inconsistent; every problem found is listed.
    #[error("invalid broker settings: {}", .0.join("; "))]
    InvalidSettings(Vec<String>),
    /// A certificate, key or CA could not be used.
    #[error("tls: {0}")]
    Tls(String),
    /// The embedded broker did not come up.
    #[error("embedded broker: {0}")]
    Embedded(String),
    /// The NATS client could not be set up.
    #[error("nats: {0}")]
    Nats(String),
    /// The hub tried to publish to a topic MQTT does not allow publishing to.
    #[error("invalid topic for publishing: {0:?}")]
    InvalidTopic(String),
    /// The bus has been shut down or its broker connection task is gone.
    #[error("the broker connection is closed")]
    Closed,
}

/// One message the hub received on a subscribed topic.
#[derive(Debug)]
pub struct Inbound {
    /// The topic it was published to, e.g. `chitti/v1/site-1/gw-7/findings`.
    pub topic: String,
    /// Its payload, as published.
    pub payload: Bytes,
    /// The broker redelivered it (MQTT DUP flag): the hub may already have seen it.
    pub redelivered: bool,
    settle: Option<Settle>,
}

/// How a message is acknowledged to the broker it came from.
#[derive(Debug)]
pub(crate) enum Settle {
    /// An MQTT PUBACK (external mode).
    Mqtt(external::Settle),
    /// A JetStream ack (NATS mode).
    JetStream(nats::Settle),
}

impl Inbound {
    pub(crate) fn new(topic: String, payload: Bytes) -> Self {
        Self {
            topic,
            payload,
            redelivered: false,
            settle: None,
        }
    }

    /// Acknowledges the message to the broker. Call it once the hub has durably committed
    /// what the message carried. In external mode this sends the QoS 1 PUBACK; until
    /// then the broker keeps the message in the hub's persistent session and redelivers
    /// it when the session is resumed. For the embedded broker it does nothing (the
    /// router acknowledged the publisher when it took the message).
    pub fn settle(mut self) {
        match self.settle.take() {
            Some(Settle::Mqtt(s)) => s.send(),
            Some(Settle::JetStream(s)) => s.send(),
            None => {}
        }
    }
}

/// The hub's view of MQTT: one of the two modes behind one interface.
pub enum HubBus {
    /// The in-process rumqttd.
    Embedded(EmbeddedBroker),
    /// A connection to an external broker.
    External(ExternalBus),
    /// A NATS cluster: JetStream in, its MQTT listeners out.
    Nats(NatsBus),
}

impl HubBus {
    /// Publishes `payload` to `topic` at QoS 1 (`/ack`, `/config/set`), `retain` as given.
    ///
    /// `Ok` means the message was handed to the broker side: to rumqttd's router
    /// (embedded; it is then delivered at the subscriber's QoS), or queued in the MQTT
    /// client's request channel (external; the client retransmits it until PUBACKed,
    /// across reconnects, since the session is persistent). It waits while that queue is
    /// full. It is not a delivery receipt: the agent treats `/ack` as idempotent.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), BrokerError> {
        validate_publish_topic(topic)?;
        match self {
            Self::Embedded(b) => b.publish(topic, payload, retain).await,
            Self::External(b) => b.publish(topic, payload, retain).await,
            Self::Nats(b) => b.publish(topic, payload, retain).await,
        }
    }

    /// The messages that arrive on [`HUB_FILTERS`]. The channel is bounded
    /// (`inbound_capacity`); when the hub does not keep up:
    ///
    /// - embedded: the bridge thread waits, rumqttd parks further messages in its
    ///   in-memory commit log (publishers are still PUBACKed); if the hub falls further
    ///   behind than the log holds, rumqttd skips ahead (logs a cursor jump) and the
    ///   agents' end-to-end resend covers those findings;
    /// - external: QoS 1 messages wait in the client (TCP back-pressure to the broker,
    ///   which also stops sending once its in-flight window of unsettled messages is
    ///   full); QoS 0 messages (telemetry) are dropped and counted when the channel is
    ///   nearly full, so that the MQTT event loop never stalls (see [`ExternalBus`]).
    pub fn inbound(&mut self) -> &mut mpsc::Receiver<Inbound> {
        match self {
            Self::Embedded(b) => b.inbound(),
            Self::External(b) => b.inbound(),
            Self::Nats(b) => b.inbound(),
        }
    }

    /// Takes the inbound channel out (the bus itself then goes on publishing, shared),
    /// leaving a closed one behind.
    pub fn take_inbound(&mut self) -> mpsc::Receiver<Inbound> {
        std::mem::replace(self.inbound(), mpsc::channel(1).1)
    }

    /// The listener addresses actually bound (embedded: TCP first, then TLS); empty in
    /// external mode.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        match self {
            Self::Embedded(b) => b.local_addrs(),
            Self::External(_) | Self::Nats(_) => Vec::new(),
        }
    }

    /// Stops receiving and closes the hub's side (see each mode for what remains).
    pub async fn shutdown(self) {
        match self {
            Self::Embedded(b) => b.shutdown().await,
            Self::External(b) => b.shutdown().await,
            Self::Nats(b) => b.shutdown().await,
        }
    }
}

/// Whether a TCP listener could bind `addr` right now, with the same `SO_REUSEADDR`
/// semantics rumqttd's (tokio's) listener uses, so a port left in `TIME_WAIT` by a
/// previous run counts as free. For the demo's fallback:
///
/// ```no_run
/// # use chitti_hub::broker::port_is_free;
/// let mut addr: std::net::SocketAddr = "0.0.0.0:1883".parse().unwrap();
/// if !port_is_free(addr) {
///     // The hub then reads the real port back from `local_addrs()`.
///     println!("port {} is taken (Mosquitto?), using a free one instead", addr.port());
///     addr.set_port(0);
/// }
/// ```
pub fn port_is_free(addr: SocketAddr) -> bool {
    try_bind(addr).is_ok()
}

/// Binds and drops a socket on `addr` (port 0: the kernel picks a free port) and returns
/// the address it got. The port is free only until someone else takes it: see
/// [`EmbeddedSettings`] for the race this leaves.
pub(crate) fn try_bind(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    bound_socket(addr)?.local_addr()
}

/// A socket bound to `addr`, as tokio's `TcpListener::bind` (rumqttd's) binds it.
pub(crate) fn bound_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = match addr.ip() {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // SO_REUSEADDR on Unix, so a port in TIME_WAIT counts as free. A socket that is
    // listening on the port still makes bind() fail with EADDRINUSE, which is what
    // "taken" means here.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Checks what the hub may publish to: MQTT forbids wildcards in a topic name, `$`
/// topics are the broker's, and rumqttd would otherwise drop the hub's link.
pub(crate) fn validate_publish_topic(topic: &str) -> Result<(), BrokerError> {
    let bad = topic.is_empty()
        || topic.len() > usize::from(u16::MAX)
        || topic.starts_with('$')
        || topic.contains(['+', '#', '\0']);
    if bad {
        Err(BrokerError::InvalidTopic(topic.to_owned()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_topics_are_checked() {
        assert!(validate_publish_topic("chitti/v1/s/g/ack").is_ok());
        for bad in ["", "chitti/v1/+/g/ack", "chitti/#", "$SYS/x", "a\0b"] {
            assert!(validate_publish_topic(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_listening_port_is_not_free_and_a_closed_one_is() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(!port_is_free(addr));
        drop(listener);
        assert!(port_is_free(addr));
    }
}
