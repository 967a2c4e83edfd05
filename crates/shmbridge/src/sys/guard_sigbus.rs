//! Copies, and other touches of a mapping, that survive a segment shrinking under
//! them (Linux).
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
//! named segments keep no descriptor; nor can an atomic word be read that way. So
//! memory is touched through the mapping, and a process-wide SIGBUS handler
//! repairs the rare fault instead:
//!
//! - every mapping registers its address range in a lock-free list of [`Slot`]s,
//!   which the handler can walk without allocating or locking;
//! - the handler must know that the faulting thread was inside one of *our*
//!   copies or guarded scopes, for *that* mapping (a view's fault must not be
//!   papered over, nor a fault in the other side of a copy, which may be another
//!   segment's view). A copy of more than 64 bytes names its slot in a
//!   thread-local word while it runs ([`copy_naming_slot`]), and so does a
//!   guarded scope ([`Guard::guarded`]) for as long as its closure runs: the
//!   operations that are not plain copies (the channel's header words and loops,
//!   a primitive's state word, a seqlock's record copied through atomic words, an
//!   array's generation counter, waits) run their whole body in one. Scopes and
//!   copies nest: each puts back what the word held before it ([`Naming`]), and
//!   the innermost one's mapping is the one repaired. A copy of 64 bytes or
//!   fewer, on x86-64 with glibc, runs in a routine of our own instead
//!   ([`small`]), which the handler recognizes by the faulting instruction and by
//!   the slot in an argument register: a library's thread-local is reached as if
//!   through a call (the general-dynamic model, which stable Rust cannot change),
//!   and the registers saved around it made a 64-byte `read_at` 30-40% slower; the
//!   routine costs what the call to the C library's `memmove` did. Elsewhere every
//!   copy names its slot;
//! - on such a fault, the handler maps an anonymous page over the vanished one
//!   (`MAP_FIXED`, so the range stays reserved), marks the slot as having lost
//!   pages and returns: the faulting access is retried and finds the anonymous
//!   page, the copy or scope runs to its end on zeros (and on this process's own
//!   writes to the private page), and [`Guard::copy`] or [`Guard::guarded`] then
//!   reports the loss, whatever the closure returned. From then on the slot
//!   refuses every guarded copy and scope at once, since parts of the mapping are
//!   no longer shared;
//! - every other SIGBUS goes to the handler that was installed before ours
//!   (Python's `faulthandler`, Rust's stack-overflow reporter, or the default
//!   action, which kills the process as if we were not there).
//!
//! # Waits
//!
//! A futex wait on a word whose page vanished fails with `EFAULT` (the kernel
//! raises no signal there), and a sleeper queued on a page before it vanished is
//! woken by nobody: the kernel keys a shared futex by file and offset, and after a
//! repair this process's wakers write a private page. So the wait loops, which all
//! run inside a scope, sleep at most half a second at a time (less where they
//! already wake for liveness checks or signals), look at [`Guard::pages_lost`]
//! before every sleep and after every wake, and end when it is set; their next
//! touch of the word, in the scope, finds a vanished page if nothing else did.
//! The async waiter threads look at their words in scopes too, as often.
//!
//! # What is not guarded
//!
//! Zero-copy views (slices, typed views, a received message or a loan read or
//! written in place, NumPy arrays and DLPack tensors over the mapping) are not
//! copies, and no scope is open while the caller's code runs (the channel's
//! `drain_with` lends each message outside its scope): a fault through them is
//! not ours, and kills the process as before. A vanished page is never silently
//! replaced under them.
//!
//! # Living with other handlers
//!
//! The handler is installed at the first mapping, in front of whatever handled
//! SIGBUS then, and chained to it. A handler installed later in front of ours
//! (`faulthandler.enable()` after a segment was mapped) sees our faults first:
//! `faulthandler` prints its report, puts ours back and re-raises the signal with
//! `raise`. While mappings of ours exist, a SIGBUS that this process raised (no
//! fault, and not sent by another process) is therefore ignored: the faulting
//! access is retried, faults again and now reaches our handler, which repairs it
//! if it is ours and passes it down the chain otherwise. The cost: a deliberate
//! `raise(SIGBUS)` does nothing then. Mapping a segment re-installs our handler
//! if someone reset SIGBUS to its default, but never in front of another handler,
//! which may chain to ours: that would make a loop.
//!
//! A handler installed later that neither chains to ours nor puts it back (a
//! library's crash reporter that calls `_exit`, a `sigaction` that simply replaces
//! ours) disables the repair: every fault, ours included, goes to it, and the
//! process dies (or does whatever that handler does) as it would without
//! shmbridge. Nothing here can detect that before the fault.

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
/// How many slots are in use: while none are, a SIGBUS this process raised is
/// passed on like any other (see the module docs).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The action that handled SIGBUS before ours (a leaked `sigaction`), to chain to.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(ptr::null_mut());
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
/// Serializes installing the handler.
static INSTALL: Mutex<bool> = Mutex::new(false);

thread_local! {
    /// The address of the slot whose mapping this thread is copying to or from,
    /// or touching in a guarded scope, or 0. The handler sets the low bit
    /// ([`FAULTED`]) when it replaced a page meanwhile (a slot is aligned, so the
    /// bit is free): a copy learns of the fault from the word it restores anyway.
    ///
    /// A `const` thread-local of a type without `Drop`: no lazy initialization and
    /// no destructor to register, so a signal handler may read it (but see
    /// `on_sigbus` on a first access). An atomic (accessed relaxed, a plain move)
    /// so that the compiler fences around the copy order it.
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
        #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
        if len <= small::MAX {
            // SAFETY: the caller vouches for both ranges; the routine allows overlap
            // and takes at most small::MAX bytes.
            unsafe {
                small::shmbridge_guarded_copy_small(dst, src, len, ptr::from_ref(slot) as usize)
            };
            return if slot.lost.load(Ordering::Relaxed) { Err(PagesLost) } else { Ok(()) };
        }
        // SAFETY: the caller's contract.
        unsafe { copy_naming_slot(slot, src, dst, len) }
    }

    /// Runs `f` with this guard's mapping named as the one this thread touches, so
    /// that a fault on any page of the mapping while `f` runs (in this thread) is
    /// repaired as in [`copy`](Self::copy): the page reads as zeros, writes to it
    /// go to a private page, and `f` runs on. Then the result is [`PagesLost`]
    /// instead of `f`'s value, if this mapping lost pages before or while `f` ran
    /// (in any thread); if it had lost pages before, `f` does not run at all.
    ///
    /// For operations that are not plain copies: atomic words, loops of loads and
    /// stores, waits. Scopes nest (the innermost one's mapping is the one
    /// repaired), and copies inside a scope keep working as copies.
    ///
    /// Cost: a thread-local's address, two loads and two stores of it, and two
    /// loads of the lost flag; a few nanoseconds per call (see
    /// `bench/src/bin/channel_costs.rs`).
    #[inline]
    pub(crate) fn guarded<R>(&self, f: impl FnOnce() -> R) -> Result<R, PagesLost> {
        debug_assert!(self.registered, "a scope on a mapping being unmapped");
        let slot = self.slot;
        if slot.lost.load(Ordering::Relaxed) {
            return Err(PagesLost);
        }
        let scope = Naming::begin(slot);
        let result = f();
        drop(scope);
        if slot.lost.load(Ordering::Relaxed) { Err(PagesLost) } else { Ok(result) }
    }

    /// Whether pages of this guard's mapping vanished (a fault was repaired, in any
    /// thread): for wait loops inside a [`guarded`](Self::guarded) scope, which
    /// must stop waiting on a word that nobody else sees any more.
    #[inline]
    pub(crate) fn pages_lost(&self) -> bool {
        self.slot.lost.load(Ordering::Relaxed)
    }
}

/// This thread's [`COPYING`] word naming a slot, for as long as the value lives;
/// dropping it (also on unwinding) puts back what the word held before, so scopes
/// and copies nest.
struct Naming {
    word: *const AtomicUsize,
    previous: usize,
}

impl Naming {
    /// Names `slot` in this thread's word.
    #[inline(always)]
    fn begin(slot: &Slot) -> Self {
        // The thread-local's address is taken once: in a library loaded with dlopen
        // (the Python extension), every access is a call to `__tls_get_addr`.
        let word = COPYING.with(ptr::from_ref);
        // SAFETY: a const thread-local without Drop lives, at this address, as long
        // as the thread, and this value never leaves the thread (it is !Send).
        let copying = unsafe { &*word };
        let previous = copying.load(Ordering::Relaxed);
        copying.store(ptr::from_ref(slot) as usize, Ordering::Relaxed);
        // The handler runs on this thread, between any two instructions: the fence
        // keeps the compiler from moving the scope's accesses before the naming.
        compiler_fence(Ordering::SeqCst);
        Self { word, previous }
    }

    /// Ends the naming; whether the handler repaired a page for it meanwhile.
    #[inline(always)]
    fn end(self) -> bool {
        let this = std::mem::ManuallyDrop::new(self);
        this.restore()
    }

    #[inline(always)]
    fn restore(&self) -> bool {
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as in begin; still the same thread.
        let copying = unsafe { &*self.word };
        // A load and a store rather than a swap (a locked instruction): only this
        // thread's signal handler writes the word, and nothing between the two
        // touches a mapping.
        let value = copying.load(Ordering::Relaxed);
        copying.store(self.previous, Ordering::Relaxed);
        value & FAULTED != 0
    }
}

impl Drop for Naming {
    #[inline(always)]
    fn drop(&mut self) {
        self.restore();
    }
}

/// The copy of [`Guard::copy`] with `slot` named in the thread-local word, for
/// every copy where the small routine does not apply. Out of line where that
/// routine exists: its register saves would otherwise tax the small copies too.
///
/// # Safety
///
/// As [`Guard::copy`].
#[cfg_attr(all(target_arch = "x86_64", target_env = "gnu"), inline(never))]
unsafe fn copy_naming_slot(
    slot: &Slot,
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> Result<(), PagesLost> {
    // The fences in Naming keep the compiler from moving the copy out of the window
    // in which COPYING names our slot. What the word held before (a scope around
    // this copy) is put back after it.
    let naming = Naming::begin(slot);
    // SAFETY: the caller vouches for both ranges; overlap is allowed.
    unsafe { super::copy_bytes(src, dst, len) };
    if naming.end() { Err(PagesLost) } else { Ok(()) }
}

/// Small copies without the thread-local (x86-64 Linux, glibc).
///
/// A thread-local costs a 64-byte copy half again its time (see the module docs).
/// Copies of up to [`MAX`](small::MAX) bytes instead run in one routine of our own,
/// written in assembly so that two facts identify them to the handler: the
/// faulting instruction lies inside the routine, and the routine's fourth argument
/// register (`rcx`, which it never writes) holds the slot it copies for. The cost
/// is then a direct call, about what the C library's `memmove` call was.
#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
mod small {
    /// The largest copy the routine takes.
    pub(super) const MAX: usize = 64;

    // dst = rdi, src = rsi, len = rdx (0..=64), slot = rcx (read by the handler).
    // Every size loads all its bytes before storing any (the first and last words
    // of the range, overlapping), so overlapping ranges copy as with memmove.
    std::arch::global_asm!(
        ".pushsection .text.shmbridge_guarded_copy_small,\"ax\",@progbits",
        ".p2align 4",
        ".globl shmbridge_guarded_copy_small",
        ".hidden shmbridge_guarded_copy_small",
        ".type shmbridge_guarded_copy_small,@function",
        "shmbridge_guarded_copy_small:",
        "cmp rdx, 32",
        "ja 5f",
        "cmp rdx, 16",
        "ja 4f",
        "cmp rdx, 8",
        "jae 3f",
        "cmp rdx, 4",
        "jae 2f",
        "test rdx, rdx",
        "je 6f",
        // 1..=3 bytes: the first, the last and the middle one.
        "mov r8, rdx",
        "shr r8, 1",
        "movzx eax, byte ptr [rsi]",
        "movzx r9d, byte ptr [rsi + rdx - 1]",
        "movzx r10d, byte ptr [rsi + r8]",
        "mov byte ptr [rdi], al",
        "mov byte ptr [rdi + rdx - 1], r9b",
        "mov byte ptr [rdi + r8], r10b",
        "ret",
        "2:", // 4..=7
        "mov eax, dword ptr [rsi]",
        "mov r8d, dword ptr [rsi + rdx - 4]",
        "mov dword ptr [rdi], eax",
        "mov dword ptr [rdi + rdx - 4], r8d",
        "ret",
        "3:", // 8..=16
        "mov rax, qword ptr [rsi]",
        "mov r8, qword ptr [rsi + rdx - 8]",
        "mov qword ptr [rdi], rax",
        "mov qword ptr [rdi + rdx - 8], r8",
        "ret",
        "4:", // 17..=32
        "movups xmm0, xmmword ptr [rsi]",
        "movups xmm1, xmmword ptr [rsi + rdx - 16]",
        "movups xmmword ptr [rdi], xmm0",
        "movups xmmword ptr [rdi + rdx - 16], xmm1",
        "ret",
        "5:", // 33..=64
        "movups xmm0, xmmword ptr [rsi]",
        "movups xmm1, xmmword ptr [rsi + 16]",
        "movups xmm2, xmmword ptr [rsi + rdx - 32]",
        "movups xmm3, xmmword ptr [rsi + rdx - 16]",
        "movups xmmword ptr [rdi], xmm0",
        "movups xmmword ptr [rdi + 16], xmm1",
        "movups xmmword ptr [rdi + rdx - 32], xmm2",
        "movups xmmword ptr [rdi + rdx - 16], xmm3",
        "6:",
        "ret",
        ".globl shmbridge_guarded_copy_small_end",
        ".hidden shmbridge_guarded_copy_small_end",
        "shmbridge_guarded_copy_small_end:",
        ".size shmbridge_guarded_copy_small, shmbridge_guarded_copy_small_end - shmbridge_guarded_copy_small",
        ".popsection",
    );

    unsafe extern "C" {
        /// Copies `len` (at most [`MAX`]) bytes from `src` to `dst`, which may
        /// overlap; `slot` (the slot's address) is only there for the handler to
        /// read.
        pub(super) fn shmbridge_guarded_copy_small(
            dst: *mut u8,
            src: *const u8,
            len: usize,
            slot: usize,
        );
        /// The first byte after the routine.
        static shmbridge_guarded_copy_small_end: u8;
    }

    /// Whether the interrupted thread (`context`, the handler's third argument)
    /// was inside the routine, copying for `slot`.
    ///
    /// # Safety
    ///
    /// `context` is the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
    pub(super) unsafe fn interrupted_copying(context: *mut libc::c_void, slot: usize) -> bool {
        // SAFETY: the caller passes the kernel's ucontext_t.
        let registers = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        let pc = registers[libc::REG_RIP as usize] as usize;
        let start = shmbridge_guarded_copy_small as *const () as usize;
        let end = (&raw const shmbridge_guarded_copy_small_end) as usize;
        (start..end).contains(&pc) && registers[libc::REG_RCX as usize] as usize == slot
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
    if code > 0 {
        // A fault (BUS_ADRERR: the page is gone, or there was no memory to back it).
        // SAFETY: si_addr is the field of a fault's siginfo (code > 0).
        let addr = unsafe { (*info).si_addr() } as usize;
        // The thread-local is read only for a fault in one of our mappings: in a
        // library loaded with dlopen (the Python extension), a thread's first
        // access to it may allocate, which a handler must not do on a thread
        // that may have faulted inside malloc.
        if let Some(slot) = slot_at(addr) {
            let slot_addr = ptr::from_ref(slot) as usize;
            let copying = COPYING.with(|copying| copying.load(Ordering::Relaxed));
            let by_tls = copying & !FAULTED == slot_addr;
            #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
            // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
            let by_routine = unsafe { small::interrupted_copying(context, slot_addr) };
            #[cfg(not(all(target_arch = "x86_64", target_env = "gnu")))]
            let by_routine = false;
            if (by_tls || by_routine) && replace_page(addr, slot.writable.load(Ordering::Relaxed)) {
                slot.lost.store(true, Ordering::Relaxed);
                if by_tls {
                    COPYING.with(|c| c.store(slot_addr | FAULTED, Ordering::Relaxed));
                }
                return; // the access is retried on the anonymous page
            }
        }
    } else if LIVE.load(Ordering::Relaxed) > 0 && sent_by_this_process(info) {
        // Raised by this process, not a fault: most likely a handler in front of
        // ours (faulthandler) passing on a fault after reporting it. Returning
        // retries the faulting access, which faults again and now reaches us
        // directly: we repair it if it is ours, or pass it down the chain.
        return;
    }
    chain(sig, info, context);
}

/// Whether a signal that no fault raised was sent by this process (`raise`).
fn sent_by_this_process(info: *mut libc::siginfo_t) -> bool {
    // SAFETY: for a signal sent by kill/tgkill/raise (si_code <= 0), si_pid is set.
    let sender = unsafe { (*info).si_pid() };
    sender == rustix::process::getpid().as_raw_nonzero().get()
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

#[cfg(test)]
mod tests {
    /// Every size the small routine takes, with the ranges apart and overlapping
    /// either way, copies as `ptr::copy` (memmove) does.
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    #[test]
    fn small_routine_copies_like_memmove() {
        let pattern: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=super::small::MAX {
            for (src, dst) in [(0, 100), (100, 0), (10, 13), (13, 10), (20, 20), (5, 5 + len)] {
                let mut expected = pattern.clone();
                let mut got = pattern.clone();
                // SAFETY: both ranges lie inside the 200-byte buffers (at most
                // 100 + 64), which nothing else references.
                unsafe {
                    let base = expected.as_mut_ptr();
                    std::ptr::copy(base.add(src), base.add(dst), len);
                    let base = got.as_mut_ptr();
                    super::small::shmbridge_guarded_copy_small(
                        base.add(dst),
                        base.add(src),
                        len,
                        0,
                    );
                }
                assert_eq!(got, expected, "len {len}, src {src}, dst {dst}");
            }
        }
    }
}
