//! Patrol loop tests against an in-memory port.

use super::pelco_d::{self, Command, Frame};
use super::*;

/// Bound on any wait for the patrol thread: a guard against hangs, not a timing check.
const HANG_GUARD: Duration = Duration::from_secs(20);

/// Records every successful frame; fails the first `fail_first` writes and reports each
/// failure on `failures`.
struct FakePort {
    sent: Arc<Mutex<Vec<[u8; FRAME_LEN]>>>,
    fail_first: usize,
    failures: Option<mpsc::Sender<()>>,
}

impl FakePort {
    fn new(fail_first: usize) -> (Self, Arc<Mutex<Vec<[u8; FRAME_LEN]>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let port = FakePort {
            sent: Arc::clone(&sent),
            fail_first,
            failures: None,
        };
        (port, sent)
    }
}

impl PanTiltPort for FakePort {
    fn write_frame(&mut self, frame: &[u8; FRAME_LEN]) -> io::Result<()> {
        if self.fail_first > 0 {
            self.fail_first -= 1;
            if let Some(failures) = &self.failures {
                let _ = failures.send(());
            }
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "adapter unplugged",
            ));
        }
        self.sent.lock().unwrap().push(*frame);
        Ok(())
    }
}

fn stop(preset: &str, pelco_preset: u8, dwell: Duration) -> PatrolStop {
    PatrolStop {
        preset: preset.to_owned(),
        pelco_preset,
        asset: Some(format!("asset-{preset}")),
        settle: Duration::from_millis(1),
        dwell,
    }
}

fn spot(stop: &PatrolStop) -> Option<DwellSpot> {
    Some(DwellSpot {
        preset: stop.preset.clone(),
        asset: stop.asset.clone(),
    })
}

fn go_to(address: u8, preset: u8) -> [u8; FRAME_LEN] {
    pelco_d::encode(address, Command::GoToPreset(preset)).unwrap()
}

fn one_shot_config(stops: Vec<PatrolStop>) -> PatrolPlan {
    PatrolPlan {
        repeat: false,
        retry_initial: Duration::from_millis(1),
        retry_max: Duration::from_millis(4),
        ..PatrolPlan::new("/dev/null", 5, stops)
    }
}

#[test]
fn non_repeating_tour_visits_each_stop_once() {
    let ms = Duration::from_millis(1);
    let config = one_shot_config(vec![stop("a", 10, ms), stop("b", 20, ms), stop("c", 1, ms)]);
    let (mut port, sent) = FakePort::new(0);
    let position = PatrolPosition::new();
    let changes = position.subscribe();

    let outcome = run_patrol(&mut port, &config, &position, &Shutdown::new()).unwrap();

    assert_eq!(outcome, PatrolOutcome::Completed);
    assert_eq!(
        *sent.lock().unwrap(),
        vec![go_to(5, 10), go_to(5, 20), go_to(5, 1)]
    );
    let s = &config.stops;
    assert_eq!(
        changes.try_iter().collect::<Vec<_>>(),
        vec![spot(&s[0]), None, spot(&s[1]), None, spot(&s[2]), None]
    );
    assert_eq!(position.current(), None);
    assert_eq!(position.serial_write_errors(), 0);
}

#[test]
fn write_errors_are_counted_and_retried() {
    let config = one_shot_config(vec![stop("a", 7, Duration::from_millis(1))]);
    let (mut port, sent) = FakePort::new(3);
    let position = PatrolPosition::new();
    let changes = position.subscribe();

    let outcome = run_patrol(&mut port, &config, &position, &Shutdown::new()).unwrap();

    assert_eq!(outcome, PatrolOutcome::Completed);
    assert_eq!(position.serial_write_errors(), 3);
    assert_eq!(*sent.lock().unwrap(), vec![go_to(5, 7)]);
    // The head was never reported at the preset before its command finally went out.
    assert_eq!(
        changes.try_iter().collect::<Vec<_>>(),
        vec![spot(&config.stops[0]), None]
    );
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let config = PatrolPlan {
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        ..PatrolPlan::new("/dev/null", 1, Vec::new())
    };
    let mut retries = config.retry_backoff().retries();
    let seen: Vec<Duration> = (0..5).map(|_| retries.next_delay()).collect();
    let ms = |n| Duration::from_millis(n);
    assert_eq!(seen, vec![ms(100), ms(200), ms(400), ms(500), ms(500)]);
}

#[test]
fn stop_interrupts_a_long_dwell() {
    let config = PatrolPlan::new("/dev/null", 1, vec![stop("a", 1, Duration::MAX)]);
    let (port, sent) = FakePort::new(0);
    let position = PatrolPosition::new();
    let changes = position.subscribe();
    let patrol = spawn_patrol(port, config.clone(), position.clone()).unwrap();

    assert_eq!(
        changes.recv_timeout(HANG_GUARD).unwrap(),
        spot(&config.stops[0])
    );
    assert_eq!(position.current(), spot(&config.stops[0]));
    assert_eq!(patrol.shutdown().unwrap(), PatrolOutcome::Stopped);

    assert_eq!(changes.try_iter().collect::<Vec<_>>(), vec![None]);
    assert_eq!(position.current(), None);
    assert_eq!(*sent.lock().unwrap(), vec![go_to(1, 1)]);
}

#[test]
fn stop_interrupts_retry_backoff() {
    let config = PatrolPlan {
        retry_initial: Duration::from_secs(3600),
        retry_max: Duration::from_secs(3600),
        ..PatrolPlan::new("/dev/null", 1, vec![stop("a", 1, Duration::from_millis(1))])
    };
    let (mut port, sent) = FakePort::new(usize::MAX);
    let (failures_tx, failures) = mpsc::channel();
    port.failures = Some(failures_tx);
    let position = PatrolPosition::new();
    let changes = position.subscribe();
    let patrol = spawn_patrol(port, config, position.clone()).unwrap();

    failures.recv_timeout(HANG_GUARD).unwrap();
    assert_eq!(patrol.shutdown().unwrap(), PatrolOutcome::Stopped);

    assert_eq!(position.serial_write_errors(), 1);
    assert!(sent.lock().unwrap().is_empty());
    assert_eq!(changes.try_iter().count(), 0, "never reported at a preset");
}

#[test]
fn raised_stop_flag_sends_nothing() {
    let config = PatrolPlan::new("/dev/null", 1, vec![stop("a", 1, Duration::MAX)]);
    let (mut port, sent) = FakePort::new(0);
    let position = PatrolPosition::new();
    let outcome = run_patrol(&mut port, &config, &position, &triggered()).unwrap();
    assert_eq!(outcome, PatrolOutcome::Stopped);
    assert!(sent.lock().unwrap().is_empty());
}

#[test]
fn waits_handle_extreme_durations() {
    assert!(!wait_unless_stopped(&Shutdown::new(), Duration::ZERO));
    assert!(wait_unless_stopped(&triggered(), Duration::MAX));
}

#[test]
fn invalid_configs_are_rejected_before_any_write() {
    let ok = || PatrolPlan::new("/dev/null", 1, vec![stop("a", 1, Duration::from_millis(1))]);
    let cases: Vec<(PatrolPlan, &str)> = vec![
        (
            PatrolPlan { address: 0, ..ok() },
            "invalid pelco-d address 0 (must be 1..=255)",
        ),
        (
            PatrolPlan {
                baud_rate: 0,
                ..ok()
            },
            "invalid baud rate 0",
        ),
        (
            PatrolPlan {
                stops: Vec::new(),
                ..ok()
            },
            "patrol has no stops",
        ),
        (
            PatrolPlan {
                retry_initial: Duration::ZERO,
                ..ok()
            },
            "retry backoff must be non-zero",
        ),
        (
            PatrolPlan {
                stops: vec![stop("", 1, Duration::from_millis(1))],
                ..ok()
            },
            "patrol stop with an empty preset id",
        ),
        (
            PatrolPlan {
                stops: vec![stop("gis-bay", 0, Duration::from_millis(1))],
                ..ok()
            },
            "patrol stop \"gis-bay\": pelco-d preset 0 is invalid (presets are 1..=255)",
        ),
        (
            PatrolPlan {
                stops: vec![stop("gis-bay", 1, Duration::ZERO)],
                ..ok()
            },
            "patrol stop \"gis-bay\": dwell must be non-zero",
        ),
    ];
    for (config, message) in cases {
        let (mut port, sent) = FakePort::new(0);
        let err =
            run_patrol(&mut port, &config, &PatrolPosition::new(), &Shutdown::new()).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert!(sent.lock().unwrap().is_empty());
        let (port, _) = FakePort::new(0);
        assert!(spawn_patrol(port, config, PatrolPosition::new()).is_err());
    }
    assert!(ok().validate().is_ok());
}

#[test]
fn observers_see_changes_only_and_dropped_subscribers_are_removed() {
    let position = PatrolPosition::new();
    let kept = position.subscribe();
    drop(position.subscribe());
    let a = DwellSpot {
        preset: "a".into(),
        asset: None,
    };
    position.set(None);
    position.set(Some(a.clone()));
    position.set(Some(a.clone()));
    position.set(None);
    assert_eq!(kept.try_iter().collect::<Vec<_>>(), vec![Some(a), None]);
    assert_eq!(position.lock_observers().len(), 1);
}

#[test]
fn opening_a_missing_device_names_it() {
    let err = SerialPanTiltPort::open("/dev/does-not-exist-patrol", 9600).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot open serial port /dev/does-not-exist-patrol: "),
        "{err}"
    );
}

#[test]
fn go_to_frames_decode_back() {
    let bytes = go_to(1, 1);
    assert_eq!(bytes, [0xFF, 0x01, 0x00, 0x07, 0x00, 0x01, 0x09]);
    assert_eq!(
        Frame::from_bytes(&bytes).unwrap().command(),
        Ok(Command::GoToPreset(1))
    );
}

fn triggered() -> Shutdown {
    let stop = Shutdown::new();
    stop.trigger();
    stop
}
