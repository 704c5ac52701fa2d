//! Notifications with the real binaries: a simulated agent's findings over MQTT raise
//! alerts in a real hub, whose notifier sends to a real HTTP receiver (webhook checked
//! against its Standard Webhooks signature, PagerDuty's events). The receivers are
//! down and the hub is killed with SIGKILL while it retries; after both recover, every
//! message is delivered and PagerDuty has exactly one incident key per alert, which an
//! operator acknowledging and resolving through the API acknowledges and resolves.

use chitti_e2e::*;
use chitti_hub::notify::signature::WebhookSecret;
use chitti_hub::store::prelude::*;
use chitti_hub::store::AnyStore;
use chitti_test_support::{free_port, HttpReceiver};
use std::sync::Arc;

/// A receiver checking webhooks against `secret`.
async fn receiver(secret: &str) -> HttpReceiver {
    let secret = WebhookSecret::parse(secret).unwrap();
    HttpReceiver::start(
        "webhook",
        Arc::new(move |headers, body| {
            let now = chrono::Utc::now().timestamp();
            secret
                .verify_request(|name| headers.get(name).cloned(), body, now)
                .is_ok()
        }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_while_receivers_are_down_delivers_everything_once_they_are_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The webhook's secret as an admin makes it.
    let secret = hub_command(&["notify", "new-secret"]).trim().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let receiver = receiver(&secret).await;
    receiver.down(Some(503));
    let mqtt = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\ndata_dir = \"{data}\"\n[broker.embedded]\nlisten = \"{mqtt}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n{notifications}",
            data = data.display(),
            // Retries a second apart: the receiver comes back within the test.
            notifications = webhook_and_pagerduty(
                &receiver.url("webhook"),
                &receiver.url("pagerduty"),
                &secret,
                100,
                3,
            )
            .replace(
                "send_timeout_s = 2\n",
                "send_timeout_s = 2\nmax_backoff_s = 1\n"
            ),
        ),
    )
    .unwrap();
    let config_s = config.display().to_string();
    enrol(
        &["--config", &config_s],
        "north-yard",
        "gw-1",
        &dir.path().join("gw1"),
    );
    let channels = hub_command(&["notify", "channels", "--config", &config_s]);
    assert_eq!(
        channels,
        "scada webhook enabled\non-call pagerduty enabled\n"
    );
    let (hub, _) = start_hub(&["--config", &config_s], &dir.path().join("hub.log"));
    let text = simulated_agent_config(
        "north-yard",
        "gw-1",
        &format!("mqtt://{mqtt}"),
        &dir.path().join("gw1"),
        &dir.path().join("outbox"),
        40,
    );
    let expected = predicted_shapes(&text).len();
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    // The hub tries while the receivers are down …
    eventually(
        "attempts against the receivers while they are down",
        || hub.log_text(),
        || async {
            (receiver
                .received()
                .iter()
                .filter(|r| r.answered == 503)
                .count()
                >= 4)
                .then_some(())
        },
    )
    .await;
    // … and dies mid-retry; the receivers come back; a new hub takes over the outbox.
    hub.kill9();
    receiver.down(None);
    let (hub, addrs) = start_hub(&["--config", &config_s], &dir.path().join("hub2.log"));
    let store = AnyStore::connect(&sqlite_url(&data)).await.unwrap();
    let context = || {
        format!(
            "hub log:\n{}\nagent log:\n{}",
            hub.log_text(),
            agent.log_text()
        )
    };
    eventually("every finding stored", context, || async {
        (store.count_findings().await.ok()? >= expected as u64).then_some(())
    })
    .await;
    let alerts = store.list_alerts(&Default::default()).await.unwrap().items;
    assert!(!alerts.is_empty());
    // Every webhook message reached the receiver, signed (401 would show), under its
    // id; one PagerDuty incident per alert, each an alert's id.
    assert_notified_once(&store, &receiver, &alerts, context).await;
    assert!(
        receiver.received().iter().all(|r| r.answered != 401),
        "a signature failed"
    );
    // An operator acknowledges, then resolves, one alert through the API: its
    // PagerDuty incident follows, both ways, under the same key.
    let password_file = dir.path().join("olga-password");
    std::fs::write(&password_file, "olga-correct-horse-battery\n").unwrap();
    hub_command(&[
        "user",
        "add",
        "--config",
        &config_s,
        "--username",
        "olga",
        "--role",
        "operator",
        "--password-file",
        &password_file.display().to_string(),
    ]);
    let token = api_login(addrs.http, "olga", "olga-correct-horse-battery");
    let alert = &alerts[0].id;
    for (action, event) in [("acknowledge", "acknowledge"), ("resolve", "resolve")] {
        ureq::post(format!(
            "http://{}/api/v1/alerts/{alert}/{action}",
            addrs.http
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .send("{}")
        .unwrap_or_else(|e| panic!("{action}: {e}"));
        eventually(&format!("PagerDuty {event}"), context, || async {
            receiver
                .taken("pagerduty")
                .iter()
                .any(|r| {
                    r.body["event_action"] == event && r.body["dedup_key"] == alert.to_string()
                })
                .then_some(())
        })
        .await;
    }
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

/// `kill -9` of an agent: the broker publishes its Last Will, the hub raises a
/// `gateway_offline` alarm within `offline_after_s` and notifies; the agent back, the
/// hub ends the alarm by itself, keeping how long the outage lasted, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_raises_gateway_offline_and_its_return_ends_it_with_the_outage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let secret = hub_command(&["notify", "new-secret"]).trim().to_string();
    let receiver = receiver(&secret).await;
    let mqtt = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("hub.toml");
    const OFFLINE_AFTER_S: i64 = 30;
    std::fs::write(
        &config,
        format!(
            r#"version = 1
data_dir = "{data}"
[broker.embedded]
listen = "{mqtt}"
[http]
listen = "127.0.0.1:0"
[ingest]
offline_after_s = {OFFLINE_AFTER_S}
[alarms]
check_interval_s = 1
[notifications]
poll_interval_ms = 100
[[notifications.channels]]
id = "noc"
kind = "webhook"
url = "{webhook}"
secret = "{secret}"
[[notifications.rules]]
id = "fleet"
min_level = 1
kinds = ["fleet"]
channels = ["noc"]
"#,
            data = data.display(),
            webhook = receiver.url("webhook"),
        ),
    )
    .unwrap();
    let config_s = config.display().to_string();
    enrol(
        &["--config", &config_s],
        "north-yard",
        "gw-1",
        &dir.path().join("gw1"),
    );
    let (hub, _) = start_hub(&["--config", &config_s], &dir.path().join("hub.log"));
    let text = simulated_agent_config(
        "north-yard",
        "gw-1",
        &format!("mqtt://{mqtt}"),
        &dir.path().join("gw1"),
        &dir.path().join("outbox"),
        4,
    );
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let store = AnyStore::connect(&sqlite_url(&data)).await.unwrap();
    let context = || format!("hub log:\n{}", hub.log_text());
    let online = || async {
        let g = store.gateway("north-yard", "gw-1").await.ok()??;
        g.online.then_some(())
    };
    eventually("the gateway online", context, online).await;

    agent.kill9();
    let killed_at = chrono::Utc::now();
    let alarm = eventually("a gateway_offline alarm", context, || async {
        let alarms = store.unresolved_fleet_alarms().await.ok()?;
        alarms
            .into_iter()
            .find(|a| a.kind == chitti_hub::store::AlertKind::GatewayOffline)
    })
    .await;
    assert!(
        alarm.created_at - killed_at < chrono::Duration::seconds(OFFLINE_AFTER_S),
        "raised {} after the kill",
        alarm.created_at - killed_at
    );
    assert!(
        alarm.detail.as_deref().unwrap().contains("Last Will"),
        "{alarm:?}"
    );
    eventually("the alarm's webhook", context, || async {
        receiver
            .taken("webhook")
            .iter()
            .any(|r| {
                r.body["type"] == "alert.raised"
                    && r.body["data"]["alert"]["id"] == alarm.id.to_string()
            })
            .then_some(())
    })
    .await;

    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent2.log"),
    );
    let ended = eventually("the alarm ended by the hub", context, || async {
        let a = store.alert(alarm.id).await.ok()??;
        (a.status == chitti_hub::store::AlertStatus::Resolved).then_some(a)
    })
    .await;
    let lasted = ended.outage(chrono::Utc::now()).unwrap();
    assert!(lasted > chrono::Duration::zero(), "{ended:?}");
    let trail = store.alert_events(alarm.id).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].event.actor, "hub");
    assert!(
        trail[0]
            .event
            .note
            .as_deref()
            .unwrap()
            .starts_with("gateway back online after "),
        "{trail:?}"
    );
    let resolved = eventually("the resolved webhook", context, || async {
        receiver.taken("webhook").into_iter().find(|r| {
            r.body["type"] == "alert.resolved"
                && r.body["data"]["alert"]["id"] == alarm.id.to_string()
        })
    })
    .await;
    assert_eq!(
        resolved.body["data"]["alert"]["duration_s"],
        lasted.num_seconds()
    );
    assert!(receiver.received().iter().all(|r| r.answered != 401));
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}
