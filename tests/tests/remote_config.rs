//! Configuration from the hub, end to end: a real hub (SQLite, embedded broker) and
//! three real agents. A change reaches the running gateways; a stopped gateway applies,
//! on its return, only the newest version saved while it was away; a document the hub
//! accepts but the gateway cannot run (a folder it does not have) is rejected with the
//! gateway's error while the running configuration stays; a document that loses the
//! broker is undone by the gateway itself after its probation time, its cameras and
//! analysis running on (only the MQTT link is rebuilt, both ways).

use chitti_e2e::{
    api_login, enrol, eventually, hub_command, simulated_agent_config, start_agent, start_hub,
    Process,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;

const ADMIN_PASSWORD: &str = "ada-correct-horse-battery";

/// `GET …/config`: the body and its ETag.
fn get_config(http: SocketAddr, token: &str, gateway: &str) -> (Value, String) {
    let mut r = ureq::get(format!(
        "http://{http}/api/v1/gateways/north/{gateway}/config"
    ))
    .header("authorization", format!("Bearer {token}"))
    .call()
    .expect("GET config");
    let etag = r
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let body = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    (body, etag)
}

/// `PUT …/config` of `text` on the current version; the new version.
fn put_config(http: SocketAddr, token: &str, gateway: &str, text: &str) -> i64 {
    let (_, etag) = get_config(http, token, gateway);
    let mut r = ureq::put(format!(
        "http://{http}/api/v1/gateways/north/{gateway}/config"
    ))
    .header("authorization", format!("Bearer {token}"))
    .header("content-type", "application/json")
    .header("if-match", &etag)
    .send(json!({"config": text, "reason": "e2e"}).to_string())
    .expect("PUT config");
    let body: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    body["version"].as_i64().unwrap()
}

/// Waits until the gateway reports `status` for `version`; the report.
async fn reported(
    http: SocketAddr,
    token: &str,
    gateway: &str,
    version: i64,
    status: &str,
    logs: &[&Process],
) -> Value {
    eventually(
        &format!("{gateway} reporting {status} for version {version}"),
        || {
            logs.iter()
                .map(|p| p.log_text())
                .collect::<Vec<_>>()
                .join("\n----\n")
        },
        || async {
            let (body, _) = get_config(http, token, gateway);
            let r = body["reported"].clone();
            (r["version"] == version && r["status"] == status).then_some(r)
        },
    )
    .await
}

fn agent_text(dir: &Path, gateway: &str, mqtt: &str, extra: &str) -> String {
    // A quiet scene: these gateways report configuration, not findings.
    let text = simulated_agent_config(
        "north",
        gateway,
        mqtt,
        &dir.join(gateway),
        &dir.join(format!("{gateway}/outbox")),
        1_000_000,
    )
    .replace("seed = 7", "seed = 7\nscene = \"quiet\"")
    .replace("unpaced = true", "unpaced = false");
    format!("{text}{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_configurations_reach_the_fleet_and_bad_ones_are_refused_or_undone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    for gw in ["gw-1", "gw-2", "gw-3"] {
        enrol(&["--data", &data_s], "north", gw, &dir.path().join(gw));
    }
    let password_file = dir.path().join("ada-password");
    std::fs::write(&password_file, format!("{ADMIN_PASSWORD}\n")).unwrap();
    hub_command(&[
        "user",
        "add",
        "--data",
        &data_s,
        "--username",
        "ada",
        "--role",
        "admin",
        "--password-file",
        &password_file.display().to_string(),
    ]);
    let (hub, addrs) = start_hub(
        &[
            "--data",
            &data_s,
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
        &dir.path().join("hub.log"),
    );
    let mqtt = format!("mqtt://{}", addrs.mqtt.unwrap());
    let token = api_login(addrs.http, "ada", ADMIN_PASSWORD);
    let mut texts = Vec::new();
    let mut agents = Vec::new();
    for gw in ["gw-1", "gw-2", "gw-3"] {
        // gw-2 lets a document move it to another broker, on a short probation.
        let extra = if gw == "gw-2" {
            "[remote]\nprobation_s = 5\nallow_keys = [\"mqtt.url\"]\n"
        } else {
            ""
        };
        let text = agent_text(dir.path(), gw, &mqtt, extra);
        let file = dir.path().join(gw).join("agent.toml");
        std::fs::write(&file, &text).unwrap();
        agents.push(start_agent(&file, &dir.path().join(format!("{gw}.log"))));
        texts.push(text);
    }
    for gw in ["gw-1", "gw-2", "gw-3"] {
        let r = reported(addrs.http, &token, gw, 0, "applied", &[&hub]).await;
        assert!(r["applied_version"].is_null(), "{r}");
        assert!(r["config"].as_str().unwrap().contains("[identity]"), "{r}");
    }

    // gw-3 is away while two versions are saved for it.
    let gw3 = agents.pop().unwrap();
    assert!(gw3.terminate().success());
    let change = |text: &str, delta: &str| {
        text.replace("update_delta_c = 5.0", &format!("update_delta_c = {delta}"))
    };
    for (i, gw) in ["gw-1", "gw-2"].iter().enumerate() {
        assert_eq!(
            put_config(addrs.http, &token, gw, &change(&texts[i], "6.0")),
            1
        );
    }
    assert_eq!(
        put_config(addrs.http, &token, "gw-3", &change(&texts[2], "6.5")),
        1
    );
    assert_eq!(
        put_config(addrs.http, &token, "gw-3", &change(&texts[2], "7.0")),
        2
    );
    for gw in ["gw-1", "gw-2"] {
        let r = reported(
            addrs.http,
            &token,
            gw,
            1,
            "applied",
            &[&hub, &agents[0], &agents[1]],
        )
        .await;
        assert_eq!(r["applied_version"], 1);
        assert!(
            r["config"]
                .as_str()
                .unwrap()
                .contains("update_delta_c = 6.0"),
            "{r}"
        );
    }
    let gw3 = start_agent(
        &dir.path().join("gw-3/agent.toml"),
        &dir.path().join("gw-3.log"),
    );
    let r = reported(addrs.http, &token, "gw-3", 2, "applied", &[&hub, &gw3]).await;
    assert!(
        r["config"]
            .as_str()
            .unwrap()
            .contains("update_delta_c = 7.0"),
        "{r}"
    );
    assert!(
        !gw3.log_text()
            .contains("configuration applied; restarting the pipeline on it version=1"),
        "gw-3 applied the intermediate version:\n{}",
        gw3.log_text()
    );
    let (body, _) = get_config(addrs.http, &token, "gw-3");
    assert_eq!(body["in_sync"], true);

    // Valid on the hub, impossible on the gateway: rejected with its reason; version 1 runs.
    let missing = dir.path().join("no-such-folder");
    let drop_folder = change(&texts[0], "6.0").replace(
        "[camera.source]\nkind = \"simulated\"",
        &format!(
            "[camera.source]\nkind = \"rjpeg_dir\"\npath = \"{}\"",
            missing.display()
        ),
    );
    let drop_folder = drop_folder
        .lines()
        .filter(|l| {
            ![
                "width", "height", "fps", "speed", "seed", "scene", "frames", "unpaced",
            ]
            .iter()
            .any(|k| l.starts_with(&format!("{k} =")))
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(put_config(addrs.http, &token, "gw-1", &drop_folder), 2);
    let r = reported(
        addrs.http,
        &token,
        "gw-1",
        2,
        "rejected",
        &[&hub, &agents[0]],
    )
    .await;
    assert_eq!(r["applied_version"], 1, "{r}");
    let errors = r["errors"].to_string();
    assert!(
        errors.contains("camera[0].source.path") && errors.contains("is not a folder"),
        "{r}"
    );

    // A broker that does not answer: gw-2 comes back on version 1 by itself.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let lost = change(&texts[1], "6.0").replace(&mqtt, &format!("mqtt://127.0.0.1:{dead_port}"));
    assert_eq!(put_config(addrs.http, &token, "gw-2", &lost), 2);
    let r = reported(
        addrs.http,
        &token,
        "gw-2",
        2,
        "rolled_back",
        &[&hub, &agents[1]],
    )
    .await;
    assert_eq!(r["applied_version"], 1, "{r}");
    assert!(
        r["errors"]
            .to_string()
            .contains("no connection to the broker within 5 s"),
        "{r}"
    );
    // Only the link changed: the sink alone was replaced, twice; the cameras ran on.
    let log = agents[1].log_text();
    assert_eq!(
        log.matches("mqtt link replaced; the pipeline runs on")
            .count(),
        2,
        "{log}"
    );
    assert!(
        !log.contains("restarting the pipeline on it version=2"),
        "{log}"
    );

    assert!(gw3.terminate().success());
    for agent in agents {
        assert!(agent.terminate().success());
    }
    assert!(hub.terminate().success());
}
