//! Live events: what changed (alerts, gateways), numbered, kept in a bounded history
//! and fanned out to the API's Server-Sent Events stream (`/api/v1/stream`).
//!
//! Producers (ingest after a commit, the alert actions, gateway status updates) only
//! *name* what changed, with [`LiveEvents::alerts_changed`] and
//! [`LiveEvents::gateway_changed`]: a non-blocking send into a bounded queue, so that a
//! slow stream never holds up ingest. One task ([`crate::api::stream::run_publisher`])
//! reads the current records from the store, numbers them and publishes them. When the
//! queue is full the change is dropped and the next published event is a `resync`,
//! telling clients to reload their lists: nothing goes missing silently.
//!
//! Event ids are `{epoch}-{seq}`, where the epoch is random per hub start. A client
//! resuming with `Last-Event-ID` gets every event after it from the history; if that id
//! is from another start (or another replica) or older than the history, it gets a
//! `resync` first.
//!
//! Across replicas, what a producer names here is also handed to the relay
//! ([`crate::live_relay`], Postgres `LISTEN/NOTIFY`) as a [`ReplicaChange`]; what other
//! replicas name arrives through [`LiveEvents::apply_remote`] and is published like a
//! local change (each replica reads the record itself), so a dashboard on any replica
//! sees every change. A change the relay could not carry becomes a `resync` there.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

/// Events kept for resuming clients, unless configured.
pub const DEFAULT_LIVE_HISTORY: usize = 4096;
/// Changes queued for the publisher before new ones are dropped (and a resync sent).
pub const CHANGE_QUEUE: usize = 8192;

/// Something that changed, as producers name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These alerts were created or changed.
    Alerts(Vec<Uuid>),
    /// This gateway's state changed (status, online, revoked).
    Gateway {
        /// Site id.
        site: String,
        /// Gateway id.
        gateway: String,
    },
    /// Changes may have been missed (another replica dropped some, or this one could
    /// not hear the others for a while): clients reload their lists.
    Resync(String),
}

/// A change as replicas tell each other (through [`crate::live_relay`]): what
/// [`Change`] names, and the wake-ups of the configuration publisher and the rollout
/// driver, whose work any replica may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplicaChange {
    /// These alerts were created or changed.
    Alerts {
        /// Their ids.
        ids: Vec<Uuid>,
    },
    /// This gateway's state changed.
    Gateway {
        /// Site id.
        site: String,
        /// Gateway id.
        gateway: String,
    },
    /// A desired gateway configuration was saved.
    ConfigSaved,
    /// A rollout may have something to do.
    RolloutChanged,
    /// The sending replica lost changes: reload.
    Resync {
        /// Why, for the clients.
        reason: String,
    },
}

/// The kind of a published event (its SSE `event:` name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An alert, as `GET /api/v1/alerts/{id}` lists it.
    Alert,
    /// A gateway, as `GET /api/v1/gateways` lists it.
    Gateway,
    /// Changes were lost (or the client resumes from too far back): reload the lists.
    Resync,
}

impl EventKind {
    /// The SSE event name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Gateway => "gateway",
            Self::Resync => "resync",
        }
    }
}

/// One published event.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    /// Sequence number within this hub start (from 1).
    pub seq: u64,
    /// Its kind.
    pub kind: EventKind,
    /// The site it concerns (`None` for a resync, which concerns everyone).
    pub site: Option<String>,
    /// The alert's worst severity level (alerts only), for severity filters.
    pub level: Option<u8>,
    /// The JSON payload.
    pub data: String,
}

/// Where a resuming client stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// These events came after the client's last one (possibly none).
    From(Vec<Arc<LiveEvent>>),
    /// The client's last event is unknown here: send a resync.
    Gap,
}

struct History {
    next_seq: u64,
    events: VecDeque<Arc<LiveEvent>>,
}

/// The live-event hub.
pub struct LiveEvents {
    epoch: String,
    capacity: usize,
    history: Mutex<History>,
    fanout: broadcast::Sender<Arc<LiveEvent>>,
    changes: mpsc::Sender<Change>,
    receiver: Mutex<Option<mpsc::Receiver<Change>>>,
    lost: AtomicBool,
    relay: std::sync::OnceLock<mpsc::Sender<ReplicaChange>>,
    relay_lost: AtomicBool,
    relay_listening: AtomicBool,
    alert_signal: Arc<tokio::sync::Notify>,
    config_signal: Arc<tokio::sync::Notify>,
    rollout_signal: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for LiveEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEvents")
            .field("epoch", &self.epoch)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl LiveEvents {
    /// A hub keeping the last `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (changes, receiver) = mpsc::channel(CHANGE_QUEUE);
        let (fanout, _) = broadcast::channel(capacity);
        let mut epoch = [0u8; 6];
        // Without randomness the epoch is the start time: still distinct per start.
        if getrandom::fill(&mut epoch).is_err() {
            epoch = chrono::Utc::now().timestamp_micros().to_be_bytes()[2..]
                .try_into()
                .unwrap_or_default();
        }
        Self {
            epoch: hex::encode(epoch),
            capacity,
            history: Mutex::new(History {
                next_seq: 1,
                events: VecDeque::with_capacity(capacity),
            }),
            fanout,
            changes,
            receiver: Mutex::new(Some(receiver)),
            lost: AtomicBool::new(false),
            relay: std::sync::OnceLock::new(),
            relay_lost: AtomicBool::new(false),
            relay_listening: AtomicBool::new(false),
            alert_signal: Arc::new(tokio::sync::Notify::new()),
            config_signal: Arc::new(tokio::sync::Notify::new()),
            rollout_signal: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Woken whenever alerts change (the notifier waits on it rather than polling).
    pub fn alert_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.alert_signal)
    }

    /// Woken when a desired gateway configuration is saved (the configuration
    /// publisher waits on it).
    pub fn config_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.config_signal)
    }

    /// Notified when a rollout may have something to do: a gateway reported on
    /// `/model/state`, or an admin created, paused, resumed or aborted one (wakes the
    /// rollout driver).
    pub fn rollout_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.rollout_signal)
    }

    /// This replica's epoch: the first part of its event ids, and its name to the
    /// other replicas.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Names alerts that were created or changed (never blocks; see the module docs).
    pub fn alerts_changed(&self, ids: Vec<Uuid>) {
        if !ids.is_empty() {
            self.relay(|| ReplicaChange::Alerts { ids: ids.clone() });
            self.send(Change::Alerts(ids));
            self.alert_signal.notify_one();
        }
    }

    /// Names a gateway whose state changed (never blocks).
    pub fn gateway_changed(&self, site: &str, gateway: &str) {
        self.relay(|| ReplicaChange::Gateway {
            site: site.to_string(),
            gateway: gateway.to_string(),
        });
        self.send(Change::Gateway {
            site: site.to_string(),
            gateway: gateway.to_string(),
        });
    }

    /// A desired gateway configuration was saved: wakes the configuration publisher,
    /// here and on every replica.
    pub fn config_saved(&self) {
        self.relay(|| ReplicaChange::ConfigSaved);
        self.config_signal.notify_one();
    }

    /// A rollout may have something to do (a report came in, an admin acted): wakes
    /// the rollout driver, here and on every replica.
    pub fn rollout_changed(&self) {
        self.relay(|| ReplicaChange::RolloutChanged);
        self.rollout_signal.notify_one();
    }

    /// Starts handing every change named here to the other replicas: the returned
    /// queue (of `capacity`) is the relay's. A full queue is remembered
    /// ([`take_relay_lost`](Self::take_relay_lost)) and becomes a resync there. One
    /// relay per hub: `None` when one is already set.
    pub fn relay_to(&self, capacity: usize) -> Option<mpsc::Receiver<ReplicaChange>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.relay.set(tx).ok()?;
        Some(rx)
    }

    /// Whether this replica has a relay (Postgres) and it is listening to the others
    /// now: `None` without a relay. `/metrics` shows it.
    pub fn relay_listening(&self) -> Option<bool> {
        self.relay
            .get()
            .map(|_| self.relay_listening.load(Ordering::Relaxed))
    }

    /// Set by the relay as its listening connection comes and goes.
    pub fn set_relay_listening(&self, listening: bool) {
        self.relay_listening.store(listening, Ordering::Relaxed);
    }

    /// Whether changes could not be handed to the relay since the last call.
    pub fn take_relay_lost(&self) -> bool {
        self.relay_lost.swap(false, Ordering::Relaxed)
    }

    /// A change another replica named: published here as if named here, without
    /// relaying it back.
    pub fn apply_remote(&self, change: ReplicaChange) {
        match change {
            ReplicaChange::Alerts { ids } => {
                if !ids.is_empty() {
                    self.send(Change::Alerts(ids));
                    self.alert_signal.notify_one();
                }
            }
            ReplicaChange::Gateway { site, gateway } => {
                self.send(Change::Gateway { site, gateway })
            }
            ReplicaChange::ConfigSaved => self.config_signal.notify_one(),
            ReplicaChange::RolloutChanged => self.rollout_signal.notify_one(),
            ReplicaChange::Resync { reason } => self.send(Change::Resync(reason)),
        }
    }

    // The change is built only when a relay listens (not for SQLite or one replica).
    fn relay(&self, change: impl FnOnce() -> ReplicaChange) {
        if let Some(tx) = self.relay.get() {
            if tx.try_send(change()).is_err() {
                self.relay_lost.store(true, Ordering::Relaxed);
            }
        }
    }

    fn send(&self, change: Change) {
        if self.changes.try_send(change).is_err() {
            self.lost.store(true, Ordering::Relaxed);
        }
    }

    /// The change queue, for the one publisher task (`None` once taken).
    pub fn take_changes(&self) -> Option<mpsc::Receiver<Change>> {
        self.receiver.lock().ok()?.take()
    }

    /// Whether changes were dropped since the last call (the publisher then sends a
    /// resync).
    pub fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::Relaxed)
    }

    /// Numbers an event, keeps it in the history and sends it to every subscriber.
    pub fn publish(
        &self,
        kind: EventKind,
        site: Option<String>,
        level: Option<u8>,
        data: String,
    ) -> Arc<LiveEvent> {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let event = Arc::new(LiveEvent {
            seq: h.next_seq,
            kind,
            site,
            level,
            data,
        });
        h.next_seq += 1;
        if h.events.len() == self.capacity {
            h.events.pop_front();
        }
        h.events.push_back(Arc::clone(&event));
        // Sent under the lock, so that subscribers see events in sequence order. No
        // subscriber is not an error.
        let _ = self.fanout.send(Arc::clone(&event));
        event
    }

    /// The SSE id of an event.
    pub fn event_id(&self, event: &LiveEvent) -> String {
        format!("{}-{}", self.epoch, event.seq)
    }

    /// Subscribes, and says what a client that last saw `last_event_id` missed. The
    /// subscription starts exactly after the returned events: none is lost between
    /// the two, none is repeated.
    pub fn subscribe(
        &self,
        last_event_id: Option<&str>,
    ) -> (Resume, broadcast::Receiver<Arc<LiveEvent>>) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.fanout.subscribe();
        let resume = match last_event_id {
            None => Resume::From(Vec::new()),
            Some(id) => match self.parse_seq(id) {
                Some(seq) if seq + 1 >= h.next_seq => Resume::From(Vec::new()),
                Some(seq) => match h.events.front() {
                    // Everything after `seq` is still in the history.
                    Some(first) if first.seq <= seq + 1 => {
                        Resume::From(h.events.iter().filter(|e| e.seq > seq).cloned().collect())
                    }
                    _ => Resume::Gap,
                },
                None => Resume::Gap,
            },
        };
        (resume, rx)
    }

    fn parse_seq(&self, id: &str) -> Option<u64> {
        let (epoch, seq) = id.trim().split_once('-')?;
        if epoch != self.epoch {
            return None;
        }
        seq.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(live: &LiveEvents, n: usize) {
        for i in 0..n {
            live.publish(EventKind::Alert, Some("s".into()), Some(1), i.to_string());
        }
    }

    #[test]
    fn resume_returns_exactly_the_missed_events() {
        let live = LiveEvents::new(8);
        publish(&live, 5);
        let id = format!("{}-3", live.epoch);
        let (resume, _) = live.subscribe(Some(&id));
        let Resume::From(events) = resume else {
            panic!("expected events")
        };
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        let latest = format!("{}-5", live.epoch);
        assert_eq!(live.subscribe(Some(&latest)).0, Resume::From(Vec::new()));
    }

    #[test]
    fn resume_from_too_far_back_or_another_start_is_a_gap() {
        let live = LiveEvents::new(4);
        publish(&live, 10);
        // History holds 7..=10; after 5 means 6 is missing.
        assert_eq!(
            live.subscribe(Some(&format!("{}-5", live.epoch))).0,
            Resume::Gap
        );
        let Resume::From(e) = live.subscribe(Some(&format!("{}-6", live.epoch))).0 else {
            panic!("6 is the last one before the history")
        };
        assert_eq!(e.len(), 4);
        assert_eq!(live.subscribe(Some("000000000000-3")).0, Resume::Gap);
        assert_eq!(live.subscribe(Some("garbage")).0, Resume::Gap);
    }

    #[tokio::test]
    async fn subscribers_get_later_events_in_order() {
        let live = LiveEvents::new(4);
        publish(&live, 2);
        let (_, mut rx) = live.subscribe(None);
        publish(&live, 3);
        for want in 3..=5 {
            assert_eq!(rx.recv().await.unwrap().seq, want);
        }
    }

    #[test]
    fn named_changes_are_relayed_and_remote_ones_are_not_relayed_back() {
        let live = LiveEvents::new(4);
        let mut changes = live.take_changes().unwrap();
        // Before a relay is set, nothing is relayed (one replica, or SQLite).
        live.gateway_changed("s", "g0");
        let mut relayed = live.relay_to(2).unwrap();
        assert!(live.relay_to(2).is_none(), "one relay per hub");
        let id = Uuid::now_v7();
        live.alerts_changed(vec![id]);
        live.config_saved();
        assert_eq!(
            relayed.try_recv().unwrap(),
            ReplicaChange::Alerts { ids: vec![id] }
        );
        assert_eq!(relayed.try_recv().unwrap(), ReplicaChange::ConfigSaved);
        // A full relay queue is remembered, for a resync on the other side.
        live.rollout_changed();
        live.rollout_changed();
        live.rollout_changed();
        assert!(live.take_relay_lost());
        while relayed.try_recv().is_ok() {}
        live.apply_remote(ReplicaChange::Gateway {
            site: "s".into(),
            gateway: "g1".into(),
        });
        live.apply_remote(ReplicaChange::Resync { reason: "r".into() });
        assert!(relayed.try_recv().is_err(), "remote changes stay here");
        let mut local = Vec::new();
        while let Ok(c) = changes.try_recv() {
            local.push(c);
        }
        assert_eq!(
            local,
            vec![
                Change::Gateway {
                    site: "s".into(),
                    gateway: "g0".into()
                },
                Change::Alerts(vec![id]),
                Change::Gateway {
                    site: "s".into(),
                    gateway: "g1".into()
                },
                Change::Resync("r".into()),
            ]
        );
    }

    #[test]
    fn a_full_change_queue_is_reported_as_lost() {
        let live = LiveEvents::new(4);
        for _ in 0..CHANGE_QUEUE {
            live.gateway_changed("s", "g");
        }
        assert!(!live.take_lost());
        live.gateway_changed("s", "g");
        assert!(live.take_lost());
        assert!(!live.take_lost());
    }
}
