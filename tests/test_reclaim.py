"""Ownership records and automatic reclaim, from Python (Linux).

Real processes: a creator killed by SIGKILL, a survivor that maps the segment the
way the stdlib does (``mmap`` of the file, no shmbridge code, so nothing of ours
reclaims on its behalf), the tracker the creator started. Records are read with
``os.getxattr``, as another language would, and checked against docs/FORMAT.md.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import DEADLINE, cargo_binary, readline, run_isolated

import shmbridge
from shmbridge import _native

pytestmark = pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="Linux: /dev/shm")

SHM = Path("/dev/shm")
RECORD = struct.Struct("<4sHBBIIQQQ")  # docs/FORMAT.md, "Ownership records"


def record_of(name: str) -> tuple[bytes, int, int, int, int, int, int, int, int]:
    raw = os.getxattr(SHM / name.lstrip("/"), "user.shmbridge")
    assert len(raw) == 40
    return RECORD.unpack(raw)  # type: ignore[return-value]


def my_start_ticks() -> int:
    stat = Path("/proc/self/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shmbridge._cli", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def test_records_are_as_specified(name: str) -> None:
    before = time.time()
    with shmbridge.SharedMemory(name, 64, create=True) as shm:
        magic, version, kind, flags, pid, _serial, start, namespace, created = record_of(shm.name)
        assert (magic, version, kind, flags) == (b"SHBR", 1, 0, 0)
        assert pid == os.getpid()
        assert start == my_start_ticks()
        assert namespace == os.stat("/proc/self/ns/pid").st_ino
        assert before - 1 <= created / 1e9 <= time.time() + 1
    kinds = {
        "channel": (lambda n: shmbridge.Channel.create(n, 4096), 2),
        "event": (lambda n: shmbridge.Event.create(n), 3),
        "semaphore": (lambda n: shmbridge.Semaphore.create(n, 1), 4),
        "mutex": (lambda n: shmbridge.Mutex.create(n), 5),
        "seqlock": (lambda n: shmbridge.SeqLock.create(n, 8), 6),
    }
    for what, (make, code) in kinds.items():
        made = make(f"{name}_{what}")
        assert record_of(f"{name}_{what}")[2] == code, what
        del made
    array = shmbridge.SharedArray.create(f"{name}_array", [2], "<f8")
    assert record_of(f"{name}_array")[2] == 1
    del array
    kept = shmbridge.SharedMemory(name, 8, create=True, persist=True)
    assert record_of(name)[3] == 1  # persistent
    kept.close()
    shmbridge.unlink(name)


def test_lifetime_says_what_close_does(name: str) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        shmbridge.SharedMemory(name, 8, create=True, lifetime="forever")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="persist=True"):
        shmbridge.SharedMemory.create(name, 8, persist=True, lifetime="process")
    shm = shmbridge.SharedMemory.create(name, 8, lifetime="process")
    shm.close()
    assert (SHM / name.lstrip("/")).exists(), "process lifetime: close() keeps the name"
    assert record_of(name)[3] == 0, "and it stays reclaimable"
    shmbridge.unlink(name)
    shm = shmbridge.SharedMemory.create(name, 8, lifetime="object")
    shm.close()
    assert not (SHM / name.lstrip("/")).exists()


CREATOR = """
import sys
from shmbridge.shared_memory import SharedMemory
shm = SharedMemory(create=True, size=4096, track={track})
print(shm.name, flush=True)
sys.stdin.read()
"""


def start_creator(track: bool) -> tuple[subprocess.Popen[str], str]:
    creator = subprocess.Popen(
        [sys.executable, "-c", CREATOR.format(track=track)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert creator.stdout is not None
    return creator, creator.stdout.readline().strip()


def test_tracked_segment_goes_after_its_creator_and_last_user() -> None:
    creator, name = start_creator(track=True)
    # The survivor maps it as the stdlib would: nothing of shmbridge acts for it.
    fd = os.open(SHM / name, os.O_RDWR)
    survivor = mmap.mmap(fd, 4096)
    os.close(fd)
    creator.kill()
    creator.wait(timeout=DEADLINE)
    assert not _native._wait_gone(name, 2.0), "removed while a live process maps it"
    survivor[:5] = b"alive"
    survivor.close()
    assert _native._wait_gone(name, DEADLINE), "left behind after its last user went"


def test_untracked_segment_stays() -> None:
    creator, name = start_creator(track=False)
    creator.kill()
    creator.wait(timeout=DEADLINE)
    try:
        assert not _native._wait_gone(name, 1.0)
        report = json.loads(cli("gc", "--json").stdout)
        kept = {k["name"]: k["reason"] for k in report["kept"]}
        assert kept.get(f"/{name}") == "persistent"
        assert (SHM / name).exists()
    finally:
        shmbridge.unlink(name)


def plant(
    name: str, pid: int, start: int, namespace: int, flags: int = 0, mode: int = 0o600, extra: bytes = b""
) -> None:
    """A file in /dev/shm with a record that says what the test needs it to say
    (`extra`: bytes after the 40 of version 1, as a later minor version may add)."""
    fd = os.open(SHM / name.lstrip("/"), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.fchmod(fd, mode)  # whatever the umask says
        os.ftruncate(fd, 64)
        created = time.time_ns()
        record = RECORD.pack(b"SHBR", 1, 0, flags, pid, 0, start, namespace, created) + extra
        os.setxattr(fd, "user.shmbridge", record)
    finally:
        os.close(fd)


def test_only_provably_dead_creators_count(name: str) -> None:
    me, start = os.getpid(), my_start_ticks()
    namespace = os.stat("/proc/self/ns/pid").st_ino
    reused = f"{name}_reused"  # this pid, another start time: a reused pid, its creator dead
    alive = f"{name}_alive"  # this very process
    elsewhere = f"{name}_elsewhere"  # another pid namespace: cannot be told
    newer = f"{name}_newer"  # a flag this build does not know: never acted on
    plant(reused, me, start + 1, namespace)
    plant(alive, me, start, namespace)
    plant(elsewhere, me, start + 1, namespace + 1)
    plant(newer, me, start + 1, namespace, flags=0b10)
    try:
        report = json.loads(cli("gc", "--json").stdout)
        kept = {k["name"]: k["reason"] for k in report["kept"]}
        assert kept[alive] == "creator alive"
        assert kept[elsewhere] == "creator in another pid namespace"
        assert kept[newer].startswith("record flags")
        # The reused pid's segment goes (by this gc, or by a tracker already running).
        assert _native._wait_gone(reused, DEADLINE)
        for left in (alive, elsewhere, newer):
            assert (SHM / left.lstrip("/")).exists()
    finally:
        for left in (alive, elsewhere, newer):
            shmbridge.unlink(left)


def test_a_longer_record_is_reclaimed_and_a_forgeable_one_is_not(name: str) -> None:
    """A record longer than version 1's 40 bytes (FORMAT.md: readers accept it) is
    the same record: its dead creator's segment goes (it used to be neither removed
    nor reported). A record on a file others than its owner may write could have been
    written by any of them: trusting it would let a user who may write someone's
    file (but not remove it) have a privileged gc remove it, so it stays."""
    me, start = os.getpid(), my_start_ticks()
    namespace = os.stat("/proc/self/ns/pid").st_ino
    longer, forgeable = f"{name}_longer", f"{name}_forgeable"
    plant(longer, me, start + 1, namespace, extra=b"\0" * 8)  # a reused pid: dead
    plant(forgeable, me, start + 1, namespace, mode=0o666)
    try:
        report = json.loads(cli("gc", "--json").stdout)
        kept = {k["name"]: k["reason"] for k in report["kept"]}
        assert longer not in kept, kept.get(longer)
        assert _native._wait_gone(longer, DEADLINE)  # by this gc, or a tracker's
        assert kept[forgeable].startswith("writable by others"), kept.get(forgeable)
        assert (SHM / forgeable.lstrip("/")).exists()
    finally:
        shmbridge.unlink(forgeable)
        if (SHM / longer.lstrip("/")).exists():
            shmbridge.unlink(longer)


def test_a_process_whose_main_thread_ended_still_runs(name: str) -> None:
    """A process whose first thread called pthread_exit shows that thread as a
    zombie in /proc, while its other threads run: its segments are its own still,
    and gc keeps them (it used to take the process for dead and remove them)."""
    probe = run_isolated(
        f"""
        import ctypes, json, os, subprocess, sys, threading
        import shmbridge
        name = {name!r}
        shm = shmbridge.SharedMemory(name, create=True, size=4096, lifetime="process")
        shm.close()
        def after_main():
            for _ in range(100_000):  # until the first thread has ended
                state = open(f"/proc/{{os.getpid()}}/stat").read().rsplit(")", 1)[1].split()[0]
                if state == "Z":
                    break
                os.sched_yield()
            cli = [sys.executable, "-m", "shmbridge._cli"]
            info = json.loads(subprocess.run(cli + ["info", "--json", name], capture_output=True, text=True).stdout)
            gc = json.loads(subprocess.run(cli + ["gc", "--json"], capture_output=True, text=True).stdout)
            kept = {{k["name"]: k["reason"] for k in gc["kept"]}}
            print(json.dumps([state, info["segment"]["creator"]["state"], kept.get("/" + name.lstrip("/"))]), flush=True)
            shmbridge.unlink(name)
            os._exit(0)
        threading.Thread(target=after_main).start()
        ctypes.CDLL(None).pthread_exit(None)
        """,
        timeout=DEADLINE,
    )
    assert probe.returncode == 0, probe.stderr
    state, creator, kept = json.loads(probe.stdout)
    assert state == "Z", "the first thread did not become a zombie: nothing was tested"
    assert (creator, kept) == ("alive", "creator alive")


def test_a_proc_of_another_pid_namespace_judges_nobody(name: str) -> None:
    """In a pid namespace whose /proc is still the parent's (`unshare --pid` without
    a new /proc), the pids /proc shows are not this process's: its records say no
    namespace and its creator's state is unknown, so nothing is reclaimed on a pid
    that means another process there."""
    try:
        probe = subprocess.run(
            ["unshare", "--pid", "--fork", sys.executable, "-c", textwrap.dedent(f"""
                import json, subprocess, sys
                import shmbridge
                name = {name!r}
                shm = shmbridge.SharedMemory(name, create=True, size=4096, lifetime="process")
                out = subprocess.run([sys.executable, "-m", "shmbridge._cli", "info", "--json", name],
                                     capture_output=True, text=True).stdout
                shm.close()
                shmbridge.unlink(name)
                print(json.dumps(json.loads(out)["segment"]["creator"]))
            """)],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    except FileNotFoundError:
        pytest.skip("no unshare here")
    if probe.returncode != 0 and "unshare" in probe.stderr:
        pytest.skip(f"cannot make a pid namespace here: {probe.stderr.strip()}")
    assert probe.returncode == 0, probe.stderr
    creator = json.loads(probe.stdout)
    assert creator["state"] == "unknown", creator


def test_a_tracker_program_others_could_have_put_there_is_never_run(tmp_path: Path) -> None:
    """A creating process starts the tracker found beside it or on PATH, as its own
    user: one in a directory others may write (here /tmp-like, 1777) could be
    anyone's program, and is never run."""
    from conftest import cargo_binary

    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o1777)
    program = public / "prog"
    program.write_bytes(cargo_binary("shmbridge-peer", "shmbridge-peer").read_bytes())
    program.chmod(0o755)
    ran = tmp_path / "ran"
    planted = public / "shmbridge"
    planted.write_text(f"#!/bin/sh\necho planted > {ran}\necho ready\n")
    planted.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "SHMBRIDGE_TRACKER"}
    env["PATH"] = "/usr/bin:/bin"
    segment = shmbridge.unique_name("pytest_search_path")
    if subprocess.run(["unshare", "-mn", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -mn is not allowed here")
    # Alone in a network namespace and a /dev/shm of its own: no tracker already
    # running can answer, so the creating process looks for the program.
    isolated = 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$@"'
    peer = subprocess.run(
        ["unshare", "-mn", "sh", "-c", isolated, "sh", str(program)],
        input=f"create {segment} 64\nquit\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert peer.returncode == 0, peer.stderr
    assert peer.stdout.startswith("ok"), peer.stdout
    assert not ran.exists(), "a program others could have planted ran as this user"


def test_names_of_shmbridge_s_own_are_refused(name: str) -> None:
    """Reclaim's hidden names and the tracker's directories begin with .shmbridge-:
    a segment named so would be hidden from listings and never reclaimed."""
    for reserved in ("/.shmbridge-reclaim-1-0", ".shmbridge-tracker-x", "/.shmbridge-anything"):
        with pytest.raises(ValueError, match="shmbridge's own"):
            shmbridge.SharedMemory.create(reserved, 64)
    assert not any(n.startswith(".shmbridge-anything") for n in os.listdir(SHM))


def test_names_reach_the_terminal_escaped(name: str) -> None:
    """Anyone can name a file in /dev/shm: a newline or an escape sequence in a name
    must not forge rows of `shmbridge ls` nor reach the reader's terminal."""
    forged = f"{name}\nforged  raw  1.0 MiB  rw-------  root  1  yes  1\x1b]0;owned\x07"
    path = SHM / forged.lstrip("/")
    path.write_bytes(b"x")
    try:
        listing = cli("ls").stdout
        details = cli("info", forged).stdout
        for text in (listing, details):
            assert "\x1b" not in text and "\x07" not in text
            assert not any(line.startswith("forged") for line in text.splitlines())
        assert f"{name}\\nforged" in listing
        lookalike = SHM / f"{name.lstrip('/')}_z\u200bw"  # shows as ..._zw
        lookalike.write_bytes(b"x")
        try:
            assert f"{name}_z\\u{{200b}}w" in cli("ls").stdout
        finally:
            lookalike.unlink()
    finally:
        path.unlink()


def test_cli_from_the_package(name: str) -> None:
    channel = shmbridge.Channel.create(name, 4096)
    channel.send(b"queued")
    info = json.loads(cli("info", "--json", name).stdout)
    assert info["segment"]["kind"] == "channel"
    assert info["contents"]["messages"] == 1
    assert info["contents"]["producer"]["pid"] == os.getpid()
    listing = json.loads(cli("ls", "--json", "--ours").stdout)
    assert name in [s["name"] for s in listing["segments"]]
    # A segment of the stdlib's: listed as raw, not ours, never collected.
    from multiprocessing import resource_tracker, shared_memory as stdlib

    theirs = stdlib.SharedMemory(create=True, size=64)
    resource_tracker.unregister(theirs._name, "shared_memory")  # type: ignore[attr-defined]
    try:
        entry = next(
            s for s in json.loads(cli("ls", "--json").stdout)["segments"] if s["name"] == f"/{theirs.name}"
        )
        assert (entry["kind"], entry["ours"], entry["record"]) == ("raw", False, None)
        assert os.getpid() in entry["users"]
        assert json.loads(cli("gc", "--json").stdout)["foreign"] >= 1
        assert (SHM / theirs.name).exists()
    finally:
        theirs.close()
        theirs.unlink()
    failed = cli("info", f"{name}_missing")
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("shmbridge: ")
    channel.close()


def test_unclaimed_channel_of_a_dead_creator_ends_recv(name: str) -> None:
    creator = subprocess.Popen(
        [sys.executable, "-c", f"import shmbridge, sys; c = shmbridge.Channel.create({name!r}, 4096); print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert creator.stdout is not None
    assert creator.stdout.readline().strip() == "ready"
    code = f"""
        import shmbridge, sys
        channel = shmbridge.Channel.open({name!r})
        print("opened", flush=True)
        sys.stdin.readline()
        try:
            channel.recv()  # no timeout: must end by itself
        except BrokenPipeError as e:
            print("BrokenPipeError", e)
    """
    consumer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert consumer.stdin is not None and consumer.stdout is not None
    assert consumer.stdout.readline().strip() == "opened"
    creator.kill()
    creator.wait(timeout=DEADLINE)
    consumer.stdin.write("go\n")
    consumer.stdin.flush()
    out, _ = consumer.communicate(timeout=DEADLINE)
    assert out.startswith("BrokenPipeError"), out
    assert str(creator.pid) in out


def test_isolated_close_keeps_working() -> None:
    # A tracked segment closed and reopened in one interpreter: nothing reclaims a
    # segment whose creator lives.
    result = run_isolated(
        """
        from shmbridge.shared_memory import SharedMemory
        a = SharedMemory(create=True, size=16)
        a.buf[:2] = b"ok"
        a.close()
        b = SharedMemory(a.name)
        assert bytes(b.buf[:2]) == b"ok"
        b.close()
        b.unlink()
        """
    )
    assert result.returncode == 0, result.stderr



OPENER = """
import json, mmap, os, select, sys
names = sys.argv[1:]
held = {}
i = 0
while not select.select([sys.stdin], [], [], 0)[0]:
    name = names[i % len(names)]
    i += 1
    try:
        fd = os.open("/dev/shm/" + name.lstrip("/"), os.O_RDWR)
    except FileNotFoundError:
        continue
    try:
        held[name] = (os.fstat(fd).st_ino, mmap.mmap(fd, 64), fd)
    except ValueError:  # caught between its creation and its sizing
        os.close(fd)
        continue
    if len(held) > 20:
        _, old_map, old_fd = held.pop(next(iter(held)))
        old_map.close()
        os.close(old_fd)
sys.stdin.readline()
print(json.dumps({name: ino for name, (ino, _, _) in held.items()}), flush=True)
sys.stdin.read()
"""


def hidden_names_of(pid: int) -> list[str]:
    """The names a reclaimer `pid` took segments out of sight under (docs/FORMAT.md)."""
    prefix = ".shmbridge-reclaim-"
    return [n for n in os.listdir(SHM) if n.startswith(prefix) and str(pid) in n[len(prefix) :].split("-")]


def test_a_gc_leaves_what_another_running_gc_is_removing_to_it(name: str) -> None:
    # Many dead creators' segments, and a process that keeps opening them by name
    # (the stdlib's way: mmap of the file). A first gc is stopped (SIGSTOP) while it
    # holds some of them under its hidden names; a second gc runs to completion
    # meanwhile; then the first goes on. The second must leave the first's hidden
    # names alone: no segment is reported by both, none as "removal failed", no
    # hidden name as removed, and a segment still mapped keeps its name.
    namespace = os.stat("/proc/self/ns/pid").st_ino
    me, start = os.getpid(), my_start_ticks()
    names = [f"{name}_{i:04d}" for i in range(2000)]  # so sorted by number
    gc = [str(cargo_binary("shmbridge-cli", "shmbridge")), "gc", "--json"]
    opener = subprocess.Popen(
        [sys.executable, "-c", OPENER, *names[10:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert opener.stdin is not None and opener.stdout is not None
    first: subprocess.Popen[str] | None = None
    caught_in_the_middle = 0
    try:
        for _ in range(5):
            for n in names:
                if not (SHM / n.lstrip("/")).exists():
                    plant(n, me, start + 1, namespace)
            first = subprocess.Popen(gc, stdout=subprocess.PIPE, text=True)
            # It hides them in name order: the first (which the opener leaves alone) goes first.
            assert _native._wait_gone(names[0], DEADLINE)
            os.kill(first.pid, signal.SIGSTOP)
            caught_in_the_middle += bool(hidden_names_of(first.pid))
            second = subprocess.run(gc, capture_output=True, text=True, timeout=DEADLINE)
            os.kill(first.pid, signal.SIGCONT)
            reports = [json.loads(first.communicate(timeout=DEADLINE)[0]), json.loads(second.stdout)]
            ours = set(names)
            removed = [{r["name"] for r in report["removed"]} for report in reports]
            assert not removed[0] & removed[1], "both gc claim to have removed these"
            for report in reports:
                taken = [r["name"] for r in report["removed"] if "shmbridge-reclaim" in r["name"]]
                failed = [k for k in report["kept"] if k["name"] in ours and "failed" in k["reason"]]
                assert not failed, f"reported as failed, although gone: {failed[:3]}"
                assert not taken, f"a gc removed another's hidden names: {taken[:3]}"
        assert caught_in_the_middle, "the first gc was never stopped while removing: nothing tested"
        opener.stdin.write("stop\n")
        opener.stdin.flush()
        held = json.loads(readline(opener.stdout, "the opener"))
        assert held, "the opener held nothing: nothing tested"
        for n, inode in held.items():
            path = SHM / n.lstrip("/")
            assert path.exists() and path.stat().st_ino == inode, f"{n} is mapped but lost its name"
    finally:
        if first is not None and first.poll() is None:
            first.kill()
            first.wait(timeout=DEADLINE)
        opener.kill()
        opener.wait(timeout=DEADLINE)
        for n in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(SHM / n.lstrip("/"))


def test_only_a_dead_reclaimer_s_hidden_names_are_taken(name: str) -> None:
    # A reclaimer that died between hiding a segment and removing it leaves it under
    # its hidden name: gc takes that one. One that runs is left alone entirely.
    namespace = os.stat("/proc/self/ns/pid").st_ino
    me, start = os.getpid(), my_start_ticks()
    serial = int.from_bytes(os.urandom(4), "little")
    stale = f".shmbridge-reclaim-{namespace}-{me}-{start + 1}-{serial}"  # this pid, reused: dead
    live = f".shmbridge-reclaim-{namespace}-{me}-{start}-{serial}"  # this very process
    plant(stale, me, start + 1, namespace)
    plant(live, me, start + 1, namespace)
    try:
        report = json.loads(cli("gc", "--json").stdout)
        named = {r["name"] for r in report["removed"]} | {k["name"] for k in report["kept"]}
        assert f"/{live}" not in named, "a live reclaimer's hidden name is its own"
        assert (SHM / live).exists()
        assert _native._wait_gone(stale, DEADLINE), "a dead reclaimer's hidden name stays"
    finally:
        for n in (stale, live):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(SHM / n)


SQUATTED = """
import json, os, signal, subprocess, sys
import shmbridge
from shmbridge import _native

uid, stranger = os.geteuid(), 65534
ready_r, ready_w = os.pipe()
hold_r, hold_w = os.pipe()
squatter = os.fork()
if squatter == 0:  # another user takes every address it can think of
    import socket
    os.close(hold_w)
    os.setgid(stranger)
    os.setuid(stranger)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if sys.argv[1] != "visitor":  # "visitor": squats nothing, only connects later
        s.bind(f"\\0shmbridge-tracker-1-{uid}")
    held = []
    if sys.argv[1] == "backlog":  # listens, never accepts, and keeps the queue full
        s.listen(0)
        for _ in range(4):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(f"\\0shmbridge-tracker-1-{uid}")
            except OSError:
                pass
            held.append(c)
    elif sys.argv[1] in ("some", "everything"):  # "bound": holds it, never listens
        s.listen(8)
    if sys.argv[1] in ("some", "everything"):
        os.mkdir(f"/dev/shm/.shmbridge-tracker-{uid}", 0o777)
        os.chmod(f"/dev/shm/.shmbridge-tracker-{uid}", 0o777)
        os.symlink("/tmp", f"/dev/shm/.shmbridge-tracker-{uid}-1")
    if sys.argv[1] == "everything":
        for n in range(2, 16):
            os.mkdir(f"/dev/shm/.shmbridge-tracker-{uid}-{n}", 0o700)
    os.write(ready_w, b"x")
    os.read(hold_r, 1)
    os._exit(0)
os.close(hold_r)
assert os.read(ready_r, 1) == b"x"

CREATOR = "import shmbridge, sys; s = shmbridge.SharedMemory.create(sys.argv[1], 4096); print('up', flush=True); sys.stdin.read()"
def killed_creator(name):
    p = subprocess.Popen([sys.executable, "-c", CREATOR, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "up\\n"
    p.kill()
    p.wait()
    return p.stderr.read()

def trackers():
    net = os.readlink("/proc/self/ns/net")
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
            if b"track" in argv and os.readlink(f"/proc/{pid}/ns/net") == net:
                found.append(int(pid))
        except OSError:
            pass
    return found

# A creator that stays keeps the tracker it started running throughout.
keeper = subprocess.Popen([sys.executable, "-c", CREATOR, "/squatted_keeper"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
assert keeper.stdout.readline() == "up\\n"
if sys.argv[1] == "everything":
    result = {"stderr": killed_creator("/squatted_first")}
    result["gone_without_gc"] = _native._wait_gone("/squatted_first", 0.5)
    gc = subprocess.run([sys.executable, "-m", "shmbridge._cli", "gc", "--json"], capture_output=True, text=True)
    result["gc_removed"] = [r["name"] for r in json.loads(gc.stdout)["removed"]]
    keeper.stdin.close()
    keeper.wait()
    result["stderr"] += keeper.stderr.read()
    os.close(hold_w)
    os.waitpid(squatter, 0)
    print(json.dumps(result))
    sys.exit(0)
result = {"stderr": killed_creator("/squatted_first")}
result["first_gone"] = _native._wait_gone("/squatted_first", 30.0)
result["trackers_after_first"] = trackers()
if sys.argv[1] == "visitor":  # another user connects to this user's tracker
    import socket
    visitor = os.fork()
    if visitor == 0:
        os.setgid(stranger)
        os.setuid(stranger)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(10)
        try:
            c.connect(f"\\0shmbridge-tracker-1-{uid}")
            os._exit(0 if c.recv(1) == b"" else 1)  # closed at once: 0
        except OSError:
            os._exit(2)
    result["visitor_closed"] = os.waitpid(visitor, 0)[1] == 0
result["stderr"] += killed_creator("/squatted_second")
result["second_gone"] = _native._wait_gone("/squatted_second", 30.0)
result["trackers_after_second"] = trackers()
keeper.stdin.close()
keeper.wait()
result["stderr"] += keeper.stderr.read()
result["shm"] = sorted(os.listdir("/dev/shm"))
os.close(hold_w)
os.waitpid(squatter, 0)
for t in result["trackers_after_second"]:
    os.kill(t, signal.SIGKILL)
print(json.dumps(result))
"""


def run_squatted(mode: str) -> dict[str, object]:
    """SQUATTED, in a network namespace and a /dev/shm of its own: no other tracker
    of this user (of tests running beside) is there, and nothing of it leaks out."""
    if subprocess.run(["unshare", "-mn", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -mn is not allowed here")
    isolated = 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$@"'
    run = subprocess.run(
        ["unshare", "-mn", "sh", "-c", isolated, "sh", sys.executable, "-c", SQUATTED, mode],
        capture_output=True,
        text=True,
        timeout=4 * DEADLINE,
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, object] = json.loads(run.stdout)
    return result


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_a_stranger_squatting_the_tracker_address_cannot_stop_reclaim() -> None:
    # Another user binds this user's abstract tracker name first (abstract sockets
    # have no permissions) and takes the first names of the private directory too.
    # Creators killed then still have their segments reclaimed, by a tracker of
    # their own user, which every later creator finds (one tracker).
    result = run_squatted("some")
    assert result["first_gone"], f"a killed creator's segment stays (squatted tracker): {result}"
    assert result["second_gone"], result
    assert len(result["trackers_after_first"]) == 1, result
    assert result["trackers_after_second"] == result["trackers_after_first"], "a later creator started another"
    assert f".shmbridge-tracker-{os.geteuid()}-2" in result["shm"], "the first private directory of its own"
    assert result["stderr"] == "", "nothing to complain about: reclaim works"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
@pytest.mark.parametrize("how", ["backlog", "bound"])
def test_a_stranger_who_never_answers_on_the_tracker_address_stops_nothing(how: str) -> None:
    # The name held by another user's socket that listens and never accepts (its
    # queue full: a blocking connect waited forever, and every create with it), or
    # that never listens (connections refused: taken for "nobody", and the tracker
    # gave up): creates go on at once and the tracker listens in its private
    # directory.
    result = run_squatted(how)
    assert result["first_gone"] and result["second_gone"], result
    assert len(result["trackers_after_first"]) == 1, result
    assert f".shmbridge-tracker-{os.geteuid()}" in result["shm"], result
    assert result["stderr"] == "", result


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_the_tracker_closes_other_users_connections() -> None:
    # Any local user can connect to the tracker's address; the tracker must not
    # keep such connections (a stranger could exhaust its descriptors) nor watch
    # the stranger's process.
    result = run_squatted("visitor")
    assert result["first_gone"], result
    assert result["visitor_closed"], "the tracker kept a stranger's connection open"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_with_every_tracker_address_squatted_the_creator_says_so_once_and_gc_works() -> None:
    result = run_squatted("everything")
    # Once from each creating process (the one killed, and the one that stays).
    complaints = str(result["stderr"]).splitlines()
    assert len(complaints) == 2 and all("tracker cannot run" in c for c in complaints), result
    assert not result["gone_without_gc"], "no tracker, no last mapper: only gc removes it"
    assert result["gc_removed"] == ["/squatted_first"], result


DESCRIPTOR_FLOOD = r"""
import json, os, resource, socket, subprocess, sys, time
uid = os.geteuid()
address = f"\0shmbridge-tracker-1-{uid}"

def limited():
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))  # the hard limit too

tracker = subprocess.Popen(
    [sys.executable, "-m", "shmbridge._cli", "track", "--foreground", "--idle-exit", "60"],
    preexec_fn=limited, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
)
held = []
give_up = time.monotonic() + 30
while not held:  # until it listens
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.connect(address)
        held.append(c)
    except OSError:
        c.close()
        assert time.monotonic() < give_up, "the tracker never listened"
        assert tracker.poll() is None, tracker.stderr.read()
        time.sleep(0.01)
for _ in range(80):  # far more than its descriptors: the rest wait or are turned away
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.setblocking(False)
    try:
        c.connect(address)
    except OSError:
        pass
    held.append(c)

def cpu():
    fields = open(f"/proc/{tracker.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

before, began = cpu(), time.monotonic()
time.sleep(1.0)  # a window to measure the tracker's CPU in, not a wait for it
spent = (cpu() - before) / (time.monotonic() - began)
alive = tracker.poll() is None
tracker.kill()
tracker.wait()
print(json.dumps({"cpu_share": spent, "alive": alive}))
"""


def test_a_tracker_out_of_descriptors_does_not_spin() -> None:
    # Found by an outside attack: connections of this user's processes beyond the
    # tracker's descriptor limit stayed queued, the listener stayed readable, and
    # the tracker's loop spun on a full CPU for as long as they stayed. Run in a
    # network namespace and a /dev/shm of its own (no other tracker there).
    if subprocess.run(["unshare", "-mn", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -mn is not allowed here")
    isolated = 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$@"'
    run = subprocess.run(
        ["unshare", "-mn", "sh", "-c", isolated, "sh", sys.executable, "-c", DESCRIPTOR_FLOOD],
        capture_output=True,
        text=True,
        timeout=4 * DEADLINE,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["alive"], "the tracker died of the flood"
    assert result["cpu_share"] < 0.1, f"the tracker spun: {result['cpu_share']:.0%} of a CPU"
