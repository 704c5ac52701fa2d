//! Real parts for the broker tests: a throw-away PKI (rcgen), MQTT clients standing in
//! for agents (rumqttc), and (from `chitti-test-support`) a Mosquitto of the test's own
//! on a free port.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use chitti_test_support::{free_port, Mosquitto};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Publish, QoS,
    TlsConfiguration, Transport,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Test log output, once (`RUST_LOG=debug cargo test` to see the broker's).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that can issue server and client certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Issued {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "broker");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with this common name and, if given, organization (O).
    pub fn client(&self, common_name: &str, organization: Option<&str>) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if let Some(o) = organization {
            params.distinguished_name.push(DnType::OrganizationName, o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// rustls client configuration (ring) trusting `ca_pem`, with an optional client identity.
pub fn tls_client(ca_pem: &str, identity: Option<&Issued>) -> TlsConfiguration {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    TlsConfiguration::Rustls(Arc::new(config))
}

/// Options for an agent stand-in: keep-alive 5 s, packets up to 2 MiB either way.
pub fn agent_options(client_id: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(2 << 20, 2 << 20);
    o
}

pub fn with_tls(mut o: MqttOptions, tls: TlsConfiguration) -> MqttOptions {
    o.set_transport(Transport::tls_with_config(tls));
    o
}

/// Connects and returns once the CONNACK is in, or the first connection error (a refused
/// login: rumqttd closes the connection without a CONNACK; Mosquitto answers code 5).
pub async fn connect(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    loop {
        match eventloop.poll().await? {
            Event::Incoming(Packet::ConnAck(_)) => return Ok((client, eventloop)),
            _ => continue,
        }
    }
}

/// What an agent stand-in's event loop reports.
#[derive(Debug)]
pub enum AgentEvent {
    SubAck,
    /// A SUBACK with a failure code (the broker refused a filter).
    SubscribeRefused,
    PubAck(u16),
    Message(Publish),
    Closed(String),
}

/// Drives a connected event loop on a task: reports SUBACKs, PUBACKs, messages, and
/// the first error (then stops: no reconnect).
pub fn drive(mut eventloop: EventLoop) -> mpsc::UnboundedReceiver<AgentEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(a))) => {
                    if a.return_codes
                        .contains(&rumqttc::SubscribeReasonCode::Failure)
                    {
                        AgentEvent::SubscribeRefused
                    } else {
                        AgentEvent::SubAck
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(a))) => AgentEvent::PubAck(a.pkid),
                Ok(Event::Incoming(Packet::Publish(p))) => AgentEvent::Message(p),
                Ok(_) => continue,
                Err(e) => {
                    let _ = tx.send(AgentEvent::Closed(e.to_string()));
                    return;
                }
            };
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for the next event of the wanted kind, skipping others.
pub async fn next_suback(events: &mut mpsc::UnboundedReceiver<AgentEvent>) {
    loop {
        match events.recv().await.expect("agent event loop ended") {
            AgentEvent::SubAck => return,
            AgentEvent::SubscribeRefused => panic!("the broker refused the subscription"),
            AgentEvent::Closed(e) => panic!("agent connection closed: {e}"),
            _ => {}
        }
    }
}

pub async fn next_puback(events: &mut mpsc::UnboundedReceiver<AgentEvent>) {
    loop {
        match events.recv().await.expect("agent event loop ended") {
            AgentEvent::PubAck(_) => return,
            AgentEvent::Closed(e) => panic!("agent connection closed: {e}"),
            _ => {}
        }
    }
}

pub async fn next_message(events: &mut mpsc::UnboundedReceiver<AgentEvent>) -> Publish {
    loop {
        match events.recv().await.expect("agent event loop ended") {
            AgentEvent::Message(p) => return p,
            AgentEvent::SubscribeRefused => panic!("the broker refused the subscription"),
            AgentEvent::Closed(e) => panic!("agent connection closed: {e}"),
            _ => {}
        }
    }
}

/// Waits until the connection is closed; returns why.
pub async fn closed(events: &mut mpsc::UnboundedReceiver<AgentEvent>) -> String {
    loop {
        match events.recv().await {
            Some(AgentEvent::Closed(e)) => return e,
            Some(_) => {}
            None => return "event loop gone".to_owned(),
        }
    }
}

/// Publishes at QoS 1 and waits for the broker's PUBACK.
pub async fn publish_acked(
    client: &AsyncClient,
    events: &mut mpsc::UnboundedReceiver<AgentEvent>,
    topic: &str,
    payload: Vec<u8>,
) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    next_puback(events).await;
}
