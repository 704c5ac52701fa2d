//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`, `fantoccini`) against the real `chitti-hub` binary.
//!
//! - An operator signs in; an alert raised by ingest — a real agent's findings over the
//!   embedded MQTT broker — appears in the open queue without a reload, highlighted and
//!   announced; it is bulk-acknowledged, opened with the keyboard, and its audit trail
//!   names the operator; the thermal viewer's °C under the cursor equals the API's
//!   temperature grid at that pixel; FLIR files uploaded on the upload page show their
//!   findings, a non-FLIR file its reason.
//! - A viewer sees no action buttons anywhere, and the API refuses its POST with 403.
//!
//! Every page is saved as a screenshot under `target/screenshots/` (1280×800 and, for
//! the queue and the alert, 800×1280). With `CHITTI_DOCS_SCREENSHOTS=1` the overview and
//! the alert page are also written to `hub/docs/screenshots/`, the README's pictures.

use chitti_e2e::*;
use fantoccini::actions::{InputSource, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A chromedriver of this test's own with one headless Chromium session.
struct Chrome {
    client: Client,
    driver: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Chrome {
    async fn start(width: u32, height: u32) -> Self {
        let mut driver = std::process::Command::new("/usr/bin/chromedriver")
            .arg("--port=0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start /usr/bin/chromedriver (Debian package chromium-driver)");
        // "ChromeDriver was started successfully on port 37699."
        let mut lines = std::io::BufReader::new(driver.stdout.take().expect("stdout")).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("chromedriver exited before it listened")
                .expect("read chromedriver");
            if let Some(rest) = line.split(" on port ").nth(1) {
                if line.contains("started successfully") {
                    break rest.trim_end_matches('.').trim().to_string();
                }
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ]
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(HANG_GUARD)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                // What the page showed, for whoever reads the failure.
                self.screenshot("failure").await;
                let source = self.client.source().await.unwrap_or_default();
                std::fs::write(screenshot_dir().join("failure.html"), &source).unwrap();
                panic!("no {css}: {e} (page in target/screenshots/failure.html)")
            }
        }
    }

    /// Clicks the element `css` names, found again when the page replaced it between
    /// finding and clicking (a live update re-renders rows: a stale element).
    async fn click(&self, css: &str) {
        let started = std::time::Instant::now();
        loop {
            match self.wait_for(css).await.click().await {
                Ok(()) => return,
                Err(e) if format!("{e:?}").contains("StaleElementReference") => {
                    assert!(started.elapsed() < HANG_GUARD, "{css} stayed stale");
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find")
            .len()
    }

    async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.expect("text")
    }

    /// An element's `textContent` (what is there, not how CSS shows it).
    async fn content(&self, css: &str) -> String {
        self.wait_for(css).await;
        self.js(
            "return document.querySelector(arguments[0]).textContent;",
            vec![json!(css)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.expect("script")
    }

    /// Saves the page as `target/screenshots/{name}.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Saves the page as `target/screenshots/{name}.png` and, when
    /// `CHITTI_DOCS_SCREENSHOTS=1`, as the README's `hub/docs/screenshots/{docs}.png`
    /// (off by default so a test run leaves the checkout as it was).
    async fn screenshot_for_docs(&self, name: &str, docs: &str) {
        // The top of the page: what a reader of the README meets first.
        self.js("window.scrollTo(0, 0)", vec![]).await;
        self.screenshot(name).await;
        if std::env::var("CHITTI_DOCS_SCREENSHOTS").as_deref() == Ok("1") {
            let png = self.client.screenshot().await.expect("screenshot");
            let dir = workspace_root().join("hub/docs/screenshots");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{docs}.png")), png).unwrap();
        }
    }

    async fn sign_in(&self, http: SocketAddr, user: &str, password: &str, then: &str) {
        self.goto(&format!("http://{http}{then}")).await;
        // Not signed in: the page sent us to the sign-in form, which brings us back.
        self.wait_for("#login-form").await;
        let url = self.client.current_url().await.unwrap();
        assert_eq!(url.path(), "/login", "{url}");
        self.wait_for("#username")
            .await
            .send_keys(user)
            .await
            .unwrap();
        self.wait_for("#password")
            .await
            .send_keys(password)
            .await
            .unwrap();
        self.wait_for("#login-submit").await.click().await.unwrap();
        self.wait_for("#user-name").await;
        assert_eq!(self.text("#user-name").await, user);
    }
}

fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("screenshots")
}

/// A hub on fresh data, with a site (enrolled gateway `north-yard/gw-1`) and users.
struct Hub {
    dir: tempfile::TempDir,
    process: Option<Process>,
    addrs: HubAddrs,
}

const PASSWORD: &str = "a long enough password";

fn start_hub_with_users(users: &[(&str, &str)]) -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let out = dir.path().join("gw1").display().to_string();
    hub_command(&[
        "gateway",
        "add",
        "--data",
        &data,
        "--site",
        "north-yard",
        "--gateway",
        "gw-1",
        "--out",
        &out,
    ]);
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    for (name, role) in users {
        hub_command(&[
            "user",
            "add",
            "--data",
            &data,
            "--username",
            name,
            "--role",
            role,
            "--password-file",
            &password_file.display().to_string(),
        ]);
    }
    let (process, addrs) = start_hub(
        &[
            "--data",
            &data,
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
        &dir.path().join("hub.log"),
    );
    Hub {
        dir,
        process: Some(process),
        addrs,
    }
}

impl Hub {
    fn log(&self) -> String {
        self.process
            .as_ref()
            .map(Process::log_text)
            .unwrap_or_default()
    }
}

/// `POST /api/v1/uploads` of one file, multipart by hand.
fn api_upload(http: SocketAddr, token: &str, site: &str, name: &str, bytes: &[u8]) -> Value {
    let boundary = "chitti-test-boundary-7d1f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"site\"\r\n\r\n{site}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let text = ureq::post(format!("http://{http}/api/v1/uploads"))
        .header("Authorization", &format!("Bearer {token}"))
        .header(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .send(&body[..])
        .expect("upload")
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Percent-encodes a query value.
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A CSV export downloaded with `token`, parsed into rows keyed by column name.
fn csv_rows(
    http: SocketAddr,
    token: &str,
    path: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let mut response = ureq::get(format!("http://{http}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let body = response.body_mut().read_to_string().unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header = reader.headers().unwrap().clone();
    for column in ["id", "site", "level", "level_name", "status", "max_c"] {
        assert!(
            header.iter().any(|h| h == column),
            "column {column} in {header:?}"
        );
    }
    reader
        .records()
        .map(|r| {
            let r = r.expect("a well-formed CSV row");
            header
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// The grid value the API gives for a pixel, formatted as the viewer must show it.
fn grid_text(grid: &Value, x: u64, y: u64) -> String {
    let w = grid["width"].as_u64().unwrap();
    let v = grid["values"][(y * w + x) as usize].as_f64().unwrap();
    format!("{v:.2} °C")
}

/// Moves the pointer over grid pixel (gx, gy) of the viewer and returns what
/// `#cursor-temp` then says: (text, data-x, data-y).
async fn hover_pixel(c: &Chrome, gx: u64, gy: u64) -> (String, u64, u64) {
    // Scroll the pixel to the middle of the window, then point at its centre in
    // viewport coordinates.
    let p = c
        .js(
            "const canvas = document.getElementById('thermal-canvas');
             let p = window.chittiViewer.cssPointOf(arguments[0], arguments[1]);
             window.scrollBy(0, canvas.getBoundingClientRect().top + p.y - window.innerHeight / 2);
             p = window.chittiViewer.cssPointOf(arguments[0], arguments[1]);
             const r = canvas.getBoundingClientRect();
             return { x: r.left + p.x, y: r.top + p.y };",
            vec![json!(gx), json!(gy)],
        )
        .await;
    let actions = MouseActions::new("mouse".into()).then(PointerAction::MoveTo {
        duration: None,
        x: p["x"].as_f64().unwrap().round(),
        y: p["y"].as_f64().unwrap().round(),
    });
    c.client
        .perform_actions(actions)
        .await
        .expect("move the pointer");
    let readout = c.wait_for("#cursor-temp").await;
    let attr = |v: Option<String>| v.and_then(|s| s.parse::<u64>().ok()).expect("data-x/y");
    (
        readout.text().await.unwrap(),
        attr(readout.attr("data-x").await.unwrap()),
        attr(readout.attr("data-y").await.unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_an_alert_arrive_acknowledges_it_reads_its_thermogram_and_uploads() {
    let hub = start_hub_with_users(&[("olga", "operator")]);
    let http = hub.addrs.http;
    let base = format!("http://{http}");
    let token = api_login(http, "olga", PASSWORD);
    let c = Chrome::start(1280, 800).await;

    // The sign-in page, then the (empty) open queue it leads back to.
    c.goto(&format!("{base}/alerts")).await;
    c.wait_for("#login-form").await;
    c.screenshot("01-login").await;
    c.sign_in(http, "olga", PASSWORD, "/alerts").await;
    c.wait_for("#alert-queue").await;
    assert_eq!(c.content("#user-role").await, "operator");
    c.wait_for("#live-status[data-state='live']").await;
    assert_eq!(c.count("#alert-rows tr").await, 0);
    c.js("window.__sameDocument = 'yes';", vec![]).await;

    // A real agent: simulated camera → outbox → embedded MQTT → ingest; evidence by PUT.
    let dir = hub.dir.path();
    let mut text = simulated_agent_config(
        "north-yard",
        "gw-1",
        &format!("mqtt://{}", hub.addrs.mqtt.unwrap()),
        &dir.join("gw1"),
        &dir.join("outbox"),
        60,
    );
    text.push_str(&format!("\n[evidence]\nhub_url = \"{base}\"\n"));
    let expected = predicted_shapes(&text).len() as u64;
    std::fs::write(dir.join("agent.toml"), &text).unwrap();
    let agent = start_agent(&dir.join("agent.toml"), &dir.join("agent.log"));
    let context = || format!("{}\nagent log:\n{}", hub.log(), agent.log_text());

    // It appears without a reload (the same document), marked new and announced.
    let row = c.wait_for("#alert-rows tr.alert-row").await;
    let alert_id = row.attr("data-id").await.unwrap().expect("row id");
    assert_eq!(
        c.js("return window.__sameDocument;", vec![]).await,
        json!("yes"),
        "the page was reloaded"
    );
    assert!(
        row.attr("class")
            .await
            .unwrap()
            .unwrap_or_default()
            .contains("live-new")
            || c.count("#alert-rows tr.live-new").await > 0,
        "the new row is highlighted"
    );
    let announced = c
        .js(
            "return document.querySelector('#live-announcer').textContent;",
            vec![],
        )
        .await;
    assert!(
        announced.as_str().unwrap_or("").contains("new alert"),
        "{announced}"
    );
    // Wait until the agent has delivered everything, so the alert stops changing.
    let alert = eventually("every finding of the track", context, || async {
        let a = api_get(http, &token, &format!("/api/v1/alerts/{alert_id}"));
        (a["finding_count"].as_u64() == Some(expected)).then_some(a)
    })
    .await;
    assert_eq!(alert["status"], "open");
    // The page shows the hottest finding; its evidence follows the findings (PUT by
    // the agent's uploader), so wait until the hub can give its grid.
    let hottest = alert["history"]
        .as_array()
        .unwrap()
        .iter()
        .max_by(|a, b| {
            a["max_c"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["max_c"].as_f64().unwrap())
        })
        .unwrap()["finding_id"]
        .as_str()
        .unwrap()
        .to_string();
    let grid_path = format!("/api/v1/findings/{hottest}/temperatures");
    eventually("the hottest finding's evidence", context, || async {
        ureq::get(format!("{base}{grid_path}"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .ok()
            .map(|_| ())
    })
    .await;
    let worst = alert["worst_level"].as_u64().unwrap();
    let sev = c.text(&format!("tr[data-id='{alert_id}'] .sev")).await;
    assert!(
        sev.starts_with(&format!("L{worst} ")),
        "severity as text too: {sev}"
    );
    c.screenshot("03-queue").await;

    // Bulk acknowledge: select it, press the button; the row turns acknowledged.
    c.click(&format!("tr[data-id='{alert_id}'] .row-check"))
        .await;
    c.click("#bulk-ack:not([disabled])").await;
    c.wait_for(&format!(
        "tr[data-id='{alert_id}'][data-status='acknowledged']"
    ))
    .await;
    assert!(c.text("#bulk-result").await.starts_with("Acknowledged 1"));
    let a = api_get(http, &token, &format!("/api/v1/alerts/{alert_id}"));
    assert_eq!(a["status"], "acknowledged");

    // Keyboard: focus the row, `o` opens it.
    let cell = c
        .wait_for(&format!("tr[data-id='{alert_id}'] td:nth-child(2)"))
        .await;
    cell.click().await.unwrap();
    c.wait_for(&format!("tr[data-id='{alert_id}'].selected"))
        .await
        .send_keys("o")
        .await
        .unwrap();
    c.wait_for("#alert-summary").await;
    assert_eq!(
        c.client.current_url().await.unwrap().path(),
        format!("/alerts/{alert_id}")
    );
    // The audit trail names who acknowledged.
    let entry = c.text("#trail-list li[data-kind='acknowledge']").await;
    assert!(entry.contains("acknowledge by olga"), "{entry}");
    assert!(c.count("#acknowledge").await == 0 && c.count("#reopen").await == 1);

    // The viewer: °C under the cursor is the API's grid value at that pixel.
    c.wait_for("#thermal-canvas[data-ready='true']").await;
    let finding_id = c
        .wait_for("#viewer")
        .await
        .attr("data-finding-id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finding_id, hottest, "the page shows the hottest finding");
    let finding = api_get(http, &token, &format!("/api/v1/findings/{finding_id}"));
    let grid = api_get(
        http,
        &token,
        &format!("/api/v1/findings/{finding_id}/temperatures"),
    );
    let (w, h) = (
        grid["width"].as_u64().unwrap(),
        grid["height"].as_u64().unwrap(),
    );
    let peak = (
        finding["hotspot"]["max_at"][0].as_u64().unwrap(),
        finding["hotspot"]["max_at"][1].as_u64().unwrap(),
    );
    for (gx, gy) in [peak, (w / 3, h / 2), (0, 0), (w - 1, h - 1)] {
        let (shown, x, y) = hover_pixel(&c, gx, gy).await;
        assert_eq!(
            (x, y),
            (gx, gy),
            "the readout names the pixel under the cursor"
        );
        assert_eq!(shown, grid_text(&grid, x, y), "pixel ({x}, {y})");
    }
    let (shown, _, _) = hover_pixel(&c, peak.0, peak.1).await;
    let peak_c: f64 = shown.trim_end_matches(" °C").parse().unwrap();
    assert!((peak_c - finding["hotspot"]["max_c"].as_f64().unwrap()).abs() <= 0.01);
    // Zoomed in, the mapping still holds.
    c.click("#zoom-in").await;
    c.click("#zoom-in").await;
    let (shown, x, y) = hover_pixel(&c, peak.0, peak.1).await;
    assert_eq!((x, y), peak);
    assert_eq!(shown, grid_text(&grid, x, y));
    c.click("#zoom-reset").await;
    c.wait_for("#provenance").await;
    assert!(c
        .text("#recommended-action")
        .await
        .starts_with("Recommended action:"));
    c.screenshot_for_docs("04-alert-detail", "alert").await;

    // Upload: a FLIR fixture and a file that is not one.
    c.goto(&format!("{base}/upload")).await;
    c.wait_for("#upload-form").await;
    let junk = dir.join("not-a-thermogram.jpg");
    std::fs::write(&junk, b"this is not a FLIR file at all").unwrap();
    let flir = fixture("flir_t640_png.jpg");
    c.wait_for("#upload-files")
        .await
        .send_keys(&format!("{}\n{}", flir.display(), junk.display()))
        .await
        .unwrap();
    let good = c
        .wait_for("#upload-list li[data-name='flir_t640_png.jpg'][data-result]")
        .await;
    assert_eq!(
        good.attr("data-result").await.unwrap().as_deref(),
        Some("ok")
    );
    let bad = c
        .wait_for("#upload-list li[data-name='not-a-thermogram.jpg'][data-result]")
        .await;
    assert_eq!(
        bad.attr("data-result").await.unwrap().as_deref(),
        Some("error")
    );
    let reason = bad.text().await.unwrap();
    assert!(
        reason.contains("rejected: ") && reason.len() > "rejected: ".len() + 30,
        "{reason}"
    );
    let shown_findings = c
        .count("#upload-list li[data-name='flir_t640_png.jpg'] li.finding")
        .await;
    let stored = api_get(
        http,
        &token,
        "/api/v1/findings?site=north-yard&gateway=upload&limit=1000",
    );
    let stored = stored["items"].as_array().unwrap().len();
    assert!(shown_findings > 0, "the T640 file has hotspots");
    assert_eq!(shown_findings, stored, "every stored finding is shown");
    c.screenshot("05-upload").await;

    // The other pages, each with what it is for.
    c.goto(&base).await;
    assert!(c.text("#open-by-severity").await.contains("open"));
    assert!(c.text("#hottest").await.contains("north-yard"));
    c.screenshot_for_docs("02-overview", "overview").await;
    c.goto(&format!("{base}/fleet")).await;
    c.wait_for("#gateway-table tr[data-gateway='north-yard/gw-1']")
        .await;
    c.screenshot("06-fleet").await;
    c.goto(&format!("{base}/sites")).await;
    assert!(c.text("#main").await.contains("north-yard"));
    c.screenshot("07-sites").await;
    c.goto(&format!("{base}/reports?status=open&min_level=2"))
        .await;
    let csv = c
        .wait_for("#export-csv")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(
        csv.starts_with("/api/v1/alerts/export.csv?")
            && csv.contains("status=open")
            && csv.contains("min_level=2"),
        "{csv}"
    );
    let action = c
        .wait_for("#report-form")
        .await
        .attr("action")
        .await
        .unwrap();
    assert_eq!(action.as_deref(), Some("/api/v1/reports/inspection.pdf"));
    let mut report_query = Vec::new();
    for (id, name) in [
        ("#report-site", "site"),
        ("#report-from", "from"),
        ("#report-to", "to"),
    ] {
        let value = c.wait_for(id).await.prop("value").await.unwrap().unwrap();
        report_query.push(format!("{name}={}", urlencode(&value)));
    }
    c.screenshot("08-reports").await;

    // The exports the page links to, downloaded as the signed-in operator would, and
    // read back: the filtered CSV holds only open alerts of level 2 and above; the
    // unfiltered one every alert the API lists, the acknowledged one included.
    let filtered = csv_rows(http, &token, &csv);
    for row in &filtered {
        assert_eq!(row["status"], "open", "{row:?}");
        assert!(row["level"].parse::<u8>().unwrap() >= 2, "{row:?}");
    }
    c.goto(&format!("{base}/reports")).await;
    let all_csv = c
        .wait_for("#export-csv")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let rows = csv_rows(http, &token, &all_csv);
    let listed = api_get(http, &token, "/api/v1/alerts?limit=1000");
    assert_eq!(rows.len(), listed["items"].as_array().unwrap().len());
    let acked = rows
        .iter()
        .find(|r| r["id"] == alert_id)
        .expect("the acknowledged alert is exported");
    assert_eq!(acked["status"], "acknowledged", "{acked:?}");
    assert_eq!(acked["site"], "north-yard", "{acked:?}");
    assert_eq!(
        filtered.len(),
        rows.iter()
            .filter(|r| r["status"] == "open" && r["level"].parse::<u8>().unwrap() >= 2)
            .count()
    );

    // The PDF report of the form's site and period: a cover naming the site, then a
    // page per track with its max °C and severity.
    let pdf_url = format!("{}?{}", action.unwrap(), report_query.join("&"));
    let mut response = ureq::get(format!("http://{http}{pdf_url}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {pdf_url}: {e}"));
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/pdf"
    );
    let pdf = response
        .body_mut()
        .with_config()
        .limit(512 << 20)
        .read_to_vec()
        .unwrap();
    let doc = lopdf::Document::load_mem(&pdf).expect("a PDF lopdf reads");
    let pages = doc.get_pages().len() as u32;
    let site_tracks = rows.iter().filter(|r| r["site"] == "north-yard").count() as u32;
    assert_eq!(pages, 1 + site_tracks, "a cover and a page per track");
    let cover = doc.extract_text(&[1]).unwrap();
    assert!(cover.contains("north-yard"), "{cover}");
    let all_text = doc.extract_text(&(2..=pages).collect::<Vec<_>>()).unwrap();
    let worst = acked["max_c"].parse::<f64>().unwrap();
    assert!(
        all_text.contains(&format!("{worst:.1}")),
        "the acknowledged alert's {worst:.1} °C is in the report"
    );
    assert!(all_text.contains("acknowledged"), "its status is printed");

    // A 10-inch tablet, portrait.
    c.client.set_window_size(800, 1280).await.unwrap();
    c.goto(&format!("{base}/alerts")).await;
    c.wait_for(&format!("tr[data-id='{alert_id}']")).await;
    c.screenshot("09-tablet-queue").await;
    c.goto(&format!("{base}/alerts/{alert_id}")).await;
    c.wait_for("#thermal-canvas[data-ready='true']").await;
    let (shown, x, y) = hover_pixel(&c, peak.0, peak.1).await;
    assert_eq!((x, y), peak);
    assert_eq!(shown, grid_text(&grid, x, y));
    c.screenshot("10-tablet-alert").await;

    c.client.clone().close().await.unwrap();
    assert!(agent.terminate().success());
    let mut hub = hub;
    assert!(hub.process.take().unwrap().terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_action_buttons_and_the_api_refuses_its_actions() {
    let hub = start_hub_with_users(&[("olga", "operator"), ("vera", "viewer")]);
    let http = hub.addrs.http;
    let base = format!("http://{http}");
    // An alert to look at: an operator's upload of a hot FLIR file.
    let olga = api_login(http, "olga", PASSWORD);
    let upload = api_upload(
        http,
        &olga,
        "north-yard",
        "t640.jpg",
        &std::fs::read(fixture("flir_t640_png.jpg")).unwrap(),
    );
    assert_eq!(upload["files"][0]["status"], "ok", "{upload}");
    let vera = api_login(http, "vera", PASSWORD);
    let alerts = api_get(http, &vera, "/api/v1/alerts?status=open");
    let alert_id = alerts["items"][0]["id"]
        .as_str()
        .expect("an open alert")
        .to_string();

    let c = Chrome::start(1280, 800).await;
    c.sign_in(http, "vera", PASSWORD, "/alerts").await;
    c.wait_for(&format!("tr[data-id='{alert_id}']")).await;
    assert_eq!(c.content("#user-role").await, "viewer");
    assert_eq!(c.count("#bulk-ack").await, 0);
    assert_eq!(c.count(".row-check").await, 0);
    assert_eq!(c.count("header nav a[href='/upload']").await, 0);

    c.goto(&format!("{base}/alerts/{alert_id}")).await;
    c.wait_for("#alert-summary").await;
    c.wait_for("#thermal-canvas[data-ready='true']").await;
    assert_eq!(c.count("#actions").await, 0);
    assert_eq!(c.count("form.api-form").await, 0);
    for id in ["#acknowledge", "#resolve", "#assign", "#comment", "#reopen"] {
        assert_eq!(c.count(id).await, 0, "{id} is not shown to a viewer");
    }
    c.screenshot("11-viewer-alert").await;

    // The same session, going around the page: the API says 403.
    let answer = c
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(`/api/v1/alerts/${arguments[0]}/acknowledge`, {
               method: 'POST',
               headers: { 'X-CSRF-Token': document.querySelector('meta[name=\"csrf-token\"]').content },
             }).then(async (r) => done({ status: r.status, body: await r.json() }));",
            vec![json!(alert_id)],
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], 403, "{answer}");
    assert_eq!(answer["body"]["error"]["code"], "forbidden");
    let err = ureq::post(format!("{base}/api/v1/alerts/{alert_id}/acknowledge"))
        .header("Authorization", &format!("Bearer {vera}"))
        .send_empty()
        .unwrap_err();
    assert!(matches!(err, ureq::Error::StatusCode(403)), "{err}");
    assert_eq!(
        api_get(http, &vera, &format!("/api/v1/alerts/{alert_id}"))["status"],
        "open"
    );
    // The upload page is refused too (the navigation never offers it).
    c.goto(&format!("{base}/upload")).await;
    assert!(c.text("#error-message").await.contains("operator"));

    c.client.clone().close().await.unwrap();
    let mut hub = hub;
    assert!(hub.process.take().unwrap().terminate().success());
}

/// An admin adds a channel and a rule in the notifications page's editor: the drawn
/// webhook secret is shown once and never again, a save without changes keeps it, and
/// a save from a stale page is refused with the current version named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_edits_channels_and_rules_and_sees_a_new_secret_once() {
    let hub = start_hub_with_users(&[("ada", "admin")]);
    let http = hub.addrs.http;
    let c = Chrome::start(1280, 900).await;
    c.sign_in(http, "ada", PASSWORD, "/notifications").await;
    c.wait_for("#settings-form").await;
    let doc =
        "[[channels]]\nid = \"noc\"\nkind = \"webhook\"\nurl = \"https://noc.example.net/in\"\n\n\
               [[rules]]\nid = \"fleet\"\nkinds = [\"fleet\"]\nchannels = [\"noc\"]\n";
    c.js(
        "document.querySelector('#settings-toml').value = arguments[0];",
        vec![json!(doc)],
    )
    .await;
    let save = "#settings-form button[type='submit']";
    c.click(save).await;
    let context = || hub.log();
    let shown = eventually("the new secret shown", context, || async {
        let text = c.content("#settings-form .form-result").await;
        text.contains("whsec_").then_some(text)
    })
    .await;
    assert!(shown.contains("noc: whsec_"), "{shown}");
    let secret = shown.split("noc: ").nth(1).unwrap().trim().to_string();
    c.screenshot("12-notification-settings").await;
    let ada = api_login(http, "ada", PASSWORD);
    let settings = api_get(http, &ada, "/api/v1/notification-settings");
    assert_eq!(settings["version"], 1);
    assert!(!settings.to_string().contains(&secret), "{settings}");
    let channels = api_get(http, &ada, "/api/v1/notification-channels");
    assert_eq!(channels["items"][0]["id"], "noc");
    assert_eq!(channels["items"][0]["source"], "settings");

    // Saved again as shown (the secret as "(kept)"): kept, the page reloads at v2.
    c.click(save).await;
    eventually("version 2 on the page", context, || async {
        let label = c.content("label[for='settings-toml']").await;
        label.contains("version 2").then_some(())
    })
    .await;
    let toml = api_get(http, &ada, "/api/v1/notification-settings")["toml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(toml.contains("secret = \"(kept)\""), "{toml}");
    // A page still at version 1 (another admin saved since) is refused.
    c.js(
        "document.querySelector('#settings-form').dataset.ifMatch = '\"1\"';",
        vec![],
    )
    .await;
    c.click(save).await;
    let refused = eventually("the stale save refused", context, || async {
        let text = c.content("#settings-form .form-error").await;
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(refused.contains("current version is 2"), "{refused}");
    assert_eq!(
        api_get(http, &ada, "/api/v1/notification-settings")["version"],
        2
    );

    c.client.clone().close().await.unwrap();
    let mut hub = hub;
    assert!(hub.process.take().unwrap().terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_saves_a_gateway_configuration_and_sees_its_problems_first() {
    let hub = start_hub_with_users(&[("ada", "admin")]);
    let http = hub.addrs.http;
    let c = Chrome::start(1280, 900).await;
    c.sign_in(http, "ada", PASSWORD, "/fleet").await;
    c.click("#gateway-table a[href='/fleet/north-yard/gw-1']")
        .await;
    c.wait_for("#config-form").await;
    assert!(c.text("#config-state").await.contains("none saved"));
    let doc = "version = 1\n[identity]\nsite = \"north-yard\"\ngateway = \"gw-1\"\n\n\
               [[camera]]\nid = \"cam-1\"\n\n[camera.source]\nkind = \"simulated\"\nfps = 5.0\n";
    let save = "#config-form button[type='submit']";
    // Another gateway's identity and an impossible frame rate: both named, nothing saved.
    let wrong = doc
        .replace("gw-1", "gw-9")
        .replace("fps = 5.0", "fps = 0.0");
    c.js(
        "document.querySelector('#config-toml').value = arguments[0];",
        vec![json!(wrong)],
    )
    .await;
    c.click(save).await;
    let context = || hub.log();
    let refused = eventually("the problems shown", context, || async {
        let text = c.content("#config-form .form-error").await;
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(
        refused.contains("identity.gateway") && refused.contains("camera[0].source.fps"),
        "{refused}"
    );
    let ada = api_login(http, "ada", PASSWORD);
    let url = "/api/v1/gateways/north-yard/gw-1/config";
    assert_eq!(api_get(http, &ada, url)["desired"]["version"], 0);
    c.js(
        "document.querySelector('#config-toml').value = arguments[0];\
         document.querySelector('#config-reason').value = 'first remote configuration';",
        vec![json!(doc)],
    )
    .await;
    c.click(save).await;
    eventually("version 1 on the page", context, || async {
        let text = c.content("#config-state").await;
        text.contains("version 1, saved by ada").then_some(())
    })
    .await;
    assert!(c
        .text("#config-history-table")
        .await
        .contains("first remote configuration"));
    assert!(c
        .text("#config-sync")
        .await
        .contains("waiting for version 1"));
    c.screenshot("13-gateway-configuration").await;
    assert_eq!(api_get(http, &ada, url)["desired"]["config"], doc);

    c.client.clone().close().await.unwrap();
    let mut hub = hub;
    assert!(hub.process.take().unwrap().terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_follows_a_rollout_and_stops_it_while_a_viewer_only_watches() {
    let hub = start_hub_with_users(&[("ada", "admin"), ("vera", "viewer")]);
    let http = hub.addrs.http;
    let ada = api_login(http, "ada", PASSWORD);
    let model = upload_model(http, &ada, &shipped_model("model.int8.onnx"), "1.1.0");
    let rollout: Value = serde_json::from_str(
        &ureq::post(format!("http://{http}/api/v1/rollouts"))
            .header("authorization", format!("Bearer {ada}"))
            .header("content-type", "application/json")
            .send(json!({"model_id": model["id"], "target": {"site": "north-yard"}}).to_string())
            .expect("POST /api/v1/rollouts")
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let id = rollout["id"].as_str().unwrap().to_string();

    // A viewer sees the models page and the rollout, and no buttons.
    let c = Chrome::start(1280, 900).await;
    c.sign_in(http, "vera", PASSWORD, "/models").await;
    c.wait_for(&format!("#rollout-table a[href='/models/rollouts/{id}']"))
        .await;
    assert!(c
        .text("#registry-table")
        .await
        .contains("chitti-components 1.1.0"));
    c.goto(&format!("http://{http}/models/rollouts/{id}")).await;
    c.wait_for("#rollout-gateway-table tr[data-gateway='north-yard/gw-1']")
        .await;
    assert_eq!(c.count("#rollout-actions").await, 0);
    c.client.clone().close().await.unwrap();

    // The admin: gw-1 was sent the model (it has not answered: it is not running);
    // abort it, with a reason, from the page.
    let c = Chrome::start(1280, 900).await;
    c.sign_in(http, "ada", PASSWORD, &format!("/models/rollouts/{id}"))
        .await;
    let context = || hub.log();
    eventually("gw-1 sent the model", context, || async {
        let text = c.content("#rollout-gateway-table").await;
        text.contains("downloading").then_some(())
    })
    .await;
    assert_eq!(c.count("#rollout-pause").await, 1);
    c.screenshot("14-rollout").await;
    c.js(
        "window.confirm = () => true;\
         document.querySelector('#rollout-abort input[name=reason]').value = 'wrong site';",
        vec![],
    )
    .await;
    c.click("#rollout-abort button[type='submit']").await;
    let state = eventually("the rollout aborted on the page", context, || async {
        let text = c.content("#rollout-state-value").await;
        text.contains("aborted").then_some(text)
    })
    .await;
    assert!(state.contains("aborted by ada: wrong site"), "{state}");
    assert_eq!(c.count("#rollout-actions").await, 0);
    assert!(c
        .text("#rollout-gateway-table")
        .await
        .contains("rolled back"));
    let view = api_get(http, &ada, &format!("/api/v1/rollouts/{id}"));
    assert_eq!(view["state"], "aborted");
    c.goto(&format!("http://{http}/models")).await;
    c.wait_for("#distribution-table").await;
    c.screenshot("15-models").await;

    c.client.clone().close().await.unwrap();
    let mut hub = hub;
    assert!(hub.process.take().unwrap().terminate().success());
}
