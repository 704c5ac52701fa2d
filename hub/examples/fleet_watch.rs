//! The fleet watch's cost: one pass over `GATEWAYS` enrolled gateways, each with a
//! status, while all are healthy (the steady state: reads only), when a tenth have gone
//! silent (raising), and when they are back (ending).
//!
//! ```text
//! cargo run --release -p chitti-hub --example fleet_watch -- STORE_URL [GATEWAYS=1000] [PASSES=20]
//! ```
//!
//! STORE_URL is `sqlite://…?mode=rwc` or `postgres://…` (an empty database: it is
//! migrated). Prints the median and worst steady pass of `PASSES`, and the raising and
//! ending passes' times, in milliseconds.

use chitti_common::protocol::{AgentStatus, BufferStatus, CameraStatus, EvictionCounts};
use chitti_hub::alarms::FleetWatch;
use chitti_hub::config::HubConfig;
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AnyStore, NewGateway};
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use std::time::Instant;

fn status(ts: DateTime<Utc>) -> AgentStatus {
    AgentStatus {
        online: true,
        agent_version: "0.4.2".into(),
        cameras: vec![CameraStatus {
            id: "cam-1".into(),
            state: "streaming".into(),
            fps: 8.7,
            last_frame_at: Some(ts),
        }],
        buffer: Some(BufferStatus {
            depth: 3,
            bytes: 100,
            oldest_at: None,
            evicted: EvictionCounts::default(),
            cap_bytes: Some(1 << 30),
        }),
        model: None,
        detector: Some("disabled".into()),
        config_version: None,
        model_update: None,
        evidence: None,
        ts,
        session: Some(ts),
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .expect("usage: fleet_watch STORE_URL [GATEWAYS] [PASSES]");
    let gateways: usize = args.get(2).map_or(1000, |v| v.parse().expect("GATEWAYS"));
    let passes: usize = args.get(3).map_or(20, |v| v.parse().expect("PASSES"));
    let store = Arc::new(AnyStore::connect(url).await.expect("store"));
    store.migrate().await.expect("migrate");
    let t0 = Utc::now();
    for i in 0..gateways {
        let gateway = format!("gw-{i:05}");
        store
            .add_gateway(&NewGateway {
                site: format!("site-{:03}", i % 40),
                gateway: gateway.clone(),
                password_hash: "unused".into(),
                public_key: [7; 32],
            })
            .await
            .expect("enrol");
        store
            .update_gateway_status(&format!("site-{:03}", i % 40), &gateway, &status(t0), t0)
            .await
            .expect("status");
    }
    let config = HubConfig::from_toml("version = 1\n", "hub.toml", std::path::Path::new("/"))
        .expect("defaults");
    let watch = FleetWatch::new(Arc::clone(&store), config.watch_rules(), None);
    let mut steady = Vec::new();
    for i in 0..passes {
        let start = Instant::now();
        let pass = watch
            .pass(t0 + Duration::seconds(i as i64))
            .await
            .expect("pass");
        steady.push(ms(start.elapsed()));
        assert!(pass.raised.is_empty());
    }
    steady.sort_by(f64::total_cmp);
    // A tenth fall silent: everyone else reports again, 200 s later.
    let later = t0 + Duration::seconds(200);
    for i in (0..gateways).filter(|i| i % 10 != 0) {
        let site = format!("site-{:03}", i % 40);
        store
            .update_gateway_status(&site, &format!("gw-{i:05}"), &status(later), later)
            .await
            .expect("status");
    }
    let start = Instant::now();
    let raised = watch.pass(later).await.expect("pass").raised.len();
    let raising = ms(start.elapsed());
    let back = later + Duration::seconds(10);
    for i in (0..gateways).filter(|i| i % 10 == 0) {
        let site = format!("site-{:03}", i % 40);
        store
            .update_gateway_status(&site, &format!("gw-{i:05}"), &status(back), back)
            .await
            .expect("status");
    }
    let start = Instant::now();
    let ended = watch.pass(back).await.expect("pass").ended.len();
    let ending = ms(start.elapsed());
    println!(
        "fleet watch on {} with {gateways} gateways: steady pass median {:.1} ms, worst {:.1} ms ({passes} passes); \
         raising {raised} gateway_offline alarms {raising:.1} ms; ending {ended} {ending:.1} ms",
        store.backend().name(),
        steady[steady.len() / 2],
        steady[steady.len() - 1],
    );
    println!(
        "rerun: cargo run --release -p chitti-hub --example fleet_watch -- '{url}' {gateways} {passes}"
    );
}
