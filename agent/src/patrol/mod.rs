//! Pan-tilt patrol: drives a Pelco-D head through a tour of presets so that one thermal
//! camera can inspect several assets in turn.
//!
//! The patrol runs as a blocking loop on its own OS thread ([`run_patrol`] or
//! [`spawn_patrol`]). For each [`PatrolStop`] it sends "go to preset", waits for the head
//! to settle, then dwells. A shared [`PatrolPosition`] tells the camera source where the
//! head is: `Some` only while dwelling, `None` while moving or settling, so frames taken
//! while the head moves are never analysed against the wrong asset.

pub mod config;
pub mod pelco_d;

pub use config::{PatrolConfig, PresetConfig};

#[cfg(test)]
mod tests;

#[cfg(all(test, unix))]
mod pty_tests;

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use self::pelco_d::{Command, PelcoError, FRAME_LEN};
use crate::shutdown::Shutdown;

/// Serial speed used when the configuration does not name one. (Many Pelco-D heads ship
/// at 2400 baud; check the head's DIP switches.)
pub const DEFAULT_BAUD_RATE: u32 = 9600;

/// How long a serial write may block before it counts as failed.
pub const SERIAL_TIMEOUT: Duration = Duration::from_millis(500);

/// First wait after a failed serial write; it doubles per consecutive failure.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(100);

/// Cap on the wait between retries of a failed serial write.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(5);

/// One stop of the tour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatrolStop {
    /// The preset's id in the agent configuration; reported by [`PatrolPosition::current`].
    pub preset: String,
    /// The preset number stored in the head, 1..=255. Some heads reserve numbers for
    /// functions (e.g. calling 95 opens the menu on many domes); see the head's manual.
    pub pelco_preset: u8,
    /// The asset inspected from this preset, if any.
    pub asset: Option<String>,
    /// Time allowed after "go to preset" for the head to arrive and stop shaking. It must
    /// also cover the camera pipeline's latency, since frames are attributed when read.
    pub settle: Duration,
    /// Time spent at the preset once settled; must be non-zero.
    pub dwell: Duration,
}

/// Everything the patrol needs; built by the agent's configuration layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatrolPlan {
    /// Serial device of the RS-485/RS-232 adapter, e.g. `/dev/ttyUSB0`.
    pub device: String,
    /// Serial speed in baud; the line is always 8 data bits, no parity, 1 stop bit.
    pub baud_rate: u32,
    /// Pelco-D address of the head, 1..=255.
    pub address: u8,
    /// The tour, in order.
    pub stops: Vec<PatrolStop>,
    /// Start the tour again after the last stop; otherwise the patrol ends there.
    pub repeat: bool,
    /// First wait after a failed serial write.
    pub retry_initial: Duration,
    /// Longest wait between retries of a failed serial write.
    pub retry_max: Duration,
}

impl PatrolPlan {
    /// The serial write retry policy: `retry_initial` doubling to `retry_max`.
    pub fn retry_backoff(&self) -> crate::backoff::Backoff {
        crate::backoff::Backoff::new(self.retry_initial, self.retry_max)
    }

    /// A repeating tour at [`DEFAULT_BAUD_RATE`] with the default retry backoff.
    pub fn new(device: impl Into<String>, address: u8, stops: Vec<PatrolStop>) -> Self {
        PatrolPlan {
            device: device.into(),
            baud_rate: DEFAULT_BAUD_RATE,
            address,
            stops,
            repeat: true,
            retry_initial: DEFAULT_RETRY_INITIAL,
            retry_max: DEFAULT_RETRY_MAX,
        }
    }

    /// Checks what the types cannot: address and presets non-zero, a non-empty tour,
    /// non-zero dwells, baud rate and initial backoff.
    pub fn validate(&self) -> Result<(), PatrolError> {
        if self.address == 0 {
            return Err(PatrolError::InvalidAddress);
        }
        if self.baud_rate == 0 {
            return Err(PatrolError::InvalidBaudRate);
        }
        if self.stops.is_empty() {
            return Err(PatrolError::NoStops);
        }
        // A zero backoff would turn a dead serial port into a busy loop.
        if self.retry_initial.is_zero() {
            return Err(PatrolError::InvalidRetry);
        }
        for stop in &self.stops {
            if stop.preset.is_empty() {
                return Err(PatrolError::EmptyPresetId);
            }
            if stop.pelco_preset == 0 {
                return Err(PatrolError::InvalidPreset {
                    preset: stop.preset.clone(),
                });
            }
            // Zero dwell never yields an analysable frame, and with zero settle on a
            // repeating tour it would flood the line with commands.
            if stop.dwell.is_zero() {
                return Err(PatrolError::ZeroDwell {
                    preset: stop.preset.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Errors that end or prevent a patrol. Serial write errors are not among them: the
/// patrol retries those (see [`PatrolPosition::serial_write_errors`]).
#[derive(Debug, thiserror::Error)]
pub enum PatrolError {
    /// Pelco-D address 0.
    #[error("invalid pelco-d address 0 (must be 1..=255)")]
    InvalidAddress,
    /// Baud rate 0.
    #[error("invalid baud rate 0")]
    InvalidBaudRate,
    /// The tour has no stops.
    #[error("patrol has no stops")]
    NoStops,
    /// Zero initial retry backoff.
    #[error("retry backoff must be non-zero")]
    InvalidRetry,
    /// A stop without a preset id.
    #[error("patrol stop with an empty preset id")]
    EmptyPresetId,
    /// A stop with Pelco-D preset 0.
    #[error("patrol stop {preset:?}: pelco-d preset 0 is invalid (presets are 1..=255)")]
    InvalidPreset {
        /// The stop's preset id.
        preset: String,
    },
    /// A stop with zero dwell.
    #[error("patrol stop {preset:?}: dwell must be non-zero")]
    ZeroDwell {
        /// The stop's preset id.
        preset: String,
    },
    /// The serial device could not be opened.
    #[error("cannot open serial port {device}: {source}")]
    Open {
        /// The device path.
        device: String,
        /// Why it failed.
        #[source]
        source: serialport::Error,
    },
    /// A Pelco-D frame could not be encoded.
    #[error(transparent)]
    Pelco(#[from] PelcoError),
    /// The patrol thread could not be started.
    #[error("cannot start the patrol thread: {0}")]
    Spawn(#[source] io::Error),
    /// The patrol thread panicked.
    #[error("the patrol thread panicked")]
    Panicked,
}

/// Where the Pelco-D frames go: the serial line in production, a fake in tests.
pub trait PanTiltPort {
    /// Writes one complete frame, returning once it has left (or failed to).
    fn write_frame(&mut self, frame: &[u8; FRAME_LEN]) -> io::Result<()>;
}

impl<P: PanTiltPort + ?Sized> PanTiltPort for Box<P> {
    fn write_frame(&mut self, frame: &[u8; FRAME_LEN]) -> io::Result<()> {
        (**self).write_frame(frame)
    }
}

impl<P: PanTiltPort + ?Sized> PanTiltPort for &mut P {
    fn write_frame(&mut self, frame: &[u8; FRAME_LEN]) -> io::Result<()> {
        (**self).write_frame(frame)
    }
}

/// [`PanTiltPort`] over a serial device (8N1, no flow control).
///
/// After a failed write the device is closed and reopened on the next write, because a
/// USB-RS485 adapter that drops off the bus leaves the old descriptor dead for good.
pub struct SerialPanTiltPort {
    device: String,
    baud_rate: u32,
    port: Option<Box<dyn serialport::SerialPort>>,
}

impl std::fmt::Debug for SerialPanTiltPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialPanTiltPort")
            .field("device", &self.device)
            .field("baud_rate", &self.baud_rate)
            .field("open", &self.port.is_some())
            .finish()
    }
}

impl SerialPanTiltPort {
    /// Opens `device` at `baud_rate`, 8 data bits, no parity, 1 stop bit.
    pub fn open(device: &str, baud_rate: u32) -> Result<Self, PatrolError> {
        let port = open_serial(device, baud_rate).map_err(|source| PatrolError::Open {
            device: device.to_owned(),
            source,
        })?;
        Ok(SerialPanTiltPort {
            device: device.to_owned(),
            baud_rate,
            port: Some(port),
        })
    }

    /// Opens the device and baud rate named in `config`.
    pub fn from_config(config: &PatrolPlan) -> Result<Self, PatrolError> {
        Self::open(&config.device, config.baud_rate)
    }

    /// The device path.
    pub fn device(&self) -> &str {
        &self.device
    }
}

fn open_serial(
    device: &str,
    baud_rate: u32,
) -> serialport::Result<Box<dyn serialport::SerialPort>> {
    serialport::new(device, baud_rate)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(SERIAL_TIMEOUT)
        .open()
}

impl PanTiltPort for SerialPanTiltPort {
    fn write_frame(&mut self, frame: &[u8; FRAME_LEN]) -> io::Result<()> {
        let port = match &mut self.port {
            Some(port) => port,
            None => self.port.insert(open_serial(&self.device, self.baud_rate)?),
        };
        // flush() drains the UART, so the settle timer starts once the command is on the wire.
        let result = port.write_all(frame).and_then(|()| port.flush());
        if result.is_err() {
            self.port = None;
        }
        result
    }
}

/// Where the head is dwelling: the stop's preset id and asset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DwellSpot {
    /// The preset's id in the agent configuration.
    pub preset: String,
    /// The asset inspected from this preset, if any.
    pub asset: Option<String>,
}

type Observer = Box<dyn FnMut(Option<&DwellSpot>) -> bool + Send>;

#[derive(Default)]
struct Shared {
    current: RwLock<Option<DwellSpot>>,
    // Held across a whole update (state change plus notifications) so observers see
    // changes in order, while `current` stays readable from inside an observer.
    observers: Mutex<Vec<Observer>>,
    serial_write_errors: AtomicU64,
}

/// Shared view of the patrol, cheap to clone: the camera source reads [`current`] per
/// frame, the patrol thread updates it.
///
/// [`current`]: PatrolPosition::current
#[derive(Clone, Default)]
pub struct PatrolPosition {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PatrolPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatrolPosition")
            .field("current", &self.current())
            .field("serial_write_errors", &self.serial_write_errors())
            .finish()
    }
}

impl PatrolPosition {
    /// A position that is not dwelling anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Some` only while the head dwells at a preset (after settling); `None` while it
    /// moves or settles, before the patrol starts and after it ends.
    pub fn current(&self) -> Option<DwellSpot> {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Calls `observer` on the patrol thread after every change of [`current`], in order,
    /// before the patrol moves on (so [`current`] read inside it is the new value). Keep it
    /// short; it must not call `observe` or `subscribe` (deadlock), and capturing this
    /// handle in it keeps the handle alive forever.
    ///
    /// [`current`]: PatrolPosition::current
    pub fn observe<F>(&self, mut observer: F)
    where
        F: FnMut(Option<&DwellSpot>) + Send + 'static,
    {
        self.lock_observers().push(Box::new(move |spot| {
            observer(spot);
            true
        }));
    }

    /// A channel receiving every change of [`current`](PatrolPosition::current), in order;
    /// dropping the receiver unsubscribes.
    pub fn subscribe(&self) -> mpsc::Receiver<Option<DwellSpot>> {
        let (tx, rx) = mpsc::channel();
        self.lock_observers()
            .push(Box::new(move |spot| tx.send(spot.cloned()).is_ok()));
        rx
    }

    /// Failed serial writes since this handle was created (each retry counts).
    pub fn serial_write_errors(&self) -> u64 {
        self.shared.serial_write_errors.load(Ordering::Relaxed)
    }

    fn lock_observers(&self) -> std::sync::MutexGuard<'_, Vec<Observer>> {
        // An observer that panicked must not stop the patrol from reporting positions.
        self.shared
            .observers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn record_write_error(&self) -> u64 {
        self.shared
            .serial_write_errors
            .fetch_add(1, Ordering::Relaxed)
            + 1
    }

    fn set(&self, spot: Option<DwellSpot>) {
        let mut observers = self.lock_observers();
        {
            let mut current = self
                .shared
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if *current == spot {
                return;
            }
            current.clone_from(&spot);
        }
        observers.retain_mut(|observer| observer(spot.as_ref()));
    }
}

/// How a patrol ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatrolOutcome {
    /// The stop signal was triggered.
    Stopped,
    /// A non-repeating tour reached its end.
    Completed,
}

/// Runs the tour on the calling thread until `stop` is raised (or, without `repeat`, until
/// the last dwell ends). Blocks; meant for a dedicated OS thread.
///
/// Serial write errors are logged, counted in [`PatrolPosition::serial_write_errors`] and
/// retried with capped exponential backoff; only an invalid `config` returns an error.
/// Every wait ends as soon as `stop` is triggered. On return `position` is `None`.
pub fn run_patrol<P: PanTiltPort + ?Sized>(
    port: &mut P,
    config: &PatrolPlan,
    position: &PatrolPosition,
    stop: &Shutdown,
) -> Result<PatrolOutcome, PatrolError> {
    config.validate()?;
    let frames = config
        .stops
        .iter()
        .map(|s| pelco_d::encode(config.address, Command::GoToPreset(s.pelco_preset)))
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = tour(port, config, &frames, position, stop);
    // Once the patrol is over nothing guarantees the head stays put (an operator may take
    // over), so no later frame is attributed to a preset.
    position.set(None);
    Ok(outcome)
}

fn tour<P: PanTiltPort + ?Sized>(
    port: &mut P,
    config: &PatrolPlan,
    frames: &[[u8; FRAME_LEN]],
    position: &PatrolPosition,
    stop: &Shutdown,
) -> PatrolOutcome {
    loop {
        for (patrol_stop, frame) in config.stops.iter().zip(frames) {
            // Cleared before the command goes out: a frame read after this point may
            // already show the head moving.
            position.set(None);
            if !send_with_retry(port, frame, patrol_stop, config, position, stop)
                || wait_unless_stopped(stop, patrol_stop.settle)
            {
                return PatrolOutcome::Stopped;
            }
            position.set(Some(DwellSpot {
                preset: patrol_stop.preset.clone(),
                asset: patrol_stop.asset.clone(),
            }));
            if wait_unless_stopped(stop, patrol_stop.dwell) {
                return PatrolOutcome::Stopped;
            }
        }
        if !config.repeat {
            return PatrolOutcome::Completed;
        }
    }
}

/// Writes `frame` until it succeeds; `false` if `stop` was raised first.
fn send_with_retry<P: PanTiltPort + ?Sized>(
    port: &mut P,
    frame: &[u8; FRAME_LEN],
    patrol_stop: &PatrolStop,
    config: &PatrolPlan,
    position: &PatrolPosition,
    stop: &Shutdown,
) -> bool {
    let mut retries = config.retry_backoff().retries();
    loop {
        if stop.is_triggered() {
            return false;
        }
        match port.write_frame(frame) {
            Ok(()) => return true,
            Err(err) => {
                let total = position.record_write_error();
                let backoff = retries.next_delay();
                tracing::warn!(
                    device = %config.device,
                    preset = %patrol_stop.preset,
                    pelco_preset = patrol_stop.pelco_preset,
                    attempt = retries.attempts(),
                    total_errors = total,
                    retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    error = %err,
                    "pelco-d go-to-preset write failed; retrying",
                );
                if wait_unless_stopped(stop, backoff) {
                    return false;
                }
            }
        }
    }
}

/// Sleeps for `duration`; `true` if `stop` was triggered (checked before sleeping too).
fn wait_unless_stopped(stop: &Shutdown, duration: Duration) -> bool {
    stop.sleep(duration)
}

/// A patrol running on its own thread; see [`spawn_patrol`].
#[derive(Debug)]
pub struct PatrolThread {
    stop: Shutdown,
    handle: JoinHandle<Result<PatrolOutcome, PatrolError>>,
}

impl PatrolThread {
    /// Asks the patrol to stop without waiting for it.
    pub fn request_stop(&self) {
        self.stop.trigger();
    }

    /// Whether the patrol thread has returned.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Stops the patrol and waits for its thread.
    pub fn shutdown(self) -> Result<PatrolOutcome, PatrolError> {
        self.request_stop();
        self.join()
    }

    /// Waits for the patrol thread without stopping it (a non-repeating tour ends by itself).
    pub fn join(self) -> Result<PatrolOutcome, PatrolError> {
        self.handle.join().unwrap_or(Err(PatrolError::Panicked))
    }
}

/// Starts [`run_patrol`] on a new thread named `patrol`, after validating `config`.
pub fn spawn_patrol<P>(
    mut port: P,
    config: PatrolPlan,
    position: PatrolPosition,
) -> Result<PatrolThread, PatrolError>
where
    P: PanTiltPort + Send + 'static,
{
    config.validate()?;
    let stop = Shutdown::new();
    let flag = stop.clone();
    let handle = thread::Builder::new()
        .name("patrol".into())
        .spawn(move || run_patrol(&mut port, &config, &position, &flag))
        .map_err(PatrolError::Spawn)?;
    Ok(PatrolThread { stop, handle })
}
