//! Every gateway example in `firmware-config/examples/` works as shipped: run against a
//! real hub on its defaults, its findings are stored and acknowledged.
//!
//! Each example is changed only where this machine is not a gateway:
//! * every absolute path moves under a temporary root (`/etc/chitti-agent/signing.key`
//!   → `<tmp>/root/etc/chitti-agent/signing.key`), and the credentials `chitti-hub
//!   gateway add` issued are copied to the paths the example names;
//! * the broker and evidence URLs point at the test hub (plain MQTT and HTTP: the hub
//!   on its defaults has no TLS listener, so TLS file keys are dropped), and the
//!   metrics listener takes a free port;
//! * hardware that is not here is left out (the pan-tilt head), and each watched
//!   folder gets a real FLIR file of the kind that gateway sees;
//! * the detector loads the shipped model (and the ONNX Runtime library from
//!   `ORT_DYLIB_PATH` when set; without it the dock runs on thresholds, as it would).
//!
//! Everything else (identity, the MQTT user name, analysis tables and references,
//! tracking, outbox) is the example's own, so a wrong user name or a missing signing
//! key fails here the way it would fail in the field.

use chitti_e2e::*;
use chitti_hub::store::prelude::*;
use chitti_hub::store::AnyStore;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The FLIR fixture each example's watched folder receives.
fn fixture_for(example: &str) -> &'static str {
    match example {
        "drone-dock" => "dji_xt2_le_header.jpg",
        "handheld-tether" => "flir_t420_png_640x480.jpg",
        _ => "flir_t640_png.jpg",
    }
}

/// Moves an absolute path under `root`.
fn rebase(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Every string that is an absolute path, moved under `root`.
fn rebase_paths(value: &mut toml::Value, root: &Path) {
    match value {
        toml::Value::String(s) if s.starts_with('/') => {
            *s = rebase(root, s).display().to_string();
        }
        toml::Value::Array(items) => items.iter_mut().for_each(|v| rebase_paths(v, root)),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| rebase_paths(v, root)),
        _ => {}
    }
}

fn table<'a>(doc: &'a mut toml::Value, key: &str) -> &'a mut toml::Table {
    doc.get_mut(key)
        .and_then(toml::Value::as_table_mut)
        .unwrap_or_else(|| panic!("the example has no [{key}]"))
}

fn string(t: &toml::Table, key: &str) -> Option<String> {
    t.get(key).and_then(toml::Value::as_str).map(str::to_string)
}

/// Copies `from` to `to`, making `to`'s folder.
fn place(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().expect("a folder")).unwrap();
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

/// The example, made runnable here; the folders its cameras watch.
struct Prepared {
    config: PathBuf,
    site: String,
    gateway: String,
}

fn prepare(example: &Path, dir: &Path, hub: &HubAddrs, creds: &Path, fixture: &Path) -> Prepared {
    let text = std::fs::read_to_string(example).unwrap();
    let mut doc: toml::Value = toml::from_str(&text).unwrap();
    let root = dir.join("root");
    rebase_paths(&mut doc, &root);

    let identity = table(&mut doc, "identity");
    let site = string(identity, "site").expect("identity.site");
    let gateway = string(identity, "gateway").expect("identity.gateway");

    let mqtt = table(&mut doc, "mqtt");
    mqtt.insert(
        "url".into(),
        format!("mqtt://{}", hub.mqtt.expect("embedded broker")).into(),
    );
    for key in ["ca_file", "client_cert_file", "client_key_file"] {
        mqtt.remove(key);
    }
    // The hub's broker logs a gateway in as site/gateway with the password it issued.
    let username = string(mqtt, "username").expect("mqtt.username (the hub needs it)");
    assert_eq!(
        username,
        format!("{site}/{gateway}"),
        "{}: the hub's broker knows this gateway as site/gateway",
        example.display()
    );
    let password = string(mqtt, "password_file").expect("mqtt.password_file");
    place(&creds.join("mqtt-password"), Path::new(&password));
    let signing = string(mqtt, "signing_key_file").unwrap_or_else(|| {
        panic!(
            "{}: no mqtt.signing_key_file: a hub on its defaults refuses unsigned findings",
            example.display()
        )
    });
    place(&creds.join("signing.key"), Path::new(&signing));
    let hub_keys = string(mqtt, "hub_public_keys_file").unwrap_or_else(|| {
        panic!(
            "{}: no mqtt.hub_public_keys_file: the agent could not believe any /ack",
            example.display()
        )
    });
    place(&creds.join("hub-public-key"), Path::new(&hub_keys));
    mqtt.insert("reconnect_max_ms".into(), 500.into());

    if let Some(evidence) = doc.get_mut("evidence").and_then(toml::Value::as_table_mut) {
        evidence.insert("hub_url".into(), format!("http://{}", hub.http).into());
        evidence.remove("ca_file");
    }
    if let Some(detector) = doc.get_mut("detector").and_then(toml::Value::as_table_mut) {
        let model = workspace_root().join("models/chitti-components-v1/model.int8.onnx");
        detector.insert("model".into(), model.display().to_string().into());
        match std::env::var("ORT_DYLIB_PATH") {
            Ok(lib) => detector.insert("library".into(), lib.into()),
            Err(_) => detector.remove("library"),
        };
    }
    let health = doc
        .as_table_mut()
        .unwrap()
        .entry("health")
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .unwrap();
    health.insert("metrics_listen".into(), "127.0.0.1:0".into());
    health.insert("status_interval_s".into(), 1.into());

    let cameras = doc
        .get_mut("camera")
        .and_then(toml::Value::as_array_mut)
        .expect("[[camera]]");
    for camera in cameras {
        let camera = camera.as_table_mut().unwrap();
        // No pan-tilt head on this machine.
        camera.remove("patrol");
        let source = camera
            .get_mut("source")
            .and_then(toml::Value::as_table_mut)
            .unwrap();
        assert_eq!(
            string(source, "kind").as_deref(),
            Some("rjpeg_dir"),
            "a new kind of example source: teach this test to feed it"
        );
        for key in ["path", "quarantine"] {
            if let Some(folder) = string(source, key) {
                std::fs::create_dir_all(&folder).unwrap();
            }
        }
        let folder = PathBuf::from(string(source, "path").unwrap());
        place(fixture, &folder.join(fixture.file_name().unwrap()));
        // The file is complete already: no need to wait for a copy to settle.
        source.insert("settle_ms".into(), 100.into());
    }
    if let Some(outbox) = string(table(&mut doc, "outbox"), "path") {
        std::fs::create_dir_all(&outbox).unwrap();
    }

    let config = dir.join("agent.toml");
    std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    Prepared {
        config,
        site,
        gateway,
    }
}

/// Findings the agent's outbox dropped after the hub's `/ack` (its debug log lines).
fn acknowledged_count(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains(" ack acked="))
        .filter_map(|l| l.split(" deleted=").nth(1))
        .filter_map(|d| d.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

async fn delivers_to_a_default_hub(name: &str) {
    let example = workspace_root()
        .join("firmware-config/examples")
        .join(format!("{name}.toml"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub-data");
    let data_s = data.display().to_string();

    // Enrol the example's gateway exactly as its comments say, then start the hub on
    // its defaults (embedded broker, SQLite, signatures required) on free ports.
    let doc: toml::Value = toml::from_str(&std::fs::read_to_string(&example).unwrap()).unwrap();
    let site = doc["identity"]["site"].as_str().unwrap().to_string();
    let gateway = doc["identity"]["gateway"].as_str().unwrap().to_string();
    let creds = dir.path().join("creds");
    enrol(&["--data", &data_s], &site, &gateway, &creds);
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
    let prepared = prepare(
        &example,
        dir.path(),
        &addrs,
        &creds,
        &fixture(fixture_for(name)),
    );

    // The agent's own validator, with the folders and files checked on this machine.
    let validate = std::process::Command::new(binary("chitti-agent"))
        .arg("validate")
        .arg(&prepared.config)
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{name}: validate: {}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );

    let agent = start_agent(&prepared.config, &dir.path().join("agent.log"));
    let store = AnyStore::connect(&sqlite_url(&data)).await.unwrap();
    let context = || {
        format!(
            "hub log:\n{}\nagent log:\n{}",
            hub.log_text(),
            agent.log_text()
        )
    };
    // Every finding the agent made is in the hub's database, under this gateway, and
    // the agent dropped each from its outbox on the hub's acknowledgement.
    let made = eventually(
        "the example's findings stored and acknowledged",
        context,
        || async {
            let made = logged_finding_ids(&agent.log_text());
            if made.is_empty() || acknowledged_count(&agent.log_text()) < made.len() as u64 {
                return None;
            }
            let stored: BTreeSet<uuid::Uuid> = all_stored_findings(&store)
                .await
                .into_iter()
                .filter(|f| {
                    f.finding.site == prepared.site && f.finding.gateway == prepared.gateway
                })
                .map(|f| f.finding.id)
                .collect();
            made.is_subset(&stored).then_some(made)
        },
    )
    .await;
    assert!(!made.is_empty());
    // Nothing was refused on the way (unsigned, unknown gateway, bad payload).
    let dead_letters = store.dead_letter_count().await.unwrap();
    assert_eq!(dead_letters, 0, "{name}: dead letters\n{}", context());
    let log = context();
    assert!(agent.terminate().success(), "{name}: agent exit\n{log}");
    assert!(hub.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substation_patrol_delivers_to_a_default_hub() {
    delivers_to_a_default_hub("substation-patrol").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drone_dock_delivers_to_a_default_hub() {
    delivers_to_a_default_hub("drone-dock").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handheld_tether_delivers_to_a_default_hub() {
    delivers_to_a_default_hub("handheld-tether").await;
}

#[test]
fn every_example_has_a_delivery_test() {
    let mut names: Vec<String> =
        std::fs::read_dir(workspace_root().join("firmware-config/examples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
    names.sort();
    assert_eq!(
        names,
        ["drone-dock", "handheld-tether", "substation-patrol"]
    );
}
