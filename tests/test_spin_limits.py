"""The spinner and aio's fast path keep their bounds: a zero timeout does not spin
(with the GIL held, or on the event loop's thread), and aio takes the timeouts the
blocking forms take. Found by an outside attack; each failed on the code before the
fix. Each runs in a fresh interpreter (a wait that spins or hangs cannot take pytest
down). CPU time of the thread concerned is measured, not wall time; the margins are
several times the expected figure, so load can only hide a failure."""

from __future__ import annotations

import textwrap

from conftest import run_isolated


def check(code: str) -> None:
    result = run_isolated(textwrap.dedent(code), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_wait_zero_does_not_spin_the_limit_holding_the_gil() -> None:
    # Event.wait(0) on an unset event spins for the handle's spin budget (up to the
    # spin limit, one second at most) with the GIL held: the core's spin ignores a
    # deadline that has passed, and the binding's first attempt holds the GIL. Also
    # so before the change (84a8bae).
    check(
        """
        import time, shmbridge
        event = shmbridge.Event.create(shmbridge.unique_name("spin_w0"))
        event.set_spin_limit(1.0)
        before = time.thread_time()
        assert event.wait(0) is False
        spent = time.thread_time() - before
        assert spent < 0.05, f"wait(0) spent {spent:.3f} s of CPU (spin limit 1 s)"
        """
    )


def test_aio_wait_does_not_block_the_event_loop_spinning() -> None:
    # aio.wait calls event.wait(0) on the loop's thread twice before it registers
    # (the new fast path, then the loop's first test): each spins the spin budget,
    # so with set_spin_limit(0.2) the loop stalls ~0.4 s (0.2 s before the change)
    # and a 0.3 s timeout ends after 0.4 s (measured: a2.py in the report).
    check(
        """
        import asyncio, time, shmbridge
        from shmbridge import aio
        event = shmbridge.Event.create(shmbridge.unique_name("spin_aw"))
        event.set_spin_limit(0.5)
        async def main():
            before = time.thread_time()
            assert await aio.wait(event, timeout=1.5) is False
            return time.thread_time() - before
        spent = asyncio.run(main())
        assert spent < 0.05, f"the event loop's thread spent {spent:.3f} s of CPU in aio.wait"
        """
    )


def test_aio_takes_the_timeouts_the_blocking_forms_take() -> None:
    # "timeouts are checked as the blocking forms check them": Event.wait and
    # Channel.recv take a Decimal (anything float() takes), aio.wait and aio.recv
    # raise TypeError (numbers.Real leaves Decimal out).
    check(
        """
        import asyncio, shmbridge
        from decimal import Decimal
        from shmbridge import aio
        event = shmbridge.Event.create(shmbridge.unique_name("spin_dec"))
        channel = shmbridge.Channel.create(shmbridge.unique_name("spin_dec"), 4096)
        timeout = Decimal("0.01")
        assert event.wait(timeout) is False
        try:
            channel.recv(timeout)
        except TimeoutError:
            pass
        assert asyncio.run(aio.wait(event, timeout)) is False
        async def recv():
            try:
                await aio.recv(channel, timeout)
            except TimeoutError:
                return "timed out"
        assert asyncio.run(recv()) == "timed out"
        """
    )
