//! Accounting for named segments where the OS gives no place for a record:
//! macOS (POSIX segments are not files and carry no extended attributes) and
//! Windows (a named mapping goes away with its last handle, so nothing leaks).
//! Segments are unrecorded here, and nothing is ever reclaimed: every function
//! answers "unsupported" or "nothing".

#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use super::Handle;

/// No records here.
pub(crate) const SUPPORTED: bool = false;

/// Where a listing would look (nowhere here).
pub(crate) const SHM_DIR: &str = "";

/// The attribute name, for documentation.
pub(crate) const RECORD_ATTRIBUTE: &str = "user.shmbridge";

/// See the Linux file.
pub(crate) const HIDDEN_PREFIX: &str = ".shmbridge-reclaim-";

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "segment accounting (ownership records, listing, reclaim) is available on Linux only",
    )
}

pub(crate) use super::{FileId, ShmFile};

/// See the Linux file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hider {
    pub(crate) namespace: Option<u64>,
    pub(crate) pid: u32,
    pub(crate) start: Option<u64>,
}

/// Nothing is ever hidden here.
pub(crate) fn hider_of(_name: &str) -> Option<Hider> {
    None
}

pub(crate) fn write_record(_handle: &Handle, _record: &[u8]) -> bool {
    false
}

pub(crate) fn read_record(_handle: &Handle) -> Option<Vec<u8>> {
    None
}

pub(crate) fn update_record(_name: &str, _expected: &[u8], _new: &[u8]) -> io::Result<bool> {
    Ok(false)
}

pub(crate) fn list(_hidden: bool, _since: Option<i64>) -> io::Result<Vec<ShmFile>> {
    Err(unsupported())
}

pub(crate) fn stat_name(_name: &str) -> io::Result<ShmFile> {
    Err(unsupported())
}

/// See the Linux file.
#[derive(Debug, Default)]
pub(crate) struct Users {
    pub(crate) by_file: HashMap<FileId, Vec<u32>>,
    pub(crate) uninspected: Vec<(u32, u32)>,
}

pub(crate) fn scan_users() -> io::Result<Users> {
    Err(unsupported())
}

pub(crate) fn hide(_name: &str, _id: FileId, _record: &[u8]) -> io::Result<Option<String>> {
    Err(unsupported())
}

pub(crate) fn restore(_hidden: &str, _name: &str) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn remove(_name: &str) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn process_stat(_pid: u32) -> io::Result<Option<super::ProcessStat>> {
    Err(unsupported())
}

pub(crate) fn started_at(_ticks: u64) -> Option<i64> {
    None
}

pub(crate) fn pid_namespace() -> Option<u64> {
    None
}

pub(crate) fn effective_uid() -> u32 {
    0
}

pub(crate) fn wait_gone(_name: &str, _timeout: Duration) -> io::Result<bool> {
    Err(unsupported())
}

pub(crate) fn detach() {}

/// No tracker runs here: nothing is trusted to.
pub(crate) fn trusted_program(_path: &std::path::Path) -> bool {
    false
}
