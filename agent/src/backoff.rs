//! The one retry delay of the agent: capped exponential backoff, optionally jittered,
//! honouring a server's `Retry-After`.
//!
//! A [`Backoff`] is the policy (first delay, cap, jitter), plain data that a
//! component's configuration fills in; [`Backoff::retries`] gives the per-loop state
//! ([`Retries`]) that counts attempts and draws the jitter. Every retry loop in the
//! agent uses it: the MQTT reconnect, the evidence uploader, a V4L2 camera's reopen, a
//! patrol's serial writes and the outbox writer's append.
//!
//! Jitter is for loops that talk to a shared server (the broker, the hub): gateways
//! that lost it together must not come back in step. Local loops (a camera, a serial
//! port, the disk) keep exact delays, which their tests pin.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How a delay is randomised below its exponential ceiling `c`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly `c`.
    #[default]
    None,
    /// Uniform in `[c/2, c]` ("equal jitter"): spread out, yet never much shorter
    /// than the exponential schedule. What the MQTT sink and the uploader use.
    Equal,
    /// Uniform in `[0, c]` ("full jitter", AWS Architecture Blog): the widest spread.
    Full,
}

/// A retry policy: the first delay, doubling up to a cap, with [`Jitter`].
///
/// A delay is never below `initial` (jitter included) nor above `max` (a
/// `Retry-After` included); when `max < initial`, `initial` is the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (and after a reset).
    pub initial: Duration,
    /// The cap; each failed attempt doubles the delay up to this.
    pub max: Duration,
    /// How delays are randomised.
    pub jitter: Jitter,
}

impl Backoff {
    /// Exact delays from `initial` doubling to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            jitter: Jitter::None,
        }
    }

    /// The same policy with `jitter`.
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The state of one retry loop under this policy.
    pub fn retries(&self) -> Retries {
        Retries {
            policy: *self,
            attempt: 0,
            rng: seed(),
        }
    }

    fn cap(&self) -> Duration {
        self.max.max(self.initial)
    }

    /// The un-jittered delay of the `attempt`-th retry (0 = the first):
    /// `initial × 2^attempt`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let cap = self.cap();
        self.initial
            .checked_mul(1u32 << attempt.min(31))
            .unwrap_or(cap)
            .min(cap)
    }

    /// The delay of the `attempt`-th retry given a random draw (deterministic, for
    /// tests; [`Retries`] draws `random`).
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let floor = match self.jitter {
            Jitter::None => return ceiling,
            Jitter::Equal => ceiling / 2,
            Jitter::Full => Duration::ZERO,
        };
        let span = u64::try_from((ceiling - floor).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if span == 0 {
            0
        } else {
            random % span.saturating_add(1)
        };
        (floor + Duration::from_nanos(jitter)).max(self.initial)
    }
}

/// One retry loop's state: how many attempts failed in a row, and the jitter source.
#[derive(Debug, Clone)]
pub struct Retries {
    policy: Backoff,
    attempt: u32,
    rng: u64,
}

impl Retries {
    /// The delay before the next retry; counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.policy.delay(self.attempt, next_random(&mut self.rng));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Like [`next_delay`](Self::next_delay), but a server's `Retry-After`, when it
    /// sent one, is the delay (capped at the policy's `max`); the attempt counts either
    /// way, so the schedule goes on growing behind it.
    pub fn next_delay_or(&mut self, retry_after: Option<Duration>) -> Duration {
        let backoff = self.next_delay();
        retry_after.map_or(backoff, |d| d.min(self.policy.cap()))
    }

    /// A success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// `period` stretched by a random share of up to `spread` of it (`spread` 0.25: uniform
/// in `[period, 1.25 × period]`), drawn once per call. A fleet whose timers started
/// together (a reconnect storm) drifts apart instead of firing in step.
pub fn spread_period(period: Duration, spread: f64) -> Duration {
    stretch(period, spread, next_random(&mut seed()))
}

fn stretch(period: Duration, spread: f64, random: u64) -> Duration {
    // 53 random bits make a uniform fraction in [0, 1).
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
    period.mul_f64(1.0 + spread.max(0.0) * unit)
}

// xorshift64*: plenty for jitter, and no dependency for it.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

// Seeded from the std hasher's per-process random keys and the clock, so agents that
// lost the hub together do not retry in lockstep.
fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_spread_period_stays_within_its_bounds_and_varies() {
        assert_eq!(stretch(S(60), 0.25, 0), S(60));
        assert!(stretch(S(60), 0.25, u64::MAX) <= S(75));
        assert!(stretch(S(60), 0.25, u64::MAX) > MS(74_900));
        let drawn: std::collections::BTreeSet<Duration> =
            (0..32).map(|_| spread_period(S(60), 0.25)).collect();
        assert!(drawn.iter().all(|d| (S(60)..=S(75)).contains(d)));
        assert!(drawn.len() > 1, "32 draws all equal: {drawn:?}");
    }

    #[test]
    fn exact_delays_double_to_the_cap_and_reset() {
        let mut r = Backoff::new(MS(500), S(30)).retries();
        let secs: Vec<f64> = (0..9).map(|_| r.next_delay().as_secs_f64()).collect();
        assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        assert_eq!(r.attempts(), 9);
        r.reset();
        assert_eq!(r.next_delay(), MS(500));
    }

    #[test]
    fn the_cap_is_never_below_the_first_delay_and_never_overflows() {
        let b = Backoff::new(MS(100), MS(10));
        assert_eq!(b.ceiling(0), MS(100));
        assert_eq!(b.ceiling(5), MS(100));
        let b = Backoff::new(Duration::MAX, S(1));
        assert_eq!(b.ceiling(3), Duration::MAX);
        let b = Backoff::new(MS(1), S(300));
        assert_eq!(b.ceiling(u32::MAX), S(300));
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half_and_above_the_first_delay() {
        let b = Backoff::new(S(1), S(300)).with_jitter(Jitter::Equal);
        for random in [0, 1, 12_345_678_901, u64::MAX] {
            assert_eq!(b.delay(0, random), S(1));
            let third = b.delay(3, random);
            assert!(third >= S(4) && third <= S(8), "{third:?}");
            for attempt in [9, 31, 32, u32::MAX] {
                let capped = b.delay(attempt, random);
                assert!(
                    capped >= S(150) && capped <= S(300),
                    "{attempt}: {capped:?}"
                );
            }
        }
        assert_eq!(b.delay(3, 0), S(4));
        assert_eq!(b.delay(3, 4_000_000_000), S(8));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling_floored_at_the_first_delay() {
        let b = Backoff::new(MS(10), S(60)).with_jitter(Jitter::Full);
        assert_eq!(b.delay(10, 0), MS(10));
        assert_eq!(b.delay(10, 10_240_000_000), MS(10_240));
        let mut r = b.retries();
        for attempt in 0..40 {
            let d = r.next_delay();
            assert!(d >= MS(10) && d <= b.ceiling(attempt), "{attempt}: {d:?}");
        }
    }

    #[test]
    fn draws_differ_so_gateways_do_not_retry_in_step() {
        let b = Backoff::new(S(1), S(3600)).with_jitter(Jitter::Full);
        let draws: std::collections::BTreeSet<Duration> =
            (0..8).map(|_| b.retries().delay_at(12)).collect();
        assert!(draws.len() > 1, "{draws:?}");
        let mut rng = seed();
        let a = next_random(&mut rng);
        assert_ne!(a, next_random(&mut rng));
    }

    #[test]
    fn retry_after_is_the_delay_capped_and_the_schedule_goes_on() {
        let mut r = Backoff::new(S(1), S(60)).retries();
        assert_eq!(r.next_delay_or(Some(S(7))), S(7));
        assert_eq!(r.next_delay_or(Some(S(3600))), S(60));
        assert_eq!(r.next_delay_or(Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(r.next_delay_or(None), S(8));
    }

    impl Retries {
        fn delay_at(&mut self, attempt: u32) -> Duration {
            self.policy.delay(attempt, next_random(&mut self.rng))
        }
    }
}
