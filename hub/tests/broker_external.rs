//! External broker mode against a Mosquitto of the test's own (free port, config in a
//! temporary directory): shared subscription, manual acks and redelivery, hub → agent
//! publishes, mutual TLS with a password.

mod support;

use chitti_hub::broker::{ExternalBus, ExternalSettings, HubBus, Inbound};
use rumqttc::{AsyncClient, QoS};
use std::collections::BTreeSet;
use support::broker::*;
use tokio::sync::mpsc::UnboundedReceiver;

const FINDINGS: &str = "chitti/v1/s/g/findings";

/// A hub replica, returned once the broker has acknowledged its subscriptions.
async fn hub(settings: ExternalSettings) -> ExternalBus {
    init_tracing();
    let bus = ExternalBus::connect(settings).unwrap();
    bus.subscribed().wait_for(|s| *s).await.unwrap();
    bus
}

async fn agent(port: u16, id: &str) -> (AsyncClient, UnboundedReceiver<AgentEvent>) {
    let (client, events) = connect(agent_options(id, port)).await.unwrap();
    (client, drive(events))
}

fn payload(m: &Inbound) -> String {
    String::from_utf8(m.payload.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_the_messages_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "allow_anonymous true");
    let mut a = hub(ExternalSettings::new(broker.url(), "hub-a")).await;
    let mut b = hub(ExternalSettings::new(broker.url(), "hub-b")).await;
    let (agent, mut events) = agent(broker.port, "gw-1").await;

    let sent: BTreeSet<String> = (0..100).map(|i| format!("f{i:03}")).collect();
    for p in &sent {
        publish_acked(&agent, &mut events, FINDINGS, p.clone().into_bytes()).await;
    }

    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    while got_a.len() + got_b.len() < sent.len() {
        tokio::select! {
            Some(m) = a.inbound().recv() => { got_a.push(payload(&m)); m.settle(); }
            Some(m) = b.inbound().recv() => { got_b.push(payload(&m)); m.settle(); }
        }
    }
    let set_a: BTreeSet<_> = got_a.iter().cloned().collect();
    let set_b: BTreeSet<_> = got_b.iter().cloned().collect();
    assert_eq!(set_a.len(), got_a.len(), "no duplicates at a");
    assert_eq!(set_b.len(), got_b.len(), "no duplicates at b");
    assert!(
        set_a.is_disjoint(&set_b),
        "each message went to one replica"
    );
    assert_eq!(&set_a | &set_b, sent, "together exactly the 100");
    assert!(
        !set_a.is_empty() && !set_b.is_empty(),
        "both replicas got work"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsettled_messages_come_back_when_the_replica_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "allow_anonymous true\nlog_type all");
    let settings = ExternalSettings::new(broker.url(), "hub-a");
    let mut a = hub(settings.clone()).await;
    let (agent, mut events) = agent(broker.port, "gw-1").await;
    let sent: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
    for p in &sent {
        publish_acked(&agent, &mut events, FINDINGS, p.clone().into_bytes()).await;
    }
    let mut first = Vec::new();
    for _ in &sent {
        first.push(a.inbound().recv().await.unwrap());
    }
    assert_eq!(first.iter().map(payload).collect::<Vec<_>>(), sent);
    assert!(first.iter().all(|m| !m.redelivered));

    // The hub dies before committing: no settle, no DISCONNECT.
    drop(first);
    drop(a);

    let mut a = hub(settings.clone()).await;
    let mut again = Vec::new();
    for _ in &sent {
        again.push(a.inbound().recv().await.unwrap());
    }
    assert_eq!(
        again.iter().map(payload).collect::<Vec<_>>(),
        sent,
        "redelivered in order"
    );
    assert!(again.iter().all(|m| m.redelivered), "with DUP set");

    // Committed this time: settled, then a clean shutdown (acks are written first).
    for m in again {
        m.settle();
    }
    a.shutdown().await;
    let mut a = hub(settings).await;
    publish_acked(&agent, &mut events, FINDINGS, b"marker".to_vec()).await;
    let next = a.inbound().recv().await.unwrap();
    assert_eq!(
        payload(&next),
        "marker",
        "settled messages are not redelivered"
    );
    assert!(!next.redelivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_a_replica_crashes_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "allow_anonymous true");
    let a_settings = ExternalSettings::new(broker.url(), "hub-a");
    let mut a = hub(a_settings.clone()).await;
    let mut b = hub(ExternalSettings::new(broker.url(), "hub-b")).await;
    let (agent, mut events) = agent(broker.port, "gw-1").await;

    let mut sent = BTreeSet::new();
    for i in 0..10 {
        let p = format!("before-{i}");
        publish_acked(&agent, &mut events, FINDINGS, p.clone().into_bytes()).await;
        sent.insert(p);
    }
    // Both take their share; a crashes with its share unsettled.
    let (mut held_by_a, mut committed) = (Vec::new(), BTreeSet::new());
    while held_by_a.len() + committed.len() < sent.len() {
        tokio::select! {
            Some(m) = a.inbound().recv() => held_by_a.push(m),
            Some(m) = b.inbound().recv() => { committed.insert(payload(&m)); m.settle(); }
        }
    }
    assert!(!held_by_a.is_empty(), "a had work when it crashed");
    drop(held_by_a);
    drop(a);

    // While a is away, findings keep coming.
    for i in 0..10 {
        let p = format!("during-{i}");
        publish_acked(&agent, &mut events, FINDINGS, p.clone().into_bytes()).await;
        sent.insert(p);
    }
    // b takes over part of the new work; a, back under its client id, gets what it had
    // not settled plus what Mosquitto queued for it meanwhile (see the module docs).
    let mut a = hub(a_settings).await;
    while committed.len() < sent.len() {
        tokio::select! {
            Some(m) = a.inbound().recv() => { committed.insert(payload(&m)); m.settle(); }
            Some(m) = b.inbound().recv() => { committed.insert(payload(&m)); m.settle(); }
        }
    }
    assert_eq!(committed, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_ack_reaches_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "allow_anonymous true");
    let mut bus = HubBus::External(hub(ExternalSettings::new(broker.url(), "hub-a")).await);
    assert!(bus.local_addrs().is_empty());
    let (agent, mut events) = agent(broker.port, "gw-1").await;
    agent
        .subscribe("chitti/v1/s/g/ack", QoS::AtLeastOnce)
        .await
        .unwrap();
    next_suback(&mut events).await;

    publish_acked(&agent, &mut events, FINDINGS, b"[{\"id\":\"x\"}]".to_vec()).await;
    let finding = bus.inbound().recv().await.unwrap();
    assert_eq!(finding.topic, FINDINGS);
    finding.settle();
    bus.publish("chitti/v1/s/g/ack", b"{\"ids\":[\"x\"]}".to_vec(), false)
        .await
        .unwrap();
    let ack = next_message(&mut events).await;
    assert_eq!(ack.topic, "chitti/v1/s/g/ack");
    assert_eq!(&ack.payload[..], b"{\"ids\":[\"x\"]}");
    assert_eq!(ack.qos, QoS::AtLeastOnce);
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_password_to_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("chitti broker ca");
    let server = ca.server();
    let hub_identity = ca.client("hub-a", None);
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca_file, cert_file, key_file) = (
        file("ca.pem", &ca.pem()),
        file("server.pem", &server.cert_pem),
        file("server-key.pem", &server.key_pem),
    );
    let passwd = dir.path().join("passwd");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwd)
        .args(["hub", "hub-secret"])
        .status()
        .unwrap();
    assert!(status.success());
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b"])
        .arg(&passwd)
        .args(["gw-1", "gw-secret"])
        .status()
        .unwrap();
    assert!(status.success());
    let tls_port = free_port();
    let broker = Mosquitto::start(
        dir.path(),
        &format!(
            "allow_anonymous false\npassword_file {}\nlistener {tls_port} 127.0.0.1\ncafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\nrequire_certificate true\n",
            passwd.display()
        ),
    );

    let mut bus = hub(ExternalSettings {
        username: Some("hub".into()),
        password: Some("hub-secret".into()),
        ca_pem: Some(ca.pem().into_bytes()),
        client_cert_pem: Some(hub_identity.cert_pem.into_bytes()),
        client_key_pem: Some(hub_identity.key_pem.into_bytes()),
        ..ExternalSettings::new(format!("mqtts://127.0.0.1:{tls_port}"), "hub-a")
    })
    .await;

    let mut options = agent_options("gw-1", broker.port);
    options.set_credentials("gw-1", "gw-secret");
    let (agent, events) = connect(options).await.unwrap();
    let mut events = drive(events);
    publish_acked(&agent, &mut events, FINDINGS, b"over tls".to_vec()).await;
    let got = bus.inbound().recv().await.unwrap();
    assert_eq!(&got.payload[..], b"over tls");
    got.settle();
    bus.shutdown().await;
}
