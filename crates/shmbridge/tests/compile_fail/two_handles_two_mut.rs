//! Two handles to one segment would give two live `&mut` over the same bytes: the
//! plain mutable slices are `unsafe fn`s, so safe code cannot ask for them.

use shmbridge::SharedMemory;

fn main() {
    let mut a = SharedMemory::create_unique("cf_two_mut", 64).unwrap();
    let mut b = SharedMemory::open(a.name()).unwrap();
    let x = a.as_mut_slice().unwrap();
    let y = b.view_mut::<u8>(0, 64).unwrap();
    x[0] = 1;
    y[0] = 2;
}
