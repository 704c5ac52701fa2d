//! [`PostgresHa`]: a highly available Postgres of the test's own, run from the shipped
//! `deploy/postgres/patroni.yml` and `haproxy.cfg` (ports and folders swapped in):
//! one etcd, Patroni nodes (a primary and synchronous standbys), HAProxy in front.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser's password in the test cluster.
pub const PG_HA_PASSWORD: &str = "chitti-ha-superuser";
const REPLICATION_PASSWORD: &str = "chitti-ha-replication";
/// Where Debian's Postgres 15 server binaries are (the shipped `bin_dir`).
const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// One Patroni node.
pub struct PatroniNode {
    /// `pg-1`, `pg-2`, …
    pub name: String,
    /// Its Postgres port.
    pub pg_port: u16,
    /// Its REST API port (HAProxy's health check).
    pub rest_port: u16,
    dir: PathBuf,
    patroni: std::sync::Mutex<Option<Child>>,
}

impl PatroniNode {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The postmaster's pid, from its pid file.
    fn postmaster(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

/// etcd, Patroni nodes and HAProxy in a folder of their own under the system's temp
/// folder (readable by the `postgres` user, which runs Patroni when the test runs as
/// root: initdb refuses root). Everything is killed and the folder removed on drop.
pub struct PostgresHa {
    /// HAProxy's port: the current primary.
    pub port: u16,
    /// The nodes.
    pub nodes: Vec<PatroniNode>,
    dir: PathBuf,
    etcd: Child,
    haproxy: Child,
}

/// The `postgres` user's uid and gid when this process is root (else None: run as we are).
fn postgres_ids() -> Option<(u32, u32)> {
    if !nix::unistd::getuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres").ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// `GET path` on 127.0.0.1:port: the status code and body (None when nothing answers).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

fn wait_for(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut ok: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "{what}: not after {limit:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl PostgresHa {
    /// Starts etcd, `nodes` Patroni nodes (the first bootstraps, the others clone it)
    /// and HAProxy; returns once the leader and a synchronous standby are running and
    /// HAProxy leads to the leader.
    pub fn start(nodes: usize) -> Self {
        assert!(nodes >= 2, "a primary and at least one standby");
        let dir =
            std::env::temp_dir().join(format!("chitti-pgha-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let ids = postgres_ids();
        let etcd_port = crate::free_port();
        let peer_port = crate::free_port();
        let etcd_log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let etcd = Command::new("etcd")
            .args([
                "--name=e0",
                &format!("--data-dir={}", dir.join("etcd").display()),
                &format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                &format!("--initial-cluster=e0=http://127.0.0.1:{peer_port}"),
            ])
            .stdout(etcd_log.try_clone().unwrap())
            .stderr(etcd_log)
            .spawn()
            .expect("etcd (apt install etcd-server)");
        let nodes: Vec<PatroniNode> = (0..nodes)
            .map(|i| PatroniNode {
                name: format!("pg-{}", i + 1),
                pg_port: crate::free_port(),
                rest_port: crate::free_port(),
                dir: dir.join(format!("pg-{}", i + 1)),
                patroni: std::sync::Mutex::new(None),
            })
            .collect();
        let haproxy_port = crate::free_port();
        let haproxy_cfg = render_haproxy(haproxy_port, &nodes);
        std::fs::write(dir.join("haproxy.cfg"), haproxy_cfg).unwrap();
        let haproxy_log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let haproxy = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(dir.join("haproxy.cfg"))
            .stdout(haproxy_log.try_clone().unwrap())
            .stderr(haproxy_log)
            .spawn()
            .expect("haproxy (apt install haproxy)");
        for node in &nodes {
            std::fs::create_dir_all(&node.dir).unwrap();
            std::fs::write(
                node.dir.join("patroni.yml"),
                render_patroni(node, etcd_port),
            )
            .unwrap();
        }
        if let Some((uid, gid)) = ids {
            for entry in [dir.clone()].into_iter().chain(
                nodes
                    .iter()
                    .flat_map(|n| [n.dir.clone(), n.dir.join("patroni.yml")]),
            ) {
                std::os::unix::fs::chown(&entry, Some(uid), Some(gid)).unwrap();
            }
        }
        let ha = Self {
            port: haproxy_port,
            nodes,
            dir,
            etcd,
            haproxy,
        };
        ha.start_node(0);
        wait_for(
            "the first node leads",
            Duration::from_secs(60),
            || ha.log_tail(30),
            || ha.primary() == Some(0),
        );
        for i in 1..ha.nodes.len() {
            ha.start_node(i);
        }
        ha.wait_synchronous(Duration::from_secs(90));
        ha
    }

    /// Starts (or restarts) node `i`'s Patroni.
    pub fn start_node(&self, i: usize) {
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("patroni.log"))
            .unwrap();
        let mut command = Command::new("patroni");
        command
            .arg(node.dir.join("patroni.yml"))
            .env("HOME", &node.dir)
            .current_dir(&node.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some((uid, gid)) = postgres_ids() {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        *node.patroni.lock().unwrap() =
            Some(command.spawn().expect("patroni (apt install patroni)"));
    }

    /// Kills node `i` as a machine dies: Patroni and its postmaster with SIGKILL (the
    /// postmaster's children exit on their own once it is gone).
    pub fn kill(&self, i: usize) {
        let node = &self.nodes[i];
        if let Some(mut p) = node.patroni.lock().unwrap().take() {
            p.kill().ok();
            p.wait().ok();
        }
        if let Some(pid) = node.postmaster() {
            // A stale pid file names no process: ESRCH, nothing to do.
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .ok();
        }
    }

    /// The node whose Patroni answers 200 on `GET /primary`.
    pub fn primary(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| http_get(n.rest_port, "/primary").is_some_and(|(c, _)| c == 200))
    }

    /// Waits until a leader runs with a streaming synchronous standby (`GET /cluster`
    /// of a live node lists both) and HAProxy leads to the leader.
    pub fn wait_synchronous(&self, limit: Duration) {
        wait_for(
            "a leader with a synchronous standby",
            limit,
            || self.log_tail(30),
            || {
                let Some(leader) = self.primary() else {
                    return false;
                };
                let Some((200, cluster)) = http_get(self.nodes[leader].rest_port, "/cluster")
                else {
                    return false;
                };
                cluster.contains("\"role\": \"sync_standby\", \"state\": \"streaming\"")
                    || cluster.contains("\"role\": \"sync_standby\", \"state\": \"running\"")
            },
        );
    }

    /// A URL of database `db` through HAProxy.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{PG_HA_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// A URL of database `db` on node `i` itself, not through HAProxy.
    pub fn node_url(&self, i: usize, db: &str) -> String {
        format!(
            "postgres://postgres:{PG_HA_PASSWORD}@127.0.0.1:{}/{db}",
            self.nodes[i].pg_port
        )
    }

    /// Creates database `name` through HAProxy; its URL.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect through HAProxy");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the database");
        admin.close().await.ok();
        self.url(name)
    }

    /// The last `lines` lines of every log (etcd, each node, HAProxy).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        let mut logs = vec![self.dir.join("etcd.log"), self.dir.join("haproxy.log")];
        logs.extend(self.nodes.iter().map(|n| n.dir.join("patroni.log")));
        for path in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", path.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for PostgresHa {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        for p in [&mut self.haproxy, &mut self.etcd] {
            p.kill().ok();
            p.wait().ok();
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// The shipped `deploy/postgres/patroni.yml` for `node`.
fn render_patroni(node: &PatroniNode, etcd_port: u16) -> String {
    let shipped =
        std::fs::read_to_string(crate::workspace_root().join("deploy/postgres/patroni.yml"))
            .unwrap();
    let (pg, rest) = (node.pg_port, node.rest_port);
    let text = replace_all(
        &shipped,
        &[
            ("name: NODE_NAME", format!("name: {}", node.name)),
            ("0.0.0.0:8008", format!("127.0.0.1:{rest}")),
            ("NODE_HOST:8008", format!("127.0.0.1:{rest}")),
            ("0.0.0.0:5432", format!("127.0.0.1:{pg}")),
            ("NODE_HOST:5432", format!("127.0.0.1:{pg}")),
            (
                "[etcd-1:2379, etcd-2:2379, etcd-3:2379]",
                format!("[127.0.0.1:{etcd_port}]"),
            ),
            (
                "/var/lib/postgresql/15/chitti",
                node.data_dir().display().to_string(),
            ),
            (
                "/var/lib/postgresql/.pgpass-chitti",
                node.dir.join("pgpass").display().to_string(),
            ),
            (
                "unix_socket_directories: /var/run/postgresql",
                format!("unix_socket_directories: {}", node.dir.display()),
            ),
            ("SUPERUSER_PASSWORD", PG_HA_PASSWORD.to_string()),
            ("REPLICATION_PASSWORD", REPLICATION_PASSWORD.to_string()),
        ],
    );
    assert!(text.contains(BIN_DIR), "the shipped bin_dir changed");
    let settings: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    for placeholder in ["NODE_", "etcd-1", "/var/", "_PASSWORD"] {
        assert!(
            !settings.contains(placeholder),
            "{placeholder} left in\n{text}"
        );
    }
    text
}

/// The shipped `deploy/postgres/haproxy.cfg` on `port`, one server line per node.
fn render_haproxy(port: u16, nodes: &[PatroniNode]) -> String {
    let shipped =
        std::fs::read_to_string(crate::workspace_root().join("deploy/postgres/haproxy.cfg"))
            .unwrap();
    let servers: String = nodes
        .iter()
        .map(|n| {
            format!(
                "  server {} 127.0.0.1:{} check port {}\n",
                n.name, n.pg_port, n.rest_port
            )
        })
        .collect();
    let mut out = String::new();
    for line in shipped.lines() {
        if line.trim_start().starts_with("server pg-") {
            continue;
        }
        if line.trim() == "bind *:5000" {
            out.push_str(&format!("  bind 127.0.0.1:{port}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(
        out.contains(&format!("bind 127.0.0.1:{port}")),
        "the shipped bind changed"
    );
    out.push_str(&servers);
    out
}

fn replace_all(text: &str, pairs: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in pairs {
        assert!(out.contains(from), "{from} not in the shipped file");
        out = out.replace(from, to);
    }
    out
}
