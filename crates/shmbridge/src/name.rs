//! Segment names: validation, the leading-slash rule, and unique names.

use std::hash::{BuildHasher, RandomState};

use crate::error::{Error, Result};
use crate::sys;

/// Names under this prefix are shmbridge's own (hidden names of a removal in
/// progress, the tracker's private directories), never a segment's.
pub(crate) const RESERVED_PREFIX: &str = ".shmbridge-";

/// [`canonical_name`] of a segment to be created: names beginning with
/// [`RESERVED_PREFIX`] are refused, since a segment named so would be hidden from
/// listings and never reclaimed. (Open, unlink and the like accept them: a stale
/// hidden name may be looked at or removed by hand.)
pub(crate) fn name_to_create(name: &str) -> Result<String> {
    let canonical = canonical_name(name)?;
    if canonical[1..].starts_with(RESERVED_PREFIX) {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            reason: format!("names beginning with {RESERVED_PREFIX:?} are shmbridge's own"),
        });
    }
    Ok(canonical)
}

/// Checks `name` and returns its canonical form, which starts with `/`.
///
/// A name given without its leading `/` means the same segment, so names made by
/// Python's `multiprocessing.shared_memory` (which hides the slash) work as they
/// are: `"psm_1a2b"` and `"/psm_1a2b"` are one segment.
///
/// # Errors
///
/// [`Error::InvalidName`] if the name is empty, is `.` or `..`, contains a NUL byte
/// or a `/` after the leading one (or a `\` on Windows), or is longer than the
/// platform allows ([`max_name_len`], counted with the leading `/`). (Create also
/// refuses names beginning with `.shmbridge-`, reclaim's and the tracker's own.)
///
/// # Example
///
/// ```
/// assert_eq!(shmbridge::canonical_name("frames").unwrap(), "/frames");
/// assert_eq!(shmbridge::canonical_name("/frames").unwrap(), "/frames");
/// assert!(shmbridge::canonical_name("a/b").is_err());
/// ```
pub fn canonical_name(name: &str) -> Result<String> {
    let invalid = |reason: String| Error::InvalidName { name: name.to_owned(), reason };
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return Err(invalid("a name needs at least one character after the leading '/'".into()));
    }
    if bare == "." || bare == ".." {
        return Err(invalid("'.' and '..' are not segment names".into()));
    }
    if bare.contains('\0') {
        return Err(invalid("a name cannot contain a NUL byte".into()));
    }
    if bare.contains('/') {
        return Err(invalid("a name cannot contain '/' except as its first character".into()));
    }
    if let Some(c) = bare.chars().find(|c| sys::FORBIDDEN_NAME_CHARS.contains(c)) {
        return Err(invalid(format!(
            "a name cannot contain {c:?} on this platform{}",
            sys::FORBIDDEN_NAME_HINT
        )));
    }
    let canonical = format!("/{bare}");
    if canonical.len() > sys::MAX_NAME_LEN {
        return Err(invalid(format!(
            "it is {} bytes long with its leading '/', and this platform allows {}",
            canonical.len(),
            sys::MAX_NAME_LEN
        )));
    }
    Ok(canonical)
}

/// The longest segment name this platform accepts, in bytes, leading `/` included.
///
/// 255 on Linux (a file name in `/dev/shm`), 31 on macOS (`PSHMNAMLEN`, which
/// leaves 15 bytes for the prefix of a [`unique_name`]), 200 on Windows (kernel
/// object names, with the `Local\` prefix and the name of the segment's wait table,
/// stay within `MAX_PATH`).
pub const fn max_name_len() -> usize {
    sys::MAX_NAME_LEN
}

/// A fresh name of the form `/<prefix>_<pid>_<random>`.
///
/// The random part is 8 hex digits. On macOS, whose names hold 31 bytes and whose
/// process ids have up to 5 digits, a prefix of up to 15 bytes always fits. Two calls give different names with
/// overwhelming probability; since creating is exclusive, a collision can never
/// clobber a segment, it only fails with [`Error::AlreadyExists`]
/// ([`SharedMemory::create_unique`](crate::SharedMemory::create_unique) retries).
///
/// # Errors
///
/// [`Error::InvalidName`] if the prefix contains characters a name cannot hold,
/// or is too long for the platform once the pid and random part are added.
///
/// # Example
///
/// ```
/// let name = shmbridge::unique_name("frames").unwrap();
/// assert!(name.starts_with(&format!("/frames_{}_", std::process::id())));
/// ```
pub fn unique_name(prefix: &str) -> Result<String> {
    let prefix = prefix.strip_prefix('/').unwrap_or(prefix);
    // RandomState is seeded from the OS's randomness; hashing nothing with a new
    // one gives a fresh unpredictable value without another dependency.
    let random = RandomState::new().hash_one(()) as u32;
    canonical_name(&format!("{prefix}_{}_{random:08x}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_slash_is_optional() {
        assert_eq!(canonical_name("x").unwrap(), "/x");
        assert_eq!(canonical_name("/x").unwrap(), "/x");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "/", "a/b", "/a/b", "a\0b", ".", "/.."] {
            let err = canonical_name(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{bad:?} gave {err:?}");
        }
    }

    #[test]
    fn length_limit_counts_the_slash() {
        let longest = "a".repeat(max_name_len() - 1);
        assert!(canonical_name(&longest).is_ok());
        let err = canonical_name(&format!("{longest}a")).unwrap_err();
        assert!(err.to_string().contains("this platform allows"), "{err}");
    }

    #[test]
    fn unique_names_differ_and_carry_pid() {
        let a = unique_name("t").unwrap();
        let b = unique_name("t").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("/t_{}_", std::process::id())));
        assert_eq!(a.len(), format!("/t_{}_", std::process::id()).len() + 8);
    }

    /// The names the library makes for itself (the worker's channels and argument
    /// arrays) fit macOS's 31 bytes with the longest pid there (5 digits).
    #[test]
    fn generated_names_fit_on_macos() {
        const MACOS_MAX_NAME_LEN: usize = 31;
        for prefix in ["worker_req", "worker_ans", "args_arr"] {
            let longest = format!("/{prefix}_99999_{:08x}", u32::MAX);
            assert!(longest.len() <= MACOS_MAX_NAME_LEN, "{longest}");
        }
        assert_eq!(format!("/{}_99999_{:08x}", "p".repeat(15), 0).len(), MACOS_MAX_NAME_LEN);
    }

    #[test]
    fn unique_name_rejects_bad_prefix() {
        assert!(unique_name("a/b").is_err());
        assert!(unique_name(&"p".repeat(300)).is_err());
    }
}
