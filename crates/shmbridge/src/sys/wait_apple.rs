//! Blocking on a 32-bit word in shared memory across processes, for macOS (and
//! the other Apple systems): what a shared futex does on Linux.
//!
//! Three ways, the best one this system has, found at run time (with `dlsym`,
//! so one binary runs on every version, the deployment target of the build
//! notwithstanding):
//!
//! 1. `os_sync_wait_on_address_with_timeout` / `os_sync_wake_by_address_{any,all}`
//!    with the `SHARED` flags: the public API, macOS 14.4 and later;
//! 2. `__ulock_wait2` / `__ulock_wake` with `UL_COMPARE_AND_WAIT_SHARED`: what that
//!    API is built on, private but stable since macOS 11 (libc++'s `std::atomic::wait`
//!    and Go's runtime use it too);
//! 3. `__ulock_wait` (timeout in microseconds), the same since macOS 10.12;
//!
//! and if none resolves, short sleeps: waiters poll, as before macOS 10.12.
//!
//! All three key the wait by the physical page behind the address (the `SHARED`
//! form), so a process that maps the segment elsewhere wakes it; and they
//! interoperate, all being the kernel's `ulock`. A signal handler that runs
//! during the wait ends it with `EINTR`, which [`wait_on`] reports.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// `UL_COMPARE_AND_WAIT_SHARED` (`sys/ulock.h`): compare a 32-bit value, key by
/// the physical page, so other processes can wake.
const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
/// `ULF_WAKE_ALL`: wake every waiter, not one.
const ULF_WAKE_ALL: u32 = 0x0000_0100;
/// `ULF_NO_ERRNO`: return `-errno` rather than set `errno`.
const ULF_NO_ERRNO: u32 = 0x0100_0000;

/// How long a wait sleeps at a time when no kernel wait is available: it polls.
const POLL: Duration = Duration::from_micros(200);

type OsSyncWaitWithTimeout = unsafe extern "C" fn(*mut c_void, u64, usize, u32, u32, u64) -> c_int;
type OsSyncWait = unsafe extern "C" fn(*mut c_void, u64, usize, u32) -> c_int;
type OsSyncWake = unsafe extern "C" fn(*mut c_void, usize, u32) -> c_int;
type UlockWait2 = unsafe extern "C" fn(u32, *mut c_void, u64, u64, u64) -> c_int;
type UlockWait = unsafe extern "C" fn(u32, *mut c_void, u64, u32) -> c_int;
type UlockWake = unsafe extern "C" fn(u32, *mut c_void, u64) -> c_int;

/// The wait this system offers.
#[derive(Clone, Copy)]
enum Backend {
    OsSync {
        wait: OsSyncWait,
        wait_with_timeout: OsSyncWaitWithTimeout,
        wake_any: OsSyncWake,
        wake_all: OsSyncWake,
    },
    Ulock2 {
        wait: UlockWait2,
        wake: UlockWake,
    },
    Ulock {
        wait: UlockWait,
        wake: UlockWake,
    },
    Poll,
}

/// The address of `name` in the libraries loaded (libSystem), if it has it.
fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the
    // symbol up; a null result means it is absent.
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!found.is_null()).then_some(found)
}

fn backend() -> Backend {
    static BACKEND: OnceLock<Backend> = OnceLock::new();
    *BACKEND.get_or_init(|| {
        // SAFETY (every transmute below): each symbol, when present, is the libSystem
        // function of that name, whose C signature is the type it is cast to
        // (`os/os_sync_wait_on_address.h`, `sys/ulock.h` of xnu).
        unsafe {
            let os_sync = (
                symbol(c"os_sync_wait_on_address"),
                symbol(c"os_sync_wait_on_address_with_timeout"),
                symbol(c"os_sync_wake_by_address_any"),
                symbol(c"os_sync_wake_by_address_all"),
            );
            if let (Some(wait), Some(timed), Some(any), Some(all)) = os_sync {
                return Backend::OsSync {
                    wait: std::mem::transmute::<*mut c_void, OsSyncWait>(wait),
                    wait_with_timeout: std::mem::transmute::<*mut c_void, OsSyncWaitWithTimeout>(
                        timed,
                    ),
                    wake_any: std::mem::transmute::<*mut c_void, OsSyncWake>(any),
                    wake_all: std::mem::transmute::<*mut c_void, OsSyncWake>(all),
                };
            }
            let Some(wake) = symbol(c"__ulock_wake") else { return Backend::Poll };
            let wake = std::mem::transmute::<*mut c_void, UlockWake>(wake);
            if let Some(wait) = symbol(c"__ulock_wait2") {
                return Backend::Ulock2 {
                    wait: std::mem::transmute::<*mut c_void, UlockWait2>(wait),
                    wake,
                };
            }
            match symbol(c"__ulock_wait") {
                Some(wait) => Backend::Ulock {
                    wait: std::mem::transmute::<*mut c_void, UlockWait>(wait),
                    wake,
                },
                None => Backend::Poll,
            }
        }
    })
}

/// The kernel wait in use, for diagnostics and the tests: `"os_sync"`,
/// `"ulock_wait2"`, `"ulock_wait"` or `"poll"`.
#[cfg_attr(not(test), allow(dead_code))]
pub(super) fn backend_name() -> &'static str {
    match backend() {
        Backend::OsSync { .. } => "os_sync",
        Backend::Ulock2 { .. } => "ulock_wait2",
        Backend::Ulock { .. } => "ulock_wait",
        Backend::Poll => "poll",
    }
}

/// Sleeps while `word` holds `expected`: until a [`wake`] of it from any process,
/// `timeout`, or spuriously. Returns `true` if a signal handler ran (EINTR).
pub(super) fn wait_on(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    if timeout.is_some_and(|t| t.is_zero()) {
        return false;
    }
    let address = word.as_ptr().cast::<c_void>();
    let value = u64::from(expected);
    // Every call answers a count (>= 0) when woken, or an error: EINTR, ETIMEDOUT,
    // EFAULT (never, for a mapped word), or the word changed before the sleep (the
    // os_sync call then answers 0 at once). All mean: re-check.
    let errno = match backend() {
        Backend::OsSync { wait, wait_with_timeout, .. } => {
            const SHARED: u32 = libc::OS_SYNC_WAIT_ON_ADDRESS_SHARED;
            // SAFETY: address is a live, aligned 32-bit word (borrowed for this call);
            // the size passed is 4.
            let result = unsafe {
                match timeout {
                    None => wait(address, value, 4, SHARED),
                    Some(t) => wait_with_timeout(
                        address,
                        value,
                        4,
                        SHARED,
                        libc::OS_CLOCK_MACH_ABSOLUTE_TIME,
                        nanoseconds(t),
                    ),
                }
            };
            if result >= 0 {
                0
            } else {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
            }
        }
        Backend::Ulock2 { wait, .. } => {
            // 0 means no time-out: a timeout is at least 1 ns here.
            let ns = timeout.map_or(0, nanoseconds);
            // SAFETY: as above; ULF_NO_ERRNO makes the result -errno.
            let result =
                unsafe { wait(UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO, address, value, ns, 0) };
            if result >= 0 { 0 } else { -result }
        }
        Backend::Ulock { wait, .. } => {
            // Microseconds in 32 bits, 0 meaning forever: a longer wait is cut into
            // pieces (the caller loops with its deadline).
            let us = timeout.map_or(0, |t| t.as_micros().clamp(1, u128::from(u32::MAX)) as u32);
            // SAFETY: as above.
            let result =
                unsafe { wait(UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO, address, value, us) };
            if result >= 0 { 0 } else { -result }
        }
        Backend::Poll => {
            std::thread::sleep(timeout.map_or(POLL, |t| t.min(POLL)));
            0
        }
    };
    debug_assert!(
        matches!(errno, 0 | libc::EINTR | libc::ETIMEDOUT | libc::EFAULT | libc::EAGAIN),
        "wait on address: errno {errno}"
    );
    errno == libc::EINTR
}

/// Wakes one waiter of `word` (`count` 1) or every one (more), in any process.
/// Waking more than asked is a spurious wake-up, which callers allow for.
pub(super) fn wake(word: &AtomicU32, count: u32) {
    if count == 0 {
        return;
    }
    let address = word.as_ptr().cast::<c_void>();
    let all = count > 1;
    match backend() {
        Backend::OsSync { wake_any, wake_all, .. } => {
            const SHARED: u32 = libc::OS_SYNC_WAKE_BY_ADDRESS_SHARED;
            let wake = if all { wake_all } else { wake_any };
            // SAFETY: address is a live, aligned 32-bit word; ENOENT (nobody
            // waits) is the only expected failure, and needs nothing.
            unsafe { wake(address, 4, SHARED) };
        }
        Backend::Ulock2 { wake, .. } | Backend::Ulock { wake, .. } => {
            let operation =
                UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | if all { ULF_WAKE_ALL } else { 0 };
            // EINTR can cut a wake short: try again. ENOENT: nobody waits.
            // SAFETY: as above.
            while unsafe { wake(operation, address, 0) } == -libc::EINTR {}
        }
        Backend::Poll => {}
    }
}

/// A time-out in nanoseconds, at least 1 (0 would mean "forever" to `ulock`).
fn nanoseconds(timeout: Duration) -> u64 {
    timeout.as_nanos().clamp(1, u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_wait_is_found() {
        // Every macOS since 10.12 has at least __ulock_wait.
        assert_ne!(backend_name(), "poll");
    }

    #[test]
    fn a_waiter_is_woken_by_a_wake() {
        use std::sync::atomic::Ordering;
        let word = AtomicU32::new(0);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                while word.load(Ordering::SeqCst) == 0 {
                    wait_on(&word, 0, Some(Duration::from_secs(30)));
                }
            });
            word.store(1, Ordering::SeqCst);
            wake(&word, 1);
            waiter.join().unwrap();
        });
    }
}
