//! The parts of a response the cache holds only some of: the byte ranges
//! of stored 206 answers, merged as more of the same representation
//! arrives, until they cover it whole (then the entry becomes a complete
//! one; see `range`). Kept in memory only: the disk tier never writes a
//! partial entry (`Entry::is_partial`).
//!
//! Data only: it imports no other part of the cache, so the store can hold
//! it and `range` can build answers from it.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// Parts kept per entry. Each part costs a fetch and some bookkeeping; a
/// client asking for many small, scattered ranges must not turn one entry
/// into thousands of fragments. Past it, a new part is not kept.
pub const MAX_PARTS: usize = 32;

/// Bookkeeping counted per part in the store's weight.
const PART_OVERHEAD: usize = 32;

/// Byte ranges of one representation of `total` bytes: sorted, neither
/// overlapping nor adjacent (adjacent parts are joined), each non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    total: u64,
    /// `(first byte, bytes)`.
    held: Vec<(u64, Bytes)>,
}

impl Parts {
    /// The part `bytes` starting at `start` of a representation of `total`
    /// bytes; `None` if it does not fit inside it or is empty.
    pub fn new(total: u64, start: u64, bytes: Bytes) -> Option<Self> {
        let end = start.checked_add(bytes.len() as u64)?;
        (!bytes.is_empty() && end <= total).then(|| Self {
            total,
            held: vec![(start, bytes)],
        })
    }

    /// The representation's whole length (the `/LEN` of `Content-Range`).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many separate parts are held.
    pub fn count(&self) -> usize {
        self.held.len()
    }

    /// Bytes held in memory, bookkeeping included (the store's weight).
    pub fn memory_bytes(&self) -> usize {
        self.held.iter().map(|(_, b)| b.len() + PART_OVERHEAD).sum()
    }

    /// The part holding all of `range`, if one does.
    fn holding(&self, range: &Range<u64>) -> Option<&(u64, Bytes)> {
        self.held
            .iter()
            .find(|(start, bytes)| *start <= range.start && range.end <= start + bytes.len() as u64)
    }

    /// Whether `range` (non-empty, within [`Self::total`]) is held.
    pub fn covers(&self, range: &Range<u64>) -> bool {
        self.holding(range).is_some()
    }

    /// The bytes of `range`, if held.
    pub fn slice(&self, range: &Range<u64>) -> Option<Bytes> {
        let (start, bytes) = self.holding(range)?;
        let from = usize::try_from(range.start - start).ok()?;
        let to = usize::try_from(range.end - start).ok()?;
        Some(bytes.slice(from..to))
    }

    /// These parts with `bytes` at `start` added (its bytes win where they
    /// overlap: they are the newer copy of the same representation), and
    /// parts that touch joined. `None` if the part does not fit, or if
    /// the result would hold more than [`MAX_PARTS`] parts.
    pub fn with(&self, start: u64, bytes: Bytes) -> Option<Self> {
        let added = Parts::new(self.total, start, bytes)?;
        let (new_start, new_bytes) = added.held.into_iter().next()?;
        let new_end = new_start + new_bytes.len() as u64;
        let mut held = Vec::with_capacity(self.held.len() + 1);
        // The parts the new one touches are joined with it; the others
        // stay as they are.
        let mut joined_start = new_start;
        let mut joined_end = new_end;
        let mut touching = Vec::new();
        for (start, bytes) in &self.held {
            let end = start + bytes.len() as u64;
            if end < new_start || *start > new_end {
                held.push((*start, bytes.clone()));
            } else {
                joined_start = joined_start.min(*start);
                joined_end = joined_end.max(end);
                touching.push((*start, bytes.clone()));
            }
        }
        let joined = if touching.is_empty() {
            new_bytes
        } else {
            let len = usize::try_from(joined_end - joined_start).ok()?;
            let mut buffer = BytesMut::with_capacity(len);
            let offset = |at: u64| (at - joined_start) as usize;
            // Old bytes before the new part, the new part, old bytes after.
            buffer.resize(len, 0);
            for (start, bytes) in &touching {
                buffer[offset(*start)..offset(*start) + bytes.len()].copy_from_slice(bytes);
            }
            buffer[offset(new_start)..offset(new_end)].copy_from_slice(&new_bytes);
            buffer.freeze()
        };
        held.push((joined_start, joined));
        held.sort_by_key(|(start, _)| *start);
        (held.len() <= MAX_PARTS).then_some(Self {
            total: self.total,
            held,
        })
    }

    /// The whole representation, once the parts cover all of it.
    pub fn complete(&self) -> Option<Bytes> {
        match self.held.as_slice() {
            [(0, bytes)] if bytes.len() as u64 == self.total => Some(bytes.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(total: u64, start: u64, bytes: &'static str) -> Parts {
        Parts::new(total, start, Bytes::from_static(bytes.as_bytes())).unwrap()
    }

    #[test]
    fn a_part_must_fit_and_hold_something() {
        assert!(Parts::new(10, 8, Bytes::from_static(b"abc")).is_none());
        assert!(Parts::new(10, 3, Bytes::new()).is_none());
        assert!(Parts::new(10, u64::MAX, Bytes::from_static(b"a")).is_none());
        let p = parts(10, 7, "789");
        assert!(p.covers(&(7..10)) && p.covers(&(8..9)));
        assert!(!p.covers(&(6..8)));
        assert_eq!(p.slice(&(8..10)).unwrap(), "89");
        assert_eq!(p.slice(&(0..1)), None);
    }

    #[test]
    fn parts_join_when_they_overlap_or_touch_and_complete() {
        let p = parts(10, 0, "012");
        let p = p.with(6, Bytes::from_static(b"678")).unwrap();
        assert_eq!(p.count(), 2);
        assert!(!p.covers(&(2..7)), "a gap is not covered");
        assert_eq!(p.complete(), None);
        // Adjacent on both sides: one part.
        let p = p.with(3, Bytes::from_static(b"345")).unwrap();
        assert_eq!(p.count(), 1);
        assert_eq!(p.slice(&(0..9)).unwrap(), "012345678");
        // Overlapping, new bytes win.
        let p = p.with(8, Bytes::from_static(b"XY")).unwrap();
        assert_eq!(p.complete().unwrap(), "01234567XY");
        // A part inside a held one changes nothing but its bytes.
        let q = p.with(2, Bytes::from_static(b"zz")).unwrap();
        assert_eq!(q.complete().unwrap(), "01zz4567XY");
        assert!(
            p.with(9, Bytes::from_static(b"ab")).is_none(),
            "past the end"
        );
    }

    #[test]
    fn fragments_are_bounded() {
        let mut p = parts(1000, 0, "a");
        for i in 1..MAX_PARTS as u64 {
            p = p.with(i * 10, Bytes::from_static(b"b")).unwrap();
        }
        assert_eq!(p.count(), MAX_PARTS);
        assert!(p.with(999, Bytes::from_static(b"c")).is_none());
        // Joining keeps the count down, so it is allowed.
        assert!(p.with(1, Bytes::from_static(b"c")).is_some());
        assert_eq!(p.memory_bytes(), MAX_PARTS * (1 + PART_OVERHEAD));
    }
}
