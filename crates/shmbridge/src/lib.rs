//! Zero-copy shared memory between Rust and Python processes.
//!
//! A [`SharedMemory`] is a named segment of memory that several processes map at
//! once: what one writes, the others see, with no copy and no serialization. The
//! Python package `shmbridge` opens the same segments through the same code, and
//! segments are raw bytes, so Python's own `multiprocessing.shared_memory` (and C,
//! and Go) interoperate too.
//!
//! ```
//! use std::io::Write;
//! use shmbridge::SharedMemory;
//!
//! // Process A creates and writes.
//! let name = shmbridge::unique_name("doc_crate")?;
//! let mut shm = SharedMemory::create(&name, 1024 * 1024)?;
//! shm.write_all(b"Hello from Rust!")?;
//! shm.slice::<f64>(64, 2)?.copy_from_slice(&[3.14159, 2.71828])?;
//!
//! // Process B (here, the same one) opens by name; the size comes with it.
//! let peer = SharedMemory::open(&name)?;
//! let mut greeting = [0u8; 16];
//! peer.read_exact_at(&mut greeting, 0)?;
//! assert_eq!(&greeting, b"Hello from Rust!");
//! assert_eq!(peer.slice::<f64>(64, 2)?.to_vec()?, [3.14159, 2.71828]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Everything that can fail returns [`Error`], which names the segment and says
//! what to do next.
//!
//! # Safety model
//!
//! Other handles in this process and other processes may write a segment at any
//! moment, so safe code never gets a plain reference (`&[T]`, `&mut [T]`) to its
//! bytes: it reads and writes through copies ([`read_at`](SharedMemory::read_at),
//! [`write_value`](SharedMemory::write_value), ...), [`SharedSlice`]s (one atomic or
//! volatile access per value) and atomics. Plain slices exist as `unsafe fn`s
//! ([`SharedMemory::view`] and its siblings, `as_slice` on arrays and messages), for
//! code that can vouch that nobody writes the bytes meanwhile. A peer process can
//! make the values wrong, never cause undefined behaviour in safe code of this
//! process; it can crash it (SIGBUS) only by shrinking a segment under a zero-copy
//! access, which copies are guarded against. `docs/SAFETY.md` in the source
//! repository states the model API by API and compares it with memmap2,
//! shared_memory, iceoryx2 and vm-memory.
//!
//! # Features
//!
//! - `worker` (on by default): the module `worker`, which starts a Python process and calls
//!   the functions it registered; it brings `serde` and `serde_json`. Without it the
//!   crate depends on neither.
//! - `ndarray`: `ndarray` views of [`SharedArray`](array::SharedArray)s.
//!
//! # Layers
//!
//! Each module uses only those below it, so any one of them can be read, tested
//! and built without the ones above: `sys` (the only code that talks to the OS)
//! and `error` at the bottom; then ownership [`record`]s, names and automatic
//! [`reclaim`]; then [`SharedMemory`], its options, the [`SharedSlice`]s and
//! views; then [`array`](mod@array) and [`sync`]; then [`channel`]; then
//! `worker`, and [`inspect`] (the operator's view of `/dev/shm`), on top. The test
//! `tests/layers.rs` holds the code to that.
//!
//! # Every segment accounted for
//!
//! Every named segment created here carries an ownership
//! [record](record::OwnershipRecord) (creator, kind, whether to keep it), outside
//! the segment itself. A segment whose creator died without persisting it is
//! removed once no process uses it ([`reclaim`]); [`Lifetime`] says how long a
//! created name lasts. The `shmbridge` command (crate `shmbridge-cli`) lists,
//! inspects, removes and collects segments.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod array;
pub mod channel;
mod error;
pub mod inspect;
mod name;
mod options;
mod owner;
pub mod reclaim;
pub mod record;
mod segment;
mod shared_slice;
pub mod sync;
mod sys;
mod view;
#[cfg(feature = "worker")]
#[cfg_attr(docsrs, doc(cfg(feature = "worker")))]
pub mod worker;

pub use error::{Error, Result};
pub use name::{canonical_name, max_name_len, unique_name};
pub use options::{Lifetime, SharedMemoryOptions};
pub use owner::current_pid;
pub use segment::{SharedMemory, unlink};
pub use shared_slice::SharedSlice;

/// Re-exported so callers can name the trait bound of typed views (and derive it)
/// without adding the dependency themselves.
pub use bytemuck;
