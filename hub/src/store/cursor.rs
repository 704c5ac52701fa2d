//! Opaque keyset-pagination cursors.
//!
//! A cursor is the sort key of the last row of a page — (rank, timestamp in
//! microseconds, id), the rank used only by orders that lead with one (an alert's worst
//! level) — plus which listing *and order* it belongs to, hex-encoded. A cursor only
//! continues the order it came from: another order's cursor is
//! [`StoreError::InvalidCursor`]. It is opaque to clients (who must not build one) but
//! not secret: it only names a row they have already seen.

use super::StoreError;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Version 1: listing, timestamp, id (26 bytes); still read, for pages fetched before
/// an upgrade. Version 2 adds the rank.
const VERSION_1: u8 = 1;
const VERSION_1_BYTES: usize = 1 + 1 + 8 + 16;
const VERSION: u8 = 2;
const ENCODED_BYTES: usize = 1 + 1 + 8 + 8 + 16;

/// Which listing, in which order, a cursor continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    /// Findings by (received_at, id) descending.
    Findings = 1,
    /// Alerts by (created_at, id) descending.
    Alerts = 2,
    /// Alerts by (worst_level, created_at, id) descending.
    AlertsByWorstLevel = 3,
    /// Alerts by (updated_at, id) descending.
    AlertsByUpdated = 4,
    /// Dead letters by (received_at, id) descending (the numeric id in the last 8
    /// bytes of the id field).
    DeadLetters = 5,
    /// The audit log by seq descending (seq in the last 8 bytes of the id field).
    Audit = 6,
}

impl Listing {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Findings,
            2 => Self::Alerts,
            3 => Self::AlertsByWorstLevel,
            4 => Self::AlertsByUpdated,
            5 => Self::DeadLetters,
            6 => Self::Audit,
            _ => return None,
        })
    }
}

/// Where the next page of a listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    listing: Listing,
    rank: i64,
    at_us: i64,
    id: Uuid,
}

impl Cursor {
    /// A cursor of a listing ordered by (timestamp, id).
    pub(crate) fn new(listing: Listing, at: DateTime<Utc>, id: Uuid) -> Self {
        Self::ranked(listing, 0, at, id)
    }

    /// A cursor of a listing ordered by (rank, timestamp, id).
    pub(crate) fn ranked(listing: Listing, rank: i64, at: DateTime<Utc>, id: Uuid) -> Self {
        Self {
            listing,
            rank,
            at_us: at.timestamp_micros(),
            id,
        }
    }

    /// Parses a cursor string from a previous page.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let bytes = hex::decode(s).map_err(|_| StoreError::InvalidCursor)?;
        let (rank, rest) = match (bytes.first(), bytes.len()) {
            (Some(&VERSION_1), VERSION_1_BYTES) => (0, &bytes[2..]),
            (Some(&VERSION), ENCODED_BYTES) => (
                i64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes")),
                &bytes[10..],
            ),
            _ => return Err(StoreError::InvalidCursor),
        };
        let listing = Listing::from_byte(bytes[1]).ok_or(StoreError::InvalidCursor)?;
        let at_us = i64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
        let id = Uuid::from_slice(&rest[8..]).map_err(|_| StoreError::InvalidCursor)?;
        Ok(Self {
            listing,
            rank,
            at_us,
            id,
        })
    }

    /// The (timestamp, id) sort key, checked to belong to `listing`.
    pub(crate) fn key(&self, listing: Listing) -> Result<(i64, Uuid), StoreError> {
        self.ranked_key(listing).map(|(_, at, id)| (at, id))
    }

    /// The (rank, timestamp, id) sort key, checked to belong to `listing`.
    pub(crate) fn ranked_key(&self, listing: Listing) -> Result<(i64, i64, Uuid), StoreError> {
        if self.listing == listing {
            Ok((self.rank, self.at_us, self.id))
        } else {
            Err(StoreError::InvalidCursor)
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bytes = Vec::with_capacity(ENCODED_BYTES);
        bytes.push(VERSION);
        bytes.push(self.listing as u8);
        bytes.extend_from_slice(&self.rank.to_be_bytes());
        bytes.extend_from_slice(&self.at_us.to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        f.write_str(&hex::encode(bytes))
    }
}

impl std::str::FromStr for Cursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_strangers() {
        let at = DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let cursor = Cursor::new(Listing::Findings, at, id);
        let text = cursor.to_string();
        let back = Cursor::parse(&text).unwrap();
        assert_eq!(back, cursor);
        assert_eq!(
            back.key(Listing::Findings).unwrap(),
            (at.timestamp_micros(), id)
        );
        assert!(matches!(
            back.key(Listing::Alerts),
            Err(StoreError::InvalidCursor)
        ));
        for bad in [
            "",
            "zz",
            &text[2..],
            &format!("{text}00"),
            &format!("03{}", &text[2..]),
            &format!("{}09{}", &text[..2], &text[4..]),
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cursor_continues_only_its_own_order() {
        let at = DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let ranked = Cursor::ranked(Listing::AlertsByWorstLevel, 3, at, id);
        let back = Cursor::parse(&ranked.to_string()).unwrap();
        assert_eq!(
            back.ranked_key(Listing::AlertsByWorstLevel).unwrap(),
            (3, at.timestamp_micros(), id)
        );
        for other in [Listing::Alerts, Listing::AlertsByUpdated, Listing::Findings] {
            assert!(back.key(other).is_err(), "{other:?}");
        }
    }

    #[test]
    fn version_1_cursors_still_read() {
        let at = DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let mut v1 = vec![1u8, Listing::Alerts as u8];
        v1.extend_from_slice(&at.timestamp_micros().to_be_bytes());
        v1.extend_from_slice(id.as_bytes());
        let back = Cursor::parse(&hex::encode(v1)).unwrap();
        assert_eq!(back, Cursor::new(Listing::Alerts, at, id));
    }
}
