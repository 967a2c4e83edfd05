//! Plain shared slices of bytes another handle or process may write meanwhile
//! need `unsafe`: the segment's, an array's, a slice's.

use shmbridge::SharedMemory;
use shmbridge::array::SharedArray;

fn main() {
    let shm = SharedMemory::create_unique("cf_view", 64).unwrap();
    let _ = shm.view::<f64>(0, 1);
    let _ = shm.view_from::<u32>(0);
    let _ = shm.as_slice();
    let _ = shm.slice::<u8>(0, 8).unwrap().as_slice();
    let array = SharedArray::<f32>::create(&shmbridge::unique_name("cf_view_array").unwrap(), &[4])
        .unwrap();
    let _ = array.as_slice();
}
