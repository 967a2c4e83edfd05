//! `SeqLock`: a fixed-size record that writers update and readers copy, where a
//! reader never returns a torn snapshot and never blocks a writer.

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::wait::{Spinner, wait_until, wake_after_rmw};
use super::{Kind, Place, create_named, my_pid, open_named};
use crate::error::{Error, Result};
use crate::segment::SharedMemory;
use crate::sys;

/// Even when the record is stable, odd while a writer changes it.
const SEQUENCE: usize = 0;
/// The process writing (or that last wrote).
const WRITER: usize = 1;
/// Readers and writers asleep waiting for a write to finish.
const SLEEPERS: usize = 3;
/// How often a waiter checks whether the writer it waits for still lives.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);
/// The record starts here, 8-aligned.
const HEADER: usize = 16;
/// Records are at most this large (the size is kept in the flags' 24 bits).
const MAX_SIZE: usize = (1 << 24) - 1;

/// A sequence lock over a record of fixed size.
///
/// Writers (any number, one at a time) bump a sequence number to odd, write, and
/// bump it to even; a reader copies the record and retries if the number moved,
/// so it only ever returns a snapshot that no write overlapped. A writer that dies
/// mid-write is detected: readers get [`Error::PeerDied`], the next writer takes
/// over. Layout: a 16-byte header (`sequence`, `writer`, `flags`, reserved) and the
/// record, padded to 8 bytes (`docs/FORMAT.md`).
///
/// # Example
///
/// ```
/// use shmbridge::sync::SeqLock;
///
/// let name = shmbridge::unique_name("doc_seqlock")?;
/// let state = SeqLock::create(&name, 16)?;
/// state.write_value(&[1.5f64, -2.0])?; // a writer
/// let reader = SeqLock::open(&name)?; // in another process, usually
/// let position: [f64; 2] = reader.read_value()?; // never torn
/// assert_eq!(position, [1.5, -2.0]);
/// let mut raw = [0u8; 16];
/// reader.read(&mut raw)?;
/// # Ok::<(), shmbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct SeqLock {
    place: Place,
    size: usize,
    spinner: Spinner,
}

impl SeqLock {
    /// Bytes a seqlock holding a `size`-byte record takes in a segment.
    pub const fn size_for(size: usize) -> usize {
        HEADER + size.next_multiple_of(8)
    }

    /// Creates a seqlock holding a zeroed record of `size` bytes in a new segment.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::create`]; [`Error::InvalidSize`] for a size of 0 or over
    /// 16 MiB.
    pub fn create(name: &str, size: usize) -> Result<Self> {
        check_size(name, size)?;
        Self::in_segment(create_named(name, Self::size_for(size), Kind::SeqLock)?, 0, Some(size))
    }

    /// Opens a seqlock created with [`create`](Self::create); the record size comes
    /// from the segment.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::open`]; [`Error::Incompatible`] if another primitive is there.
    pub fn open(name: &str) -> Result<Self> {
        Self::in_segment(open_named(name, HEADER)?, 0, None)
    }

    /// The seqlock at `offset` (8-aligned) of `shm`. Fresh (zero) memory becomes a
    /// seqlock of a `size`-byte record (required then); an existing one keeps its
    /// size, and `size`, if given, must match it.
    ///
    /// # Errors
    ///
    /// As [`Event::in_segment`](super::Event::in_segment).
    pub fn in_segment(shm: Arc<SharedMemory>, offset: usize, size: Option<usize>) -> Result<Self> {
        if let Some(size) = size {
            check_size(shm.name(), size)?;
        }
        let place = Place::new(Arc::clone(&shm), offset, HEADER, Kind::SeqLock)?;
        let flags = place.guarded(|| place.word(super::FLAGS).load(Ordering::Acquire))?;
        let fresh = flags == 0;
        if fresh && size.is_none() {
            // Claiming fresh memory without a size would fix its size at 0.
            return Err(
                place.incompatible(Kind::SeqLock, "is not set up yet: give its record size".into())
            );
        }
        let (found, _) = place.init(Kind::SeqLock, size.map(|s| s as u32))?;
        let found = found as usize;
        if size.is_some_and(|s| s != found) {
            return Err(
                place.incompatible(Kind::SeqLock, format!("holds records of {found} bytes"))
            );
        }
        // The record must fit too.
        Place::new(shm, offset, Self::size_for(found), Kind::SeqLock)?;
        Ok(Self { place, size: found, spinner: Spinner::new() })
    }

    /// The segment the seqlock lives in.
    pub fn segment(&self) -> &Arc<SharedMemory> {
        &self.place.shm
    }

    /// The record's size in bytes.
    pub fn record_size(&self) -> usize {
        self.size
    }

    /// Replaces the record with `data` (exactly [`record_size`](Self::record_size)
    /// bytes), waiting as long as another live writer is mid-write; returns the new
    /// sequence number.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if `data` has the wrong length (nothing is written);
    /// [`Error::PagesLost`] if another process shrank the segment, taking pages of
    /// the seqlock (before or during the write, which then did not reach the
    /// other processes; a wait ends within 100 ms of that).
    pub fn write(&self, data: &[u8]) -> Result<u32> {
        self.write_deadline(data, None)
    }

    /// As [`write`](Self::write), waiting at most until `deadline` (forever if
    /// `None`) for another writer to finish.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write); [`Error::Busy`] if the other write did not finish
    /// in time (nothing is written).
    pub fn write_deadline(&self, data: &[u8], deadline: Option<Instant>) -> Result<u32> {
        if data.len() != self.size {
            return Err(self.wrong_length(data.len()));
        }
        self.place.try_guarded(|| self.write_unguarded(data, deadline))
    }

    /// The body of [`write_deadline`](Self::write_deadline), in its guarded scope.
    fn write_unguarded(&self, data: &[u8], deadline: Option<Instant>) -> Result<u32> {
        let sequence = self.place.word(SEQUENCE);
        let writer = self.place.word(WRITER);
        let me = my_pid();
        let started = Instant::now();
        // The writer word says who writes now (0: nobody). Taking it first, before the
        // sequence, means an odd sequence always names its writer: another writer, or
        // a reader, never mistakes the previous (perhaps dead) writer for this one.
        loop {
            let w = writer.load(Ordering::Acquire);
            let taken = if w == 0 {
                writer.compare_exchange_weak(0, me, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            } else if w != me && !sys::process_alive(w) {
                // Its writer died (mid-write, or just before or after): take over.
                writer.compare_exchange(w, me, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            } else {
                self.wait_for_writer(w, deadline, started)?;
                false
            };
            if taken {
                break;
            }
        }
        // Only the writer-word holder moves the sequence. Odd already: a dead writer's
        // write, which this one completes.
        let s = sequence.load(Ordering::Relaxed);
        let start = if s.is_multiple_of(2) { s.wrapping_add(1) } else { s };
        sequence.store(start, Ordering::Relaxed);
        // Readers that see a word of this write see the odd sequence too.
        fence(Ordering::Release);
        let words = self.size.div_ceil(8);
        for i in 0..words {
            let mut word = [0u8; 8];
            let chunk = &data[8 * i..(8 * i + 8).min(self.size)];
            word[..chunk.len()].copy_from_slice(chunk);
            self.data_word(i).store(u64::from_ne_bytes(word), Ordering::Relaxed);
        }
        let done = start.wrapping_add(1);
        sequence.store(done, Ordering::Release);
        // Free the writer word only after the sequence is even: the next writer then
        // finds it even (it never completes a live write as if its writer had died).
        writer.store(0, Ordering::Release);
        // One fence orders both stores before the look at the sleepers (as `wake`).
        fence(Ordering::SeqCst);
        let sleepers = self.place.word(SLEEPERS);
        wake_after_rmw(sequence, sleepers, i32::MAX as u32); // readers
        wake_after_rmw(writer, sleepers, i32::MAX as u32); // writers
        Ok(done)
    }

    /// Waits (spinning briefly, then asleep) while the writer word holds the live
    /// writer `w`, until `deadline`, waking at least every [`LIVENESS_CHECK`] so the
    /// caller can see whether it died.
    fn wait_for_writer(&self, w: u32, deadline: Option<Instant>, started: Instant) -> Result<()> {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) || super::wait::interrupted() {
            return Err(self.busy(started));
        }
        let slice = now + LIVENESS_CHECK;
        let until = deadline.map_or(slice, |d| d.min(slice));
        let (shm, writer) = (&*self.place.shm, self.place.word(WRITER));
        let sleepers = self.place.word(SLEEPERS);
        wait_until(shm, writer, sleepers, &self.spinner, Some(until), |v| v != w);
        if self.place.pages_lost() {
            // The writer word may be a private page now, which no writer frees.
            return Err(self.place.shm.pages_lost_error());
        }
        Ok(())
    }

    /// Copies a consistent snapshot of the record into `buf` (exactly
    /// [`record_size`](Self::record_size) bytes), waiting as long as a live writer
    /// is mid-write; returns its sequence number.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if `buf` has the wrong length; [`Error::PeerDied`] if
    /// a writer died mid-write (the record may be torn, and stays so until the
    /// next write); [`Error::PagesLost`] as in [`write`](Self::write) (`buf` then
    /// holds zeros where the vanished pages were).
    pub fn read(&self, buf: &mut [u8]) -> Result<u32> {
        self.read_deadline(buf, None)
    }

    /// As [`read`](Self::read), waiting at most `timeout` for a write under way.
    ///
    /// # Errors
    ///
    /// As [`read_deadline`](Self::read_deadline).
    pub fn read_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<u32> {
        self.read_deadline(buf, Instant::now().checked_add(timeout))
    }

    /// As [`read`](Self::read), waiting until `deadline` (forever if `None`) for a
    /// write under way to finish.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read); [`Error::Busy`] if the write under way did not
    /// finish in time (a writer stopped mid-write, or a corrupted sequence word).
    pub fn read_deadline(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<u32> {
        if buf.len() != self.size {
            return Err(self.wrong_length(buf.len()));
        }
        self.place.try_guarded(|| self.read_unguarded(buf, deadline))
    }

    /// The body of [`read_deadline`](Self::read_deadline), in its guarded scope.
    fn read_unguarded(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<u32> {
        let sequence = self.place.word(SEQUENCE);
        let started = Instant::now();
        loop {
            let before = sequence.load(Ordering::Acquire);
            if !before.is_multiple_of(2) {
                let w = self.place.word(WRITER).load(Ordering::Acquire);
                if w != 0 && started.elapsed() > Duration::from_millis(10) && !sys::process_alive(w)
                {
                    return Err(Error::PeerDied {
                        name: self.place.shm.name().to_owned(),
                        what: "SeqLock",
                        pid: w,
                        during: "while writing the record",
                    });
                }
                self.wait_while_written(before, deadline, started)?;
                continue;
            }
            for i in 0..self.size.div_ceil(8) {
                let word = self.data_word(i).load(Ordering::Relaxed).to_ne_bytes();
                let end = (8 * i + 8).min(self.size);
                buf[8 * i..end].copy_from_slice(&word[..end - 8 * i]);
            }
            fence(Ordering::Acquire);
            if sequence.load(Ordering::Relaxed) == before {
                return Ok(before);
            }
        }
    }

    /// Waits (spinning briefly, then asleep) while `sequence` still holds the odd
    /// value `odd`, until `deadline`, waking at least every [`LIVENESS_CHECK`] so
    /// the caller can see whether the writer died.
    fn wait_while_written(
        &self,
        odd: u32,
        deadline: Option<Instant>,
        started: Instant,
    ) -> Result<()> {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(self.busy(started));
        }
        let slice = now + LIVENESS_CHECK;
        let until = deadline.map_or(slice, |d| d.min(slice));
        let (shm, sequence) = (&*self.place.shm, self.place.word(SEQUENCE));
        let sleepers = self.place.word(SLEEPERS);
        wait_until(shm, sequence, sleepers, &self.spinner, Some(until), |v| v != odd);
        if self.place.pages_lost() {
            // The sequence word may be a private page now, which no writer moves.
            return Err(self.place.shm.pages_lost_error());
        }
        if super::wait::interrupted() {
            return Err(self.busy(started));
        }
        Ok(())
    }

    /// A wait that ran out of time (or was interrupted by a signal).
    fn busy(&self, started: Instant) -> Error {
        Error::Busy {
            name: self.place.shm.name().to_owned(),
            what: format!("the SeqLock at offset {}", self.place.offset),
            after: started.elapsed(),
        }
    }

    /// Writes a value of a `Pod` type the size of the record.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    pub fn write_value<T: Pod>(&self, value: &T) -> Result<u32> {
        self.write(bytemuck::bytes_of(value))
    }

    /// Reads a consistent value of a `Pod` type the size of the record.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    pub fn read_value<T: Pod>(&self) -> Result<T> {
        let mut value = T::zeroed();
        self.read(bytemuck::bytes_of_mut(&mut value))?;
        Ok(value)
    }

    /// The current sequence number (even: stable; it grows by 2 per write).
    ///
    /// # Errors
    ///
    /// [`Error::PagesLost`] as in [`write`](Self::write).
    pub fn sequence(&self) -> Result<u32> {
        self.place.guarded(|| self.place.word(SEQUENCE).load(Ordering::Acquire))
    }

    fn data_word(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        self.place.shm.atomic_u64(self.place.offset + HEADER + 8 * i)
    }

    fn wrong_length(&self, len: usize) -> Error {
        Error::OutOfBounds {
            name: self.place.shm.name().to_owned(),
            offset: (self.place.offset + HEADER) as u64,
            len: len as u64,
            size: self.size as u64,
        }
    }
}

fn check_size(name: &str, size: usize) -> Result<()> {
    if size == 0 || size > MAX_SIZE {
        return Err(Error::InvalidSize {
            name: name.to_owned(),
            size: size as u64,
            reason: "a seqlock record holds 1 byte to 16 MiB",
        });
    }
    Ok(())
}
