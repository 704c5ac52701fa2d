//! Notification latency: from the commit of the batch that raised an alert to a real
//! HTTP receiver's answer to its (signed) webhook, at a steady rate and in a burst.
//!
//! ```text
//! cargo run --release -p chitti-hub --example notify_latency -- STORE_URL [RATE_ALERTS=30] [BURST=1000]
//! ```
//!
//! STORE_URL is `sqlite://…?mode=rwc` or `postgres://…` (an empty database: it is
//! migrated). The hub's notifier runs as `serve` runs it (woken by alert changes, else
//! polling every 500 ms); the receiver is an axum server in the same process on
//! 127.0.0.1, so "cost per notification" (process CPU time / messages) includes the
//! receiver's side too. Phase 1 raises one alert a second (`RATE_ALERTS` of them),
//! phase 2 commits `BURST` alerts at once in batches of 100, as ingest would.

#[allow(dead_code)]
#[path = "../benches/support/copy_rows.rs"]
mod copy_rows;

use axum::body::Bytes;
use axum::extract::State;
use chitti_hub::config::HubConfig;
use chitti_hub::live::LiveEvents;
use chitti_hub::notify::{Notifier, NotifyMetrics};
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AnyStore, IngestedFinding};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// When each alert's webhook reached the receiver.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn take(State(arrivals): State<Arrivals>, body: Bytes) -> &'static str {
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(alert) = doc.pointer("/data/alert/id").and_then(|v| v.as_str()) {
        arrivals
            .lock()
            .unwrap()
            .entry(alert.to_string())
            .or_insert_with(Instant::now);
    }
    "ok"
}

/// The process's CPU time (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line; 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, commits: &HashMap<String, Instant>, arrivals: &Arrivals) {
    let arrivals = arrivals.lock().unwrap();
    let mut latencies: Vec<Duration> = commits
        .iter()
        .filter_map(|(alert, at)| arrivals.get(alert).map(|got| got.duration_since(*at)))
        .collect();
    latencies.sort();
    println!(
        "{what}: {} of {} delivered; commit → receiver p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        commits.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

async fn raise(
    store: &AnyStore,
    live: &LiveEvents,
    n: usize,
    i0: usize,
) -> HashMap<String, Instant> {
    let batch: Vec<IngestedFinding> = (0..n)
        .map(|i| {
            // Level 3 (the sample's level is its index modulo 4), each its own track.
            let mut finding = copy_rows::sample(3 + 4 * (i0 + i), Uuid::now_v7());
            finding.site = "north-yard".into();
            IngestedFinding {
                finding,
                received_at: Utc::now(),
                batch_id: Uuid::nil(),
            }
        })
        .collect();
    let report = store.insert_findings(&batch).await.expect("insert");
    let committed = Instant::now();
    live.alerts_changed(report.alerts.clone());
    report
        .alerts
        .iter()
        .map(|a| (a.to_string(), committed))
        .collect()
}

async fn wait_for(arrivals: &Arrivals, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while arrivals.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: notify_latency STORE_URL [RATE_ALERTS] [BURST]")?;
    let rate_alerts: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(30);
    let burst: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let store = Arc::new(AnyStore::connect(&url).await?);
    store.migrate().await?;

    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(take))
        .with_state(Arc::clone(&arrivals));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = HubConfig::from_toml(
        &format!(
            "version = 1\n[[notifications.channels]]\nid = \"hook\"\nkind = \"webhook\"\n\
             url = \"{hook}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
             [[notifications.rules]]\nid = \"all\"\nmin_level = 1\nchannels = [\"hook\"]\n"
        ),
        "bench",
        std::path::Path::new("."),
    )?;
    let live = Arc::new(LiveEvents::new(16));
    let notifier = Notifier::new(
        Arc::clone(&store),
        config.notifications,
        None,
        Arc::new(NotifyMetrics::default()),
        live.alert_signal(),
    )?;
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(notifier.run(stop_rx));
    println!(
        "notify_latency: store {}, one webhook channel on 127.0.0.1, {} CPUs",
        store.backend().name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Phase 1: one alert a second.
    let mut commits = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for i in 0..rate_alerts {
        tick.tick().await;
        commits.extend(raise(&store, &live, 1, i).await);
    }
    wait_for(&arrivals, commits.len(), Duration::from_secs(30)).await;
    report(&format!("{rate_alerts} alerts at 1/s"), &commits, &arrivals);

    // Phase 2: a burst, in batches of 100 as ingest commits them.
    arrivals.lock().unwrap().clear();
    let cpu = cpu_time();
    let started = Instant::now();
    let mut commits = HashMap::new();
    for b in 0..burst.div_ceil(100) {
        let n = 100.min(burst - b * 100);
        commits.extend(raise(&store, &live, n, rate_alerts + b * 100).await);
    }
    wait_for(&arrivals, commits.len(), Duration::from_secs(300)).await;
    let wall = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu);
    report(&format!("a burst of {burst} alerts"), &commits, &arrivals);
    let delivered = arrivals.lock().unwrap().len().max(1);
    println!(
        "burst: all delivered in {:.2} s ({:.0} messages/s); process CPU {:.2} ms per message \
         (notifier + store + receiver)",
        wall.as_secs_f64(),
        delivered as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e3 / delivered as f64
    );
    println!(
        "rerun: cargo run --release -p chitti-hub --example notify_latency -- '{url}' {rate_alerts} {burst}"
    );
    Ok(())
}
