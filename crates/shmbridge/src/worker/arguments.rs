//! How shmbridge's own objects travel as worker arguments.
//!
//! A segment or an array inside a call's arguments (`json!({"shm": &shm})`)
//! serializes as a small reference, an object with the key [`MARKER`], which the
//! Python server replaces with the opened object before calling the handler (see
//! "Shared memory in arguments" in `docs/FORMAT.md`). These impls live with the
//! worker, not beside the types, so that segments and arrays know nothing of the
//! worker and build without serde.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::array::{ArraySegment, Element, SharedArray};
use crate::segment::SharedMemory;

/// The key that marks a shared-memory reference in call arguments.
pub const MARKER: &str = "__shmbridge__";

/// A segment serializes as a reference, `{"__shmbridge__": "segment", "name": ...,
/// "readonly": ...}` (or `"fd"` with the descriptor, for an anonymous segment, which
/// the worker inherited through [`WorkerBuilder::share`](super::WorkerBuilder::share)),
/// so that it arrives in the Python handler as an opened `SharedMemory`.
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        match descriptor(self) {
            Some(fd) => {
                map.serialize_entry(MARKER, "fd")?;
                map.serialize_entry("fd", &fd)?;
            }
            None => {
                map.serialize_entry(MARKER, "segment")?;
                map.serialize_entry("name", self.name())?;
            }
        }
        map.serialize_entry("readonly", &!self.is_writable())?;
        map.end()
    }
}

/// The descriptor of a segment reached by descriptor (anonymous); `None` for a
/// named one, and everywhere descriptors cannot be inherited.
fn descriptor(segment: &SharedMemory) -> Option<i32> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        segment.as_fd().map(|fd| fd.as_raw_fd())
    }
    #[cfg(not(unix))]
    {
        let _ = segment;
        None
    }
}

/// An array serializes as a reference, `{"__shmbridge__": "array", "name": ...,
/// "readonly": ...}`: it arrives in the Python handler as a NumPy array opened by
/// name.
impl Serialize for ArraySegment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        array_reference(self.name(), self.is_writable(), serializer)
    }
}

/// As for [`ArraySegment`].
impl<T: Element> Serialize for SharedArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        array_reference(self.name(), self.is_writable(), serializer)
    }
}

fn array_reference<S: Serializer>(
    name: &str,
    writable: bool,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(3))?;
    map.serialize_entry(MARKER, "array")?;
    map.serialize_entry("name", name)?;
    map.serialize_entry("readonly", &!writable)?;
    map.end()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn segments_and_arrays_serialize_as_references() {
        let shm = SharedMemory::create_unique("args_ref", 64).unwrap();
        assert_eq!(
            serde_json::to_value(&shm).unwrap(),
            json!({MARKER: "segment", "name": shm.name(), "readonly": false})
        );
        let name = crate::unique_name("args_arr").unwrap();
        let arr = SharedArray::<f32>::create(&name, &[2, 3]).unwrap();
        let expected = json!({MARKER: "array", "name": name, "readonly": false});
        assert_eq!(serde_json::to_value(&arr).unwrap(), expected);
        assert_eq!(serde_json::to_value(arr.into_untyped()).unwrap(), expected);
    }

    #[cfg(unix)]
    #[test]
    fn anonymous_segments_serialize_as_descriptors() {
        use std::os::fd::AsRawFd;
        let shm = SharedMemory::anonymous(64).unwrap();
        let fd = shm.as_fd().unwrap().as_raw_fd();
        assert_eq!(
            serde_json::to_value(&shm).unwrap(),
            json!({MARKER: "fd", "fd": fd, "readonly": false})
        );
    }
}
