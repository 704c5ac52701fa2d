//! Pelco-D: the 7-byte pan-tilt protocol spoken over RS-485/RS-232 by most PTZ heads.
//!
//! A frame is `0xFF, address, cmd1, cmd2, data1, data2, checksum`, where the checksum is
//! `(address + cmd1 + cmd2 + data1 + data2) mod 256` (the sync byte is not summed).
//! [`Frame`] is the raw frame, [`Command`] the subset of commands the patrol needs, and
//! [`Decoder`] turns a byte stream (for instance what a sniffer or a test reads off the
//! line) back into frames.

/// First byte of every Pelco-D frame.
pub const SYNC: u8 = 0xFF;

/// Length of a Pelco-D frame in bytes, sync and checksum included.
pub const FRAME_LEN: usize = 7;

/// Highest regular pan or tilt speed. (Pan speed `0xFF` is "turbo" on some heads; the
/// patrol never needs it, so the encoder rejects it rather than guess.)
pub const MAX_SPEED: u8 = 0x3F;

/// `cmd2` of the extended "set preset" command.
pub const CMD2_SET_PRESET: u8 = 0x03;
/// `cmd2` of the extended "clear preset" command.
pub const CMD2_CLEAR_PRESET: u8 = 0x05;
/// `cmd2` of the extended "go to preset" command.
pub const CMD2_GO_TO_PRESET: u8 = 0x07;

// Standard-command bits of cmd2. Bit 0 is always 0 for standard commands; extended
// commands (presets) set it, which is how the two families are told apart.
const CMD2_PAN_RIGHT: u8 = 0x02;
const CMD2_PAN_LEFT: u8 = 0x04;
const CMD2_TILT_UP: u8 = 0x08;
const CMD2_TILT_DOWN: u8 = 0x10;
const CMD2_MOTION_MASK: u8 = CMD2_PAN_RIGHT | CMD2_PAN_LEFT | CMD2_TILT_UP | CMD2_TILT_DOWN;

/// Errors from encoding or decoding Pelco-D frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PelcoError {
    /// Address 0 was given; Pelco-D receivers are addressed 1..=255.
    #[error("invalid pelco-d address 0 (must be 1..=255)")]
    InvalidAddress,
    /// Preset 0 was given; presets are 1-based.
    #[error("invalid pelco-d preset 0 (presets are 1..=255)")]
    InvalidPreset,
    /// A pan or tilt speed above [`MAX_SPEED`].
    #[error("invalid pelco-d speed {speed:#04x} (must be 0x00..=0x3f)")]
    InvalidSpeed {
        /// The rejected speed.
        speed: u8,
    },
    /// A frame whose checksum byte does not match its contents.
    #[error(
        "bad pelco-d checksum in frame {frame:02x?}: expected {expected:#04x}, got {actual:#04x}"
    )]
    BadChecksum {
        /// The rejected frame as received.
        frame: [u8; FRAME_LEN],
        /// The checksum computed from the frame's contents.
        expected: u8,
        /// The checksum byte the frame carried.
        actual: u8,
    },
    /// A frame that does not start with [`SYNC`].
    #[error("pelco-d frame starts with {byte:#04x}, not the sync byte 0xff")]
    MissingSync {
        /// The first byte of the rejected frame.
        byte: u8,
    },
    /// Bytes before a sync byte that could not belong to any frame.
    #[error("skipped {count} bytes of line noise before a pelco-d sync byte")]
    SkippedBytes {
        /// How many bytes were discarded.
        count: usize,
    },
    /// A well-formed frame carrying a command this module does not model.
    #[error("unsupported pelco-d command cmd1={cmd1:#04x} cmd2={cmd2:#04x}")]
    UnsupportedCommand {
        /// The frame's `cmd1`.
        cmd1: u8,
        /// The frame's `cmd2`.
        cmd2: u8,
    },
}

/// Horizontal direction of a pan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PanDirection {
    /// Pan left (`cmd2` bit 2).
    Left,
    /// Pan right (`cmd2` bit 1).
    Right,
}

/// Vertical direction of a tilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TiltDirection {
    /// Tilt up (`cmd2` bit 3).
    Up,
    /// Tilt down (`cmd2` bit 4).
    Down,
}

/// The Pelco-D commands the patrol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Stop all motion (all command and data bytes zero).
    Stop,
    /// Pan and/or tilt continuously; a `None` axis does not move. Speeds are 0..=[`MAX_SPEED`].
    Move {
        /// Pan direction and speed (`data1`).
        pan: Option<(PanDirection, u8)>,
        /// Tilt direction and speed (`data2`).
        tilt: Option<(TiltDirection, u8)>,
    },
    /// Store the current position as this preset (1..=255).
    SetPreset(u8),
    /// Forget this preset (1..=255).
    ClearPreset(u8),
    /// Move to this preset (1..=255).
    GoToPreset(u8),
}

impl Command {
    /// Pan left at `speed` (0..=[`MAX_SPEED`]).
    pub fn pan_left(speed: u8) -> Self {
        Command::Move {
            pan: Some((PanDirection::Left, speed)),
            tilt: None,
        }
    }

    /// Pan right at `speed` (0..=[`MAX_SPEED`]).
    pub fn pan_right(speed: u8) -> Self {
        Command::Move {
            pan: Some((PanDirection::Right, speed)),
            tilt: None,
        }
    }

    /// Tilt up at `speed` (0..=[`MAX_SPEED`]).
    pub fn tilt_up(speed: u8) -> Self {
        Command::Move {
            pan: None,
            tilt: Some((TiltDirection::Up, speed)),
        }
    }

    /// Tilt down at `speed` (0..=[`MAX_SPEED`]).
    pub fn tilt_down(speed: u8) -> Self {
        Command::Move {
            pan: None,
            tilt: Some((TiltDirection::Down, speed)),
        }
    }

    /// Interprets a frame's command bytes; the frame's checksum is not rechecked.
    pub fn from_frame(frame: &Frame) -> Result<Self, PelcoError> {
        let unsupported = PelcoError::UnsupportedCommand {
            cmd1: frame.cmd1,
            cmd2: frame.cmd2,
        };
        // Every command modelled here leaves cmd1 (iris, focus-near, camera on/off, scan) at 0.
        if frame.cmd1 != 0 {
            return Err(unsupported);
        }
        match frame.cmd2 {
            CMD2_SET_PRESET | CMD2_CLEAR_PRESET | CMD2_GO_TO_PRESET => {
                if frame.data1 != 0 {
                    return Err(unsupported);
                }
                if frame.data2 == 0 {
                    return Err(PelcoError::InvalidPreset);
                }
                Ok(match frame.cmd2 {
                    CMD2_SET_PRESET => Command::SetPreset(frame.data2),
                    CMD2_CLEAR_PRESET => Command::ClearPreset(frame.data2),
                    _ => Command::GoToPreset(frame.data2),
                })
            }
            cmd2 if cmd2 & !CMD2_MOTION_MASK != 0 => Err(unsupported),
            0 if frame.data1 == 0 && frame.data2 == 0 => Ok(Command::Stop),
            cmd2 => {
                let pan = match (cmd2 & CMD2_PAN_LEFT != 0, cmd2 & CMD2_PAN_RIGHT != 0) {
                    (true, true) => return Err(unsupported),
                    (true, false) => Some((PanDirection::Left, frame.data1)),
                    (false, true) => Some((PanDirection::Right, frame.data1)),
                    (false, false) => None,
                };
                let tilt = match (cmd2 & CMD2_TILT_UP != 0, cmd2 & CMD2_TILT_DOWN != 0) {
                    (true, true) => return Err(unsupported),
                    (true, false) => Some((TiltDirection::Up, frame.data2)),
                    (false, true) => Some((TiltDirection::Down, frame.data2)),
                    (false, false) => None,
                };
                if let Some((_, speed)) = pan {
                    check_speed(speed)?;
                }
                if let Some((_, speed)) = tilt {
                    check_speed(speed)?;
                }
                // A zero cmd2 with non-zero data is not a stop we emit; keep it visible.
                if pan.is_none() && tilt.is_none() {
                    return Err(unsupported);
                }
                Ok(Command::Move { pan, tilt })
            }
        }
    }
}

fn check_speed(speed: u8) -> Result<u8, PelcoError> {
    if speed > MAX_SPEED {
        Err(PelcoError::InvalidSpeed { speed })
    } else {
        Ok(speed)
    }
}

/// The Pelco-D checksum: `(address + cmd1 + cmd2 + data1 + data2) mod 256`.
pub fn checksum(address: u8, cmd1: u8, cmd2: u8, data1: u8, data2: u8) -> u8 {
    address
        .wrapping_add(cmd1)
        .wrapping_add(cmd2)
        .wrapping_add(data1)
        .wrapping_add(data2)
}

/// One Pelco-D frame without its sync byte and checksum (both are derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Receiver address.
    pub address: u8,
    /// Command byte 1.
    pub cmd1: u8,
    /// Command byte 2.
    pub cmd2: u8,
    /// Data byte 1 (pan speed for motion commands).
    pub data1: u8,
    /// Data byte 2 (tilt speed, or the preset number).
    pub data2: u8,
}

impl Frame {
    /// Builds the frame for `command` sent to `address`, validating address, speeds and preset.
    pub fn encode(address: u8, command: Command) -> Result<Self, PelcoError> {
        if address == 0 {
            return Err(PelcoError::InvalidAddress);
        }
        let preset = |cmd2: u8, preset: u8| {
            if preset == 0 {
                Err(PelcoError::InvalidPreset)
            } else {
                Ok((0, cmd2, 0, preset))
            }
        };
        let (cmd1, cmd2, data1, data2) = match command {
            Command::Stop => (0, 0, 0, 0),
            Command::Move { pan, tilt } => {
                let mut cmd2 = 0;
                let mut data1 = 0;
                let mut data2 = 0;
                if let Some((direction, speed)) = pan {
                    data1 = check_speed(speed)?;
                    cmd2 |= match direction {
                        PanDirection::Left => CMD2_PAN_LEFT,
                        PanDirection::Right => CMD2_PAN_RIGHT,
                    };
                }
                if let Some((direction, speed)) = tilt {
                    data2 = check_speed(speed)?;
                    cmd2 |= match direction {
                        TiltDirection::Up => CMD2_TILT_UP,
                        TiltDirection::Down => CMD2_TILT_DOWN,
                    };
                }
                (0, cmd2, data1, data2)
            }
            Command::SetPreset(n) => preset(CMD2_SET_PRESET, n)?,
            Command::ClearPreset(n) => preset(CMD2_CLEAR_PRESET, n)?,
            Command::GoToPreset(n) => preset(CMD2_GO_TO_PRESET, n)?,
        };
        Ok(Frame {
            address,
            cmd1,
            cmd2,
            data1,
            data2,
        })
    }

    /// This frame's checksum byte.
    pub fn checksum(&self) -> u8 {
        checksum(self.address, self.cmd1, self.cmd2, self.data1, self.data2)
    }

    /// The 7 bytes on the wire.
    pub fn to_bytes(&self) -> [u8; FRAME_LEN] {
        [
            SYNC,
            self.address,
            self.cmd1,
            self.cmd2,
            self.data1,
            self.data2,
            self.checksum(),
        ]
    }

    /// Parses 7 wire bytes, checking the sync byte and the checksum.
    pub fn from_bytes(bytes: &[u8; FRAME_LEN]) -> Result<Self, PelcoError> {
        if bytes[0] != SYNC {
            return Err(PelcoError::MissingSync { byte: bytes[0] });
        }
        let frame = Frame {
            address: bytes[1],
            cmd1: bytes[2],
            cmd2: bytes[3],
            data1: bytes[4],
            data2: bytes[5],
        };
        let expected = frame.checksum();
        if expected != bytes[6] {
            return Err(PelcoError::BadChecksum {
                frame: *bytes,
                expected,
                actual: bytes[6],
            });
        }
        Ok(frame)
    }

    /// Interprets the frame's command; see [`Command::from_frame`].
    pub fn command(&self) -> Result<Command, PelcoError> {
        Command::from_frame(self)
    }
}

/// Encodes `command` for `address` straight to wire bytes.
pub fn encode(address: u8, command: Command) -> Result<[u8; FRAME_LEN], PelcoError> {
    Frame::encode(address, command).map(|frame| frame.to_bytes())
}

/// Incremental decoder: feed it bytes as they arrive, then drain frames.
///
/// It resynchronises on [`SYNC`]: bytes before a sync byte are dropped (and reported as
/// [`PelcoError::SkippedBytes`]); a 7-byte candidate with a bad checksum is reported as
/// [`PelcoError::BadChecksum`] and dropped up to the next sync byte inside it, because
/// `0xFF` is also a legal address, data or checksum value, so the "frame" may have been
/// a misaligned window whose real start lies inside it.
#[derive(Debug, Default, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held back waiting for the rest of a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next frame or decode error, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, PelcoError>> {
        let start = match self.buf.iter().position(|&b| b == SYNC) {
            Some(start) => start,
            None => {
                // Nothing here can start a frame; drop it now so the buffer stays bounded.
                let count = self.buf.len();
                self.buf.clear();
                return (count > 0).then_some(Err(PelcoError::SkippedBytes { count }));
            }
        };
        if start > 0 {
            self.buf.drain(..start);
            return Some(Err(PelcoError::SkippedBytes { count: start }));
        }
        let candidate: [u8; FRAME_LEN] = self.buf.get(..FRAME_LEN)?.try_into().ok()?;
        match Frame::from_bytes(&candidate) {
            Ok(frame) => {
                self.buf.drain(..FRAME_LEN);
                Some(Ok(frame))
            }
            Err(err) => {
                let resync = candidate[1..]
                    .iter()
                    .position(|&b| b == SYNC)
                    .map_or(FRAME_LEN, |i| i + 1);
                self.buf.drain(..resync);
                Some(Err(err))
            }
        }
    }

    /// Pushes `bytes` and drains every result they complete.
    pub fn decode(&mut self, bytes: &[u8]) -> Vec<Result<Frame, PelcoError>> {
        self.push(bytes);
        std::iter::from_fn(|| self.next_frame()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(bytes: [u8; 7]) -> Frame {
        Frame::from_bytes(&bytes).expect("valid frame")
    }

    #[test]
    fn known_vectors() {
        let cases: &[(u8, Command, [u8; 7])] = &[
            (
                1,
                Command::GoToPreset(1),
                [0xFF, 0x01, 0x00, 0x07, 0x00, 0x01, 0x09],
            ),
            (1, Command::Stop, [0xFF, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01]),
            (
                1,
                Command::pan_right(0x20),
                [0xFF, 0x01, 0x00, 0x02, 0x20, 0x00, 0x23],
            ),
            (
                1,
                Command::pan_left(0x3F),
                [0xFF, 0x01, 0x00, 0x04, 0x3F, 0x00, 0x44],
            ),
            (
                1,
                Command::tilt_up(0x20),
                [0xFF, 0x01, 0x00, 0x08, 0x00, 0x20, 0x29],
            ),
            (
                1,
                Command::tilt_down(0x10),
                [0xFF, 0x01, 0x00, 0x10, 0x00, 0x10, 0x21],
            ),
            (
                2,
                Command::SetPreset(5),
                [0xFF, 0x02, 0x00, 0x03, 0x00, 0x05, 0x0A],
            ),
            (
                3,
                Command::ClearPreset(9),
                [0xFF, 0x03, 0x00, 0x05, 0x00, 0x09, 0x11],
            ),
            // The sum wraps: 0xFF + 0x07 + 0xFF = 0x205 -> 0x05.
            (
                0xFF,
                Command::GoToPreset(0xFF),
                [0xFF, 0xFF, 0x00, 0x07, 0x00, 0xFF, 0x05],
            ),
            (
                1,
                Command::Move {
                    pan: Some((PanDirection::Left, 0x10)),
                    tilt: Some((TiltDirection::Down, 0x08)),
                },
                [0xFF, 0x01, 0x00, 0x14, 0x10, 0x08, 0x2D],
            ),
        ];
        for &(address, command, bytes) in cases {
            assert_eq!(encode(address, command).unwrap(), bytes, "{command:?}");
            let decoded = frame(bytes);
            assert_eq!(decoded.address, address);
            assert_eq!(decoded.command().unwrap(), command, "{bytes:02x?}");
        }
    }

    #[test]
    fn encoder_validates() {
        assert_eq!(encode(0, Command::Stop), Err(PelcoError::InvalidAddress));
        for command in [
            Command::SetPreset(0),
            Command::ClearPreset(0),
            Command::GoToPreset(0),
        ] {
            assert_eq!(encode(1, command), Err(PelcoError::InvalidPreset));
        }
        assert_eq!(
            encode(1, Command::pan_left(0x40)),
            Err(PelcoError::InvalidSpeed { speed: 0x40 })
        );
        assert_eq!(
            encode(1, Command::tilt_down(0xFF)),
            Err(PelcoError::InvalidSpeed { speed: 0xFF })
        );
        assert!(encode(1, Command::pan_left(MAX_SPEED)).is_ok());
        assert!(encode(1, Command::tilt_up(0)).is_ok());
    }

    #[test]
    fn every_address_and_preset_round_trips() {
        // Exhaustive over the whole 1..=255 x 1..=255 space of the commands the patrol sends.
        for address in 1..=255u8 {
            for preset in 1..=255u8 {
                for command in [
                    Command::GoToPreset(preset),
                    Command::SetPreset(preset),
                    Command::ClearPreset(preset),
                ] {
                    let bytes = encode(address, command).unwrap();
                    let sum: u32 = bytes[1..6].iter().map(|&b| u32::from(b)).sum();
                    assert_eq!(u32::from(bytes[6]), sum % 256);
                    let decoded = Frame::from_bytes(&bytes).unwrap();
                    assert_eq!((decoded.address, decoded.command()), (address, Ok(command)));
                }
            }
        }
    }

    #[test]
    fn rejects_bad_checksum_and_missing_sync() {
        let bad = [0xFF, 0x01, 0x00, 0x07, 0x00, 0x01, 0x0A];
        let err = Frame::from_bytes(&bad).unwrap_err();
        assert_eq!(
            err,
            PelcoError::BadChecksum {
                frame: bad,
                expected: 0x09,
                actual: 0x0A
            }
        );
        assert_eq!(
            err.to_string(),
            "bad pelco-d checksum in frame [ff, 01, 00, 07, 00, 01, 0a]: expected 0x09, got 0x0a"
        );
        assert_eq!(
            Frame::from_bytes(&[0xFE, 0x01, 0x00, 0x07, 0x00, 0x01, 0x09]),
            Err(PelcoError::MissingSync { byte: 0xFE })
        );
    }

    #[test]
    fn unsupported_commands_are_reported() {
        // Zoom tele (cmd2 bit 5) is a valid Pelco-D command this module does not model.
        let zoom = frame(encode_raw(1, 0x00, 0x20, 0, 0));
        assert_eq!(
            zoom.command(),
            Err(PelcoError::UnsupportedCommand {
                cmd1: 0,
                cmd2: 0x20
            })
        );
        // Pan left and right at once is contradictory.
        assert!(frame(encode_raw(1, 0, 0x06, 1, 0)).command().is_err());
        // Go-to-preset 0 on the wire.
        assert_eq!(
            frame(encode_raw(1, 0, 0x07, 0, 0)).command(),
            Err(PelcoError::InvalidPreset)
        );
    }

    fn encode_raw(address: u8, cmd1: u8, cmd2: u8, data1: u8, data2: u8) -> [u8; 7] {
        Frame {
            address,
            cmd1,
            cmd2,
            data1,
            data2,
        }
        .to_bytes()
    }

    #[test]
    fn decoder_resyncs_after_garbage_and_reports_bad_checksum() {
        let go1 = [0xFF, 0x01, 0x00, 0x07, 0x00, 0x01, 0x09];
        let go2 = encode(1, Command::GoToPreset(2)).unwrap();
        let stop = encode(1, Command::Stop).unwrap();
        let corrupt = [0xFF, 0x01, 0x00, 0x07, 0x00, 0x03, 0x99];
        let mut stream = vec![0x12, 0x34, 0x56];
        stream.extend_from_slice(&go1);
        stream.extend_from_slice(&corrupt);
        // A stray 0xFF right before a real frame: the misaligned window fails its checksum
        // and the decoder must find the real frame starting inside that window.
        stream.extend_from_slice(&[0xFF, 0x42]);
        stream.extend_from_slice(&go2);
        stream.extend_from_slice(&[0x00]);
        stream.extend_from_slice(&stop);

        let mut decoder = Decoder::new();
        let results = decoder.decode(&stream);
        assert_eq!(
            results,
            vec![
                Err(PelcoError::SkippedBytes { count: 3 }),
                Ok(frame(go1)),
                Err(PelcoError::BadChecksum {
                    frame: corrupt,
                    expected: 0x0B,
                    actual: 0x99
                }),
                Err(PelcoError::BadChecksum {
                    frame: [0xFF, 0x42, 0xFF, 0x01, 0x00, 0x07, 0x00],
                    expected: 0x49,
                    actual: 0x00
                }),
                Ok(frame(go2)),
                Err(PelcoError::SkippedBytes { count: 1 }),
                Ok(frame(stop)),
            ]
        );
        assert_eq!(decoder.pending(), 0);
    }

    #[test]
    fn decoder_waits_for_partial_frames() {
        let go = encode(7, Command::GoToPreset(42)).unwrap();
        let mut decoder = Decoder::new();
        assert!(decoder.decode(&go[..3]).is_empty());
        assert_eq!(decoder.pending(), 3);
        assert_eq!(
            decoder.decode(&go[3..]),
            vec![Ok(Frame::from_bytes(&go).unwrap())]
        );
    }

    proptest! {
        #[test]
        fn checksum_is_sum_mod_256(a: u8, c1: u8, c2: u8, d1: u8, d2: u8) {
            let expected = (u32::from(a) + u32::from(c1) + u32::from(c2) + u32::from(d1) + u32::from(d2)) % 256;
            prop_assert_eq!(u32::from(checksum(a, c1, c2, d1, d2)), expected);
            let bytes = encode_raw(a, c1, c2, d1, d2);
            prop_assert_eq!(Frame::from_bytes(&bytes).map(|f| f.to_bytes()), Ok(bytes));
        }

        #[test]
        fn any_single_byte_corruption_is_caught(
            a: u8, c1: u8, c2: u8, d1: u8, d2: u8, index in 1usize..7, delta in 1u8..=255,
        ) {
            // Changing one summed byte (or the checksum itself) by a non-zero amount always
            // changes the sum mod 256, so the frame must be rejected.
            let mut bytes = encode_raw(a, c1, c2, d1, d2);
            bytes[index] = bytes[index].wrapping_add(delta);
            let is_bad_checksum = matches!(Frame::from_bytes(&bytes), Err(PelcoError::BadChecksum { .. }));
            prop_assert!(is_bad_checksum);
        }

        #[test]
        fn move_commands_round_trip(
            address in 1u8..=255,
            pan in proptest::option::of((prop_oneof![Just(PanDirection::Left), Just(PanDirection::Right)], 0u8..=MAX_SPEED)),
            tilt in proptest::option::of((prop_oneof![Just(TiltDirection::Up), Just(TiltDirection::Down)], 0u8..=MAX_SPEED)),
        ) {
            let command = match (pan, tilt) {
                (None, None) => Command::Stop,
                (pan, tilt) => Command::Move { pan, tilt },
            };
            let bytes = encode(address, command).unwrap();
            prop_assert_eq!(Frame::from_bytes(&bytes).unwrap().command(), Ok(command));
        }

        #[test]
        fn decoder_recovers_every_frame_between_noise(
            parts in proptest::collection::vec(
                (proptest::collection::vec(0u8..=0xFE, 0..10), 1u8..=255, 1u8..=255),
                1..20,
            ),
            chunk in 1usize..16,
        ) {
            // Noise without 0xFF can never start a frame, so every real frame must come out,
            // in order, however the stream is chunked.
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for (noise, address, preset) in &parts {
                stream.extend_from_slice(noise);
                let bytes = encode(*address, Command::GoToPreset(*preset)).unwrap();
                stream.extend_from_slice(&bytes);
                expected.push(Frame::from_bytes(&bytes).unwrap());
            }
            let mut decoder = Decoder::new();
            let mut frames = Vec::new();
            for piece in stream.chunks(chunk) {
                frames.extend(decoder.decode(piece).into_iter().filter_map(Result::ok));
            }
            prop_assert_eq!(frames, expected);
            prop_assert_eq!(decoder.pending(), 0);
        }
    }
}
