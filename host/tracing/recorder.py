"""The trace recorder: takes finished runs off the request path and writes them in batches.

Contract:
- ``submit(run)`` never blocks and never raises: ``run`` is a ``RunRow`` or a function that builds one
  (the engine's: building the record is then off the request path too). It is sealed (``seal``:
  priced, below, and its spans encoded to one JSON document, ``RunRow.spans_json``, in place of the
  span objects) ``SEAL_DELAY_S`` later, well after the answer that ended it has been sent, and goes
  into a queue bounded in runs (``max_queue``) and in bytes (``max_queue_bytes``); when it is full (or
  the recorder is closed) the run is dropped and counted, with a warning logged at most once per
  ``DROP_LOG_INTERVAL_S``. Sealing costs what
  pricing and encoding at write time cost (less: one encoder call for all spans), but a sealed run
  holds no containers for the garbage collector: unsealed, the requests and answers waiting in the
  queue (tens of tracked objects per run, alive for a batch interval) tripled the collections and
  made every one longer — about a tenth of a traced request's CPU, measured with ``gc.callbacks``.
- One writer task (``start()``) takes up to ``max_batch`` runs (and ``max_batch_bytes``) at a time,
  waiting up to ``interval_s`` for a small batch to grow, and calls ``write(batch)``.
  A failed write is retried with backoff (``RETRY_DELAYS_S``); if it still fails, each run of the
  batch is tried on its own so one unwritable run cannot take its neighbours with it (until
  ``SPLIT_GIVE_UP_AFTER`` fail in a row: then the database is down); what still fails is logged
  and dropped (``failed``). The writer survives every failure.
- Pricing: the deepest spans that carry usage are billed (``pricing.cost_usd`` with the span's
  model and the workflow's price): the ``model_call`` spans, or a node's own usage when it reported
  no calls. A span above billed spans (node, workflow) costs their sum, so nothing is counted
  twice. The run costs the sum of its billed spans: None when none had a known price. Costs the
  caller already set are kept.
- ``await flush(timeout_s)`` returns once every run submitted before the call is written or given
  up (or the timeout passes); ``await close()`` flushes and stops the writer.
- ``counters()`` → ``{queued, written, dropped, failed}`` for /api/health.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from host.tracing.pricing import cost_usd
from host.tracing.records import PendingRun, RunRow, SpanId, SpanRow, unique_spans
from plugin_runner.protocol import json_encode

log = logging.getLogger("flowbase.tracing")

WriteFn = Callable[[list[RunRow]], Awaitable[None]]

# Waits before each retry of a failed batch write (seconds): rides out a brief database hiccup (a
# restart, a lock held by another process) without holding the queue for long.
RETRY_DELAYS_S = (0.05, 0.25, 1.0)
# At most one "dropped runs" warning per this many seconds, so an overload does not flood the log.
DROP_LOG_INTERVAL_S = 10.0
# When a failed batch is retried run by run, this many failures in a row mean the database is
# down rather than one run being unwritable; the rest of the batch is given up (runs).
SPLIT_GIVE_UP_AFTER = 3
# How long after a run ends it is built and sealed (seconds): well after the answer's send (the HTTP
# transport sends what a callback wrote one turn of the loop later, host/serving.py), whatever the
# loop is doing. Measured against sealing exactly two turns later, in alternating rounds: the same
# throughput at concurrency 32 and the same latency at 1; the delay needs no reasoning about turns.
SEAL_DELAY_S = 0.001
# How long close() waits for the queue to drain before giving up on what is left (seconds).
CLOSE_TIMEOUT_S = 15.0
# Batching: the writer waits up to BATCH_INTERVAL_S for up to MAX_BATCH runs (a reader who needs a run
# now, flush(), cuts the wait short, as the management API and the history lookup do). Every commit
# rewrites the last page of each of the eight B-trees a run touches (16 KiB pages), so the bytes written
# per run fall with the batch: measured on SQLite with runs shaped like ``make bench``'s (raw sqlite3,
# 30,000 runs into a database of 50,000), 6.4 KB per run in batches of 200, 4.7 KB in 1,000, 4.2 KB in
# 2,000, with the writer's CPU per run falling alike (about 14 → 12 → 9-10 µs, noisy). At make bench's
# ~3,500 traced requests per second a batch is ~1,750 runs; the queue (``max_queue``) holds five
# batches. Memory: a sealed run is ~2.5 KB, so a full batch waiting is ~5 MB.
BATCH_INTERVAL_S = 0.5
MAX_BATCH = 2048
# Byte bounds, for runs far larger than the benchmark's (an agent's request is a whole conversation: a 35 KB
# request makes a ~75 KB run): a batch is written as soon as its sealed runs hold MAX_BATCH_BYTES, and a
# run that would take what the queue holds past MAX_QUEUE_BYTES is dropped (counted, as when the queue is
# full; a run larger than that is still taken when nothing else waits). Batching by count alone held ~50 MB of such runs per batch and took the host from 91 to 344 MB
# resident (450 MB at peak) at ~1,400 agent-sized requests per second; SQLite's cost per run is then
# mostly the run's own bytes, so smaller batches of them cost little.
MAX_BATCH_BYTES = 4 * 2**20
MAX_QUEUE_BYTES = 64 * 2**20


def seal(run: RunRow) -> None:
    """Price ``run`` (a pricing failure is logged: the run is stored without cost) and replace its
    spans with their encoding, ``run.spans_json`` (a span id repeated within the run keeps its first
    span)."""
    spans = run.spans
    try:
        if run.engine_order:  # pre-order, unique ids, every parent present: nothing to check
            _price_preorder(run, None)
            _clear_prices(spans)
            unique = True
        else:
            ids = {s.id for s in spans}
            price_run(run, ids)
            unique = len(ids) == len(spans)
    except Exception:
        log.exception("trace recorder: cannot price run %s; storing it without cost", run.id)
        unique = False
    run.spans_json = json_encode(spans if unique else unique_spans(spans))
    run.spans = []


def price_run(run: RunRow, ids: set[SpanId] | None = None) -> None:
    """Fill ``cost_usd`` on the run's spans and on the run (see the module docstring), and clear the
    spans' ``price`` (what they were priced with is not stored). ``ids``: the spans' ids, if known."""
    spans = run.spans
    if ids is None:
        ids = {s.id for s in spans}
    if len(ids) == len(spans) and _is_preorder(spans, ids):
        _price_preorder(run, ids)
    else:
        _price_any(run, ids)
    _clear_prices(spans)


def _clear_prices(spans: list[SpanRow]) -> None:
    for s in spans:
        if s.price is not None:
            s.price = None


def _parent(s: SpanRow, ids: set[SpanId]) -> SpanId | None:
    """The id of ``s``'s parent among the run's spans; None for a root (no parent, an unknown one, itself)."""
    p = s.parent_id
    return p if p is not None and p != s.id and p in ids else None


def _is_preorder(spans: list[SpanRow], ids: set[SpanId]) -> bool:
    """Whether every span comes after its parent and after the whole subtree of each earlier
    sibling — the order the engine records in (a node span, then its calls)."""
    open_chain: list[SpanId] = []  # the last span's ancestors and itself
    for s in spans:
        parent = _parent(s, ids)
        if parent is not None:
            while open_chain and open_chain[-1] != parent:
                open_chain.pop()
            if not open_chain:
                return False
        else:
            open_chain.clear()
        open_chain.append(s.id)
    return True


def _total(costs: list[float]) -> float | None:
    """The sum of known costs, rounded as ``cost_usd`` rounds; a single cost as it is (rounding a
    float with digits goes through decimal conversion: the dearest step of pricing a proxy run)."""
    if not costs:
        return None
    return costs[0] if len(costs) == 1 else round(sum(costs), 12)


def _price_preorder(run: RunRow, ids: set[SpanId] | None) -> None:
    """``_price_any`` for spans in pre-order with unique ids, without building the tree: walking the
    list backwards settles every span after its children, in the same order ``_price_any`` does (so
    the same floating-point sums): this is the common case, at a fraction of the cost. ``ids`` None:
    every parent named is one of the spans (the engine's runs)."""
    spans = run.spans
    if _is_chain(spans):
        _price_chain(run)
        return
    billed: list[float] = []  # known costs of the billed spans, in the order they settle
    # span id -> costs of its children that have a billed span at or below them, last child first
    below: dict[SpanId, list[float | None]] = {}
    for span in reversed(spans):
        sid = span.id
        kids = below.pop(sid, None)
        cost = span.cost_usd
        if kids is None:
            if span.usage is None:
                continue  # nothing billed at or below this span
            if cost is None:
                cost = span.cost_usd = cost_usd(span.model, span.usage, span.price)
            if cost is not None:
                billed.append(cost)
        elif cost is None:
            cost = span.cost_usd = _total([c for c in reversed(kids) if c is not None])
        parent = span.parent_id
        if parent is not None and parent != sid and (ids is None or parent in ids):
            below.setdefault(parent, []).append(cost)
    if run.cost_usd is None:
        run.cost_usd = _total(billed)


def _is_chain(spans: list[SpanRow]) -> bool:
    """Whether each span is the child of the one before it (a one-node run: workflow, node, its call)."""
    prev = None
    for s in spans:
        if s.parent_id != prev or s.id == prev:
            return False
        prev = s.id
    return True


def _price_chain(run: RunRow) -> None:
    """``_price_preorder`` for a chain (``_is_chain``): the deepest span with usage is the billed one,
    each span above it costs what the span below it costs (unless it has its own cost already), and
    the spans below it are not priced. The most common run, priced without the general walk's dicts
    and lists."""
    spans = run.spans
    i = len(spans)
    usage = None
    while usage is None:
        i -= 1
        if i < 0:
            return
        usage = spans[i].usage
    span = spans[i]
    cost = span.cost_usd
    if cost is None:
        cost = span.cost_usd = cost_usd(span.model, usage, span.price)
    if run.cost_usd is None:
        run.cost_usd = cost
    while i:
        i -= 1
        span = spans[i]
        if span.cost_usd is None:
            span.cost_usd = cost
        else:
            cost = span.cost_usd


def _price_any(run: RunRow, ids: set[SpanId]) -> None:
    """Pricing for spans in any order: duplicate ids, parents listed after children, cycles."""
    kids: dict[SpanId, list[SpanRow]] = {}
    roots: list[SpanRow] = []
    for s in run.spans:
        parent = _parent(s, ids)
        if parent is not None:
            kids.setdefault(parent, []).append(s)
        else:
            roots.append(s)
    billed: list[SpanRow] = []
    billed_below: dict[SpanId, bool] = {}  # span id -> a billed span at or below it
    seen: set[SpanId] = set()
    # Post-order walk without recursion: a span is settled after all its children.
    stack: list[tuple[SpanRow, bool]] = [(r, False) for r in roots]
    while stack:
        span, children_done = stack.pop()
        if not children_done:
            if span.id not in seen:
                seen.add(span.id)
                stack.append((span, True))
                stack.extend((c, False) for c in kids.get(span.id, ()))
            continue
        below = [c for c in kids.get(span.id, ()) if billed_below.get(c.id)]
        if span.usage is not None and not below:
            if span.cost_usd is None:
                span.cost_usd = cost_usd(span.model, span.usage, span.price)
            billed.append(span)
            billed_below[span.id] = True
            continue
        billed_below[span.id] = bool(below)
        if below and span.cost_usd is None:
            span.cost_usd = _total([c.cost_usd for c in below if c.cost_usd is not None])
    if run.cost_usd is None:
        run.cost_usd = _total([s.cost_usd for s in billed if s.cost_usd is not None])


class Recorder:
    def __init__(self, write: WriteFn, *, max_queue: int = 10000, max_batch: int = MAX_BATCH,
                 interval_s: float = BATCH_INTERVAL_S, max_batch_bytes: int = MAX_BATCH_BYTES,
                 max_queue_bytes: int = MAX_QUEUE_BYTES) -> None:
        self._write = write
        # Sealed runs waiting for the writer, oldest first: a list taken a batch at a time, not an
        # asyncio.Queue (whose per-item put/get bookkeeping was a tenth of the loop's recording cost);
        # submit bounds it together with ``_fresh``.
        self._ready: list[RunRow] = []
        self._ready_bytes = 0  # the spans documents of ``_ready`` (a sealed run's bulk)
        self._max_batch_bytes = max_batch_bytes
        self._max_queue_bytes = max_queue_bytes
        self._has_ready = asyncio.Event()
        self._max_queue = max_queue
        # Runs submitted and not yet sealed: sealing waits until the answer has been sent (submit).
        self._fresh: list[RunRow | PendingRun] = []
        self._max_batch = max_batch
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._wake = asyncio.Event()  # cuts the batching wait short (flush, close)
        self._accepted = 0
        self._done = 0  # runs written or given up, in queue order
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._inflight = 0  # runs taken off ``_ready`` and not yet done
        self._last_error = ""
        self._last_drop_log = float("-inf")
        self._drops_since_log = 0

    # ---- request path ----------------------------------------------------------------------

    def submit(self, run: RunRow | PendingRun) -> None:
        if self._closed or len(self._ready) + len(self._fresh) >= self._max_queue:
            self._dropped(1)
            return
        self._fresh.append(run)
        self._accepted += 1
        if len(self._fresh) > 1:
            return  # already scheduled
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a caller without an event loop: nothing to wait for
            self._seal_fresh()
            return
        loop.call_later(SEAL_DELAY_S, self._seal_fresh)

    def _seal_fresh(self) -> None:
        fresh, self._fresh = self._fresh, []
        ready = self._ready
        for item in fresh:
            try:
                run = item if isinstance(item, RunRow) else item()
                seal(run)
            except Exception:
                log.exception("trace recorder: cannot build or seal a run; dropping it")
                self._done += 1
                self._dropped(1)
                continue
            size = len(run.spans_json or b"")
            if ready and self._ready_bytes + size > self._max_queue_bytes:  # one run alone always fits
                self._done += 1
                self._dropped(1)
                continue
            ready.append(run)  # fits in count too: submit counted it against that bound
            self._ready_bytes += size
        if ready:
            self._has_ready.set()
            if self._ready_bytes >= self._max_batch_bytes:
                self._wake.set()  # a batch's worth of bytes: no reason to wait for more
        self._notify()

    def _dropped(self, n: int) -> None:
        self.dropped += n
        self._drops_since_log += n
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            log.warning("trace recorder dropped %d run(s) (queue full or closed); %d dropped in total",
                        self._drops_since_log, self.dropped)
            self._last_drop_log = now
            self._drops_since_log = 0

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._closed = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flowbase-trace-writer")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def counters(self) -> dict[str, int]:
        return {"queued": self._accepted - self._done, "written": self.written, "dropped": self.dropped,
                "failed": self.failed}

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything submitted so far is written (or given up). False on timeout or
        when no writer runs to do it."""
        target = self._accepted
        if self._done >= target:
            return True
        if not self.running:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._wake.set()
        try:
            await asyncio.wait_for(fut, timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove((target, fut))

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        self._closed = True
        task = self._task
        if task is None:
            return
        await self.flush(timeout_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None
        left = len(self._ready) + self._inflight + len(self._fresh)
        self._fresh.clear()
        self._ready.clear()
        self._ready_bytes = 0
        self._inflight = 0
        if left:
            self._done += left
            self.failed += left
            log.error("trace recorder closed with %d run(s) unwritten", left)
        self._notify()

    # ---- writer ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            while not self._ready:
                self._has_ready.clear()
                await self._has_ready.wait()
            if (len(self._ready) < self._max_batch and self._ready_bytes < self._max_batch_bytes
                    and not self._waiters and not self._closed):
                # Let a small batch grow (many runs per transaction) unless someone is waiting.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval_s)
            batch = self._take_batch()
            self._inflight = len(batch)
            try:
                await self._write_batch(batch)
            except Exception:  # the writer must outlive anything a batch does
                log.exception("trace recorder: unexpected error; %d run(s) dropped", len(batch))
                self.failed += len(batch)
            self._inflight = 0
            self._done += len(batch)
            self._notify()

    def _take_batch(self) -> list[RunRow]:
        """The oldest ready runs: up to ``max_batch`` of them, and up to the first that brings the batch to
        ``max_batch_bytes``."""
        ready = self._ready
        limit = min(len(ready), self._max_batch)
        n = total = 0
        while n < limit and total < self._max_batch_bytes:
            total += len(ready[n].spans_json or b"")
            n += 1
        batch = ready[:n]
        del ready[:n]
        self._ready_bytes -= total
        return batch

    async def _write_batch(self, batch: list[RunRow]) -> None:
        if await self._attempt(batch, RETRY_DELAYS_S):
            self.written += len(batch)
            return
        if len(batch) == 1:
            self._give_up(batch)
            return
        # One run the database refuses must not take its neighbours with it: write them one by
        # one, unless several in a row fail too (then the database itself is the problem).
        consecutive = 0
        for i, run in enumerate(batch):
            if await self._attempt([run], ()):
                self.written += 1
                consecutive = 0
                continue
            consecutive += 1
            if consecutive >= SPLIT_GIVE_UP_AFTER:
                self._give_up(batch[i:])
                return
            self._give_up([run])

    async def _attempt(self, batch: list[RunRow], delays: tuple[float, ...]) -> bool:
        for delay in (*delays, None):
            try:
                await self._write(batch)
                return True
            except Exception as exc:  # noqa: BLE001 - any write failure is retried, then given up
                self._last_error = _describe(exc)
                if delay is None:
                    return False
                log.warning("trace write of %d run(s) failed (%s); retrying in %.2fs", len(batch),
                            self._last_error, delay)
                await asyncio.sleep(delay)
        return False

    def _give_up(self, batch: list[RunRow]) -> None:
        self.failed += len(batch)
        ids = ", ".join(r.id for r in batch[:5]) + (f" and {len(batch) - 5} more" if len(batch) > 5 else "")
        log.error("trace write failed for good, dropping run(s) %s: %s", ids, self._last_error)

    def _notify(self) -> None:
        for target, fut in list(self._waiters):
            if self._done >= target and not fut.done():
                fut.set_result(None)


def _describe(exc: BaseException) -> str:
    # First line only, bounded: database errors can be long and carry statement text.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:300]}"
