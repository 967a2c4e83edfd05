//! Copies that survive a segment shrinking under them (Linux).
//!
//! # The problem
//!
//! Any process that may write a segment may also `ftruncate` it. Pages past the new
//! end vanish from every mapping at once, and the next touch of one raises SIGBUS,
//! which kills the process. The same happens when a page of a sparse segment (one
//! made without reserving its memory, as Python's stdlib does) is first written
//! while `/dev/shm` is full.
//!
//! # The choice
//!
//! Two ways turn that into an error. Copying through the descriptor
//! (`pread`/`pwrite`) costs a system call per copy, ~100x the 2 ns of a 64-byte
//! `read_at`, and would break "fast paths make no system calls" for the channel;
//! a `pwrite` past the new end would also silently grow the segment again, and
//! named segments keep no descriptor. So copies run through the mapping, and a
//! process-wide SIGBUS handler repairs the rare fault instead:
//!
//! - every mapping registers its address range in a lock-free list of [`Slot`]s,
//!   which the handler can walk without allocating or locking;
//! - a copy names its slot in a thread-local word while it runs ([`Guard::copy`]):
//!   a load of the slot's flag, a thread-local store before the copy and a load
//!   and a store after. That costs about half a nanosecond, mostly because a
//!   library's thread-local is reached as if through a call (the general-dynamic
//!   model; stable Rust cannot choose another), so the compiler saves registers
//!   around it; small copies are done inline ([`super::copy_bytes`]), which wins
//!   most of it back;
//! - on SIGBUS at an address inside the slot this thread is copying, the handler
//!   maps an anonymous page over the vanished one (`MAP_FIXED`, so the range stays
//!   reserved), marks the slot as having lost pages and returns: the faulting
//!   access is retried and finds the anonymous page, the copy completes with
//!   zeros, and [`Guard::copy`] then reports the loss. From then on the slot
//!   refuses every guarded copy, since parts of it are no longer shared;
//! - every other SIGBUS goes to the handler that was installed before ours
//!   (Python's `faulthandler`, Rust's stack-overflow reporter, or the default
//!   action, which kills the process as if we were not there).
//!
//! Zero-copy views (slices, typed views, NumPy arrays over the mapping) are not
//! copies: a fault through them is not ours, and kills the process as before. A
//! vanished page is never silently replaced under them.
//!
//! # Living with other handlers
//!
//! The handler is installed at the first mapping, in front of whatever handled
//! SIGBUS then, and chained to it. A handler installed later in front of ours
//! (`faulthandler.enable()` after a segment was mapped) sees our faults first:
//! `faulthandler` prints its report, puts ours back and re-raises the signal with
//! `raise`. A SIGBUS sent that way (not by a fault) to a thread that is inside a
//! guarded copy is ignored: the access then faults again, now reaching our handler,
//! which repairs it. Mapping a segment re-installs ours if someone reset SIGBUS to
//! its default, but never in front of another handler, which may chain to ours:
//! that would make a loop.

use std::ffi::{c_int, c_void};
use std::ptr::{self, NonNull};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, compiler_fence};

use rustix::mm::{self, MapFlags, ProtFlags};

/// The range of one live mapping, as the signal handler sees it. Slots are
/// allocated once and never freed (a released slot is reused by a later mapping),
/// so the handler can follow the list at any moment without a lock.
struct Slot {
    /// Start address; 0 while the slot is free.
    start: AtomicUsize,
    /// One past the last byte.
    end: AtomicUsize,
    writable: AtomicBool,
    /// Set by the handler when it replaced a page of this mapping.
    lost: AtomicBool,
    /// Claimed by a live mapping.
    in_use: AtomicBool,
    /// The next slot of the list; set before the slot is published, never changed.
    next: AtomicPtr<Slot>,
}

/// The list of every slot ever allocated.
static SLOTS: AtomicPtr<Slot> = AtomicPtr::new(ptr::null_mut());
/// How many slots are in use: the handler reads thread-local state only when some
/// are (a thread-local access in a signal handler may allocate, in a library loaded
/// with `dlopen`, for a thread that never used it).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The action that handled SIGBUS before ours (a leaked `sigaction`), to chain to.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(ptr::null_mut());
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
/// Serializes installing the handler.
static INSTALL: Mutex<bool> = Mutex::new(false);

thread_local! {
    /// The address of the slot whose mapping this thread is copying to or from,
    /// or 0. The handler sets the low bit ([`FAULTED`]) when it replaced a page
    /// during the copy (a slot is aligned, so the bit is free): the copy learns of
    /// the fault from the word it clears anyway.
    ///
    /// A `const` thread-local of a type without `Drop`: reading it is a plain load
    /// from thread-local storage, fit for a signal handler. An atomic (accessed
    /// relaxed, a plain move) so that the compiler fences around the copy order it.
    static COPYING: AtomicUsize = const { AtomicUsize::new(0) };
}

/// The bit of [`COPYING`] that says a page was replaced during the copy.
const FAULTED: usize = 1;

/// Pages of the mapping vanished: the copy that saw it, and every later one,
/// cannot be trusted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PagesLost;

/// A mapping's registration with the SIGBUS handler; released by
/// [`unregister`](Guard::unregister) or on drop.
pub(crate) struct Guard {
    slot: &'static Slot,
    /// Cleared by `unregister`; the slot may then serve another mapping, and this
    /// guard must not copy any more (its mapping is being unmapped).
    registered: bool,
}

impl Guard {
    /// Registers the mapping at `ptr` of `len` bytes, and makes sure the handler is
    /// installed.
    pub(crate) fn register(ptr: NonNull<u8>, len: usize, writable: bool) -> Self {
        install();
        let slot = claim_slot();
        slot.lost.store(false, Ordering::Relaxed);
        slot.writable.store(writable, Ordering::Relaxed);
        slot.end.store(ptr.as_ptr() as usize + len, Ordering::Relaxed);
        // Release: a handler that sees the start sees the end and the flags too.
        slot.start.store(ptr.as_ptr() as usize, Ordering::Release);
        Self { slot, registered: true }
    }

    /// Ends the registration (before the mapping is unmapped); idempotent.
    pub(crate) fn unregister(&mut self) {
        if std::mem::take(&mut self.registered) {
            let slot = self.slot;
            slot.start.store(0, Ordering::Release);
            slot.end.store(0, Ordering::Relaxed);
            LIVE.fetch_sub(1, Ordering::Relaxed);
            slot.in_use.store(false, Ordering::Release);
        }
    }

    /// Copies `len` bytes from `src` to `dst` (overlap allowed), where one side or
    /// both lie in this guard's mapping. A page of the mapping that vanishes during
    /// the copy is replaced by zeros, and the copy reports [`PagesLost`]; so does
    /// every copy after one that did.
    ///
    /// # Safety
    ///
    /// As for [`std::ptr::copy`]: `src` valid for reads and `dst` for writes of
    /// `len` bytes, with no Rust reference alive to the bytes written. The guard is
    /// still registered (its mapping is not being unmapped).
    #[inline]
    pub(crate) unsafe fn copy(
        &self,
        src: *const u8,
        dst: *mut u8,
        len: usize,
    ) -> Result<(), PagesLost> {
        debug_assert!(self.registered, "a copy into a mapping being unmapped");
        let slot = self.slot;
        if slot.lost.load(Ordering::Relaxed) {
            return Err(PagesLost);
        }
        COPYING.with(|copying| copying.store(ptr::from_ref(slot) as usize, Ordering::Relaxed));
        // The handler runs on this thread, between any two instructions of the
        // copy: the fences keep the compiler from moving the copy out of the window
        // in which COPYING names our slot.
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the caller vouches for both ranges; overlap is allowed.
        unsafe { super::copy_bytes(src, dst, len) };
        compiler_fence(Ordering::SeqCst);
        // A load and a store rather than a swap (a locked instruction): only this
        // thread's signal handler writes the word, and nothing between the two
        // touches the mapping.
        let copying = COPYING.with(|copying| {
            let value = copying.load(Ordering::Relaxed);
            copying.store(0, Ordering::Relaxed);
            value
        });
        if copying & FAULTED != 0 { Err(PagesLost) } else { Ok(()) }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// A free slot, reused or newly allocated (and then never freed).
fn claim_slot() -> &'static Slot {
    LIVE.fetch_add(1, Ordering::Relaxed);
    let mut at = SLOTS.load(Ordering::Acquire);
    // SAFETY: every pointer in the list comes from Box::leak below: valid forever.
    while let Some(slot) = unsafe { at.as_ref() } {
        if slot.in_use.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return slot;
        }
        at = slot.next.load(Ordering::Acquire);
    }
    let slot: &'static Slot = Box::leak(Box::new(Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        writable: AtomicBool::new(false),
        lost: AtomicBool::new(false),
        in_use: AtomicBool::new(true),
        next: AtomicPtr::new(ptr::null_mut()),
    }));
    let mut head = SLOTS.load(Ordering::Acquire);
    loop {
        slot.next.store(head, Ordering::Relaxed);
        let new = ptr::from_ref(slot).cast_mut();
        match SLOTS.compare_exchange(head, new, Ordering::Release, Ordering::Acquire) {
            Ok(_) => return slot,
            Err(current) => head = current,
        }
    }
}

/// The slot whose mapping holds `addr`, if any. Signal-safe: atomic loads only.
fn slot_at(addr: usize) -> Option<&'static Slot> {
    let mut at = SLOTS.load(Ordering::Acquire);
    // SAFETY: every pointer in the list comes from Box::leak: valid forever.
    while let Some(slot) = unsafe { at.as_ref() } {
        let start = slot.start.load(Ordering::Acquire);
        if start != 0 && start <= addr && addr < slot.end.load(Ordering::Relaxed) {
            return Some(slot);
        }
        at = slot.next.load(Ordering::Acquire);
    }
    None
}

/// Installs the handler if SIGBUS has none of ours: the first time, in front of
/// whatever is there; later, only if SIGBUS went back to its default or to being
/// ignored (never in front of another handler, which may chain to ours).
fn install() {
    let mut installed_once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, no flags, empty mask).
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: queries only (null new action); `current` is a valid out-pointer.
    if unsafe { libc::sigaction(libc::SIGBUS, ptr::null(), &mut current) } != 0 {
        return; // cannot happen for SIGBUS; copies then stay unguarded
    }
    let ours = on_sigbus as *const () as libc::sighandler_t;
    let unhandled = matches!(current.sa_sigaction, libc::SIG_DFL | libc::SIG_IGN);
    if current.sa_sigaction == ours || (*installed_once && !unhandled) {
        return;
    }
    PAGE_SIZE.store(rustix::param::page_size(), Ordering::Relaxed);
    // SAFETY: as above, all-zero is a valid sigaction to fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = ours;
    // SA_ONSTACK: run on the thread's alternate stack if it has one (a fault may come
    // from a thread short of stack). SIGBUS stays blocked while the handler runs
    // (no SA_NODEFER): a chained handler's raise() is delivered after we return.
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: sa_mask is a valid sigset_t to initialize.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // The previous action must be in place before ours can run and read it.
    PREVIOUS.store(Box::into_raw(Box::new(current)), Ordering::Release);
    // SAFETY: `action` is fully initialized; on_sigbus has the SA_SIGINFO signature
    // and only does what is safe in a signal handler (see there).
    if unsafe { libc::sigaction(libc::SIGBUS, &action, ptr::null_mut()) } == 0 {
        *installed_once = true;
    }
}

/// The SIGBUS handler. Async-signal-safe: atomic and thread-local loads, `mmap`
/// (a raw system call through rustix), and for chaining `sigaction` and `raise`.
extern "C" fn on_sigbus(sig: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // The thread-local is read only once the fault is known to be in one of our
    // mappings, or when copies may be running at all (see LIVE).
    // SAFETY (of the derefs below): a pointer to this thread's own word, which
    // lives as long as the thread, so as long as this handler runs on it.
    let word = || COPYING.with(ptr::from_ref);
    if code > 0 {
        // A fault (BUS_ADRERR: the page is gone, or there was no memory to back it).
        // SAFETY: si_addr is the field of a fault's siginfo (code > 0).
        let addr = unsafe { (*info).si_addr() } as usize;
        if let Some(slot) = slot_at(addr) {
            let slot_addr = ptr::from_ref(slot) as usize;
            // SAFETY: see `word`.
            let copying = unsafe { &*word() };
            if copying.load(Ordering::Relaxed) & !FAULTED == slot_addr
                && replace_page(addr, slot.writable.load(Ordering::Relaxed))
            {
                slot.lost.store(true, Ordering::Relaxed);
                copying.store(slot_addr | FAULTED, Ordering::Relaxed);
                return; // the access is retried on the anonymous page
            }
        }
    // SAFETY: see `word`.
    } else if LIVE.load(Ordering::Relaxed) > 0 && unsafe { &*word() }.load(Ordering::Relaxed) != 0 {
        // Sent by kill/raise, not a fault: most likely a handler in front of ours
        // passing on our fault. Returning retries the access, which faults again
        // and now reaches us directly.
        return;
    }
    chain(sig, info, context);
}

/// Maps a private anonymous page over the page holding `addr`.
fn replace_page(addr: usize, writable: bool) -> bool {
    let page = PAGE_SIZE.load(Ordering::Relaxed);
    let base = addr & !(page - 1);
    let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
    // SAFETY: the page lies inside a live mapping of ours (slot_at), which the
    // current copy keeps alive; MAP_FIXED replaces just that page, keeping the range
    // reserved, so no other allocation can land there.
    let mapped = unsafe {
        mm::mmap_anonymous(base as *mut c_void, page, prot, MapFlags::PRIVATE | MapFlags::FIXED)
    };
    mapped.is_ok()
}

/// Passes the signal to the action that was installed before ours.
fn chain(sig: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: PREVIOUS is set before our handler is installed and its box is never
    // freed; the pointer is either null (impossible here) or valid.
    let Some(previous) = (unsafe { PREVIOUS.load(Ordering::Acquire).as_ref() }) else {
        return die(sig);
    };
    let handler = previous.sa_sigaction;
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let sent = unsafe { (*info).si_code } <= 0;
    if handler == libc::SIG_DFL || (handler == libc::SIG_IGN && !sent) {
        // A fault cannot be ignored: the kernel would kill the process, as here.
        return die(sig);
    }
    if handler == libc::SIG_IGN {
        return;
    }
    if previous.sa_flags & libc::SA_RESETHAND != 0 {
        reset_default(sig);
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, the handler was installed with this signature.
        let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, context);
    } else {
        // SAFETY: without SA_SIGINFO, the handler was installed with this signature.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// Lets the signal take its default action (terminating the process): restores it,
/// and raises the signal again, delivered when our handler returns (SIGBUS is
/// blocked until then). A fault would recur anyway; a sent signal would not.
fn die(sig: c_int) {
    reset_default(sig);
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(sig) };
}

fn reset_default(sig: c_int) {
    // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask; sigaction is
    // async-signal-safe.
    unsafe {
        let default: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, &default, ptr::null_mut());
    }
}
