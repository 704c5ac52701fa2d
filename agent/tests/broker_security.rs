//! The agent against a Mosquitto that demands credentials: mutual TLS with a
//! per-gateway client certificate, user name and password, and the Last Will when a
//! gateway dies. A second Mosquitto process is started by the test on free ports with
//! its own configuration (the machine's Mosquitto binary, not the shared instance).

mod support;

use std::path::Path;
use support::*;

struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "chitti test fleet ca");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gw-tls");
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// A Mosquitto with a mutual-TLS listener and a password listener; killed on drop.
struct SecureMosquitto {
    child: std::process::Child,
    tls_port: u16,
    password_port: u16,
}

impl Drop for SecureMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_secure_mosquitto(dir: &Path, pki: &Pki) -> SecureMosquitto {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("ca.pem", &pki.ca_pem);
    let cert = write("server.pem", &pki.server_cert);
    let key = write("server.key", &pki.server_key);
    let passwords = dir.join("passwd");
    std::fs::write(&passwords, "").unwrap();
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b"])
        .arg(&passwords)
        .args(["gw-pass", "correct horse"])
        .status()
        .unwrap();
    assert!(status.success());
    std::process::Command::new("mosquitto_passwd")
        .args(["-b"])
        .arg(&passwords)
        .args(["hub", "hub-secret"])
        .status()
        .unwrap();
    let (tls_port, password_port) = (free_port(), free_port());
    let conf = write(
        "mosquitto.conf",
        &format!(
            "per_listener_settings true\n\
             listener {tls_port} 127.0.0.1\n\
             cafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
             require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n\
             listener {password_port} 127.0.0.1\n\
             allow_anonymous false\npassword_file {passwords}\n",
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
            passwords = passwords.display()
        ),
    );
    let child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(tls_port);
    wait_for_port(password_port);
    SecureMosquitto {
        child,
        tls_port,
        password_port,
    }
}

/// A simulated gateway whose `[mqtt]` section is `mqtt`.
fn gateway_config(site: &str, gateway: &str, outbox: &Path, mqtt: &str) -> String {
    let text = simulated_config(site, gateway, 0, outbox, 20);
    let (head, rest) = text.split_once("[mqtt]").unwrap();
    let (_, tail) = rest.split_once("[health]").unwrap();
    format!("{head}[mqtt]\nhub_public_keys = [\"{TEST_HUB_PUBLIC_KEY}\"]\n{mqtt}\n[health]{tail}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_passwords_are_used_and_the_last_will_marks_a_dead_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let broker = start_secure_mosquitto(dir.path(), &pki);
    let site = "secure-site";
    let mut hub = TestHub::start_with_login(broker.password_port, site, "hub", "hub-secret").await;

    // Gateway 1 over mutual TLS.
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("agent-ca.pem", &pki.ca_pem);
    let cert = write("gw-tls.pem", &pki.client_cert);
    let key = write("gw-tls.key", &pki.client_key);
    let tls_text = gateway_config(
        site,
        "gw-tls",
        &dir.path().join("outbox-tls"),
        &format!(
            "url = \"mqtts://127.0.0.1:{}\"\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\nreconnect_min_ms = 50",
            broker.tls_port,
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    let expected = expected_shapes(&tls_text);
    let tls_config = write("tls.toml", &tls_text);
    let tls_agent = AgentProcess::start(&tls_config, &dir.path().join("tls.log"));

    // Gateway 2 with a password file; gateway 3 with a wrong password.
    write("good-password", "correct horse\n");
    let pass_config = write(
        "pass.toml",
        &gateway_config(
            site,
            "gw-pass",
            &dir.path().join("outbox-pass"),
            &format!(
                "url = \"mqtt://127.0.0.1:{}\"\nusername = \"gw-pass\"\npassword_file = \"good-password\"\nreconnect_min_ms = 50",
                broker.password_port
            ),
        ),
    );
    let pass_agent = AgentProcess::start(&pass_config, &dir.path().join("pass.log"));
    let bad_config = write(
        "bad.toml",
        &gateway_config(
            site,
            "gw-bad",
            &dir.path().join("outbox-bad"),
            &format!(
                "url = \"mqtt://127.0.0.1:{}\"\nusername = \"gw-pass\"\npassword = \"wrong\"\nreconnect_min_ms = 50\nreconnect_max_ms = 200",
                broker.password_port
            ),
        ),
    );
    let bad_log = dir.path().join("bad.log");
    let bad_agent = AgentProcess::start(&bad_config, &bad_log);

    let per_gateway =
        |l: &HubLedger, gw: &str| l.findings.values().filter(|f| f.gateway == gw).count();
    let ledger = hub
        .wait_for("both authenticated gateways' findings", |l| {
            per_gateway(l, "gw-tls") >= expected.len()
                && per_gateway(l, "gw-pass") >= expected.len()
        })
        .await;
    assert_eq!(per_gateway(&ledger, "gw-tls"), expected.len());
    assert_eq!(per_gateway(&ledger, "gw-pass"), expected.len());
    assert_eq!(
        per_gateway(&ledger, "gw-bad"),
        0,
        "a refused login publishes nothing"
    );

    // The refused gateway keeps running and keeps its findings.
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        let log = std::fs::read_to_string(&bad_log).unwrap_or_default();
        if log.contains("mqtt link down") || log.contains("Connection refused") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal logged:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = bad_agent.terminate();
    assert!(status.success(), "{status:?}");
    let outbox = chitti_agent::outbox::Outbox::open(
        Box::new(chitti_agent::outbox::RedbEngine::open(&dir.path().join("outbox-bad")).unwrap()),
        1 << 30,
        false,
    )
    .unwrap();
    assert_eq!(
        outbox.status().depth as usize,
        expected.len(),
        "nothing lost while refused"
    );

    // kill -9: the broker publishes the gateway's Last Will (retained, online: false).
    hub.wait_for("gw-tls online", |l| {
        l.status_of("gw-tls").is_some_and(|s| s.online)
    })
    .await;
    tls_agent.kill9();
    hub.wait_for("gw-tls's Last Will", |l| {
        l.status_of("gw-tls").is_some_and(|s| !s.online)
    })
    .await;
    assert!(pass_agent.terminate().success());
}
