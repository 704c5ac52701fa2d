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
//! is from another start or older than the history, it gets a `resync` first.

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

    /// Names alerts that were created or changed (never blocks; see the module docs).
    pub fn alerts_changed(&self, ids: Vec<Uuid>) {
        if !ids.is_empty() {
            self.send(Change::Alerts(ids));
            self.alert_signal.notify_one();
        }
    }

    /// Names a gateway whose state changed (never blocks).
    pub fn gateway_changed(&self, site: &str, gateway: &str) {
        self.send(Change::Gateway {
            site: site.to_string(),
            gateway: gateway.to_string(),
        });
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
