//! Notifications end to end on both stores: findings stored by the store, the notifier
//! routing, escalating and sending to a real HTTP receiver that checks every webhook
//! signature, operators acting through the API, receivers failing in every way.
//!
//! Time-driven behaviour (escalation, backoff, leases) is driven by calling
//! `Notifier::pass` with explicit instants, so nothing waits on the wall clock.

mod support;

use axum::http::StatusCode;
use chitti_hub::config::HubConfig;
use chitti_hub::notify::{Notifier, NotifyMetrics};
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AnyStore, DeliveryOutcome, NotificationStatus, TransitionKind};
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use support::receiver::{Receiver, WEBHOOK_SECRET};
use support::*;
use uuid::Uuid;

/// The `[notifications]` section for channels on `receiver` and one rule, as an admin
/// writes it (parsed and validated like the hub's file).
fn notifications(receiver: &Receiver, rule: &str) -> chitti_hub::config::NotificationsConfig {
    let text = format!(
        r#"
version = 1
[notifications]
dashboard_url = "https://hub.example.net"
[[notifications.channels]]
id = "scada"
kind = "webhook"
url = "{webhook}"
secret = "{WEBHOOK_SECRET}"
[[notifications.channels]]
id = "ops-slack"
kind = "slack"
url = "{slack}"
rate_per_minute = {slack_rate}
[[notifications.channels]]
id = "ops-teams"
kind = "teams"
url = "{teams}"
rate_per_minute = 6000
[[notifications.channels]]
id = "on-call"
kind = "pagerduty"
url = "{pagerduty}"
routing_key = "R0UT1NGK3Y"
[[notifications.channels]]
id = "manager"
kind = "webhook"
url = "{manager}"
secret = "{WEBHOOK_SECRET}"
{rule}
"#,
        webhook = receiver.url("webhook"),
        slack = receiver.url("slack"),
        teams = receiver.url("teams"),
        pagerduty = receiver.url("pagerduty"),
        manager = receiver.url("webhook?manager"),
        // Fast enough that each message goes alone; the digest test slows Slack down.
        slack_rate = if rule.contains("# slow slack") {
            60
        } else {
            6000
        },
    );
    HubConfig::from_toml(&text, "hub.toml", std::path::Path::new("/"))
        .unwrap()
        .notifications
}

fn notifier(api: &Api, config: chitti_hub::config::NotificationsConfig) -> Notifier<AnyStore> {
    Notifier::new(
        Arc::clone(&api.store),
        config,
        None,
        Arc::new(NotifyMetrics::default()),
        api.live.alert_signal(),
    )
    .unwrap()
}

/// Stores findings of `track` at these levels (one batch each), received at `at`.
async fn heat(api: &Api, track: Uuid, levels: &[u8], at: DateTime<Utc>) -> Uuid {
    for (i, level) in levels.iter().enumerate() {
        let f = finding(
            track,
            *level,
            40.0 + 15.0 * f64::from(*level),
            i as i64 * 1000,
        );
        api.store
            .insert_findings(&ingested(&[f], at))
            .await
            .unwrap();
    }
    let page = api.store.list_alerts(&Default::default()).await.unwrap();
    page.items.iter().find(|a| a.track_id == track).unwrap().id
}

/// Otto (an operator) acts on the alert through the API.
async fn act(api: &Api, alert: Uuid, action: &str) {
    let (otto, _, _) = api.login("otto").await;
    let uri = format!("/api/v1/alerts/{alert}/{action}");
    let reply = api.call("POST", &uri, Some(&otto), None, &[]).await;
    assert_eq!(reply.status, 200, "{action}: {:?}", reply.body);
}

/// Polls `check` until it holds (the notifier runs on its own task), at most a minute.
async fn until(what: &str, receiver: &Receiver, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; received: {:#?}",
            receiver.received()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

const EVERYWHERE: &str = r#"
[[notifications.rules]]
id = "serious"
min_level = 2
channels = ["scada", "ops-slack", "ops-teams", "on-call"]
[[notifications.rules]]
id = "clamps-only"
component_classes = ["clamp"]
channels = ["manager"]
"#;

async fn a_heating_connector_notifies_each_new_level_once_and_pagerduty_follows_the_alert(
    backend: &str,
) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(notifier(&api, notifications(&receiver, EVERYWHERE)).run(stop_rx));
    // Level 1 matches no rule; 2 and 3 each notify once; a second 3 and a 2 are no
    // transition at all.
    let track = Uuid::now_v7();
    let alert = heat(&api, track, &[1, 2, 3, 3, 2], Utc::now()).await;
    api.live.alerts_changed(vec![alert]);
    until("two messages on every channel", &receiver, || {
        ["webhook", "slack", "teams", "pagerduty"]
            .iter()
            .all(|p| receiver.taken(p).len() == 2)
    })
    .await;
    let hooks = receiver.taken("webhook");
    assert_eq!(hooks[0].body["type"], "alert.level_up");
    assert_eq!(hooks[0].body["data"]["transition"]["level"], 2);
    assert_eq!(hooks[1].body["data"]["transition"]["level"], 3);
    assert_eq!(hooks[1].body["data"]["alert"]["worst_level"], 3);
    assert_eq!(hooks[1].body["data"]["alert"]["id"], alert.to_string());
    assert_eq!(
        hooks[1].body["data"]["links"]["alert"],
        format!("https://hub.example.net/alerts/{alert}")
    );
    assert_ne!(
        hooks[0].headers["webhook-id"],
        hooks[1].headers["webhook-id"]
    );
    assert!(
        receiver.received().iter().all(|r| r.answered == 200),
        "signatures verified"
    );
    let pd = receiver.taken("pagerduty");
    for event in &pd {
        assert_eq!(event.body["event_action"], "trigger");
        assert_eq!(event.body["dedup_key"], alert.to_string());
        assert_eq!(event.body["routing_key"], "R0UT1NGK3Y");
    }
    assert_eq!(pd[1].body["payload"]["severity"], "error", "level 3");
    assert_eq!(pd[1].body["payload"]["source"], "north-yard/gw-07");
    let slack = &receiver.taken("slack")[1].body;
    assert!(slack["text"].as_str().unwrap().contains("L3"), "{slack}");
    let teams = &receiver.taken("teams")[0].body;
    assert_eq!(
        teams["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");

    // Acknowledging in Chitti acknowledges the incident; resolving resolves it.
    for (action, pd_action, count) in [("acknowledge", "acknowledge", 3), ("resolve", "resolve", 4)]
    {
        act(&api, alert, action).await;
        until(pd_action, &receiver, || {
            receiver.taken("pagerduty").len() == count
        })
        .await;
        let last = receiver.taken("pagerduty").pop().unwrap();
        assert_eq!(last.body["event_action"], pd_action);
        assert_eq!(last.body["dedup_key"], alert.to_string());
    }
    until("the resolve on every channel", &receiver, || {
        ["webhook", "slack", "teams"]
            .iter()
            .all(|p| receiver.taken(p).len() == 4)
    })
    .await;
    let kinds: Vec<TransitionKind> = api
        .store
        .alert_transitions(alert)
        .await
        .unwrap()
        .iter()
        .map(|t| t.kind)
        .collect();
    use TransitionKind::*;
    assert_eq!(kinds, [Raised, LevelUp, LevelUp, Acknowledged, Resolved]);
    // The receiver answers before the notifier records the answer: wait for the record.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let log = loop {
        let log = api
            .store
            .list_notifications(Some(alert), false, 100)
            .await
            .unwrap();
        if log.iter().all(|n| n.status == NotificationStatus::Sent) {
            break log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all recorded sent: {log:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        log.len(),
        16,
        "4 transitions × 4 channels, none for a bushing to clamps-only"
    );
    assert!(log.iter().all(|n| n.attempts == 1), "{log:#?}");
    let _ = stop_tx.send(true);
    running.await.unwrap();
}

const ESCALATING: &str = r#"
[[notifications.rules]]
id = "critical"
min_level = 3
channels = ["scada"]
escalate_after_s = 60
escalate_to = ["manager"]
repeat_every_s = 15
max_repeats = 2
"#;

/// The escalation messages the manager's webhook took.
fn escalations(receiver: &Receiver) -> Vec<serde_json::Value> {
    receiver
        .taken("webhook")
        .into_iter()
        .filter(|r| r.body["type"] == "alert.escalated")
        .map(|r| r.body)
        .collect()
}

async fn unacknowledged_alerts_escalate_and_repeat_at_most_max_repeats(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    let n = notifier(&api, notifications(&receiver, ESCALATING));
    let t0 = Utc::now();
    let alert = heat(&api, Uuid::now_v7(), &[3], t0).await;
    n.pass(t0).await.unwrap();
    assert_eq!(receiver.taken("webhook").len(), 1, "raised, to scada");
    n.pass(t0 + Duration::seconds(59)).await.unwrap();
    assert!(escalations(&receiver).is_empty(), "not yet due");
    let mut at = t0 + Duration::seconds(60);
    for step in 1..=3 {
        n.pass(at).await.unwrap();
        let sent = escalations(&receiver);
        assert_eq!(sent.len(), step, "step {step} at {at}");
        assert_eq!(sent[step - 1]["data"]["transition"]["step"], step);
        at += Duration::seconds(15);
    }
    // Two repeats after the first escalation, then nothing more, ever.
    n.pass(at + Duration::hours(5)).await.unwrap();
    assert_eq!(escalations(&receiver).len(), 3);
    let steps: Vec<u32> = api
        .store
        .alert_transitions(alert)
        .await
        .unwrap()
        .iter()
        .filter(|t| t.kind == TransitionKind::Escalated)
        .map(|t| t.step)
        .collect();
    assert_eq!(steps, [1, 2, 3]);
}

async fn acknowledging_stops_the_escalation_at_once(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    let n = notifier(&api, notifications(&receiver, ESCALATING));
    let t0 = Utc::now();
    let alert = heat(&api, Uuid::now_v7(), &[3], t0).await;
    n.pass(t0).await.unwrap();
    // The first escalation is routed but its message waits (the manager's receiver
    // answers 503 once): acknowledging must cancel it, not let it out later.
    receiver.script("webhook", &[(503, None)]);
    n.pass(t0 + Duration::seconds(61)).await.unwrap();
    assert_eq!(
        receiver.received().last().map(|r| r.answered),
        Some(503),
        "the escalation was tried once"
    );
    act(&api, alert, "acknowledge").await;
    for minutes in [2, 10, 60, 600] {
        n.pass(t0 + Duration::minutes(minutes)).await.unwrap();
    }
    assert!(
        escalations(&receiver).is_empty(),
        "{:#?}",
        receiver.received()
    );
    let log = api
        .store
        .list_notifications(Some(alert), false, 100)
        .await
        .unwrap();
    let escalation = log.iter().find(|n| n.step == 1).unwrap();
    assert_eq!(escalation.status, NotificationStatus::Cancelled);
    assert!(
        escalation
            .last_error
            .as_deref()
            .unwrap()
            .contains("acknowledged by otto"),
        "{escalation:?}"
    );
    // Acknowledging told scada, which had the raise; the manager, whose only message
    // was cancelled unsent, is not told of an acknowledgement of nothing it saw.
    let acks: Vec<_> = receiver
        .taken("webhook")
        .into_iter()
        .filter(|r| r.body["type"] == "alert.acknowledged")
        .collect();
    assert_eq!(acks.len(), 1, "{acks:#?}");
}

async fn failing_receivers_are_retried_and_a_gone_endpoint_turns_its_channel_off(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    receiver.script("webhook", &[(500, None), (502, None)]);
    receiver.script("slack", &[(429, Some("30"))]);
    receiver.script("teams", &[(410, None)]);
    receiver.script("pagerduty", &[(400, None)]);
    let n = notifier(&api, notifications(&receiver, EVERYWHERE));
    let t0 = Utc::now();
    let alert = heat(&api, Uuid::now_v7(), &[2], t0).await;
    n.pass(t0).await.unwrap();
    let log = |channel: &'static str| {
        let store = Arc::clone(&api.store);
        async move {
            store
                .list_notifications(Some(alert), false, 100)
                .await
                .unwrap()
                .into_iter()
                .find(|n| n.channel == channel)
                .unwrap()
        }
    };
    let slack = log("ops-slack").await;
    assert_eq!(slack.status, NotificationStatus::Pending);
    assert_eq!(slack.last_status, Some(429));
    let wait = (slack.next_attempt_at - Utc::now()).num_seconds();
    assert!((25..=30).contains(&wait), "Retry-After honoured: {wait} s");
    let teams = log("ops-teams").await;
    assert_eq!(
        (teams.status, teams.last_status),
        (NotificationStatus::Failed, Some(410))
    );
    let disabled = api.store.disabled_channels().await.unwrap();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].0, "ops-teams");
    let told = api.audit_log().await;
    let told = told.last().unwrap();
    assert_eq!(
        (told.event.action.as_str(), told.event.target.as_str()),
        ("notification.channel_disabled", "ops-teams")
    );
    let pd = log("on-call").await;
    assert_eq!(
        (pd.status, pd.attempts),
        (NotificationStatus::Failed, 1),
        "400 is never retried"
    );
    // Later passes deliver what is retried, with the same webhook-id every time.
    for minutes in [1, 5, 30, 120] {
        n.pass(Utc::now() + Duration::minutes(minutes))
            .await
            .unwrap();
    }
    let hook = log("scada").await;
    assert_eq!((hook.status, hook.attempts), (NotificationStatus::Sent, 3));
    let ids: std::collections::HashSet<_> = receiver
        .received()
        .iter()
        .filter(|r| r.path == "webhook")
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), 1, "one message, three attempts, one id");
    assert_eq!(log("ops-slack").await.status, NotificationStatus::Sent);
    assert_eq!(receiver.taken("teams").len(), 0);
    // A new transition to the disabled channel is recorded as refused, not sent.
    act(&api, alert, "acknowledge").await;
    n.pass(Utc::now()).await.unwrap();
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|r| r.path == "teams")
            .count(),
        1,
        "teams was asked once, ever"
    );
    assert!(api.store.enable_channel("ops-teams").await.unwrap());
    assert!(api.store.disabled_channels().await.unwrap().is_empty());
}

async fn a_hub_that_dies_mid_send_leaves_the_message_to_the_next_claim_with_the_same_id(
    backend: &str,
) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    let rule = "[[notifications.rules]]\nid = \"r\"\nmin_level = 1\nchannels = [\"scada\"]\n";
    let n = notifier(&api, notifications(&receiver, rule));
    let t0 = Utc::now();
    heat(&api, Uuid::now_v7(), &[2], t0).await;
    // A replica claims the message and dies before recording anything.
    let store = &api.store;
    let lost = store
        .route_transitions(
            &chitti_hub::notify::policy::Policy::new(notifications(&receiver, rule), None),
            t0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(lost, 1);
    let claimed = store
        .claim_notifications(t0, t0 + Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // While the lease runs nobody else sends it; after it, the next claim does.
    n.pass(t0 + Duration::seconds(30)).await.unwrap();
    assert!(receiver.received().is_empty());
    n.pass(t0 + Duration::seconds(61)).await.unwrap();
    let taken = receiver.taken("webhook");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].headers["webhook-id"], claimed[0].id.to_string());
    let log = store.list_notifications(None, false, 10).await.unwrap();
    assert_eq!(
        (log[0].status, log[0].attempts),
        (NotificationStatus::Sent, 2)
    );
    // A late finish of the dead replica's attempt changes nothing that was sent.
    store
        .finish_notification(
            claimed[0].id,
            &DeliveryOutcome::Retry {
                at: t0,
                status: None,
                error: "late".into(),
            },
            t0,
        )
        .await
        .unwrap();
    let log = store.list_notifications(None, false, 10).await.unwrap();
    assert_eq!(log[0].status, NotificationStatus::Sent);
}

async fn two_senders_share_the_outbox_and_send_each_message_once(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    let rule = "[[notifications.rules]]\nid = \"r\"\nmin_level = 1\nchannels = [\"scada\"]\n";
    let a = notifier(&api, notifications(&receiver, rule));
    let b = notifier(&api, notifications(&receiver, rule));
    let t0 = Utc::now();
    for _ in 0..40 {
        heat(&api, Uuid::now_v7(), &[2], t0).await;
    }
    let mut at = t0;
    for _ in 0..10 {
        let (x, y) = tokio::join!(a.pass(at), b.pass(at));
        x.unwrap();
        y.unwrap();
        at += Duration::seconds(1);
    }
    let ids: Vec<String> = receiver
        .taken("webhook")
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 40, "every message sent");
    assert_eq!(unique.len(), 40, "none twice");
}

/// The `[notifications]` of an e-mail channel through `smtp` (STARTTLS with the test
/// CA, logging in with `password`).
fn email_config(
    dir: &std::path::Path,
    smtp: &support::smtp::SmtpServer,
    password: &str,
) -> chitti_hub::config::NotificationsConfig {
    std::fs::write(dir.join("smtp-password"), format!("{password}\n")).unwrap();
    let text = format!(
        r#"
version = 1
[notifications]
dashboard_url = "https://hub.example.net"
[notifications.smtp]
host = "127.0.0.1"
port = {port}
from = "Chitti <chitti@example.net>"
tls = "starttls"
username = "chitti"
password_file = "smtp-password"
ca_file = "ca.pem"
[[notifications.channels]]
id = "ops-mail"
kind = "email"
to = ["ops@example.net", "Olga Operator <olga@example.net>"]
[[notifications.rules]]
id = "all"
channels = ["ops-mail"]
"#,
        port = smtp.port
    );
    HubConfig::from_toml(&text, "hub.toml", dir)
        .unwrap()
        .notifications
}

async fn e_mail_goes_through_starttls_with_a_login_and_a_wrong_password_is_shown(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = support::broker::Ca::new("smtp test CA");
    let issued = ca.server();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("smtp.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("smtp.key"), &issued.key_pem).unwrap();
    let smtp = support::smtp::SmtpServer::start(
        dir.path(),
        Some((&dir.path().join("smtp.pem"), &dir.path().join("smtp.key"))),
        Some(("chitti", "s3cret-relay")),
    );
    let t0 = Utc::now();
    let alert = heat(&api, Uuid::now_v7(), &[2], t0).await;
    // A wrong password: the relay's 535 is permanent, shown in the delivery log.
    let wrong = notifier(&api, email_config(dir.path(), &smtp, "guess"));
    wrong.pass(t0).await.unwrap();
    let log = api
        .store
        .list_notifications(Some(alert), false, 10)
        .await
        .unwrap();
    assert_eq!(log[0].status, NotificationStatus::Failed, "{log:?}");
    assert_eq!(
        log[0].last_status,
        Some(535),
        "{log:?}\n{}",
        smtp.log_text()
    );
    assert!(smtp.messages().is_empty());
    // The right one: the acknowledgement is e-mailed (the alert had a message queued).
    let right = notifier(&api, email_config(dir.path(), &smtp, "s3cret-relay"));
    act(&api, alert, "acknowledge").await;
    // The failed attempt counted against the channel's rate (30 a minute): later.
    right.pass(Utc::now() + Duration::seconds(3)).await.unwrap();
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{}", smtp.log_text());
    let mail = mailparse::parse_mail(messages[0].as_bytes()).unwrap();
    let log = api
        .store
        .list_notifications(Some(alert), false, 10)
        .await
        .unwrap();
    let sent = log
        .iter()
        .find(|n| n.status == NotificationStatus::Sent)
        .unwrap();
    assert_eq!(sent.last_status, Some(250));
    let header = |name: &str| {
        use mailparse::MailHeaderMap;
        mail.headers.get_first_value(name).unwrap_or_default()
    };
    let from = header("From");
    assert!(
        from.contains("Chitti") && from.contains("<chitti@example.net>"),
        "{from}"
    );
    assert!(header("To").contains("ops@example.net") && header("To").contains("olga@example.net"));
    assert_eq!(header("Message-ID"), format!("<{}@chitti-hub>", sent.id));
    let subject = header("Subject");
    assert!(subject.starts_with("[Chitti] L2"), "{subject}");
    assert!(subject.contains("acknowledged by otto"), "{subject}");
    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    let parts: Vec<(String, String)> = mail
        .subparts
        .iter()
        .map(|p| (p.ctype.mimetype.clone(), p.get_body().unwrap()))
        .collect();
    assert_eq!(parts[0].0, "text/plain");
    assert_eq!(parts[1].0, "text/html");
    for (_, body) in &parts {
        assert!(
            body.contains(&format!("https://hub.example.net/alerts/{alert}")),
            "{body}"
        );
        assert!(body.contains("°C"), "{body}");
    }
}

async fn the_api_shows_delivery_logs_failures_first_and_channels_without_secrets(backend: &str) {
    let receiver = support::receiver::start().await;
    let config = notifications(&receiver, EVERYWHERE);
    let for_api = Arc::new(config.clone());
    let (api, _db) = Api::with(backend, Users::SignIn, |state| {
        state.with_notifications(for_api, Some("https://hub.example.net".into()))
    })
    .await;
    receiver.script("teams", &[(410, None)]);
    let n = notifier(&api, config);
    let alert = heat(&api, Uuid::now_v7(), &[2], Utc::now()).await;
    n.pass(Utc::now()).await.unwrap();
    let (vera, _, _) = api.login("vera").await;
    let (ada, _, _) = api.login("ada").await;
    // The alert's delivery log: one line per channel.
    let log = api
        .ok(
            StatusCode::OK,
            "GET",
            &format!("/api/v1/alerts/{alert}/notifications"),
            &vera,
            None,
        )
        .await;
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{log}");
    assert!(items.iter().all(|n| n["transition"] == "raised"), "{log}");
    // A malformed id is the API's JSON 400 (schemathesis found the framework's text one).
    let r = api
        .get(
            "/api/v1/alerts/null%2Cnull/notifications",
            Some(&vera),
            None,
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    for bad in [
        "limit=0",
        "limit=5000",
        "failures_first=maybe",
        "colour=red",
    ] {
        let r = api
            .get(&format!("/api/v1/notifications?{bad}"), Some(&vera), None)
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    }
    // The outbox, failures first: the Teams message that met 410.
    let outbox = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/notifications?limit=10",
            &vera,
            None,
        )
        .await;
    assert_eq!(outbox["items"][0]["channel"], "ops-teams", "{outbox}");
    assert_eq!(outbox["items"][0]["status"], "failed");
    assert_eq!(outbox["items"][0]["last_status"], 410);
    // Channels are an admin's, and carry no secret.
    let r = api
        .get("/api/v1/notification-channels", Some(&vera), None)
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let channels = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/notification-channels",
            &ada,
            None,
        )
        .await;
    let text = channels.to_string();
    for secret in ["MfKQ9r8", "R0UT1NGK3Y", "/teams", "/webhook"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let teams = channels["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "ops-teams")
        .unwrap();
    assert_eq!(teams["rules"], serde_json::json!(["serious"]));
    assert!(
        teams["disabled_reason"].as_str().unwrap().contains("410"),
        "{teams}"
    );
    // Turned back on, audited; a second time is a conflict.
    let uri = "/api/v1/notification-channels/ops-teams/enable";
    let on = api.ok(StatusCode::OK, "POST", uri, &ada, None).await;
    assert!(on["disabled_at"].is_null(), "{on}");
    let r = api.call("POST", uri, Some(&ada), None, &[]).await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    // A test message reaches the receiver now, signed; an unknown channel is a 404.
    let before = receiver.taken("webhook").len();
    let test = api
        .ok(
            StatusCode::OK,
            "POST",
            "/api/v1/notification-channels/scada/test",
            &ada,
            None,
        )
        .await;
    assert_eq!(test["delivered"], true, "{test}");
    let hooks = receiver.taken("webhook");
    assert_eq!(hooks.len(), before + 1);
    assert_eq!(hooks.last().unwrap().body["type"], "test");
    let r = api
        .call(
            "POST",
            "/api/v1/notification-channels/nope/test",
            Some(&ada),
            None,
            &[],
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    // The dashboard: the notifications page (channels for admins, failures first) and
    // the alert page's delivery log.
    let (_, _, cookie) = api.login("ada").await;
    let page = api.page("/notifications", &cookie).await;
    for expected in [
        "Send test message",
        "ops-teams",
        "failed (410)",
        "sent (200)",
    ] {
        assert!(page.contains(expected), "{expected} missing in\n{page}");
    }
    let page = api.page(&format!("/alerts/{alert}"), &cookie).await;
    assert!(page.contains("id=\"delivery-list\""), "{page}");
    for expected in ["<strong>raised</strong> → on-call", "failed (410)"] {
        assert!(
            page.contains(expected),
            "{expected} missing in the alert page"
        );
    }
    let actions: Vec<String> = api
        .audit_log()
        .await
        .into_iter()
        .map(|a| a.event.action)
        .collect();
    assert!(
        actions.contains(&"notification.enable".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"notification.test".to_string()),
        "{actions:?}"
    );
}

const BURSTY: &str = r#"
# slow slack
[[notifications.rules]]
id = "all"
min_level = 1
channels = ["ops-slack", "on-call"]
"#;

async fn a_burst_becomes_digests_within_the_rate_limit_and_pagerduty_gets_every_alert(
    backend: &str,
) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    let n = notifier(&api, notifications(&receiver, BURSTY));
    let t0 = Utc::now();
    // 120 alerts from one site at once.
    let batch: Vec<_> = (0..120)
        .map(|i| finding(Uuid::now_v7(), 2 + (i % 2) as u8, 60.0 + f64::from(i), 0))
        .collect();
    api.store
        .insert_findings(&ingested(&batch, t0))
        .await
        .unwrap();
    // Passes every 100 ms for 2.5 s: Slack (60 a minute) may send at most 3 messages.
    let mut at = t0;
    while at <= t0 + Duration::milliseconds(2500) {
        n.pass(at).await.unwrap();
        at += Duration::milliseconds(100);
    }
    let slack = receiver.taken("slack");
    assert!(
        !slack.is_empty() && slack.len() <= 3,
        "{} Slack messages",
        slack.len()
    );
    let first = slack[0].body["text"].as_str().unwrap();
    assert!(first.starts_with("120 alert changes (60 × L3"), "{first}");
    assert!(first.contains("north-yard"), "{first}");
    // Every message the digest stands for is delivered; PagerDuty, unlimited, got one
    // trigger per alert (its incidents are per alert, never digested).
    let log = api
        .store
        .list_notifications(None, false, 1000)
        .await
        .unwrap();
    let slack_rows: Vec<_> = log.iter().filter(|n| n.channel == "ops-slack").collect();
    assert_eq!(slack_rows.len(), 120);
    assert!(slack_rows
        .iter()
        .all(|n| n.status == NotificationStatus::Sent));
    let pd = receiver.taken("pagerduty");
    assert_eq!(pd.len(), 120);
    let keys: std::collections::HashSet<_> =
        pd.iter().map(|r| r.body["dedup_key"].to_string()).collect();
    assert_eq!(keys.len(), 120, "one incident per alert");
    // A second wave while Slack is paced waits for the pace, then goes out as one.
    let wave: Vec<_> = (0..10)
        .map(|i| finding(Uuid::now_v7(), 3, 80.0 + f64::from(i), 0))
        .collect();
    api.store
        .insert_findings(&ingested(&wave, at))
        .await
        .unwrap();
    n.pass(at).await.unwrap();
    n.pass(at + Duration::seconds(2)).await.unwrap();
    let slack = receiver.taken("slack");
    let last = slack.last().unwrap().body["text"].as_str().unwrap();
    assert!(last.starts_with("10 alert changes (10 × L3"), "{last}");
}

async fn quiet_hours_hold_all_but_critical_alerts_until_they_end(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    let t0 = Utc::now();
    // A quiet window around now, in Kolkata's time (UTC+05:30, no daylight saving).
    let kolkata = chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    let hhmm = |t: DateTime<Utc>| t.with_timezone(&kolkata).format("%H:%M").to_string();
    let start = t0 - Duration::minutes(30);
    let end = t0 + Duration::minutes(90);
    let text = format!(
        r#"
version = 1
[[notifications.channels]]
id = "scada"
kind = "webhook"
url = "{url}"
secret = "{WEBHOOK_SECRET}"
quiet_hours = "{start}-{end}"
timezone = "Asia/Kolkata"
[[notifications.rules]]
id = "all"
channels = ["scada"]
"#,
        url = receiver.url("webhook"),
        start = hhmm(start),
        end = hhmm(end),
    );
    let config = HubConfig::from_toml(&text, "hub.toml", std::path::Path::new("/"))
        .unwrap()
        .notifications;
    let n = notifier(&api, config);
    let serious = heat(&api, Uuid::now_v7(), &[2], t0).await;
    let critical = heat(&api, Uuid::now_v7(), &[3], t0).await;
    n.pass(t0).await.unwrap();
    let taken = receiver.taken("webhook");
    assert_eq!(taken.len(), 1, "only the critical one goes out at once");
    assert_eq!(taken[0].body["data"]["alert"]["id"], critical.to_string());
    let held = api
        .store
        .list_notifications(Some(serious), false, 10)
        .await
        .unwrap();
    assert_eq!(held[0].status, NotificationStatus::Pending);
    // Held to the window's end (to the minute the window is written in).
    let until = held[0].next_attempt_at;
    assert!((until - end).num_seconds().abs() < 60, "{until} vs {end}");
    n.pass(until - Duration::seconds(1)).await.unwrap();
    assert_eq!(receiver.taken("webhook").len(), 1);
    n.pass(until + Duration::seconds(1)).await.unwrap();
    let taken = receiver.taken("webhook");
    assert_eq!(taken.len(), 2, "sent when the quiet hours end");
    assert_eq!(taken[1].body["data"]["alert"]["id"], serious.to_string());
}

async fn a_cool_down_holds_level_ups_and_a_later_level_supersedes_a_held_one(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    let rule = "[[notifications.rules]]\nid = \"r\"\nchannels = [\"scada\"]\ncooldown_s = 600\n";
    let n = notifier(&api, notifications(&receiver, rule));
    let t0 = Utc::now();
    let track = Uuid::now_v7();
    let alert = heat(&api, track, &[1], t0).await;
    n.pass(t0).await.unwrap();
    assert_eq!(receiver.taken("webhook").len(), 1, "raised at level 1");
    // Level 2, then 3, within the cool-down: held; 3 supersedes 2.
    let f2 = finding(track, 2, 70.0, 5_000);
    api.store
        .insert_findings(&ingested(&[f2], t0))
        .await
        .unwrap();
    n.pass(t0 + Duration::seconds(10)).await.unwrap();
    let f3 = finding(track, 3, 90.0, 9_000);
    api.store
        .insert_findings(&ingested(&[f3], t0))
        .await
        .unwrap();
    n.pass(t0 + Duration::seconds(20)).await.unwrap();
    assert_eq!(receiver.taken("webhook").len(), 1, "held by the cool-down");
    let log = api
        .store
        .list_notifications(Some(alert), false, 10)
        .await
        .unwrap();
    let superseded = log
        .iter()
        .find(|n| n.status == NotificationStatus::Cancelled)
        .unwrap();
    assert_eq!(
        superseded.last_error.as_deref(),
        Some("superseded by level 3")
    );
    // After the cool-down: only the latest level goes out.
    n.pass(Utc::now() + Duration::seconds(601)).await.unwrap();
    let taken = receiver.taken("webhook");
    assert_eq!(taken.len(), 2, "{taken:#?}");
    assert_eq!(taken[1].body["data"]["transition"]["level"], 3);
}

async fn a_slow_receiver_never_holds_claimed_messages_past_half_their_lease(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    receiver.slow(Some(std::time::Duration::from_millis(400)));
    let text = format!(
        "version = 1\n[notifications]\nclaim_lease_s = 2\nsend_timeout_s = 1\n\
         [[notifications.channels]]\nid = \"scada\"\nkind = \"webhook\"\nurl = \"{}\"\n\
         secret = \"{WEBHOOK_SECRET}\"\n[[notifications.rules]]\nid = \"r\"\nchannels = [\"scada\"]\n",
        receiver.url("webhook")
    );
    let config = HubConfig::from_toml(&text, "hub.toml", std::path::Path::new("/"))
        .unwrap()
        .notifications;
    let n = notifier(&api, config);
    let t0 = Utc::now();
    for _ in 0..6 {
        heat(&api, Uuid::now_v7(), &[2], t0).await;
    }
    n.pass(t0).await.unwrap();
    // One second of budget at 0.4 s a message: some went, the rest went back unclaimed
    // and not counted as attempts.
    let sent = receiver.taken("webhook").len();
    assert!((1..6).contains(&sent), "{sent} sent in the first pass");
    let log = api.store.list_notifications(None, false, 10).await.unwrap();
    let waiting: Vec<_> = log
        .iter()
        .filter(|n| n.status == NotificationStatus::Pending)
        .collect();
    assert_eq!(waiting.len(), 6 - sent);
    assert!(waiting.iter().all(|n| n.attempts == 0), "{waiting:#?}");
    let mut at = t0;
    while receiver.taken("webhook").len() < 6 {
        at += Duration::seconds(1);
        assert!(at < t0 + Duration::seconds(30), "not all delivered");
        n.pass(at).await.unwrap();
    }
    let ids: std::collections::HashSet<_> = receiver
        .taken("webhook")
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(
        (ids.len(), receiver.received().len()),
        (6, 6),
        "each sent once"
    );
}

/// Admins add channels and rules through the API beside the file's; the notifier runs on
/// both, secrets are never shown again, a stale edit overwrites nothing.
async fn admins_edit_channels_and_rules_and_the_notifier_follows(backend: &str) {
    let receiver = support::receiver::start().await;
    // The file: one webhook and one rule at level 3 and above.
    let file = notifications(
        &receiver,
        "[[notifications.rules]]\nid = \"file-critical\"\nmin_level = 3\nchannels = [\"scada\"]\n",
    );
    let for_api = Arc::new(file.clone());
    let (api, _db) = Api::with(backend, Users::SignIn, |state| {
        state.with_notifications(for_api, Some("https://hub.example.net".into()))
    })
    .await;
    let (ada, _, _) = api.login("ada").await;
    let (otto, _, _) = api.login("otto").await;
    let uri = "/api/v1/notification-settings";
    let r = api.get(uri, Some(&ada), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("etag"), Some("\"0\""));
    assert_eq!(r.body["version"], 0);
    assert!(r.body["file_channels"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("scada")));
    let forbidden = api.get(uri, Some(&otto), None).await;
    assert_error(&forbidden, StatusCode::FORBIDDEN, "forbidden");

    let doc = format!(
        r#"
[[channels]]
id = "control-room"
kind = "webhook"
url = "{hook}"
secret = "{WEBHOOK_SECRET}"
[[channels]]
id = "archive"
kind = "webhook"
url = "https://archive.example.net/in"
[[rules]]
id = "serious-to-control-room"
min_level = 2
channels = ["control-room"]
"#,
        hook = receiver.url("webhook?control-room"),
    );
    let body = serde_json::json!({ "toml": doc });
    let r = api
        .call("PUT", uri, Some(&ada), Some(body.clone()), &[])
        .await;
    assert_error(
        &r,
        StatusCode::PRECONDITION_REQUIRED,
        "precondition_required",
    );
    let r = api
        .call(
            "PUT",
            uri,
            Some(&otto),
            Some(body.clone()),
            &[("if-match", "\"0\"")],
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = api
        .call(
            "PUT",
            uri,
            Some(&ada),
            Some(body.clone()),
            &[("if-match", "\"0\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.header("etag"), Some("\"1\""));
    let drawn = r.body["new_secrets"]["archive"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(drawn.starts_with("whsec_"), "{:?}", r.body);
    assert!(r.body["new_secrets"].get("control-room").is_none());
    // Shown once: never again, neither the drawn secret nor the given one.
    let shown = api.get(uri, Some(&ada), None).await;
    let text = shown.body.to_string();
    assert!(
        !text.contains(&drawn) && !text.contains(WEBHOOK_SECRET),
        "{text}"
    );
    assert!(shown.body["toml"]
        .as_str()
        .unwrap()
        .contains("secret = \"(kept)\""));
    let channels = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/notification-channels",
            &ada,
            None,
        )
        .await;
    let sources: Vec<(String, String)> = channels["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().into(),
                c["source"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        sources.contains(&("control-room".into(), "settings".into())),
        "{sources:?}"
    );
    assert!(sources.contains(&("scada".into(), "file".into())));

    // A stale edit (still based on version 0) is refused and names the current one.
    let r = api
        .call(
            "PUT",
            uri,
            Some(&ada),
            Some(serde_json::json!({"toml": ""})),
            &[("if-match", "\"0\"")],
        )
        .await;
    let message = assert_error(&r, StatusCode::CONFLICT, "conflict");
    assert!(message.contains("current version is 1"), "{message}");
    // Every problem at once, by path in the document; the file's ids are taken.
    let bad = serde_json::json!({
        "channels": [{"id": "scada", "kind": "slack", "url": "https://hooks.slack.com/x"}],
        "rules": [{"id": "r", "channels": ["nowhere"]}],
    });
    let r = api
        .call("PUT", uri, Some(&ada), Some(bad), &[("if-match", "\"1\"")])
        .await;
    let message = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        message.contains("channels[0].id: \"scada\" is defined in the hub's configuration file"),
        "{message}"
    );
    assert!(message.contains("rules[0].channels"), "{message}");
    let unknown = serde_json::json!({"rules": [{"id": "r", "level": 3}]});
    let r = api
        .call(
            "PUT",
            uri,
            Some(&ada),
            Some(unknown),
            &[("if-match", "\"1\"")],
        )
        .await;
    let message = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("level"), "{message}");

    // The notifier, started with the file alone, runs the settings too: a level-2
    // alert goes to the control room (signed with the given secret), not to scada.
    let n = notifier(&api, file);
    let alert = heat(&api, Uuid::now_v7(), &[2], Utc::now()).await;
    n.pass(Utc::now()).await.unwrap();
    let hooks = receiver.taken("webhook");
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    assert_eq!(hooks[0].body["data"]["rule"], "serious-to-control-room");
    assert_eq!(hooks[0].body["data"]["alert"]["id"], alert.to_string());
    assert!(
        receiver.received().iter().all(|r| r.answered == 200),
        "signed with the kept secret"
    );

    // An edit of what was read (secrets as "(kept)") keeps them, and is in force at
    // the next pass: level 3 now also goes to the control room under a second rule.
    let mut edited = shown.body["toml"].as_str().unwrap().to_string();
    edited.push_str(
        "\n[[rules]]\nid = \"critical-too\"\nmin_level = 3\nchannels = [\"control-room\"]\n",
    );
    let r = api
        .call(
            "PUT",
            uri,
            Some(&ada),
            Some(serde_json::json!({"toml": edited})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(
        r.body["new_secrets"].as_object().unwrap().is_empty(),
        "kept, not drawn again"
    );
    heat(&api, Uuid::now_v7(), &[3], Utc::now()).await;
    n.pass(Utc::now()).await.unwrap();
    let hooks = receiver.taken("webhook");
    let rules: std::collections::BTreeSet<_> = hooks[1..]
        .iter()
        .map(|h| h.body["data"]["rule"].as_str().unwrap().to_string())
        .collect();
    assert!(
        rules.contains("serious-to-control-room") || rules.contains("critical-too"),
        "{rules:?}"
    );
    assert!(rules.contains("file-critical"), "{rules:?}");
    assert!(receiver.received().iter().all(|r| r.answered == 200));
    let audit: Vec<_> = api
        .audit_log()
        .await
        .into_iter()
        .filter(|e| e.event.action == "notification.settings")
        .collect();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].event.actor, "ada");
    assert!(
        !format!("{audit:?}").contains(&drawn),
        "no secret in the audit log"
    );
}

/// A flapping gateway: its new alerts within the gateway's cool-down wait and go out
/// together at its end; a worse one goes at once; another gateway is not held.
async fn a_flapping_gateway_is_told_once_per_cool_down_and_a_worse_alert_at_once(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let receiver = support::receiver::start().await;
    let rule = "[[notifications.rules]]\nid = \"r\"\nmin_level = 1\nchannels = [\"scada\"]\ngateway_cooldown_s = 600\n";
    let n = notifier(&api, notifications(&receiver, rule));
    let raise = |gateway: &'static str, level: u8| {
        let api = &api;
        async move {
            let mut f = finding(Uuid::now_v7(), level, 40.0 + 15.0 * f64::from(level), 0);
            f.gateway = gateway.into();
            api.store
                .insert_findings(&ingested(&[f], Utc::now()))
                .await
                .unwrap();
        }
    };
    raise("gw-07", 2).await;
    n.pass(Utc::now()).await.unwrap();
    assert_eq!(receiver.taken("webhook").len(), 1, "the first goes at once");
    // Two more of gw-07, no worse: held. One of gw-08: its own gateway, at once.
    raise("gw-07", 2).await;
    raise("gw-07", 1).await;
    raise("gw-08", 2).await;
    n.pass(Utc::now()).await.unwrap();
    let taken = receiver.taken("webhook");
    assert_eq!(taken.len(), 2, "{taken:#?}");
    assert_eq!(taken[1].body["data"]["alert"]["gateway"], "gw-08");
    let held = api
        .store
        .list_notifications(None, false, 100)
        .await
        .unwrap();
    assert_eq!(
        held.iter()
            .filter(|m| m.status == NotificationStatus::Pending)
            .count(),
        2,
        "{held:#?}"
    );
    // Worse than anything told of gw-07 in the cool-down: at once.
    raise("gw-07", 3).await;
    n.pass(Utc::now()).await.unwrap();
    let taken = receiver.taken("webhook");
    assert_eq!(taken.len(), 3);
    assert_eq!(taken[2].body["data"]["transition"]["level"], 3);
    // The cool-down over: the two that waited go out, nothing is lost.
    n.pass(Utc::now() + Duration::seconds(601)).await.unwrap();
    let taken = receiver.taken("webhook");
    assert_eq!(taken.len(), 5, "{taken:#?}");
    assert!(taken[3..]
        .iter()
        .all(|h| h.body["data"]["alert"]["gateway"] == "gw-07"));
    let bad = HubConfig::from_toml(
        "version = 1\n[[notifications.rules]]\nid = \"r\"\ngateway_cooldown_s = 0\n",
        "hub.toml",
        std::path::Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("notifications.rules[0].gateway_cooldown_s: must be at least 1"),
        "{bad}"
    );
}

on_both!(
    a_flapping_gateway_is_told_once_per_cool_down_and_a_worse_alert_at_once,
    admins_edit_channels_and_rules_and_the_notifier_follows,
    a_slow_receiver_never_holds_claimed_messages_past_half_their_lease,
    a_cool_down_holds_level_ups_and_a_later_level_supersedes_a_held_one,
    quiet_hours_hold_all_but_critical_alerts_until_they_end,
    a_burst_becomes_digests_within_the_rate_limit_and_pagerduty_gets_every_alert,
    the_api_shows_delivery_logs_failures_first_and_channels_without_secrets,
    e_mail_goes_through_starttls_with_a_login_and_a_wrong_password_is_shown,
    a_heating_connector_notifies_each_new_level_once_and_pagerduty_follows_the_alert,
    unacknowledged_alerts_escalate_and_repeat_at_most_max_repeats,
    acknowledging_stops_the_escalation_at_once,
    failing_receivers_are_retried_and_a_gone_endpoint_turns_its_channel_off,
    a_hub_that_dies_mid_send_leaves_the_message_to_the_next_claim_with_the_same_id,
    two_senders_share_the_outbox_and_send_each_message_once,
);
