//! The embedded broker's authorisation front: per-gateway topic permissions and a
//! client id bound to the gateway, which rumqttd cannot enforce itself.
//!
//! rumqttd (0.20, the newest release) offers one hook, a password check at CONNECT; it
//! has no publish or subscribe authorisation, and it lets any client take any client
//! id (the older connection is dropped). Replacing the broker (rmqtt and the `mqtt5`
//! crate have ACL hooks) would mean re-proving everything [`super::embedded`] documents
//! about ports, readiness, sessions and TLS, so instead the hub owns the password
//! listener's socket and reads what each client sends with rumqttd's own MQTT 3.1.1
//! codec before it reaches rumqttd, which listens on loopback only:
//!
//! ```text
//! gateway ──TCP──▶ front (public address) ──checked packets──▶ rumqttd (127.0.0.1:port)
//!         ◀───────────────────── everything rumqttd sends ───────────────────────
//! ```
//!
//! - **CONNECT**: the user name must be a gateway's (`site/gateway`; the password is
//!   still checked by rumqttd's hook); the **client id is replaced by `site.gateway`**
//!   (rumqttd refuses `/` in a client id; `.` is in no site or gateway id, so the name
//!   is unique), so no gateway can take over another's session (as Mosquitto's
//!   `use_username_as_clientid`); a Last Will must be on the gateway's own `/status`.
//! - **PUBLISH** only on the gateway's own `/status`, `/findings`, `/telemetry` and
//!   `/config/state`; **SUBSCRIBE** only to its own `/ack` and `/config/set`.
//! - Anything else closes the connection with one log line naming the gateway, the
//!   topic and the rule (MQTT 3.1.1 lets a server close on a refused publish; a refused
//!   subscription is closed too rather than granted nothing, so a misconfigured client
//!   is noticed). A malformed or oversized packet closes it as rumqttd would.
//! - MQTT 5 clients are refused here (the agents speak 3.1.1).
//!
//! **Mutual TLS.** With a TLS listener the front terminates TLS itself (rustls, every
//! certificate of the client CA trusted, a client certificate required, each handshake
//! on its own task with the connect timeout, so a silent socket blocks nobody). The
//! gateway is the certificate's: its subject CN must be `site/gateway`, and the hub's
//! certificate check (enrolled, not revoked) must pass. Its CONNECT login is replaced
//! by that name and a secret of this process, which rumqttd's password hook accepts;
//! with `check_password` the client's own login is kept and its user name must be the
//! certificate's. The same permissions then apply.

use bytes::BytesMut;
use chitti_common::protocol::{Topic, TopicKind};
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Login, Packet, Protocol};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// What one gateway may do on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPermissions {
    site: String,
    gateway: String,
}

impl GatewayPermissions {
    /// The permissions of the gateway a broker user name (`site/gateway`) names.
    pub fn for_username(username: &str) -> Option<Self> {
        let (site, gateway) = crate::store::parse_gateway_username(username)?;
        Some(Self {
            site: site.to_string(),
            gateway: gateway.to_string(),
        })
    }

    fn own(&self, topic: &str) -> Option<TopicKind> {
        let t = Topic::parse(topic).ok()?;
        (t.site == self.site && t.gateway == self.gateway).then_some(t.kind)
    }

    /// The client id the gateway's connection gets: `site.gateway`.
    pub fn client_id(&self) -> String {
        format!("{}.{}", self.site, self.gateway)
    }

    /// Whether the gateway may publish on `topic`: its own status, findings, telemetry,
    /// applied configuration and model state.
    pub fn may_publish(&self, topic: &str) -> bool {
        matches!(
            self.own(topic),
            Some(
                TopicKind::Status
                    | TopicKind::Findings
                    | TopicKind::Telemetry
                    | TopicKind::ConfigState
                    | TopicKind::ModelState
            )
        )
    }

    /// Whether the gateway may subscribe to `filter`: exactly its own `/ack`,
    /// `/config/set` or `/model/set` (no wildcards).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        !filter.contains(['+', '#'])
            && matches!(
                self.own(filter),
                Some(TopicKind::Ack | TopicKind::ConfigSet | TopicKind::ModelSet)
            )
    }
}

/// Limits the front applies before rumqttd sees anything.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrontLimits {
    /// Largest packet (rumqttd's own limit, so an oversized one is refused here).
    pub max_packet: usize,
    /// How long a new connection has to send its CONNECT.
    pub connect_timeout: Duration,
}

/// Who a connection is.
#[derive(Clone)]
enum Credential {
    /// The user name (and password, checked by rumqttd's hook) in its CONNECT.
    Password,
    /// A verified client certificate naming `gateway` (`site/gateway`).
    Certificate {
        gateway: String,
        /// Keep the client's own login (its user name must be `gateway`).
        check_password: bool,
        /// What replaces the password otherwise (accepted by rumqttd's hook).
        secret: Arc<str>,
    },
}

/// Accepts clients on `listener` and relays what they may do to rumqttd at `broker`.
pub(crate) async fn run(listener: TcpListener, broker: SocketAddr, limits: FrontLimits) {
    loop {
        let Some((client, peer)) = accept(&listener).await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            closed(
                peer,
                relay(client, peer, broker, limits, Credential::Password).await,
            );
        });
    }
}

/// What the TLS listener needs.
#[derive(Clone)]
pub(crate) struct TlsFront {
    /// Requires and verifies client certificates.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Whether a certificate's gateway may log in (enrolled, not revoked).
    pub certificate_check: Option<super::embedded::AuthHandler>,
    /// Keep clients' own logins (checked by rumqttd's hook) instead of the secret.
    pub check_password: bool,
    /// The password the front logs certificate clients in with.
    pub secret: Arc<str>,
}

/// Accepts TLS clients on `listener`: handshake (each on its own task), the gateway
/// from the certificate, then as [`run`].
pub(crate) async fn run_tls(
    listener: TcpListener,
    broker: SocketAddr,
    limits: FrontLimits,
    tls: TlsFront,
) {
    loop {
        let Some((client, peer)) = accept(&listener).await else {
            continue;
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let stream =
                match tokio::time::timeout(limits.connect_timeout, tls.acceptor.accept(client))
                    .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        debug!(%peer, %err, "mqtt tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "mqtt tls handshake timed out");
                        return;
                    }
                };
            let gateway = match certificate_gateway(&stream) {
                Ok(g) => g,
                Err(reason) => {
                    closed(peer, Err(Refusal::new(None, reason)));
                    return;
                }
            };
            if let Some(check) = &tls.certificate_check {
                if !check(String::new(), gateway.clone(), String::new()).await {
                    closed(
                        peer,
                        Err(Refusal::new(
                            Some(&gateway),
                            "the certificate's gateway is not enrolled or is revoked",
                        )),
                    );
                    return;
                }
            }
            let credential = Credential::Certificate {
                gateway,
                check_password: tls.check_password,
                secret: tls.secret,
            };
            closed(peer, relay(stream, peer, broker, limits, credential).await);
        });
    }
}

/// The gateway a verified client certificate names: its subject CN, `site/gateway`.
fn certificate_gateway(
    stream: &tokio_rustls::server::TlsStream<TcpStream>,
) -> Result<String, String> {
    let (_, session) = stream.get_ref();
    let cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no client certificate")?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("the client certificate has no subject CN")?;
    GatewayPermissions::for_username(cn)
        .map(|_| cn.to_string())
        .ok_or_else(|| {
            format!("the client certificate's CN {cn:?} is not a gateway (site/gateway)")
        })
}

async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(err) => {
            // Out of file descriptors, say: wait rather than spin.
            warn!(%err, "mqtt front: accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

fn closed(peer: SocketAddr, result: Result<(), Refusal>) {
    if let Err(refusal) = result {
        // `?`: user names and topics come from the network.
        warn!(%peer, gateway = ?refusal.who, reason = ?refusal.reason,
            "mqtt connection closed by the authorisation front");
    }
}

/// Why a connection was closed.
struct Refusal {
    who: Option<String>,
    reason: String,
}

impl Refusal {
    fn new(who: Option<&str>, reason: impl Into<String>) -> Self {
        Self {
            who: who.map(str::to_string),
            reason: reason.into(),
        }
    }
}

/// The next whole packet in `buf`, reading more from `from` as needed; `None` at a
/// clean end of stream.
async fn next_frame(
    from: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<Option<BytesMut>, String> {
    loop {
        match rumqttd::protocol::v4::check(buf.iter(), max_packet) {
            Ok(header) => return Ok(Some(buf.split_to(header.frame_length()))),
            Err(rumqttd::protocol::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(format!("malformed or oversized packet: {e}")),
        }
        let read = from
            .read_buf(buf)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if read == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("connection ended inside a packet".into())
            };
        }
    }
}

/// The topic of a whole PUBLISH packet: after the fixed header (its first byte and a
/// 1 to 4 byte remaining length), a big-endian u16 length and that many UTF-8 bytes.
fn publish_topic(frame: &[u8]) -> Result<&str, String> {
    let malformed = || "malformed PUBLISH".to_string();
    // The remaining length's last byte is the first without its high bit.
    let length_bytes = frame
        .iter()
        .skip(1)
        .take(4)
        .position(|b| b & 0x80 == 0)
        .ok_or_else(malformed)?
        + 1;
    let at = 1 + length_bytes;
    let len = frame
        .get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(malformed)?;
    let topic = frame.get(at + 2..at + 2 + len).ok_or_else(malformed)?;
    std::str::from_utf8(topic).map_err(|_| "a PUBLISH topic that is not UTF-8".to_string())
}

fn parse(frame: &BytesMut, max_packet: usize) -> Result<Packet, String> {
    let mut copy = frame.clone();
    V4.read_mut(&mut copy, max_packet)
        .map_err(|e| format!("malformed packet: {e}"))
}

async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    peer: SocketAddr,
    broker: SocketAddr,
    limits: FrontLimits,
    credential: Credential,
) -> Result<(), Refusal> {
    let mut buf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(
        limits.connect_timeout,
        next_frame(&mut client, &mut buf, limits.max_packet),
    )
    .await
    .map_err(|_| Refusal::new(None, "no CONNECT within the connect timeout"))?
    .map_err(|e| Refusal::new(None, e))?;
    let Some(first) = first else {
        // A port probe (the broker's own readiness check among them).
        return Ok(());
    };
    if first.first().map(|b| b >> 4) != Some(1) {
        return Err(Refusal::new(None, "the first packet is not CONNECT"));
    }
    let Packet::Connect(mut connect, _, will, _, login) = parse(&first, limits.max_packet)
        .map_err(|e| {
            Refusal::new(
                None,
                format!("{e} (only MQTT 3.1.1 is accepted on this listener)"),
            )
        })?
    else {
        return Err(Refusal::new(None, "the first packet is not CONNECT"));
    };
    let login = match credential {
        Credential::Password => {
            login.ok_or_else(|| Refusal::new(None, "CONNECT without a user name"))?
        }
        Credential::Certificate {
            gateway,
            check_password: true,
            ..
        } => {
            let login =
                login.ok_or_else(|| Refusal::new(Some(&gateway), "CONNECT without a user name"))?;
            if login.username != gateway {
                return Err(Refusal::new(
                    Some(&gateway),
                    format!(
                        "user name {:?} is not the certificate's gateway",
                        login.username
                    ),
                ));
            }
            login
        }
        Credential::Certificate {
            gateway, secret, ..
        } => Login {
            username: gateway,
            password: secret.to_string(),
        },
    };
    let username = login.username.clone();
    let who = Some(username.as_str());
    let permissions = GatewayPermissions::for_username(&username)
        .ok_or_else(|| Refusal::new(who, "the user name is not a gateway's (site/gateway)"))?;
    if let Some(will) = &will {
        let topic = String::from_utf8_lossy(&will.topic);
        if !permissions.may_publish(&topic) {
            return Err(Refusal::new(
                who,
                format!("a Last Will on {topic:?}, which is not this gateway's own topic"),
            ));
        }
    }
    let bound = permissions.client_id();
    if connect.client_id != bound {
        debug!(%peer, gateway = ?username, client_id = ?connect.client_id, %bound,
            "mqtt front: client id replaced by the gateway's own");
    }
    connect.client_id = bound;
    let mut rewritten = BytesMut::new();
    V4.write(
        Packet::Connect(connect, None, will, None, Some(login)),
        &mut rewritten,
    )
    .map_err(|e| Refusal::new(who, format!("cannot re-encode CONNECT: {e}")))?;

    let mut upstream = TcpStream::connect(broker)
        .await
        .map_err(|e| Refusal::new(who, format!("the broker is not reachable: {e}")))?;
    let _ = upstream.set_nodelay(true);
    upstream
        .write_all(&rewritten)
        .await
        .map_err(|e| Refusal::new(who, format!("write to the broker failed: {e}")))?;
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut broker_rx, mut broker_tx) = upstream.into_split();
    let downstream = tokio::io::copy(&mut broker_rx, &mut client_tx);
    let upstream = async {
        loop {
            let frame = match next_frame(&mut client_rx, &mut buf, limits.max_packet).await {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Refusal::new(who, e)),
            };
            match frame.first().map(|b| b >> 4) {
                Some(1) => return Err(Refusal::new(who, "a second CONNECT")),
                Some(3) => {
                    // Only the topic is read: a batch of up to a MiB is not copied or
                    // decoded here (rumqttd decodes it).
                    let topic = publish_topic(&frame).map_err(|e| Refusal::new(who, e))?;
                    if !permissions.may_publish(topic) {
                        return Err(Refusal::new(
                            who,
                            format!("publish on {topic:?}: not one of this gateway's own topics"),
                        ));
                    }
                }
                Some(8) => {
                    if let Packet::Subscribe(subscribe, _) =
                        parse(&frame, limits.max_packet).map_err(|e| Refusal::new(who, e))?
                    {
                        if let Some(f) = subscribe
                            .filters
                            .iter()
                            .find(|f| !permissions.may_subscribe(&f.path))
                        {
                            return Err(Refusal::new(
                                who,
                                format!(
                                    "subscribe to {:?}: a gateway may subscribe only to its own /ack, /config/set and /model/set",
                                    f.path
                                ),
                            ));
                        }
                    }
                }
                _ => {}
            }
            if let Err(e) = broker_tx.write_all(&frame).await {
                return Err(Refusal::new(
                    who,
                    format!("write to the broker failed: {e}"),
                ));
            }
        }
    };
    // Whichever side ends first ends both.
    tokio::select! {
        result = upstream => {
            debug!(%peer, gateway = ?username, "mqtt front: the client side ended");
            result
        }
        result = downstream => {
            debug!(%peer, gateway = ?username, ?result, "mqtt front: the broker side ended");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_topic_is_read_without_decoding_the_payload() {
        let encode = |topic: &str, payload_len: usize| {
            let publish = rumqttd::protocol::Publish::new(
                bytes::Bytes::copy_from_slice(topic.as_bytes()),
                bytes::Bytes::from(vec![7u8; payload_len]),
                false,
            );
            let mut out = BytesMut::new();
            V4.write(Packet::Publish(publish, None), &mut out).unwrap();
            out
        };
        // One, two and three remaining-length bytes.
        for payload in [10, 300, 70_000] {
            let frame = encode("chitti/v1/north/gw-a/findings", payload);
            assert_eq!(
                publish_topic(&frame).unwrap(),
                "chitti/v1/north/gw-a/findings"
            );
        }
        // Cut short, a topic running past the end, a topic that is not UTF-8.
        let frame = encode("chitti/v1/north/gw-a/status", 4);
        assert!(publish_topic(&frame[..3]).is_err());
        let mut long = frame.to_vec();
        long[3] = 0xff;
        assert!(publish_topic(&long).is_err());
        let mut bad = frame.to_vec();
        bad[5] = 0xff;
        assert_eq!(
            publish_topic(&bad).unwrap_err(),
            "a PUBLISH topic that is not UTF-8"
        );
        assert!(publish_topic(&[0x30]).is_err());
    }

    #[test]
    fn a_gateway_may_use_only_its_own_topics() {
        let p = GatewayPermissions::for_username("north/gw-a").unwrap();
        for own in [
            "status",
            "findings",
            "telemetry",
            "config/state",
            "model/state",
        ] {
            assert!(
                p.may_publish(&format!("chitti/v1/north/gw-a/{own}")),
                "{own}"
            );
        }
        for other in [
            "chitti/v1/north/gw-b/status",
            "chitti/v1/south/gw-a/findings",
            "chitti/v1/north/gw-a/ack",
            "chitti/v1/north/gw-a/config/set",
            "chitti/v1/north/gw-a/status/x",
            "chitti/v2/north/gw-a/status",
            "$SYS/broker",
            "",
        ] {
            assert!(!p.may_publish(other), "{other}");
        }
        assert!(p.may_subscribe("chitti/v1/north/gw-a/ack"));
        assert!(p.may_subscribe("chitti/v1/north/gw-a/config/set"));
        assert!(p.may_subscribe("chitti/v1/north/gw-a/model/set"));
        assert!(!p.may_subscribe("chitti/v1/north/gw-b/model/set"));
        for other in [
            "#",
            "chitti/v1/#",
            "chitti/v1/north/+/ack",
            "chitti/v1/north/gw-a/+",
            "chitti/v1/north/gw-b/ack",
            "chitti/v1/north/gw-a/findings",
        ] {
            assert!(!p.may_subscribe(other), "{other}");
        }
        assert_eq!(p.client_id(), "north.gw-a");
        for not_a_gateway in ["gw-a", "", "a/b/c", "North/gw-a"] {
            assert!(GatewayPermissions::for_username(not_a_gateway).is_none());
        }
    }
}
