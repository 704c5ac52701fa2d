//! End-to-end: the patrol writes through [`SerialPanTiltPort`] into a real pseudo-terminal
//! and a Pelco-D decoder on the far end checks every frame.

use std::io::Read;

use serialport::{SerialPort, TTYPort};

use super::pelco_d::{Command, Decoder, Frame, PelcoError};
use super::*;

/// Bound on any wait in this test: a guard against hangs, not a timing check.
const HANG_GUARD: Duration = Duration::from_secs(20);

type SentLog = Arc<Mutex<Vec<[u8; FRAME_LEN]>>>;

/// Logs each frame after the inner port has written it.
struct Recording<P> {
    inner: P,
    sent: SentLog,
}

impl<P: PanTiltPort> PanTiltPort for Recording<P> {
    fn write_frame(&mut self, frame: &[u8; FRAME_LEN]) -> io::Result<()> {
        self.inner.write_frame(frame)?;
        self.sent.lock().unwrap().push(*frame);
        Ok(())
    }
}

/// One position change as seen on the patrol thread.
#[derive(Debug)]
struct Change {
    notified: Option<DwellSpot>,
    current: Option<DwellSpot>,
    frames_sent: usize,
}

#[test]
fn patrol_over_a_pseudo_terminal() {
    let (mut master, slave) = TTYPort::pair().expect("pseudo-terminal pair");
    // The patrol opens the slave by path, exercising the real 8N1 open; `slave` stays
    // open so the master never sees the line hang up between opens.
    let slave_path = slave.name().expect("the slave end has a /dev/pts path");
    let serial = SerialPanTiltPort::open(&slave_path, DEFAULT_BAUD_RATE).expect("open slave");

    let tour = [
        ("bus-a", 3, "xfmr-1"),
        ("bus-b", 1, "cb-12"),
        ("bus-c", 200, "ct-7"),
    ];
    let stops: Vec<PatrolStop> = tour
        .iter()
        .map(|&(preset, pelco_preset, asset)| PatrolStop {
            preset: preset.into(),
            pelco_preset,
            asset: Some(asset.into()),
            settle: Duration::from_millis(30),
            dwell: Duration::from_millis(30),
        })
        .collect();
    let config = PatrolPlan::new(slave_path.clone(), 0x17, stops.clone());
    assert!(config.repeat);

    // Far end: decode everything the master receives.
    master
        .set_timeout(Duration::from_millis(50))
        .expect("master timeout");
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (wire_tx, wire_rx) = mpsc::channel::<Result<[u8; FRAME_LEN], PelcoError>>();
    let reader = {
        let reading = Arc::clone(&reading);
        thread::spawn(move || {
            let mut decoder = Decoder::new();
            let mut buf = [0u8; 256];
            while reading.load(Ordering::Acquire) {
                match master.read(&mut buf) {
                    Ok(n) => {
                        for result in decoder.decode(&buf[..n]) {
                            let _ = wire_tx.send(result.map(|frame| frame.to_bytes()));
                        }
                    }
                    // The timeout only lets the loop notice `reading` going false.
                    Err(err) if err.kind() == io::ErrorKind::TimedOut => {}
                    Err(err) => panic!("reading the master end: {err}"),
                }
            }
        })
    };

    let sent = SentLog::default();
    let position = PatrolPosition::new();
    let (changes_tx, changes) = mpsc::channel();
    {
        // Runs on the patrol thread before it moves on, so `current()` and the sent log
        // are read at exactly the moment of the change.
        let observed = position.clone();
        let sent = Arc::clone(&sent);
        position.observe(move |spot| {
            let _ = changes_tx.send(Change {
                notified: spot.cloned(),
                current: observed.current(),
                frames_sent: sent.lock().unwrap().len(),
            });
        });
    }
    let port = Recording {
        inner: serial,
        sent: Arc::clone(&sent),
    };
    let patrol = spawn_patrol(port, config, position.clone()).expect("spawn patrol");

    // Let it run two full rounds, then stop it.
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|c: &&Change| c.notified.is_some())
        .count()
        < 2 * stops.len()
    {
        seen.push(changes.recv_timeout(HANG_GUARD).expect("position change"));
    }
    assert_eq!(patrol.shutdown().expect("patrol"), PatrolOutcome::Stopped);
    // Every notification was sent before the patrol thread returned.
    seen.extend(changes.try_iter());

    // Notifications: Some(stop k), None, Some(stop k+1), None, ... in tour order; each Some
    // only after that stop's command went out, each None before the next command did.
    let mut dwells = 0;
    for (i, change) in seen.iter().enumerate() {
        assert_eq!(
            change.current, change.notified,
            "change {i}: current() disagrees"
        );
        if i % 2 == 0 {
            let expected = &stops[dwells % stops.len()];
            dwells += 1;
            assert_eq!(
                change.notified,
                Some(DwellSpot {
                    preset: expected.preset.clone(),
                    asset: expected.asset.clone(),
                }),
                "change {i}"
            );
        } else {
            assert_eq!(change.notified, None, "change {i}");
        }
        assert_eq!(change.frames_sent, dwells, "change {i}: frames sent so far");
    }
    assert!(dwells >= 2 * stops.len());
    assert_eq!(seen.last().expect("changes").notified, None);
    assert_eq!(position.current(), None);

    // Wire: exactly the frames the patrol wrote, all valid, all go-to-preset in tour order.
    let sent = sent.lock().unwrap().clone();
    assert!(
        sent.len() >= dwells,
        "{} frames for {dwells} dwells",
        sent.len()
    );
    let wire: Vec<[u8; FRAME_LEN]> = (0..sent.len())
        .map(|_| {
            wire_rx
                .recv_timeout(HANG_GUARD)
                .expect("frame on the wire")
                .expect("valid frame")
        })
        .collect();
    reading.store(false, Ordering::Release);
    reader.join().expect("reader thread");
    assert!(
        wire_rx.try_iter().next().is_none(),
        "no stray bytes or frames"
    );
    assert_eq!(wire, sent);
    for (i, bytes) in wire.iter().enumerate() {
        let frame = Frame::from_bytes(bytes).expect("checksum");
        let sum: u32 = bytes[1..6].iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from(bytes[6]), sum % 256, "frame {i}");
        assert_eq!(frame.address, 0x17, "frame {i}");
        assert_eq!(
            frame.command(),
            Ok(Command::GoToPreset(stops[i % stops.len()].pelco_preset)),
            "frame {i}"
        );
    }
    assert_eq!(position.serial_write_errors(), 0);
    drop(slave);
}
