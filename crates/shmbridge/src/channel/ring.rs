//! The ring's arithmetic, apart from memory: where records go, what a record
//! header means, and the checks that keep a corrupted ring from becoming an
//! out-of-bounds access. Pure functions over numbers, so they can be fuzzed and run
//! under Miri.
//!
//! Positions are *stream* positions: bytes written since the channel began, which
//! only grow; `pos % capacity` is the place in the ring. Records are 8-aligned:
//! an 8-byte header (`len: u32`, `flags: u32`) and the payload padded to 8.

/// A record's header: the payload length, then flags.
pub(crate) const RECORD_HEADER: usize = 8;
/// A length that means "the rest of the ring is padding; go on at its start".
pub(crate) const WRAP: u32 = u32::MAX;
/// A record that carries no message (a loan given up after its room was taken);
/// the receiver steps over it.
pub(crate) const FLAG_SKIP: u32 = 1;

/// The bytes a record of a `len`-byte payload takes in the ring.
pub(crate) const fn record_len(len: usize) -> usize {
    RECORD_HEADER + len.next_multiple_of(8)
}

/// The largest payload a ring of `capacity` bytes takes: a record of half the ring,
/// so that one always fits after any padding at the end.
pub(crate) const fn max_message(capacity: usize) -> usize {
    capacity / 2 - RECORD_HEADER
}

/// The ring's positions or contents are impossible: something other than the two
/// ends wrote into the segment. Holds the stream position where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) u64);

/// Where the receiver stands: `read` (its next record) against the producer's
/// `head`. `Ok(None)`: nothing to read; `Ok(Some(place))`: a record header lies at
/// `place` in the ring (and 8 bytes of it lie in the ring).
pub(crate) fn next_record_place(
    read: u64,
    head: u64,
    capacity: usize,
) -> Result<Option<usize>, Corrupt> {
    if head == read {
        return Ok(None);
    }
    if head < read || head - read > capacity as u64 || !read.is_multiple_of(8) {
        return Err(Corrupt(read));
    }
    // capacity is a multiple of 8, so an 8-aligned place leaves room for a header.
    Ok(Some((read % capacity as u64) as usize))
}

/// What a record header says, checked against the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    /// Padding to the end of the ring, `bytes` long.
    Padding { bytes: u64 },
    /// A record to step over (a loan given up), `bytes` long in all.
    Skip { bytes: u64 },
    /// A message whose payload starts at ring offset `payload` and is `len` long;
    /// the record takes `bytes`.
    Message { payload: usize, len: usize, bytes: u64 },
}

/// Interprets the header (`len`, `flags`) found at ring offset `place`, for the
/// record at stream position `read` (whose place it is), with the producer at
/// `head`. Every record accepted lies wholly inside the ring and before `head`.
pub(crate) fn interpret(
    place: usize,
    read: u64,
    head: u64,
    capacity: usize,
    len: u32,
    flags: u32,
) -> Result<Record, Corrupt> {
    let available = head - read; // checked by next_record_place: read < head
    if len == WRAP {
        let bytes = (capacity - place) as u64;
        // Padding is only ever written where a record would not fit, and never at the
        // start of the ring.
        if place == 0 || bytes > available {
            return Err(Corrupt(read));
        }
        return Ok(Record::Padding { bytes });
    }
    let len = len as usize;
    if len > max_message(capacity) || flags & !FLAG_SKIP != 0 {
        return Err(Corrupt(read));
    }
    let bytes = record_len(len);
    if place + bytes > capacity || bytes as u64 > available {
        return Err(Corrupt(read));
    }
    if flags & FLAG_SKIP != 0 {
        return Ok(Record::Skip { bytes: bytes as u64 });
    }
    Ok(Record::Message { payload: place + RECORD_HEADER, len, bytes: bytes as u64 })
}

/// Room for a record of a `len`-byte payload, for a producer at `head` whose
/// oldest byte still in use is at `tail`: `Ok(Some((padding, record)))` if it fits
/// now (`padding` bytes to fill before the ring's end first), `Ok(None)` if it must
/// wait. `len` is at most [`max_message`].
pub(crate) fn room(
    head: u64,
    tail: u64,
    capacity: usize,
    len: usize,
) -> Result<Option<(usize, usize)>, Corrupt> {
    if tail > head || head - tail > capacity as u64 || !tail.is_multiple_of(8) {
        return Err(Corrupt(tail));
    }
    let used = (head - tail) as usize;
    let place = (head % capacity as u64) as usize;
    let record = record_len(len);
    let padding = if place + record > capacity { capacity - place } else { 0 };
    Ok((capacity - used >= padding + record).then_some((padding, record)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_and_limits() {
        assert_eq!(record_len(0), 8);
        assert_eq!(record_len(1), 16);
        assert_eq!(record_len(8), 16);
        assert_eq!(max_message(1024), 504);
        assert_eq!(room(0, 0, 64, 24), Ok(Some((0, 32))));
        assert_eq!(room(48, 0, 64, 8), Ok(Some((0, 16))));
        assert_eq!(room(56, 48, 64, 8), Ok(Some((8, 16))), "padding first at the end");
        assert_eq!(room(64, 0, 64, 0), Ok(None), "full");
        assert_eq!(room(0, 8, 64, 0), Err(Corrupt(8)), "tail ahead of head");
        assert_eq!(room(200, 8, 64, 0), Err(Corrupt(8)), "more in use than the ring");
    }

    #[test]
    fn corrupt_headers_are_refused() {
        assert_eq!(next_record_place(16, 8, 64), Err(Corrupt(16)));
        assert_eq!(next_record_place(0, 65, 64), Err(Corrupt(0)));
        assert_eq!(interpret(0, 0, 8, 64, WRAP, 0), Err(Corrupt(0)), "padding at the start");
        assert_eq!(interpret(48, 48, 64, 64, 20, 0), Err(Corrupt(48)), "past the ring's end");
        assert_eq!(interpret(0, 0, 16, 64, 24, 0), Err(Corrupt(0)), "past the head");
        assert_eq!(interpret(0, 0, 64, 64, 8, 2), Err(Corrupt(0)), "unknown flags");
        assert_eq!(
            interpret(8, 72, 96, 64, 8, 0),
            Ok(Record::Message { payload: 16, len: 8, bytes: 16 })
        );
    }

    proptest! {
        /// Whatever the shared words and the header say, an accepted record lies in
        /// the ring and before the head, and the receiver never moves backwards.
        #[test]
        fn accepted_records_lie_in_the_ring(
            cap8 in 8usize..4096, read in any::<u64>(), ahead in any::<u64>(),
            len in any::<u32>(), flags in 0u32..4,
        ) {
            let capacity = cap8 * 8;
            let read = read & !7;
            let head = read.wrapping_add(ahead % (2 * capacity as u64 + 2));
            if let Ok(Some(place)) = next_record_place(read, head, capacity) {
                prop_assert!(place + RECORD_HEADER <= capacity);
                match interpret(place, read, head, capacity, len, flags) {
                    Ok(Record::Message { payload, len, bytes }) => {
                        prop_assert!(payload + len <= capacity);
                        prop_assert!(read + bytes <= head);
                    }
                    Ok(Record::Padding { bytes } | Record::Skip { bytes }) => {
                        prop_assert!(bytes > 0 && read + bytes <= head);
                        prop_assert!(place + bytes as usize <= capacity);
                    }
                    Err(_) => {}
                }
            }
        }

        /// A producer given any tail never gets room that overlaps what is in use.
        #[test]
        fn room_never_overlaps(cap8 in 8usize..4096, head in any::<u64>(), used in any::<u64>(),
                               len in 0usize..20_000) {
            let capacity = cap8 * 8;
            let head = head & !7 & (u64::MAX >> 1);
            let tail = head.saturating_sub(used % (capacity as u64 + 16)) & !7;
            let len = len.min(max_message(capacity));
            if let Ok(Some((padding, record))) = room(head, tail, capacity, len) {
                prop_assert!(head + (padding + record) as u64 - tail <= capacity as u64);
                let place = ((head + padding as u64) % capacity as u64) as usize;
                prop_assert!(place + record <= capacity);
            }
        }
    }
}
