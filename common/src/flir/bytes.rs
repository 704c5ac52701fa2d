//! Bounds-checked, byte-order-aware reads over a byte slice.
//!
//! Every read names what it was reading and where, so a malformed file produces an
//! error such as "truncated camera info field `PlanckR1` at fff offset 0x15c" instead
//! of a panic.

use super::FlirError;

/// Byte order of one FLIR structure. FLIR files mix orders: the FFF header of a DJI
/// XT2 is little-endian while a FLIR handheld's is big-endian, and each record carries
/// its own check word, so the order is always decided per structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ByteOrder {
    /// Intel order ("II").
    #[serde(rename = "II")]
    Little,
    /// Motorola order ("MM").
    #[serde(rename = "MM")]
    Big,
}

impl ByteOrder {
    /// The other order.
    pub fn swapped(self) -> Self {
        match self {
            Self::Little => Self::Big,
            Self::Big => Self::Little,
        }
    }
}

/// A view of one structure: its bytes, its byte order and where it starts in the
/// enclosing FFF stream (for error messages).
#[derive(Clone, Copy)]
pub(crate) struct StructView<'a> {
    pub bytes: &'a [u8],
    pub order: ByteOrder,
    /// Offset of `bytes[0]` in the FFF stream (or file), reported in errors.
    pub base: u64,
    /// What this structure is, for error messages ("camera info", "raw data", …).
    pub what: &'static str,
}

impl<'a> StructView<'a> {
    pub fn new(bytes: &'a [u8], order: ByteOrder, base: u64, what: &'static str) -> Self {
        Self {
            bytes,
            order,
            base,
            what,
        }
    }

    /// True when `n` bytes at `at` lie inside the structure.
    pub fn has(&self, at: usize, n: usize) -> bool {
        at.checked_add(n).is_some_and(|end| end <= self.bytes.len())
    }

    pub fn slice(&self, at: usize, n: usize, field: &'static str) -> Result<&'a [u8], FlirError> {
        if !self.has(at, n) {
            return Err(FlirError::Truncated {
                what: self.what,
                field,
                offset: self.base + at as u64,
                needed: n as u64,
                available: self.bytes.len().saturating_sub(at) as u64,
            });
        }
        Ok(&self.bytes[at..at + n])
    }

    fn array<const N: usize>(&self, at: usize, field: &'static str) -> Result<[u8; N], FlirError> {
        let s = self.slice(at, N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u16(&self, at: usize, field: &'static str) -> Result<u16, FlirError> {
        let a = self.array::<2>(at, field)?;
        Ok(match self.order {
            ByteOrder::Little => u16::from_le_bytes(a),
            ByteOrder::Big => u16::from_be_bytes(a),
        })
    }

    pub fn i16(&self, at: usize, field: &'static str) -> Result<i16, FlirError> {
        Ok(self.u16(at, field)? as i16)
    }

    pub fn u32(&self, at: usize, field: &'static str) -> Result<u32, FlirError> {
        let a = self.array::<4>(at, field)?;
        Ok(match self.order {
            ByteOrder::Little => u32::from_le_bytes(a),
            ByteOrder::Big => u32::from_be_bytes(a),
        })
    }

    pub fn i32(&self, at: usize, field: &'static str) -> Result<i32, FlirError> {
        Ok(self.u32(at, field)? as i32)
    }

    pub fn f32(&self, at: usize, field: &'static str) -> Result<f32, FlirError> {
        Ok(f32::from_bits(self.u32(at, field)?))
    }

    pub fn f64(&self, at: usize, field: &'static str) -> Result<f64, FlirError> {
        let a = self.array::<8>(at, field)?;
        Ok(match self.order {
            ByteOrder::Little => f64::from_le_bytes(a),
            ByteOrder::Big => f64::from_be_bytes(a),
        })
    }

    /// A NUL-terminated (or full-width) text field, trimmed; invalid UTF-8 is replaced.
    pub fn text(&self, at: usize, width: usize, field: &'static str) -> Result<String, FlirError> {
        let s = self.slice(at, width, field)?;
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        Ok(String::from_utf8_lossy(&s[..end]).trim().to_string())
    }

    /// Like [`Self::f32`] but `None` when the record is too short to hold the field
    /// (old cameras write shorter records; optional metadata may simply be absent).
    pub fn opt_f32(&self, at: usize, field: &'static str) -> Option<f32> {
        self.f32(at, field).ok()
    }

    pub fn opt_u16(&self, at: usize, field: &'static str) -> Option<u16> {
        self.u16(at, field).ok()
    }

    pub fn opt_text(&self, at: usize, width: usize, field: &'static str) -> Option<String> {
        self.text(at, width, field).ok()
    }
}
