//! Opaque keyset-pagination cursors.
//!
//! A cursor is the sort key of the last row of a page: (timestamp in microseconds, id),
//! plus which listing it belongs to, hex-encoded. It is opaque to clients (who must
//! not build one) but not secret: it only names a row they have already seen.

use super::StoreError;
use chrono::{DateTime, Utc};
use uuid::Uuid;

const VERSION: u8 = 1;
const ENCODED_BYTES: usize = 1 + 1 + 8 + 16;

/// Which listing a cursor continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    /// Findings by (received_at, id) descending.
    Findings = 1,
    /// Alerts by (created_at, id) descending.
    Alerts = 2,
}

/// Where the next page of a listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    listing: Listing,
    at_us: i64,
    id: Uuid,
}

impl Cursor {
    pub(crate) fn new(listing: Listing, at: DateTime<Utc>, id: Uuid) -> Self {
        Self {
            listing,
            at_us: at.timestamp_micros(),
            id,
        }
    }

    /// Parses a cursor string from a previous page.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let bytes = hex::decode(s).map_err(|_| StoreError::InvalidCursor)?;
        if bytes.len() != ENCODED_BYTES || bytes[0] != VERSION {
            return Err(StoreError::InvalidCursor);
        }
        let listing = match bytes[1] {
            1 => Listing::Findings,
            2 => Listing::Alerts,
            _ => return Err(StoreError::InvalidCursor),
        };
        let at_us = i64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes"));
        let id = Uuid::from_slice(&bytes[10..]).map_err(|_| StoreError::InvalidCursor)?;
        Ok(Self { listing, at_us, id })
    }

    /// The sort key, checked to belong to `listing`.
    pub(crate) fn key(&self, listing: Listing) -> Result<(i64, Uuid), StoreError> {
        if self.listing == listing {
            Ok((self.at_us, self.id))
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
            &format!("02{}", &text[2..]),
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }
}
