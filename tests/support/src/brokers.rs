//! Brokers of the test's own on free ports, killed on drop: [`Mosquitto`] and
//! [`NatsServer`] (the machine's binaries, which `tests/run-all.sh` installs).

use crate::{free_port, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A Mosquitto of the test's own on a free port, its configuration `extra` lines after
/// the listener; killed (SIGKILL) on drop. Its log goes to a file (and to stderr when
/// `MOSQUITTO_LOG` is set).
pub struct Mosquitto {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
}

impl Mosquitto {
    /// Starts `mosquitto -c <dir>/mosquitto-<port>.conf` on a free port; returns once
    /// it logs "running".
    pub fn start(dir: &Path, extra: &str) -> Self {
        Self::start_on(free_port(), dir, extra)
    }

    /// The same on `port` (a broker that comes back where it was).
    pub fn start_on(port: u16, dir: &Path, extra: &str) -> Self {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        let log = dir.join(format!("mosquitto-{port}.log"));
        // `user root`: a root Mosquitto would otherwise drop to the `mosquitto` user,
        // which cannot read the test's private temporary directory.
        std::fs::write(
            &conf,
            format!(
                "user root\nper_listener_settings false\npersistence false\n\
                 log_dest stderr\nlog_type all\nlistener {port} 127.0.0.1\n{extra}\n"
            ),
        )
        .expect("write mosquitto.conf");
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the mosquitto binary (tests/run-all.sh installs it)");
        // Mosquitto says "… running" once its listener is open; its log is copied to a
        // file from then on (the pipe is drained so it never blocks).
        use std::io::{BufRead, Write};
        let echo = std::env::var_os("MOSQUITTO_LOG").is_some();
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut file = std::fs::File::create(&log).expect("mosquitto log");
        for line in lines.by_ref() {
            let line = line.expect("mosquitto log line");
            let _ = writeln!(file, "{line}");
            if line.contains(" running") {
                break;
            }
        }
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if echo {
                    eprintln!("mosquitto: {line}");
                }
            }
        });
        let mosquitto = Self { child, port, log };
        assert!(
            mosquitto.log_text().contains(" running"),
            "mosquitto did not start:\n{}",
            mosquitto.log_text()
        );
        mosquitto
    }

    /// Stops it now (SIGKILL: a crash, no goodbye to clients).
    pub fn kill(self) {}

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A nats-server of the test's own (MQTT and JetStream on), from a configuration text;
/// killed on drop.
pub struct NatsServer {
    child: std::process::Child,
    conf: PathBuf,
    store: PathBuf,
    /// Its NATS client port on 127.0.0.1.
    pub port: u16,
    /// Its MQTT port on 127.0.0.1.
    pub mqtt_port: u16,
    /// Its log file.
    pub log: PathBuf,
}

impl NatsServer {
    /// Starts `nats-server -c <dir>/nats.conf` with `config`, in which `NATS_PORT`,
    /// `MQTT_PORT` and `STORE_DIR` are replaced by free ports and a folder in `dir`;
    /// returns once it says it is ready.
    pub fn start(dir: &Path, config: &str) -> Self {
        let (port, mqtt_port) = (free_port(), free_port());
        let store = dir.join("nats-store");
        let conf = dir.join("nats.conf");
        let log = dir.join("nats.log");
        write_nats_config(&conf, config, port, mqtt_port, &store);
        let server = Self {
            child: spawn_nats(&conf, &log),
            conf,
            store,
            port,
            mqtt_port,
            log,
        };
        assert!(
            server.log_text().contains("Server is ready"),
            "nats-server did not start:\n{}",
            server.log_text()
        );
        server
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Replaces its configuration with `config` (same placeholders as
    /// [`NatsServer::start`]) and has it reloaded (SIGHUP); returns once it says so.
    pub fn reconfigure(&self, config: &str) {
        let reloads = || {
            self.log_text()
                .matches("Reloaded server configuration")
                .count()
        };
        let before = reloads();
        write_nats_config(&self.conf, config, self.port, self.mqtt_port, &self.store);
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success(), "SIGHUP to nats-server");
        let started = std::time::Instant::now();
        while reloads() == before {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "nats-server did not reload:\n{}",
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `config` to `conf` with its placeholders (`NATS_PORT`, `MQTT_PORT`,
/// `STORE_DIR`) filled in.
fn write_nats_config(conf: &Path, config: &str, port: u16, mqtt_port: u16, store: &Path) {
    std::fs::write(
        conf,
        config
            .replace("NATS_PORT", &port.to_string())
            .replace("MQTT_PORT", &mqtt_port.to_string())
            .replace("STORE_DIR", &store.display().to_string()),
    )
    .expect("write nats.conf");
}

/// Starts `nats-server -c conf`, its log appended to `log`; returns once it says it is
/// ready (or has exited: the caller checks the log).
fn spawn_nats(conf: &Path, log: &Path) -> std::process::Child {
    use std::io::{BufRead, Write};
    let mut child = Command::new("nats-server")
        .arg("-c")
        .arg(conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the nats-server binary (tests/run-all.sh installs it)");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("nats log");
    for line in lines.by_ref() {
        let line = line.expect("nats log line");
        let _ = writeln!(file, "{line}");
        if line.contains("Server is ready") {
            break;
        }
    }
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
        }
    });
    child
}

/// One MQTT 3.1.1 CONNECT (clean session, as `login` when given) to 127.0.0.1:`port`:
/// `Ok` on a CONNACK that accepts it, then DISCONNECT.
fn mqtt_connect(port: u16, client_id: &str, login: Option<(&str, &str)>) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let field = |body: &mut Vec<u8>, bytes: &[u8]| {
        body.extend_from_slice(
            &u16::try_from(bytes.len())
                .expect("short field")
                .to_be_bytes(),
        );
        body.extend_from_slice(bytes);
    };
    // Protocol name "MQTT", level 4, flags (clean session; user name and password when
    // given), keep-alive 10 s; then the client id, user name and password.
    let flags = if login.is_some() { 0xC2 } else { 0x02 };
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 10];
    field(&mut body, client_id.as_bytes());
    if let Some((user, password)) = login {
        field(&mut body, user.as_bytes());
        field(&mut body, password.as_bytes());
    }
    let mut packet = vec![0x10, u8::try_from(body.len()).expect("short packet")];
    packet.extend_from_slice(&body);
    stream.write_all(&packet).map_err(|e| e.to_string())?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).map_err(|e| e.to_string())?;
    if connack[0] != 0x20 || connack[3] != 0 {
        return Err(format!("CONNACK {connack:?}"));
    }
    let _ = stream.write_all(&[0xE0, 0]);
    Ok(())
}

/// The ports of one node of a [`NatsCluster`] on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct NatsNodePorts {
    /// NATS clients.
    pub client: u16,
    /// Cluster routes.
    pub route: u16,
    /// MQTT clients.
    pub mqtt: u16,
}

/// A NATS cluster of the test's own: `size` nodes on 127.0.0.1 routed to each other,
/// JetStream (file store in the test's folder) and MQTT on every node, as a fleet
/// would run it (DESIGN §6). Nodes can be killed (SIGKILL) and started again on the
/// same ports and store; all are killed on drop.
pub struct NatsCluster {
    dir: PathBuf,
    ports: Vec<NatsNodePorts>,
    configs: Vec<String>,
    probe_login: Option<(String, String)>,
    nodes: Vec<Option<std::process::Child>>,
}

/// What a [`NatsCluster`] node's configuration is made from.
#[derive(Debug, Clone)]
pub struct NatsNode<'a> {
    /// Its index (0-based); its name is `n{index}`.
    pub index: usize,
    /// Its ports.
    pub ports: NatsNodePorts,
    /// Every node's route address, `nats-route://127.0.0.1:<port>`.
    pub routes: &'a [String],
    /// Its JetStream store folder.
    pub store: &'a Path,
}

impl NatsCluster {
    /// Starts the nodes with a plain configuration (no authorization); returns once
    /// every node's MQTT listener accepts a connection (JetStream has a leader and the
    /// MQTT streams exist: before that, nodes refuse MQTT clients).
    pub fn start(dir: &Path, size: usize) -> Self {
        Self::start_with(dir, size, None, |node| {
            format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{client}\n\
                 jetstream {{ store_dir: \"{store}\" }}\n\
                 cluster {{ name: chitti-test, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n\
                 mqtt {{ listen: 127.0.0.1:{mqtt} }}\n",
                i = node.index,
                client = node.ports.client,
                route = node.ports.route,
                mqtt = node.ports.mqtt,
                store = node.store.display(),
                routes = node.routes.join(", "),
            )
        })
    }

    /// Starts the nodes with the configuration `render` makes for each (a shipped
    /// file with this test's ports, say); returns as [`NatsCluster::start`] does, its
    /// MQTT probe logging in as `probe_login` (user, password) when the configuration
    /// wants a login.
    pub fn start_with(
        dir: &Path,
        size: usize,
        probe_login: Option<(&str, &str)>,
        render: impl Fn(&NatsNode) -> String,
    ) -> Self {
        // Ports are picked free and bound moments later, when another test may have
        // taken one: such a start is abandoned and made again on new ports (each try
        // in its own folder, so no node remembers peers of an abandoned cluster).
        for attempt in 0..5 {
            let home = dir.join(format!("nats-cluster-{attempt}"));
            std::fs::create_dir_all(&home).expect("the cluster's folder");
            let ports: Vec<NatsNodePorts> = (0..size)
                .map(|_| NatsNodePorts {
                    client: free_port(),
                    route: free_port(),
                    mqtt: free_port(),
                })
                .collect();
            let routes: Vec<String> = ports
                .iter()
                .map(|o| format!("nats-route://127.0.0.1:{}", o.route))
                .collect();
            let configs = (0..size)
                .map(|index| {
                    render(&NatsNode {
                        index,
                        ports: ports[index],
                        routes: &routes,
                        store: &home.join(format!("nats-n{index}-store")),
                    })
                })
                .collect();
            let mut cluster = Self {
                dir: home,
                ports,
                configs,
                probe_login: probe_login.map(|(u, p)| (u.to_owned(), p.to_owned())),
                nodes: (0..size).map(|_| None).collect(),
            };
            let mut taken = false;
            for i in 0..size {
                if let Err(log) = cluster.try_start_node(i) {
                    assert!(
                        log.contains("address already in use"),
                        "nats node {i} did not start:\n{log}"
                    );
                    taken = true;
                    break;
                }
            }
            if taken {
                continue; // dropping `cluster` kills what had started
            }
            let mut ready = Ok(());
            for i in 0..size {
                ready = cluster.until_mqtt(i);
                if ready.is_err() {
                    break;
                }
            }
            match ready {
                Ok(()) => return cluster,
                // A route port taken after the node said it was ready: it exited.
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("{log}"),
            }
        }
        panic!("no free ports for a NATS cluster in five tries");
    }

    /// Waits until node `i` accepts an MQTT connection (retried every 200 ms; panics
    /// with the logs after two minutes, or when the node exited).
    pub fn wait_for_mqtt(&mut self, i: usize) {
        if let Err(why) = self.until_mqtt(i) {
            panic!("{why}");
        }
    }

    /// [`NatsCluster::wait_for_mqtt`], with what went wrong as an `Err` (the node's log
    /// when it exited).
    fn until_mqtt(&mut self, i: usize) -> Result<(), String> {
        let started = std::time::Instant::now();
        loop {
            let login = self
                .probe_login
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.as_str()));
            let why = match mqtt_connect(self.ports[i].mqtt, &format!("chitti-probe-{i}"), login) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            let exited = self.nodes[i]
                .as_mut()
                .is_none_or(|child| !matches!(child.try_wait(), Ok(None)));
            if exited {
                return Err(format!("nats node {i} exited:\n{}", self.node_log(i)));
            }
            if started.elapsed() > std::time::Duration::from_secs(120) {
                return Err(format!(
                    "nats node {i} refuses MQTT clients ({why})\n{}",
                    self.log_tail(40)
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Starts node `i` (again), on its ports and store.
    pub fn start_node(&mut self, i: usize) {
        if let Err(log) = self.try_start_node(i) {
            panic!("nats node {i} did not start:\n{log}");
        }
    }

    /// Starts node `i`; its log when it did not come up.
    fn try_start_node(&mut self, i: usize) -> Result<(), String> {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        let conf = self.dir.join(format!("nats-n{i}.conf"));
        std::fs::write(&conf, &self.configs[i]).expect("write the node's configuration");
        let before = self.node_log(i).matches("Server is ready").count();
        let child = spawn_nats(&conf, &self.log(i));
        self.nodes[i] = Some(child);
        let log = self.node_log(i);
        if log.matches("Server is ready").count() > before {
            Ok(())
        } else {
            self.kill(i);
            Err(log)
        }
    }

    /// Kills node `i` (SIGKILL: a crash, no goodbye).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Each node's ports.
    pub fn ports(&self) -> &[NatsNodePorts] {
        &self.ports
    }

    /// `nats://127.0.0.1:<port>` of every node.
    pub fn nats_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{}", p.client))
            .collect()
    }

    /// `mqtt://127.0.0.1:<port>` of every node.
    pub fn mqtt_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("mqtt://127.0.0.1:{}", p.mqtt))
            .collect()
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("nats-n{i}.log"))
    }

    /// Node `i`'s log so far (every start of it).
    pub fn node_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log(i)).unwrap_or_default()
    }

    /// The last `lines` lines of every node's log, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        (0..self.ports.len())
            .map(|i| {
                let log = self.node_log(i);
                let all: Vec<&str> = log.lines().collect();
                let tail = all[all.len().saturating_sub(lines)..].join("\n");
                format!("--- nats n{i} ---\n{tail}\n")
            })
            .collect()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// One gateway's login as the shipped NATS configurations spell it (`SITE/GATEWAY`
/// with its MQTT password, from `chitti-hub gateway add`).
#[derive(Debug, Clone)]
pub struct NatsGatewayLogin {
    /// Its site id.
    pub site: String,
    /// Its gateway id.
    pub gateway: String,
    /// Its MQTT password.
    pub password: String,
}

impl NatsGatewayLogin {
    /// Gateway `gateway` of `site` with `password`.
    pub fn new(site: &str, gateway: &str, password: &str) -> Self {
        Self {
            site: site.to_owned(),
            gateway: gateway.to_owned(),
            password: password.to_owned(),
        }
    }
}

/// A shipped NATS configuration (`deploy/brokers/nats/…`) with its gateway block (the
/// lines between `# BEGIN gateway` and `# END gateway`) copied once per gateway, as an
/// operator would.
pub fn with_nats_gateways(shipped: &str, gateways: &[NatsGatewayLogin]) -> String {
    let begin = shipped.find("    # BEGIN gateway").expect("BEGIN gateway");
    let end = shipped.find("    # END gateway").expect("END gateway");
    let template: String = shipped[begin..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let blocks: String = gateways
        .iter()
        .map(|g| {
            template
                .replace("SITE", &g.site)
                .replace("GATEWAY", &g.gateway)
                .replace("PASSWORD", &g.password)
        })
        .collect();
    format!("{}{blocks}{}", &shipped[..begin], &shipped[end..])
}

/// The shipped cluster configuration (`deploy/brokers/nats/cluster.conf`) for `node`,
/// with this cluster's ports and folders, the hub's password, and its gateway block
/// copied once per gateway.
pub fn shipped_nats_node_config(
    node: &NatsNode,
    gateways: &[NatsGatewayLogin],
    hub_password: &str,
) -> String {
    let shipped =
        std::fs::read_to_string(workspace_root().join("deploy/brokers/nats/cluster.conf"))
            .expect("deploy/brokers/nats/cluster.conf");
    let routes = "[nats-route://nats-1:6222, nats-route://nats-2:6222, nats-route://nats-3:6222]";
    assert!(shipped.contains(routes), "the shipped routes line changed");
    let text = with_nats_gateways(&shipped, gateways)
        .replace(
            "server_name: NODE",
            &format!("server_name: n{}", node.index),
        )
        .replace(
            "listen: 0.0.0.0:4222",
            &format!("listen: 127.0.0.1:{}", node.ports.client),
        )
        .replace("0.0.0.0:1883", &format!("127.0.0.1:{}", node.ports.mqtt))
        .replace("0.0.0.0:6222", &format!("127.0.0.1:{}", node.ports.route))
        .replace(routes, &format!("[{}]", node.routes.join(", ")))
        .replace("/var/lib/nats", &node.store.display().to_string())
        .replace("HUB_PASSWORD", hub_password);
    let settings: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    for placeholder in ["NODE", "0.0.0.0", "HUB_PASSWORD", "SITE/", "/var/lib"] {
        assert!(
            !settings.contains(placeholder),
            "{placeholder} left in\n{text}"
        );
    }
    text
}
