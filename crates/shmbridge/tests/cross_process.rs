//! Two real processes share a segment: this test binary re-runs itself as the
//! child, which opens the segment the parent created, checks what the parent wrote,
//! writes an answer, and exits; the parent waits for the child's exit (with a
//! deadline) and checks the answer. `harness = false`, so the child needs no
//! dummy test: `main` decides which side it is.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use shmbridge::SharedMemory;
use shmbridge::channel::{Channel, ChannelError};
use shmbridge::sync::{Event, Mutex};

const DEADLINE: Duration = Duration::from_secs(30);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(&args[2], &args[3]);
        return;
    }
    let tests: &[(&str, fn())] = &[
        ("bytes_both_ways", bytes_both_ways),
        ("typed_slices_both_ways", typed_slices_both_ways),
        ("child_creates_parent_opens", child_creates_parent_opens),
        ("event_ping_pong", event_ping_pong),
        ("mutex_of_a_killed_owner_is_recovered", mutex_of_a_killed_owner_is_recovered),
        ("mutex_of_an_unreaped_owner_is_recovered", mutex_of_an_unreaped_owner_is_recovered),
        ("channel_stream_between_processes", channel_stream_between_processes),
        ("channel_producer_killed_mid_stream", channel_producer_killed_mid_stream),
        #[cfg(unix)]
        (
            "forked_child_never_undoes_the_parents_state",
            forked_child_never_undoes_the_parents_state,
        ),
    ];
    for (name, test) in tests {
        test();
        println!("test {name} ... ok");
    }
    println!("\n{} passed, 0 failed", tests.len());
}

fn spawn(scenario: &str, name: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child", scenario, name])
        .spawn()
        .expect("re-run this test binary as the child")
}

/// Waits for the child's exit, polling with a deadline; a hung child is killed and
/// fails the test instead of hanging it.
fn wait(mut child: Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("child did not finish within {DEADLINE:?}");
        }
        std::thread::yield_now();
    }
}

fn child(scenario: &str, name: &str) {
    match scenario {
        "bytes" => {
            let mut shm = SharedMemory::open(name).unwrap();
            let mut got = [0u8; 15];
            shm.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"Hello from Rust");
            shm.write_all_at(b"Hello from the child", 0).unwrap();
        }
        "typed" => {
            let shm = SharedMemory::open(name).unwrap();
            let v = shm.slice_from::<f64>(0).unwrap();
            assert_eq!(v.get(1000), Some(1000.0));
            (0..v.len()).for_each(|i| v.set(i, v.get(i).unwrap() * 2.0).unwrap());
        }
        "create" => {
            let mut shm = SharedMemory::options().persist(true).create(name, 4096).unwrap();
            shm.write_all(b"made by the child").unwrap();
        }
        "pong" => {
            let ping = Event::open(&format!("{name}_ping")).unwrap();
            let pong = Event::open(&format!("{name}_pong")).unwrap();
            for _ in 0..ROUNDS {
                assert!(ping.wait_timeout(DEADLINE).unwrap(), "no ping");
                pong.set().unwrap();
            }
        }
        "hold_lock" => {
            let mutex = Mutex::open(name).unwrap();
            let locked = Event::open(&format!("{name}_locked")).unwrap();
            let never = Event::open(&format!("{name}_never")).unwrap();
            let _guard = mutex.lock().unwrap().unwrap();
            locked.set().unwrap();
            never.wait().unwrap(); // until killed
        }
        "lock_and_exit" => {
            let mutex = Mutex::open(name).unwrap();
            let locked = Event::open(&format!("{name}_locked")).unwrap();
            std::mem::forget(mutex.lock().unwrap().unwrap());
            locked.set().unwrap();
            std::process::exit(0); // holding the lock; the parent does not reap us yet
        }
        "produce" => {
            let tx = Channel::open(name).unwrap().sender().unwrap();
            for i in 0..STREAM {
                tx.send(&stream_message(i)).unwrap();
            }
        }
        "produce_forever" => {
            let tx = Channel::open(name).unwrap().sender().unwrap();
            for i in 0.. {
                tx.send(&stream_message(i)).unwrap();
            }
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn bytes_both_ways() {
    let mut shm = SharedMemory::create_unique("xp_bytes", 1 << 20).unwrap();
    shm.write_all(b"Hello from Rust").unwrap();
    assert!(wait(spawn("bytes", shm.name())).success());
    let mut answer = [0u8; 20];
    shm.read_exact_at(&mut answer, 0).unwrap();
    assert_eq!(&answer, b"Hello from the child");
}

fn typed_slices_both_ways() {
    let shm = SharedMemory::create_unique("xp_typed", 8 * 4096).unwrap();
    let v = shm.slice_from::<f64>(0).unwrap();
    (0..v.len()).for_each(|i| v.set(i, i as f64).unwrap());
    assert!(wait(spawn("typed", shm.name())).success());
    assert!(v.iter().enumerate().all(|(i, x)| x == 2.0 * i as f64));
    assert!(v.to_vec().unwrap().iter().enumerate().all(|(i, &x)| x == 2.0 * i as f64));
}

fn child_creates_parent_opens() {
    let name = shmbridge::unique_name("xp_create").unwrap();
    assert!(wait(spawn("create", &name)).success());
    let mut shm = SharedMemory::open(&name).unwrap();
    assert_eq!(shm.len(), 4096);
    assert_eq!(&shm.read_value::<[u8; 17]>(0).unwrap(), b"made by the child");
    shm.unlink().unwrap();
}

const ROUNDS: usize = 1000;

fn event_ping_pong() {
    let name = shmbridge::unique_name("xp_pingpong").unwrap();
    let ping = Event::create(&format!("{name}_ping"), true).unwrap();
    let pong = Event::create(&format!("{name}_pong"), true).unwrap();
    let child = spawn("pong", &name);
    for round in 0..ROUNDS {
        ping.set().unwrap();
        assert!(pong.wait_timeout(DEADLINE).unwrap(), "no pong in round {round}");
    }
    assert!(wait(child).success());
}

fn mutex_of_a_killed_owner_is_recovered() {
    let name = shmbridge::unique_name("xp_mutex").unwrap();
    let mutex = Mutex::create(&name).unwrap();
    let locked = Event::create(&format!("{name}_locked"), false).unwrap();
    let _never = Event::create(&format!("{name}_never"), false).unwrap();
    let mut child = spawn("hold_lock", &name);
    assert!(locked.wait_timeout(DEADLINE).unwrap(), "the child did not take the lock");
    assert!(mutex.is_locked().unwrap());
    assert!(mutex.try_lock().unwrap().is_none(), "a live owner keeps it");
    child.kill().unwrap(); // SIGKILL: no unlock, no destructor
    let status = wait(child);
    assert!(!status.success());
    match mutex.lock_timeout(DEADLINE).unwrap().expect("the lock comes back") {
        Err(died) => {
            assert_ne!(died.dead_owner(), std::process::id());
            drop(died.into_guard());
        }
        Ok(_) => panic!("the takeover was not reported"),
    }
    let _guard = mutex.lock().unwrap().expect("normal again after recovery");
}

/// A child made by `fork` inherits the creator's segment and a held lock guard;
/// dropping them there (and exiting) must leave the parent's name and lock alone.
#[cfg(unix)]
fn forked_child_never_undoes_the_parents_state() {
    let name = shmbridge::unique_name("xp_fork").unwrap();
    let shm = SharedMemory::create(&name, 4096).unwrap();
    let mutex = Mutex::create(&format!("{name}_m")).unwrap();
    let guard = mutex.lock().unwrap().unwrap_or_else(|died| died.into_guard());
    // SAFETY: this harness runs its tests on the main thread alone, so the child is
    // a complete copy of a single-threaded process; it only drops values and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(guard);
        drop(shm);
        drop(mutex);
        std::process::exit(0);
    }
    let mut status = 0;
    // SAFETY: pid is our child; status is a local out-parameter.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
    SharedMemory::open(&name).expect("the child's drop left the parent's name");
    assert_eq!(mutex.owner_pid().unwrap(), Some(std::process::id()), "the child released the lock");
    assert!(shm.unlinks_on_drop());
    drop(guard);
    assert!(!mutex.is_locked().unwrap());
    drop(shm);
    assert!(SharedMemory::open(&name).is_err(), "the creator's drop unlinks");
}

const STREAM: u64 = 1_000_000;

/// Message `i`: its index, then 0 to 199 bytes derived from it.
fn stream_message(i: u64) -> Vec<u8> {
    let extra = (i.wrapping_mul(2_654_435_761) % 200) as usize;
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..extra).map(|j| (i as usize ^ j) as u8));
    m
}

fn channel_stream_between_processes() {
    let name = shmbridge::unique_name("xp_stream").unwrap();
    let channel = Channel::create(&name, 1 << 16).unwrap();
    let rx = channel.receiver().unwrap();
    let child = spawn("produce", &name);
    let (mut received, mut checksum, mut expected_sum) = (0u64, 0u64, 0u64);
    loop {
        match rx.recv_timeout(DEADLINE) {
            Ok(msg) => {
                let want = stream_message(received);
                let msg = msg.to_vec().unwrap();
                assert_eq!(msg, want, "message {received}: lost, duplicated or reordered");
                checksum = checksum.wrapping_add(msg.iter().map(|&b| u64::from(b)).sum::<u64>());
                expected_sum =
                    expected_sum.wrapping_add(want.iter().map(|&b| u64::from(b)).sum::<u64>());
                received += 1;
            }
            Err(ChannelError::Closed) => break,
            Err(e) => panic!("after {received} messages: {e}"),
        }
    }
    assert_eq!((received, checksum), (STREAM, expected_sum));
    assert!(wait(child).success());
}

fn channel_producer_killed_mid_stream() {
    let name = shmbridge::unique_name("xp_killed").unwrap();
    let channel = Channel::create(&name, 1 << 16).unwrap();
    let rx = channel.receiver().unwrap();
    let mut child = spawn("produce_forever", &name);
    let mut received = 0u64;
    while received < 10_000 {
        let msg = rx.recv_timeout(DEADLINE).unwrap();
        assert_eq!(msg.to_vec().unwrap(), stream_message(received));
        received += 1;
    }
    child.kill().unwrap();
    wait(child);
    let pid = loop {
        match rx.recv_timeout(DEADLINE) {
            Ok(msg) => {
                assert_eq!(
                    msg.to_vec().unwrap(),
                    stream_message(received),
                    "published messages come in order"
                );
                received += 1;
            }
            Err(ChannelError::PeerDied { pid }) => break pid,
            Err(e) => panic!("expected PeerDied, got {e}"),
        }
    };
    assert_ne!(pid, std::process::id());
    assert!(received >= 10_000);
}

fn mutex_of_an_unreaped_owner_is_recovered() {
    let name = shmbridge::unique_name("xp_zombie").unwrap();
    let mutex = Mutex::create(&name).unwrap();
    let locked = Event::create(&format!("{name}_locked"), false).unwrap();
    let child = spawn("lock_and_exit", &name);
    assert!(locked.wait_timeout(DEADLINE).unwrap(), "the child did not take the lock");
    // The child exits and stays a zombie (not waited for): it must count as dead.
    match mutex.lock_timeout(DEADLINE).unwrap().expect("the lock comes back") {
        Err(died) => assert_eq!(died.dead_owner(), child.id()),
        Ok(_) => panic!("the takeover was not reported"),
    }
    assert!(wait(child).success());
}
