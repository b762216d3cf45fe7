"""The delivery worker: takes due rule events off the durable SQLite queue and delivers them.

Retry schedule (undocumented upstream beyond "exponential backoff"; our defaults):
- at most `max_attempts` = 5 attempts per rule event (manual retry of a failed one grants one more);
- after failed attempt n the next is due in `retry_base · 2^(n-1)` seconds (default base 2 s:
  2, 4, 8, 16 s), capped at 10 minutes, with ±20 % jitter so retries of a burst spread out; a 429's
  Retry-After, when longer, is honoured up to the same cap;
- retried outcomes: rejected_server_error, rate_limited, timeout, network_error, internal_error;
  final at once: delivered, auth_failed, rejected_client_error, mapping_error.

Concurrency: up to `concurrency` attempts in flight at once (default 64) over one shared HTTP client,
and at most `per_connection` (default 16) of them to any one connection, so a slow destination cannot
take every slot from the others. Each webhook attempt has an overall deadline (the sandbox's delivery
timeout, from connecting to the last byte of the answer) and ends `timeout` past it. An attempt whose
rule event is canceled while its request is in flight may finish within a 2 s grace (a delivered one
ends `completed`); past that it is cut off, its slot freed, and recorded as a `network_error`: the
request may or may not have reached the destination.
Claiming opens an attempt row in the same transaction that marks the rule event `processing`, so a
crash leaves evidence; `DeliveryQueue.recover()` closes such attempts and requeues their work on start-up.

Two sandboxes on one data directory: only the holder of the engine lock delivers. When the other one
queues work (an ingested event, a manual retry) it wakes the holder with an empty UDP datagram on
127.0.0.1 (the port is published in the lock file), so the hand-over takes milliseconds rather than a
poll interval. Chosen over watching `PRAGMA data_version` in a tight loop, which would cost an idle
sandbox hundreds of wake-ups a second to be as prompt; the datagram carries nothing, so the worst a
stray one can do is make the holder look at its queue. The one-second poll stays as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import socket
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from meshes_mcp.sandbox.clock import now
from meshes_mcp.sandbox.destinations import Destinations, Outcome
from meshes_mcp.sandbox.enginelock import EngineLock
from meshes_mcp.sandbox.queue import DeliveryQueue, Job
from meshes_mcp.sandbox.store import Store

log = logging.getLogger("meshes_mcp.sandbox")

DEFAULT_RETRY_BASE = 2.0
DEFAULT_MAX_ATTEMPTS = 5
RETRY_CAP = 600.0
JITTER = 0.2
IDLE_POLL = 1.0  # longest sleep between queue checks when nothing wakes the worker
DEFAULT_PER_CONNECTION = 16  # attempts in flight to one connection: a quarter of the default 64 slots
# A canceled delivery's request already in flight may finish until it has run this long (a delivered one
# then ends `completed`: the destination did receive it); past it, the request is cut off to free its
# slot. Also spares a busy worker a store lookup for the many attempts that finish sooner.
CANCEL_GRACE = 2.0
CANCEL_CHECK_EVERY = 0.5  # seconds between look-ups (a busy worker loops far more often than that)
STORE_RETRY_FIRST = 0.05  # seconds before a refused store write is tried again; doubling up to the cap
STORE_RETRY_CAP = 2.0
T = TypeVar("T")
CANCELED_IN_FLIGHT = "canceled while in flight: the request may or may not have reached the destination"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = DEFAULT_RETRY_BASE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    cap: float = RETRY_CAP

    def delay(self, attempt_number: int, retry_after: float | None = None) -> float:
        backoff = min(self.cap, self.base * 2.0 ** max(0, attempt_number - 1))
        backoff *= random.uniform(1 - JITTER, 1 + JITTER)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.cap))
        return backoff


class DeliveryEngine:
    def __init__(
        self,
        store: Store,
        destinations: Destinations,
        policy: RetryPolicy,
        concurrency: int = 64,
        lock: EngineLock | None = None,
        per_connection: int = DEFAULT_PER_CONNECTION,
    ) -> None:
        self.store = store
        self.queue = DeliveryQueue(store)
        self.lock = lock
        self.destinations = destinations
        self.policy = policy
        self.concurrency = concurrency
        self.per_connection = per_connection
        self._wake = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], Job] = {}
        self._per_connection: Counter[str] = Counter()
        self._next_cancel_check = 0.0
        self._sending: set[str] = set()  # attempt ids whose request is under way (not yet being recorded)
        self._cut_off: set[str] = set()  # attempt ids canceled in flight because their rule event was
        self._limiter: anyio.CapacityLimiter | None = None  # one store call at a time, off the loop
        self._runner: asyncio.Task[None] | None = None
        self._claiming: asyncio.Future[tuple[int, bool]] | None = None
        self._stopping = False
        self._listener: asyncio.DatagramTransport | None = None  # wake-ups from other processes
        self._nudger: socket.socket | None = None  # for waking the holder when this process is not it

    async def _db(self, call: Callable[..., T], *args: Any) -> T:
        """Run one store call on a worker thread: waiting for another process's write lock (up to the
        store's busy timeout) must not freeze the event loop, which also serves the HTTP API."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(functools.partial(call, *args), limiter=self._limiter)

    async def _until_stored(self, call: Callable[..., T], what: str, *args: Any) -> T:
        """`_db`, retried while the store refuses (lock held past the busy timeout, disk full, a directory
        gone read-only) until it succeeds or the engine stops. What the worker holds in memory (a
        finished attempt's outcome) is therefore recorded once the store takes writes again, instead
        of being lost and the delivery left `processing`."""
        pause = STORE_RETRY_FIRST
        while True:
            try:
                return await self._db(call, *args)
            except sqlite3.Error as exc:
                if pause == STORE_RETRY_FIRST:
                    log.warning("%s failed (%s); retrying until the store takes it", what, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, STORE_RETRY_CAP)

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="meshes-sandbox-delivery")

    async def _become_the_engine(self) -> None:
        """Wait until this process holds the data directory's engine lock, then recover interrupted work."""
        if self.lock is not None and not self.lock.try_acquire():
            log.info("another sandbox delivers from this data directory; this one serves the API only for now")
            while not self.lock.try_acquire():
                await asyncio.sleep(IDLE_POLL)
            log.info("took over delivery for this data directory")
        await self._listen_for_wake_ups()
        resumed = await self._until_stored(self.queue.recover, "recovering interrupted deliveries")
        if resumed:
            log.info("resuming %d deliveries interrupted by the last stop", resumed)

    async def _listen_for_wake_ups(self) -> None:
        if self.lock is None:
            return
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _WakeUps(self._wake), local_addr=("127.0.0.1", 0), family=socket.AF_INET
            )
            self.lock.publish_wake_port(transport.get_extra_info("sockname")[1])
        except OSError:
            log.warning("cannot listen for wake-ups on 127.0.0.1; other sandboxes' work waits for the poll")
            return
        self._listener = transport

    def wake(self) -> None:
        """New or rescheduled work: look at the queue now rather than at the next poll; when another
        process holds the engine lock, tell it instead."""
        self._wake.set()
        if self.lock is not None and not self.lock.held:
            self._nudge_the_engine()

    def _nudge_the_engine(self) -> None:
        port = self.lock.wake_port() if self.lock is not None else None
        if port is None:
            return
        try:
            if self._nudger is None:
                self._nudger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._nudger.setblocking(False)
            self._nudger.sendto(b"", ("127.0.0.1", port))
        except OSError:  # a holder that just went away, a full buffer: the poll still finds the work
            pass

    async def stop(self, grace: float = 2.0) -> None:
        """Stop claiming; let in-flight attempts finish for up to `grace` seconds. Attempts cut off after
        that stay open in the store and are resumed by the next start."""
        self._stopping = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._claiming is not None:  # a claim under way: its attempts start, then get the grace
            with contextlib.suppress(Exception):
                await self._claiming
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._nudger is not None:
            self._nudger.close()
            self._nudger = None
        if self.lock is not None:
            self.lock.release()

    async def _run(self) -> None:
        await self._become_the_engine()
        while not self._stopping:  # (also ends the loop should a cancellation ever be lost)
            self._wake.clear()
            await self._cut_off_canceled()
            free = self.concurrency - len(self._inflight)
            claimed, crowded = 0, False
            if free > 0:
                # Shielded: a claim committed in the store must become running attempts even when stop()
                # cancels this loop meanwhile, or it would be recovered as interrupted without being sent.
                self._claiming = asyncio.ensure_future(self._claim(free))
                claimed, crowded = await asyncio.shield(self._claiming)
            if claimed and (claimed == free or crowded):
                await asyncio.sleep(0)  # the queue may hold more: claim again once a slot frees
                if len(self._inflight) < self.concurrency:
                    continue
            timeout = IDLE_POLL
            if len(self._inflight) < self.concurrency:
                try:
                    due = await self._db(self.queue.next_due, self._full())
                except sqlite3.Error:
                    due = None  # look again at the next poll
                if due is not None:
                    timeout = max(0.0, min(IDLE_POLL, due - now()))
            if timeout > 0:
                await self._sleep_until_woken(timeout)

    async def _claim(self, free: int) -> tuple[int, bool]:
        """Claim up to `free` due attempts and start them; how many, and whether work was left for room."""
        try:
            jobs, crowded = await self._db(self.queue.claim_due, free, self._room())
        except sqlite3.Error as exc:  # the store refuses for now: nothing was claimed; poll again
            log.warning("claiming due deliveries failed (%s); trying again", exc)
            return 0, False
        except Exception:  # a bug must not kill the worker
            log.exception("claiming due deliveries failed")
            return 0, False
        for job in jobs:
            self._sending.add(job.attempt_id)
            task = asyncio.create_task(self._attempt(job))
            self._inflight[task] = job
            self._per_connection[job.connection_id] += 1
            task.add_done_callback(self._attempt_done)
        return len(jobs), crowded

    def _room(self) -> dict[str, int]:
        """How many more attempts each connection with attempts in flight may start."""
        return {cid: self.per_connection - n for cid, n in self._per_connection.items()}

    def _full(self) -> list[str]:
        return [cid for cid, n in self._per_connection.items() if n >= self.per_connection]

    async def _cut_off_canceled(self) -> None:
        """Cut off the requests, older than the grace, of rule events canceled since their attempt started
        (through this process or another on the same data directory), so their slots serve other work.
        An attempt already recording its outcome is left to finish."""
        moment = now()
        if moment < self._next_cancel_check:
            return
        self._next_cancel_check = moment + CANCEL_CHECK_EVERY
        oldest = moment - CANCEL_GRACE
        waiting = {
            job.rule_event_id: task
            for task, job in self._inflight.items()
            if job.started <= oldest and job.attempt_id in self._sending
        }
        if not waiting:
            return
        marks = ",".join("?" * len(waiting))
        try:
            rows = await self._db(
                self.store.all,
                f"SELECT id FROM rule_events WHERE status='canceled' AND id IN ({marks})",
                tuple(waiting),
            )
        except sqlite3.Error:  # the store is busy: the next pass looks again
            return
        for row in rows:
            task = waiting[row["id"]]
            if self._inflight.get(task) is None or self._inflight[task].attempt_id not in self._sending:
                continue  # finished sending while the store was read
            self._cut_off.add(self._inflight[task].attempt_id)
            task.cancel()

    async def _sleep_until_woken(self, timeout: float) -> None:
        # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives just as the event is set (every finished attempt sets it), and stop() then waited
        # for the runner forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _attempt(self, job: Job) -> None:
        try:
            outcome = await self.destinations.deliver(job)
        except asyncio.CancelledError:
            if job.attempt_id not in self._cut_off:
                raise  # shutting down: the open attempt is recovered on the next start
            self._cut_off.discard(job.attempt_id)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled: later awaits in this task are not cancellations
            outcome = Outcome("network_error", None, CANCELED_IN_FLIGHT)
        except Exception as exc:
            log.exception("delivery %s failed unexpectedly", job.rule_event_id)
            outcome = Outcome("internal_error", None, f"internal error while delivering: {type(exc).__name__}")
        finally:
            self._sending.discard(job.attempt_id)
        try:
            delay = self.policy.delay(job.attempt_number, outcome.retry_after)
            await self._until_stored(
                self.queue.finish_attempt,
                f"recording attempt {job.attempt_id}",
                job,
                outcome.code,
                outcome.http_status,
                outcome.message,
                outcome.response,
                outcome.retryable,
                delay,
            )
            if outcome.deactivate and job.connection is not None:
                await self._until_stored(
                    self.store.set_connection_state,
                    f"deactivating connection {job.connection['id']}",
                    job.connection["id"],
                    False,
                    outcome.deactivate,
                )
        except Exception:
            log.exception("recording attempt %s failed", job.attempt_id)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        # The slot is freed and the worker woken in one step. Waking it from inside the attempt (before its
        # task is done and discarded) let the worker see no free slot, sleep a whole poll interval, and
        # deliver one batch per second when a batch of attempts finished together.
        job = self._inflight.pop(task, None)
        if job is not None:
            self._per_connection[job.connection_id] -= 1
            if self._per_connection[job.connection_id] <= 0:
                del self._per_connection[job.connection_id]
        self._wake.set()


class _WakeUps(asyncio.DatagramProtocol):
    """Any datagram on the engine's loopback port means "look at the queue"; its content is ignored."""

    def __init__(self, wake: asyncio.Event) -> None:
        self.wake = wake

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.wake.set()

    def error_received(self, exc: Exception) -> None:  # pragma: no cover - nothing to do: the poll remains
        pass
