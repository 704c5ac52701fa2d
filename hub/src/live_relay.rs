//! Live events across hub replicas, through Postgres `LISTEN/NOTIFY`.
//!
//! Every replica ingests, and every replica serves dashboards: an alert committed by
//! replica A must reach an SSE client of replica B. Each replica hands what its
//! producers name ([`ReplicaChange`], queued by [`LiveEvents::relay_to`]) to
//! `pg_notify` on the channel [`CHANNEL`] after the change is committed, and listens on
//! that channel; a notice from another replica goes to [`LiveEvents::apply_remote`],
//! which reads the record from the store and publishes it like a local change. Why
//! Postgres and not the broker: every replica already holds a connection to the one
//! primary, notifications are delivered only after the sender's commit and in commit
//! order, and the hub then needs no broker topic of its own in every engine's ACLs.
//!
//! - **Names, not records**: a notice carries ids (at most [`ALERTS_PER_NOTICE`] per
//!   notice, far below Postgres's 8 000-byte payload limit); the receiver reads the
//!   current record, so a notice overtaken by a later change still shows the latest.
//! - **Nothing missed silently**: a change the relay's queue had no room for, a
//!   `pg_notify` that failed, or a listening connection that dropped (a failover) makes
//!   the replicas concerned publish a `resync` to their clients, who reload.
//! - **Bound**: a change reaches the other replicas' clients within one notification
//!   round trip plus their store read (not measured yet; `tests/tests/replicas.rs`
//!   shows every change arriving, not how fast).
//! - **Anyone who can `NOTIFY`** on the database reaches this channel: a payload that is
//!   not a notice is logged and ignored, and a notice only makes a replica re-read
//!   records it would show anyway (no data travels in it).
//! - SQLite is one process: no relay.

use crate::live::{LiveEvents, ReplicaChange};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The notification channel every replica listens on.
pub const CHANNEL: &str = "chitti_live";

/// Alert ids in one notice (about 40 bytes each): well under the 8 000-byte limit.
pub const ALERTS_PER_NOTICE: usize = 150;

/// Changes waiting for the relay before new ones are dropped (and a resync sent).
pub const RELAY_QUEUE: usize = 8192;

/// Most notices sent in one statement.
const NOTICES_PER_ROUND: usize = 256;

/// What one notification carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The sending replica's epoch (its own notices are ignored).
    pub origin: String,
    /// What changed.
    pub change: ReplicaChange,
}

/// Splits a change into notices that each fit a notification.
pub fn notices(origin: &str, change: ReplicaChange) -> Vec<Notice> {
    let notice = |change| Notice {
        origin: origin.to_owned(),
        change,
    };
    match change {
        ReplicaChange::Alerts { ids } if ids.len() > ALERTS_PER_NOTICE => ids
            .chunks(ALERTS_PER_NOTICE)
            .map(|c| notice(ReplicaChange::Alerts { ids: c.to_vec() }))
            .collect(),
        other => vec![notice(other)],
    }
}

/// Starts the relay, until `stop` completes: sends this replica's changes (every one
/// named from now on), applies the others'. `None` when `live` already has a relay.
pub fn spawn(
    live: Arc<LiveEvents>,
    pool: PgPool,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    let outbound = live.relay_to(RELAY_QUEUE)?;
    Some(tokio::spawn(async move {
        tokio::select! {
            () = stop => {}
            () = send(Arc::clone(&live), pool.clone(), outbound) => {}
            () = listen(live, pool) => {}
        }
    }))
}

async fn send(live: Arc<LiveEvents>, pool: PgPool, mut outbound: mpsc::Receiver<ReplicaChange>) {
    let origin = live.epoch().to_owned();
    let mut owe_resync = false;
    while let Some(first) = outbound.recv().await {
        let mut payloads = Vec::new();
        if live.take_relay_lost() {
            owe_resync = true;
        }
        if owe_resync {
            let resync = ReplicaChange::Resync {
                reason: "another hub replica could not pass on every change".to_owned(),
            };
            payloads.extend(encode(&origin, resync));
        }
        payloads.extend(encode(&origin, first));
        while payloads.len() < NOTICES_PER_ROUND {
            match outbound.try_recv() {
                Ok(change) => payloads.extend(encode(&origin, change)),
                Err(_) => break,
            }
        }
        // One statement: delivered together, in this order, when it commits.
        match sqlx::query("SELECT pg_notify($1, notice) FROM UNNEST($2::text[]) AS notice")
            .bind(CHANNEL)
            .bind(&payloads)
            .execute(&pool)
            .await
        {
            Ok(_) => owe_resync = false,
            Err(err) => {
                tracing::warn!(%err, notices = payloads.len(),
                    "live relay: cannot notify the other replicas; they will resync");
                owe_resync = true;
            }
        }
    }
}

fn encode(origin: &str, change: ReplicaChange) -> Vec<String> {
    notices(origin, change)
        .iter()
        .filter_map(|n| serde_json::to_string(n).ok())
        .collect()
}

async fn listen(live: Arc<LiveEvents>, pool: PgPool) {
    let origin = live.epoch().to_owned();
    let mut first = true;
    let mut delay = Duration::from_millis(200);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(%err, "live relay: cannot listen; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(err) = listener.listen(CHANNEL).await {
            tracing::warn!(%err, "live relay: LISTEN failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
            continue;
        }
        delay = Duration::from_millis(200);
        if !first {
            lost_touch(&live);
        }
        first = false;
        live.set_relay_listening(true);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match serde_json::from_str::<Notice>(n.payload()) {
                    Ok(notice) if notice.origin != origin => live.apply_remote(notice.change),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(%err, payload = n.payload(),
                        "live relay: a notice that is not one; ignored"),
                },
                // The connection dropped: what is said until we listen again is
                // unknown here, so the resync goes out once we do (a client reloading
                // before that would still miss what comes in between).
                Ok(None) => {
                    live.set_relay_listening(false);
                    tracing::warn!("live relay: listening connection dropped; reconnecting");
                    break;
                }
                Err(err) => {
                    live.set_relay_listening(false);
                    tracing::warn!(%err, "live relay: listening connection failed; reconnecting");
                    break;
                }
            }
        }
    }
}

fn lost_touch(live: &LiveEvents) {
    tracing::warn!("live relay: lost the other replicas for a while; clients resync");
    live.apply_remote(ReplicaChange::Resync {
        reason: "this hub replica lost touch with the others for a while".to_owned(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn many_alerts_are_split_into_notices_that_fit_a_notification() {
        let ids: Vec<Uuid> = (0..ALERTS_PER_NOTICE * 2 + 7)
            .map(|_| Uuid::now_v7())
            .collect();
        let split = notices("abcdef012345", ReplicaChange::Alerts { ids: ids.clone() });
        assert_eq!(split.len(), 3);
        let mut back = Vec::new();
        for n in &split {
            let json = serde_json::to_string(n).unwrap();
            assert!(json.len() < 8000, "{} bytes", json.len());
            assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), *n);
            let ReplicaChange::Alerts { ids } = &n.change else {
                panic!("alerts stay alerts")
            };
            back.extend(ids.iter().copied());
        }
        assert_eq!(back, ids);
        assert_eq!(notices("o", ReplicaChange::ConfigSaved).len(), 1);
    }
}
