//! [`Shutdown`]: the one stop signal of the agent, for threads and async tasks alike.
//!
//! Cloned into every component that must stop: source threads, the patrol, the evidence
//! uploader (threads, which poll [`Shutdown::is_triggered`] or sleep with
//! [`Shutdown::sleep`]) and the MQTT sink and `/metrics` server (tasks, which await
//! [`Shutdown::triggered`]). `topology` holds one per shutdown phase (sources first,
//! then the sink and the rest) and triggers them in order. Triggering is idempotent and
//! never undone; a sleeper or waiter wakes at once, not at its next poll.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A cloneable stop signal; every clone sees the same trigger.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Default)]
struct Inner {
    triggered: Mutex<bool>,
    /// Wakes threads in [`Shutdown::sleep`].
    threads: Condvar,
    /// Wakes tasks in [`Shutdown::triggered`].
    tasks: Notify,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Shutdown")
            .field(&self.is_triggered())
            .finish()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, bool> {
        // A panicking holder cannot leave the flag half-written: it is one bool.
        self.0
            .triggered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks every holder to stop; wakes every sleeper and waiter.
    pub fn trigger(&self) {
        *self.state() = true;
        self.0.threads.notify_all();
        self.0.tasks.notify_waiters();
    }

    /// True once [`Self::trigger`] was called on any clone.
    pub fn is_triggered(&self) -> bool {
        *self.state()
    }

    /// Sleeps up to `total` on this thread; returns `true` (early) when triggered. A
    /// `total` beyond what `Instant` can represent sleeps until triggered.
    pub fn sleep(&self, total: Duration) -> bool {
        let deadline = Instant::now().checked_add(total);
        let mut triggered = self.state();
        while !*triggered {
            triggered = match deadline {
                None => self
                    .0
                    .threads
                    .wait(triggered)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.0
                        .threads
                        .wait_timeout(triggered, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        true
    }

    /// Completes once triggered (at once if it already was).
    pub async fn triggered(&self) {
        loop {
            let notified = self.0.tasks.notified();
            tokio::pin!(notified);
            // Registered before the check, so a trigger in between is not missed.
            notified.as_mut().enable();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// A signal that triggers when `outer` turns true or its sender is dropped: the
    /// bridge from the `watch` channel callers of `topology::run` hold.
    pub fn follow(mut outer: tokio::sync::watch::Receiver<bool>) -> Self {
        let shutdown = Self::new();
        let inner = shutdown.clone();
        tokio::spawn(async move {
            while !*outer.borrow_and_update() {
                if outer.changed().await.is_err() {
                    break;
                }
            }
            inner.trigger();
        });
        shutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_thread_wakes_when_triggered() {
        let shutdown = Shutdown::new();
        let sleeper = shutdown.clone();
        let thread = std::thread::spawn(move || sleeper.sleep(Duration::MAX));
        shutdown.trigger();
        assert!(
            thread.join().unwrap(),
            "woke by the trigger, not the timeout"
        );
        assert!(shutdown.is_triggered());
        assert!(shutdown.sleep(Duration::from_secs(600)), "stays triggered");
        assert!(shutdown.sleep(Duration::MAX));
        assert!(!Shutdown::new().sleep(Duration::ZERO));
    }

    #[test]
    fn an_untriggered_sleep_runs_its_time() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.sleep(Duration::from_millis(5)));
        assert!(!shutdown.is_triggered());
        assert_eq!(format!("{shutdown:?}"), "Shutdown(false)");
    }

    #[tokio::test]
    async fn tasks_wake_when_triggered_and_later_waits_return_at_once() {
        let shutdown = Shutdown::new();
        let waiter = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.triggered().await }
        });
        shutdown.trigger();
        waiter.await.unwrap();
        shutdown.triggered().await;
    }

    #[tokio::test]
    async fn a_watch_channel_is_followed_also_when_its_sender_goes() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let followed = Shutdown::follow(rx);
        assert!(!followed.is_triggered());
        tx.send(true).unwrap();
        followed.triggered().await;

        let (tx, rx) = tokio::sync::watch::channel(false);
        let followed = Shutdown::follow(rx);
        drop(tx);
        followed.triggered().await;
    }
}
