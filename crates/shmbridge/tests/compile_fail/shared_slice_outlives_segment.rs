//! A SharedSlice borrows its segment: it cannot outlive it, nor survive its close.

use shmbridge::SharedMemory;

fn main() {
    let escaped;
    {
        let shm = SharedMemory::create_unique("cf_outlive", 64).unwrap();
        escaped = shm.slice::<u64>(0, 8).unwrap();
    }
    let _ = escaped.get(0);

    let shm = SharedMemory::create_unique("cf_close", 64).unwrap();
    let values = shm.slice::<u8>(0, 8).unwrap();
    shm.close().unwrap();
    let _ = values.get(0);
}
