//! `chitti-hub demo` as a real process, the way the README's first command runs it:
//! within a bounded wait the API shows findings of every severity level, a cool
//! exception, the drone dock's findings equal to the thermal core's analysis of its
//! files, the seeded site hierarchy and an offline gateway; SIGINT stops it with
//! status 0, and a rerun on the same data resumes it (same admin, no duplicates,
//! nothing lost). A taken address given with a flag is one clear error.

use chitti_agent::config::AgentConfigFile;
use chitti_common::inspection::{inspect_file, InspectionOptions};
use chitti_e2e::{binary, Process, HANG_GUARD};
use serde_json::Value;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running demo and what its block printed.
struct Demo {
    process: Process,
    http: SocketAddr,
    password: String,
    block: String,
}

impl Demo {
    /// SIGINT, and the exit status.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.process.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .expect("signal the demo");
        self.process.child.wait().expect("wait for the demo")
    }
}

/// Starts `chitti-hub demo` on ports of its own and reads its block.
fn start_demo(data: &Path, log: &Path) -> Demo {
    let mut child = Command::new(binary("chitti-hub"))
        .args(["demo", "--data"])
        .arg(data)
        .args(["--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
        .args(["--gateways", "2", "--speed", "40"])
        .env("CHITTI_LOG", "warn,chitti_hub::demo=info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("demo log"))
        .spawn()
        .expect("start chitti-hub demo");
    let stdout = child.stdout.take().expect("demo stdout");
    let process = Process {
        child,
        log: log.to_path_buf(),
    };
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut block = String::new();
    for line in lines.by_ref() {
        let line = line.expect("read the demo's output");
        block.push_str(&line);
        block.push('\n');
        if line.contains("Ctrl-C stops everything") {
            break;
        }
    }
    // Keep the pipe open and drained for whatever comes later.
    std::thread::spawn(move || lines.for_each(drop));
    // "  LABEL   VALUE   (note)": the first word after the label.
    let field = |label: &str| -> String {
        block
            .lines()
            .find_map(|l| {
                let rest = l.trim_start().strip_prefix(label)?;
                rest.starts_with("  ").then(|| {
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
            })
            .unwrap_or_else(|| {
                panic!(
                    "no {label:?} line in the block:\n{block}\nlog:\n{}",
                    process.log_text()
                )
            })
    };
    let api = field("API");
    let http = api
        .strip_prefix("http://")
        .and_then(|a| a.strip_suffix("/api/v1"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("API line {api:?}"));
    let password = field("password");
    Demo {
        process,
        http,
        password,
        block,
    }
}

/// Polls `check` until it gives `Some` (every 200 ms, up to [`HANG_GUARD`]).
fn wait_for<T>(
    what: &str,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn login(http: SocketAddr, password: &str) -> Result<String, ureq::Error> {
    let text = ureq::post(format!("http://{http}/api/v1/auth/login"))
        .header("content-type", "application/json")
        .send(serde_json::json!({ "username": "admin", "password": password }).to_string())?
        .body_mut()
        .read_to_string()?;
    let v: Value = serde_json::from_str(&text).expect("login answer");
    Ok(v["token"].as_str().expect("token").to_string())
}

fn get(http: SocketAddr, token: &str, path: &str) -> Value {
    let text = ureq::get(format!("http://{http}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("answer");
    serde_json::from_str(&text).expect("JSON")
}

/// Every finding the API lists (with `query`, e.g. `gateway=x&`), page after page.
fn findings(http: SocketAddr, token: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = get(
            http,
            token,
            &format!("/api/v1/findings?{query}limit=1000{after}"),
        );
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => return out,
        }
    }
}

/// Per file of the drone dock's folder (by sha256): the max °C of each finding the
/// agent must report, from the thermal core's own analysis with the agent's settings.
fn expected_drone_findings(data: &Path) -> Vec<(String, Vec<f64>)> {
    let dir = data.join("agents/drone-dock-1");
    let config = chitti_agent::config::AgentConfig::load(&dir.join("agent.toml"))
        .expect("the drone dock's configuration");
    let camera = &config.cameras[0];
    let table = config
        .severity_catalog()
        .unwrap()
        .get(config.table_for(camera))
        .cloned()
        .unwrap();
    let options = InspectionOptions {
        table,
        analysis: chitti_common::analysis::AnalysisOptions {
            threshold_c: config.analysis.threshold_c,
            min_area_px: config.analysis.min_area_px,
            max_hotspots: config.analysis.max_hotspots,
            ..Default::default()
        },
        limits: Default::default(),
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join("inbox")).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() || path.extension().is_none_or(|e| e != "jpg") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let inspection = inspect_file(&bytes, &options).expect("a FLIR file");
        let mut max_c: Vec<f64> = inspection.frames[0]
            .regions
            .iter()
            .map(|r| r.hotspot.max_c)
            .collect();
        max_c.sort_by(f64::total_cmp);
        out.push((chitti_common::inspection::sha256_hex(&bytes), max_c));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn the_demo_shows_every_kind_of_finding_stops_cleanly_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let started = Instant::now();
    let mut demo = start_demo(&data, &dir.path().join("demo.log"));
    let http = demo.http;
    let log = demo.process.log.clone();
    let block = demo.block.clone();
    let context = || {
        format!(
            "block:\n{block}\nlog:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    assert!(demo.block.contains("/api/docs"), "{}", context());
    let token = login(http, &demo.password).expect("the printed admin password signs in");

    // The seeded hierarchy: bays with three-phase equipment, towers with theirs.
    let substation = get(http, &token, "/api/v1/sites/riverside-220kv");
    assert_eq!(substation["kind"], "substation");
    let bays = substation["structures"].as_array().unwrap();
    assert_eq!(bays.len(), 4);
    for bay in bays {
        assert_eq!(bay["kind"], "bay");
        let assets = bay["assets"].as_array().unwrap();
        assert_eq!(assets.len(), 12, "{bay}");
        for class in [
            "circuit-breaker",
            "current-transformer",
            "bushing",
            "disconnector",
        ] {
            let phases: Vec<&str> = assets
                .iter()
                .filter(|a| a["component_class"] == class)
                .map(|a| a["phase"].as_str().unwrap())
                .collect();
            assert_eq!(phases.len(), 3, "{class} in {}", bay["id"]);
            for p in ["A", "B", "C"] {
                assert!(phases.contains(&p), "{class} phase {p} in {}", bay["id"]);
            }
        }
    }
    let line = get(http, &token, "/api/v1/sites/northfield-line");
    assert_eq!(line["kind"], "line");
    let towers = line["structures"].as_array().unwrap();
    assert_eq!(towers.len(), 4);
    assert!(towers
        .iter()
        .all(|t| t["kind"] == "tower" && t["assets"].as_array().unwrap().len() == 6));

    // Every level, a cool exception, the drone's files, an offline gateway.
    let expected = expected_drone_findings(&data);
    assert!(
        expected.iter().any(|(_, v)| !v.is_empty()),
        "the drone's folder holds hotspots"
    );
    let expected_n: usize = expected.iter().map(|(_, v)| v.len()).sum();
    wait_for(
        "findings of levels 1, 2 and 3 and a cool exception",
        context,
        || {
            let all = findings(http, &token, "site=riverside-220kv&");
            let has = |level: u64| all.iter().any(|f| f["severity"]["level"] == level);
            let cool = all.iter().any(|f| f["severity"]["cool_exception"] == true);
            (has(1) && has(2) && has(3) && cool).then_some(())
        },
    );
    // gw-01's bushings camera runs the shipped detector (tests/run-all.sh fetches the
    // ONNX Runtime library): a bushing named by the model, rated against its loaded
    // sibling, phase against phase.
    let compared = wait_for(
        "a detector-driven phase comparison from gw-01's bushings",
        context,
        || {
            findings(http, &token, "gateway=gw-01&")
                .into_iter()
                .find(|f| {
                    f["camera"] == "bay-01-bushings"
                        && f["component"]["class"] == "bushing"
                        && f["severity"]["table"] == "neta-similar"
                        && f["severity"]["level"].as_u64() >= Some(2)
                })
        },
    );
    let reference = compared["reference"]["similar"]["label"].as_str().unwrap();
    assert!(reference.starts_with("bushing #"), "{compared}");
    assert!(
        demo.block.contains("the shipped INT8 component detector"),
        "{}",
        context()
    );
    let drone = wait_for("every finding of the drone's files", context, || {
        let d = findings(http, &token, "gateway=drone-dock-1&");
        (d.len() >= expected_n).then_some(d)
    });
    let mut got: Vec<(String, Vec<f64>)> = expected
        .iter()
        .map(|(sha, _)| {
            let mut v: Vec<f64> = drone
                .iter()
                .filter(|f| f["evidence"]["sha256"] == sha.as_str())
                .map(|f| f["hotspot"]["max_c"].as_f64().unwrap())
                .collect();
            v.sort_by(f64::total_cmp);
            (sha.clone(), v)
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), expected.len());
    for ((sha, want), (_, have)) in expected.iter().zip(&got) {
        assert_eq!(have.len(), want.len(), "findings of {sha}");
        for (w, h) in want.iter().zip(have) {
            assert!(
                (w - h).abs() < 0.01,
                "{sha}: {h} °C reported, {w} °C analysed"
            );
        }
    }
    assert_eq!(drone.len(), expected_n, "each drone finding once");
    let gateways = wait_for("the drone dock offline, the others online", context, || {
        let g = get(http, &token, "/api/v1/gateways");
        let items = g["items"].as_array().unwrap().clone();
        let online = |id: &str| {
            items
                .iter()
                .find(|g| g["gateway"] == id)
                .map(|g| g["online"] == true)
        };
        (online("drone-dock-1") == Some(false)
            && online("gw-01") == Some(true)
            && online("gw-02") == Some(true))
        .then_some(items)
    });
    assert_eq!(gateways.len(), 3);
    // Each online agent's `/status` says what its component detector is doing: gw-01
    // runs the shipped model, gw-02 none, and the hub passes that on.
    let detector = |id: &str| {
        gateways
            .iter()
            .find(|g| g["gateway"] == id)
            .map(|g| g["detector"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        detector("gw-01").as_deref(),
        Some("ok (chitti-components 1.0.0)"),
        "{gateways:?}"
    );
    assert_eq!(detector("gw-02").as_deref(), Some("disabled"));
    // The demo's gateways take configuration from the hub: each reported what it runs.
    for g in &gateways {
        let path = format!(
            "/api/v1/gateways/{}/{}/config",
            g["site"].as_str().unwrap(),
            g["gateway"].as_str().unwrap()
        );
        let reported = wait_for("the gateway's configuration reported", context, || {
            let c = get(http, &token, &path);
            (c["reported"]["status"] == "applied").then_some(c)
        });
        assert!(
            reported["reported"]["config"]
                .as_str()
                .is_some_and(|t| t.contains("[identity]")),
            "{reported}"
        );
    }
    eprintln!("first run: everything seen after {:?}", started.elapsed());

    let count_before = findings(http, &token, "").len();
    let status = demo.interrupt();
    assert!(status.success(), "exit status {status:?}\n{}", context());

    // The rerun resumes: same admin, same sites and gateways, nothing lost.
    let mut again = start_demo(&data, &dir.path().join("demo2.log"));
    assert_eq!(again.password, demo.password, "the same admin password");
    let token = login(again.http, &again.password).expect("the admin signs in again");
    let sites = get(again.http, &token, "/api/v1/sites");
    let ids: Vec<&str> = sites["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["northfield-line", "riverside-220kv"]);
    let detail = get(again.http, &token, "/api/v1/sites/riverside-220kv");
    assert_eq!(detail["structures"].as_array().unwrap().len(), 4);
    let gateways = get(again.http, &token, "/api/v1/gateways");
    assert_eq!(gateways["items"].as_array().unwrap().len(), 3);
    let users = get(again.http, &token, "/api/v1/users");
    assert_eq!(users["items"].as_array().map_or(0, Vec::len), 1, "{users}");
    let count_after = findings(again.http, &token, "").len();
    assert!(
        count_after >= count_before,
        "{count_after} findings after the restart, {count_before} before"
    );
    // The drone's files were analysed once: its findings are not doubled.
    assert_eq!(
        findings(again.http, &token, "gateway=drone-dock-1&").len(),
        expected_n
    );
    let status = again.interrupt();
    assert!(status.success(), "exit status of the rerun {status:?}");
    eprintln!("whole test: {:?}", started.elapsed());
}

#[test]
fn a_taken_address_given_with_a_flag_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    for (flag, other) in [("--http", "--mqtt"), ("--mqtt", "--http")] {
        let data = dir.path().join(flag.trim_start_matches('-'));
        let out = Command::new(binary("chitti-hub"))
            .args(["demo", "--data"])
            .arg(&data)
            .args([flag, &taken, other, "127.0.0.1:0"])
            .output()
            .expect("run chitti-hub demo");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(
            lines[0].contains(&taken) && lines[0].contains(flag),
            "names the address and {flag}: {stderr}"
        );
        assert!(
            !data.join("chitti.db").exists(),
            "nothing written before the check"
        );
    }
}
