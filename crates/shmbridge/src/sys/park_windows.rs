//! Blocking on a 32-bit word, across processes, for Windows: what a shared futex
//! does on Linux.
//!
//! Windows has no wait on an address that another process can wake
//! (`WaitOnAddress` works inside one process only). So each waiting thread sleeps
//! on an event of its own, named after it (`Local\shmbridge-wake-<pid>-<tid>`), and
//! says where it sleeps in a *parking table*: a slot holding the word's key, its
//! process and its thread. A waker changes the word, then looks through the table
//! for slots with that key, marks each one it wakes (so a thread is woken once per
//! slot) and sets the sleeper's event, which it opens by name.
//!
//! Which table:
//! - a word inside a view of a named segment: the segment's own table, a 64 KiB
//!   named mapping `Local\shmbridge-wait1-<segment name>` that the first waiter or
//!   waker of any process creates and every other one opens; the key is the word's
//!   offset in the segment, the same in every process whatever the view's address;
//! - any other word (process-private: a local lock, a reactor's control word): one
//!   table for the process, keyed by address.
//!
//! No wake-up is lost: a sleeper takes its slot (SeqCst) before its last look at the
//! word, and a waker changes the word before its look at the table (SeqCst fence),
//! so either the sleeper sees the change and does not sleep, or the waker sees the
//! slot. A slot carries a generation, so a waker that read a slot just before it
//! was freed and taken again cannot mistake the new sleeper for the old one.
//! Spurious wake-ups happen (a set that comes after its sleeper timed out is kept
//! by the event until that thread's next sleep, which drains it first); callers
//! re-check, as for a futex.
//!
//! The table lives as long as some process has it open (each process keeps it
//! while it has a view of the segment), like the segment itself. A sleeper whose
//! process died leaves its slot taken; a waker that finds the sleeper's event gone
//! frees it, and a sleeper that finds the table full frees the slots of dead
//! processes. If a table cannot be had (no memory, or a foreign object squats the
//! name), waits fall back to polling in short sleeps.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_FILE_NOT_FOUND, HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile,
    PAGE_READWRITE, UnmapViewOfFile,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, EVENT_MODIFY_STATE, GetCurrentThreadId, INFINITE, OpenEventW, SetEvent,
    WaitForSingleObject,
};

use super::os::Handle;

/// Bytes of a parking table: one allocation granule, room for 2046 sleepers.
const TABLE_BYTES: usize = 64 * 1024;
/// Sleepers one table holds at once.
const SLOTS: usize = (TABLE_BYTES - size_of::<Header>()) / size_of::<Slot>();

/// How long a wait sleeps at a time when it cannot park (no table, no event, a
/// full table): it polls.
const POLL: Duration = Duration::from_micros(200);

/// The start of a table. All zero is an empty table, which is what a new named
/// mapping holds.
#[repr(C)]
struct Header {
    /// Slots taken (an upper bound): wakers skip the scan when it is 0.
    waiting: AtomicU32,
    /// Slots below this index may be taken: wakers scan no further.
    high: AtomicU32,
    _reserved: [u32; 14],
}

/// One sleeper: which word (`key`), and whose event to set (`pid`, `tid`).
#[repr(C)]
struct Slot {
    /// The state (low two bits) and a generation (the rest), bumped on each take.
    state: AtomicU32,
    pid: AtomicU32,
    tid: AtomicU32,
    _pad: u32,
    key: AtomicU64,
    _pad2: u64,
}

#[repr(C)]
struct Table {
    header: Header,
    slots: [Slot; SLOTS],
}

const _: () = assert!(size_of::<Header>() == 64);
const _: () = assert!(size_of::<Slot>() == 32);
const _: () = assert!(size_of::<Table>() <= TABLE_BYTES);

/// Slot states (the low two bits of `Slot::state`).
const FREE: u32 = 0;
/// Being filled in by a sleeper.
const TAKING: u32 = 1;
/// A sleeper waits (or is about to) for a wake-up of `key`.
const WAITING: u32 = 2;
/// A waker chose this sleeper and sets (or has set) its event; the sleeper frees it.
const WOKEN: u32 = 3;
const STATE: u32 = 3;
const GENERATION: u32 = !STATE;

impl Slot {
    const fn new() -> Self {
        Self {
            state: AtomicU32::new(0),
            pid: AtomicU32::new(0),
            tid: AtomicU32::new(0),
            _pad: 0,
            key: AtomicU64::new(0),
            _pad2: 0,
        }
    }
}

/// A slot this thread took: where, and the state it holds while waiting.
struct Claim<'t> {
    table: &'t Table,
    index: usize,
    waiting: u32,
}

impl Table {
    /// Takes a free slot for a sleeper on `key`, published as waiting; `None` if
    /// the table is full.
    fn claim(&self, key: u64, pid: u32, tid: u32) -> Option<Claim<'_>> {
        self.header.waiting.fetch_add(1, Ordering::SeqCst);
        for (index, slot) in self.slots.iter().enumerate() {
            let state = slot.state.load(Ordering::Relaxed);
            if state & STATE != FREE {
                continue;
            }
            let taking = (state & GENERATION).wrapping_add(STATE + 1) | TAKING;
            if slot
                .state
                .compare_exchange(state, taking, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            slot.key.store(key, Ordering::Relaxed);
            slot.pid.store(pid, Ordering::Relaxed);
            slot.tid.store(tid, Ordering::Relaxed);
            // Wakers scan up to `high`: raised before the slot says "waiting".
            self.header.high.fetch_max(index as u32 + 1, Ordering::SeqCst);
            let waiting = (taking & GENERATION) | WAITING;
            slot.state.store(waiting, Ordering::SeqCst);
            return Some(Claim { table: self, index, waiting });
        }
        self.header.waiting.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// Frees the slots of sleepers whose process is gone; how many.
    fn free_dead(&self) -> usize {
        let mut freed = 0;
        let high = (self.header.high.load(Ordering::SeqCst) as usize).min(SLOTS);
        for slot in &self.slots[..high] {
            let state = slot.state.load(Ordering::SeqCst);
            if !matches!(state & STATE, WAITING | WOKEN) {
                continue;
            }
            let pid = slot.pid.load(Ordering::Relaxed);
            if super::os::process_alive(pid) {
                continue;
            }
            let free = (state & GENERATION) | FREE;
            if slot.state.compare_exchange(state, free, Ordering::SeqCst, Ordering::Relaxed).is_ok()
            {
                self.header.waiting.fetch_sub(1, Ordering::SeqCst);
                freed += 1;
            }
        }
        freed
    }

    /// Wakes up to `count` sleepers on `key`. The caller changed the word first.
    fn wake(&self, key: u64, count: u32) {
        // Paired with the sleeper's SeqCst take and look at the word (see the module
        // docs): either it saw the change, or this sees its slot.
        fence(Ordering::SeqCst);
        if self.header.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let high = (self.header.high.load(Ordering::SeqCst) as usize).min(SLOTS);
        let mut woken = 0;
        for slot in &self.slots[..high] {
            let state = slot.state.load(Ordering::SeqCst);
            if state & STATE != WAITING || slot.key.load(Ordering::Relaxed) != key {
                continue;
            }
            let (pid, tid) = (slot.pid.load(Ordering::Relaxed), slot.tid.load(Ordering::Relaxed));
            // The generation makes this fail if the slot was freed and taken again
            // since `state` was read (the key, pid and tid read may be the new ones).
            let chosen = (state & GENERATION) | WOKEN;
            if slot
                .state
                .compare_exchange(state, chosen, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            if set_event_of(pid, tid) {
                woken += 1;
                if woken >= count {
                    return;
                }
            } else {
                // The sleeper's thread is gone (its event with it), so nobody else
                // will free its slot.
                let free = (state & GENERATION) | FREE;
                if slot
                    .state
                    .compare_exchange(chosen, free, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    self.header.waiting.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
}

impl Claim<'_> {
    /// Gives the slot back (whether a waker chose it or not).
    fn release(self) {
        let slot = &self.table.slots[self.index];
        let generation = self.waiting & GENERATION;
        let free = generation | FREE;
        let freed = slot
            .state
            .compare_exchange(self.waiting, free, Ordering::SeqCst, Ordering::Relaxed)
            .or_else(|_| {
                slot.state.compare_exchange(
                    generation | WOKEN,
                    free,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
            })
            .is_ok();
        // Else a waker freed it, having found this thread gone (it could not open
        // the event), and counted it out.
        if freed {
            self.table.header.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Sets the wake-up event of thread `tid` of process `pid`; `false` if it does not
/// exist (the thread, or its process, ended).
fn set_event_of(pid: u32, tid: u32) -> bool {
    let name = wide(&event_name(pid, tid));
    // SAFETY: name is NUL-terminated UTF-16 that outlives the call.
    let event = unsafe { OpenEventW(EVENT_MODIFY_STATE, 0, name.as_ptr()) };
    if event.is_null() {
        let gone = io::Error::last_os_error().raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32);
        // Another failure (no handles left, access denied): the sleeper may still
        // run; its slot stays chosen, and it frees it when its wait times out.
        return !gone;
    }
    // SAFETY: event is the live handle opened above, closed once, here.
    unsafe {
        SetEvent(event);
        CloseHandle(event);
    }
    true
}

fn event_name(pid: u32, tid: u32) -> String {
    format!("Local\\shmbridge-wake-{pid}-{tid}")
}

fn wide(name: &str) -> Vec<u16> {
    name.encode_utf16().chain(std::iter::once(0)).collect()
}

/// This thread's wake-up event (auto-reset), made on its first sleep and closed
/// when the thread ends (which frees its name).
struct ThreadEvent(HANDLE);

impl Drop for ThreadEvent {
    fn drop(&mut self) {
        // SAFETY: the handle was made by CreateEventW for this value, closed only here.
        unsafe { CloseHandle(self.0) };
    }
}

thread_local! {
    static EVENT: Option<ThreadEvent> = {
        let name = wide(&event_name(std::process::id(), current_tid()));
        // SAFETY: name is NUL-terminated UTF-16 that outlives the call; default
        // security; auto-reset, not signalled.
        let event = unsafe { CreateEventW(std::ptr::null(), 0, 0, name.as_ptr()) };
        (!event.is_null()).then_some(ThreadEvent(event))
    };
}

fn current_tid() -> u32 {
    // SAFETY: no arguments; reads the calling thread's id.
    unsafe { GetCurrentThreadId() }
}

/// A parking table in a named mapping shared by every process that uses one
/// segment's words.
struct SharedTable {
    mapping: HANDLE,
    view: NonNull<Table>,
}

// SAFETY: the view is shared memory that is only ever accessed through atomics; the
// mapping handle is valid in every thread and closed once, on drop.
unsafe impl Send for SharedTable {}
// SAFETY: as for Send.
unsafe impl Sync for SharedTable {}

impl SharedTable {
    /// Opens (or creates, all zero: an empty table) the table of `segment` (its
    /// name without the leading `/`).
    fn open(segment: &str) -> io::Result<Self> {
        let name = wide(&format!("Local\\shmbridge-wait1-{segment}"));
        // SAFETY: name is NUL-terminated UTF-16 that outlives the call; default
        // security; the size fits in the low 32 bits.
        let mapping = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_READWRITE,
                0,
                TABLE_BYTES as u32,
                name.as_ptr(),
            )
        };
        if mapping.is_null() {
            return Err(io::Error::last_os_error());
        }
        // Exactly the table's size: if something smaller squats the name, this
        // fails rather than maps less than the table.
        // SAFETY: a fresh view at an address of the system's choosing.
        let view =
            unsafe { MapViewOfFile(mapping, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, TABLE_BYTES) };
        let Some(view) = NonNull::new(view.Value.cast::<Table>()) else {
            let err = io::Error::last_os_error();
            // SAFETY: the handle made above, not used again.
            unsafe { CloseHandle(mapping) };
            return Err(err);
        };
        Ok(Self { mapping, view })
    }

    fn table(&self) -> &Table {
        // SAFETY: the view is TABLE_BYTES of shared memory, page-aligned, mapped
        // until drop; every field of Table is an atomic or padding, valid for any
        // bytes, and only accessed through atomics.
        unsafe { self.view.as_ref() }
    }
}

impl Drop for SharedTable {
    fn drop(&mut self) {
        // SAFETY: the view and handle made in `open`, released once, here; no
        // reference into the view outlives `self` (claims borrow it).
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: self.view.as_ptr().cast() });
            CloseHandle(self.mapping);
        }
    }
}

/// A view of a named segment in this process: where it is, and the segment's
/// table, opened on first use.
struct View {
    base: usize,
    len: usize,
    segment: Arc<Segment>,
}

struct Segment {
    /// Keeps the mapping object, and so its name, alive while the view exists:
    /// a named mapping goes away with its last handle, views do not count.
    handle: Handle,
    table: Mutex<Option<Arc<SharedTable>>>,
}

impl Segment {
    fn table(&self) -> Option<Arc<SharedTable>> {
        let mut table = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if table.is_none() {
            *table = SharedTable::open(self.handle.bare_name()).ok().map(Arc::new);
        }
        table.clone()
    }
}

fn views() -> &'static RwLock<Vec<View>> {
    static VIEWS: RwLock<Vec<View>> = RwLock::new(Vec::new());
    &VIEWS
}

/// Records a new view of `handle`'s segment at `base`, and keeps the segment's
/// handle with it.
pub(super) fn register_view(base: NonNull<u8>, len: usize, handle: &Handle) {
    let segment = Arc::new(Segment { handle: handle.clone(), table: Mutex::new(None) });
    let mut views = views().write().unwrap_or_else(|poisoned| poisoned.into_inner());
    views.push(View { base: base.as_ptr() as usize, len, segment });
}

/// Forgets the view at `base` (before it is unmapped).
pub(super) fn unregister_view(base: NonNull<u8>) {
    let base = base.as_ptr() as usize;
    let removed = {
        let mut views = views().write().unwrap_or_else(|poisoned| poisoned.into_inner());
        views.iter().position(|v| v.base == base).map(|i| views.swap_remove(i))
    };
    // Dropped outside the lock: closing handles and unmapping the table are calls
    // to the system.
    drop(removed);
}

/// The table process-private words park in, keyed by address.
fn local_table() -> &'static Table {
    static LOCAL: Table = Table {
        header: Header { waiting: AtomicU32::new(0), high: AtomicU32::new(0), _reserved: [0; 14] },
        slots: [const { Slot::new() }; SLOTS],
    };
    &LOCAL
}

/// Where a word parks: a segment's shared table (held open) and its offset there,
/// or the process's own table and its address.
enum Place {
    Shared(Arc<SharedTable>, u64),
    Local(u64),
    /// In a segment whose table could not be had: poll.
    Unparkable,
}

impl Place {
    fn of(word: &AtomicU32) -> Self {
        let address = word.as_ptr() as usize;
        let views = views().read().unwrap_or_else(|poisoned| poisoned.into_inner());
        match views.iter().find(|v| address >= v.base && address - v.base < v.len) {
            Some(view) => {
                let offset = (address - view.base) as u64;
                let segment = Arc::clone(&view.segment);
                drop(views);
                match segment.table() {
                    Some(table) => Place::Shared(table, offset),
                    None => Place::Unparkable,
                }
            }
            None => Place::Local(address as u64),
        }
    }

    fn table_and_key(&self) -> Option<(&Table, u64)> {
        match self {
            Place::Shared(table, offset) => Some((table.table(), *offset)),
            Place::Local(address) => Some((local_table(), *address)),
            Place::Unparkable => None,
        }
    }
}

/// Sleeps while every word holds its expected value: until a [`wake`] of one of
/// them, `timeout`, or spuriously.
pub(super) fn park(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) {
    let places: Vec<Place> = words.iter().map(|(word, _)| Place::of(word)).collect();
    // No event during the thread's teardown (its thread-locals are gone): poll.
    let parked = EVENT.try_with(|event| {
        let Some(event) = event else { return false };
        // A set meant for an earlier sleep of this thread, which ended without it
        // (a time-out), would end this one at once: drain it.
        // SAFETY: event is this thread's live event handle.
        unsafe { WaitForSingleObject(event.0, 0) };
        let (pid, tid) = (std::process::id(), current_tid());
        let mut claims = Vec::with_capacity(places.len());
        for place in &places {
            let Some((table, key)) = place.table_and_key() else { break };
            let claim = table
                .claim(key, pid, tid)
                .or_else(|| (table.free_dead() > 0).then(|| table.claim(key, pid, tid)).flatten());
            match claim {
                Some(claim) => claims.push(claim),
                None => break,
            }
        }
        if claims.len() < places.len() {
            claims.into_iter().for_each(Claim::release);
            return false;
        }
        // Paired with the waker's change of the word and fence (see the module docs).
        fence(Ordering::SeqCst);
        let unchanged =
            words.iter().all(|(word, expected)| word.load(Ordering::SeqCst) == *expected);
        if unchanged {
            // SAFETY: event is this thread's live event handle.
            let woke = unsafe { WaitForSingleObject(event.0, milliseconds(timeout)) };
            debug_assert!(woke == WAIT_OBJECT_0 || woke == 0x102, "WaitForSingleObject: {woke}");
        }
        claims.into_iter().for_each(Claim::release);
        true
    });
    if !parked.unwrap_or(false) {
        std::thread::sleep(timeout.map_or(POLL, |t| t.min(POLL)));
    }
}

/// Wakes up to `count` sleepers on `word`, in any process.
pub(super) fn wake(word: &AtomicU32, count: u32) {
    if count == 0 {
        return;
    }
    let place = Place::of(word);
    if let Some((table, key)) = place.table_and_key() {
        table.wake(key, count);
    }
}

/// A timeout in whole milliseconds, rounded up (a shorter sleep would only wake
/// early and loop); `INFINITE` for none.
fn milliseconds(timeout: Option<Duration>) -> u32 {
    match timeout {
        None => INFINITE,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            ms.min(u128::from(INFINITE - 1)) as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_up_and_cap() {
        assert_eq!(milliseconds(None), INFINITE);
        assert_eq!(milliseconds(Some(Duration::ZERO)), 0);
        assert_eq!(milliseconds(Some(Duration::from_nanos(1))), 1);
        assert_eq!(milliseconds(Some(Duration::from_millis(5))), 5);
        assert_eq!(milliseconds(Some(Duration::from_secs(u64::MAX))), INFINITE - 1);
    }

    /// A sleeper with no time-out blocks in the kernel, listed in its segment's
    /// table under the word's offset, until a wake of that word ends it.
    #[test]
    fn a_sleeper_is_listed_under_its_offset_until_woken() {
        let name = format!("/park_unit_{}", std::process::id());
        let handle = super::super::create(&name, 4096, 0o600, true, &[]).unwrap();
        let mapping = super::super::map(&handle, 4096, true, false).unwrap();
        // SAFETY: offsets 4 and 8 lie in the live 4096-byte mapping (page-aligned),
        // which outlives the words and is only accessed through atomics here.
        let (other, word) = unsafe {
            let base = mapping.as_ptr();
            (&*base.add(4).cast::<AtomicU32>(), &*base.add(8).cast::<AtomicU32>())
        };
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                park(&[(word, 0)], None);
                done.send(word.load(Ordering::SeqCst)).unwrap();
            });
            let Place::Shared(table, 8) = Place::of(word) else { panic!("not in the segment") };
            let table = table.table();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !table.slots.iter().any(|slot| {
                slot.state.load(Ordering::SeqCst) & STATE == WAITING
                    && slot.key.load(Ordering::SeqCst) == 8
            }) {
                assert!(std::time::Instant::now() < deadline, "the sleeper never parked");
                std::thread::yield_now();
            }
            wake(other, u32::MAX); // another word: not this sleeper's
            word.store(1, Ordering::SeqCst);
            wake(word, 1);
            let seen = finished.recv_timeout(Duration::from_secs(30)).expect("woken");
            assert_eq!(seen, 1);
        });
    }

    #[test]
    fn a_slot_is_woken_once_and_freed_by_its_sleeper() {
        let table = local_table();
        let key = 0xdead_beef_0000;
        let claim = table.claim(key, std::process::id(), current_tid()).unwrap();
        let state = table.slots[claim.index].state.load(Ordering::SeqCst);
        assert_eq!(state & STATE, WAITING);
        // Our own event exists once this thread parked; make it.
        EVENT.with(|e| assert!(e.is_some()));
        table.wake(key, 1);
        assert_eq!(table.slots[claim.index].state.load(Ordering::SeqCst) & STATE, WOKEN);
        let index = claim.index;
        claim.release();
        assert_eq!(table.slots[index].state.load(Ordering::SeqCst) & STATE, FREE);
        // The set is pending on this thread's event: the next park drains it.
        EVENT.with(|e| {
            // SAFETY: this thread's live event.
            assert_eq!(unsafe { WaitForSingleObject(e.as_ref().unwrap().0, 0) }, WAIT_OBJECT_0);
        });
    }
}
