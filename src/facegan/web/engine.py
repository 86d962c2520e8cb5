"""The model behind the page: a loaded generator, its attribute directions, and a batcher that
merges concurrent requests into one forward pass.

Every request becomes a :class:`Job` (latents z float (n, D), labels c float (n, K), K = 0
without labels).
One worker thread takes the first waiting job, adds every other job already waiting (up to
``max_batch`` rows), runs the generator once on the concatenation and hands each job its rows
back as uint8 (n, 3, R, R). The generator is only ever called from that thread, so there is
one copy of the model however many clients there are, and a CPU or GPU runs few, large
forward passes instead of many small ones.

A job that would wait longer than ``max_wait`` seconds (estimated from measured batch times
and what is queued ahead of it) is refused at once with :class:`Overloaded` (the page shows a
503 with a message): a server under load answers "busy" instead of queueing forever.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..directions import directions_path, read_directions
from ..errors import UserError
from ..labels import LabelSpec
from ..sampling import LoadedGenerator, generate, load_generator

RELOAD_CHECK_S = 5.0  # how often the worker looks for a newer checkpoint / directions file


class Overloaded(Exception):
    """The request would wait too long (or the queue is full); the message says why."""


@dataclass(frozen=True)
class Direction:
    """An attribute direction in latent space: editing is ``z + strength * vector``."""

    name: str
    vector: torch.Tensor  # float (D,), unit norm
    method: str
    accuracy: float | None


def page_directions(path: Path, latent_dim: int) -> tuple[dict[str, Direction], str | None]:
    """The directions of ``path`` (a ``RUN/directions.json``, read by
    :func:`facegan.directions.read_directions`) for a generator of ``latent_dim``.

    Returns (directions by name, None), or ({}, a one-line reason) for a file that is absent
    (reason None) or unusable: the page then shows no sliders, the rest still works.
    """
    if not path.is_file():
        return {}, None
    try:
        doc = read_directions(path)
    except UserError as e:
        return {}, str(e)
    if doc["z_dim"] != latent_dim:
        return {}, (f"{path.name}: directions for a latent of {doc['z_dim']} values, this "
                    f"model's has {latent_dim}")
    out = {}
    for name, d in doc["directions"].items():
        if "," in name or not name.strip():
            # The page sends edits as NAME:STRENGTH,NAME:STRENGTH.
            return {}, f"{path.name}: direction name '{name}' is empty or holds a ','"
        v = torch.tensor(d["vector"], dtype=torch.float32)
        acc = d.get("accuracy")
        # The file promises unit norm; normalising again makes strength mean the same
        # distance in latent space for every direction even if a writer rounds.
        out[name] = Direction(name, v / v.norm(), str(d.get("method", "")),
                              None if acc is None else float(acc))
    return out, None


@dataclass
class Model:
    """What the server generates with; replaced as a whole when the checkpoint changes."""

    loaded: LoadedGenerator
    directions: dict[str, Direction] = field(default_factory=dict)
    directions_problem: str | None = None
    directions_file: Path | None = None  # watched for changes while serving
    version: int = 0  # bumped on every reload, so the page can tell its images are stale

    @property
    def generator(self) -> torch.nn.Module:
        return self.loaded.generator

    @property
    def latent_dim(self) -> int:
        return int(self.loaded.generator.latent_dim)

    @property
    def resolution(self) -> int:
        return int(self.loaded.config.data.resolution)

    @property
    def labels(self) -> LabelSpec:
        return self.loaded.labels

    @property
    def device(self) -> torch.device:
        return next(self.loaded.generator.parameters()).device


def open_model(run: str | os.PathLike, device: str = "cpu", version: int = 0,
               directions: Path | None = None) -> Model:
    """Load the EMA generator of ``run`` (folder or checkpoint; UserError when unusable) and
    its directions (``directions``, default ``facegan.directions.directions_path``: where
    ``facegan directions`` writes them) when there are some."""
    lg = load_generator(run, device=device)
    model = Model(lg, version=version)
    model.directions_file = directions or directions_path(run)
    model.directions, model.directions_problem = page_directions(model.directions_file,
                                                                 model.latent_dim)
    return model


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return None if st is None else (st.st_mtime_ns, st.st_size)


class ModelHolder:
    """The current :class:`Model`; with ``reload`` it follows a run that is still training
    (a newer latest.pt or directions.json is loaded between batches, never during one)."""

    def __init__(self, run: str | os.PathLike, device: str = "cpu", reload: bool = True,
                 model: Model | None = None):
        self.run, self.device_name, self.reload = run, device, reload
        self.model = model or open_model(run, device)
        self._last_check = time.monotonic()
        self._stamps = self._current_stamps()
        self.reload_problem: str | None = None
        self._lock = threading.Lock()

    def _current_stamps(self):
        return _stamp(self.model.loaded.checkpoint), _stamp(self.model.directions_file)

    def maybe_reload(self, force: bool = False) -> bool:
        """Reload when the checkpoint or directions file changed (checked every few seconds).
        A failed load keeps the current model (a checkpoint half-way through being replaced
        cannot happen, writes are atomic, but a damaged file can)."""
        with self._lock:  # the batcher's worker and the /api/run handler both call this
            return self._maybe_reload(force)

    def _maybe_reload(self, force: bool) -> bool:
        now = time.monotonic()
        if not self.reload or (not force and now - self._last_check < RELOAD_CHECK_S):
            return False
        self._last_check = now
        stamps = self._current_stamps()
        if stamps == self._stamps:
            return False
        try:
            new = open_model(self.model.loaded.checkpoint, self.device_name, self.model.version + 1,
                             self.model.directions_file)
        except Exception as e:  # keep serving the model we have
            self.reload_problem = f"could not reload {self.model.loaded.checkpoint}: {e}"
            return False
        self._stamps, self.model, self.reload_problem = stamps, new, None
        return True


@dataclass
class Job:
    z: torch.Tensor  # float (n, D) on the CPU
    c: torch.Tensor  # float (n, K) on the CPU; K = 0 for an unconditional model
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)

    @property
    def rows(self) -> int:
        return int(self.z.shape[0])


class Batcher:
    """One worker thread; concurrent jobs merged into one forward pass of up to ``max_batch``
    rows (a larger job runs alone, never split).

    ``submit`` refuses (raises :class:`Overloaded`) when the estimated wait, i.e. the batches
    queued ahead plus this job's own, exceeds ``max_wait`` s, or when more than
    ``max_queue_rows`` rows wait. The estimate is ``t(r) = overhead + per_row * r`` per batch,
    measured by :meth:`warm_up` and corrected as batches run.
    """

    def __init__(self, holder: ModelHolder, *, max_batch: int = 32, max_wait: float = 3.0,
                 max_queue_rows: int = 2048, overhead: float = 0.01, per_row: float = 0.002):
        self.holder = holder
        self.max_batch, self.max_wait, self.max_queue_rows = max_batch, max_wait, max_queue_rows
        self.overhead, self.per_row = overhead, per_row
        self._queue: list[Job] = []
        self._cond = threading.Condition()
        self._busy_until = 0.0  # estimated end of the batch running now (monotonic)
        self._thread: threading.Thread | None = None
        self._stop = False
        self.forward_calls = 0  # generator forward passes so far (tests, /api/info)
        self.rows_done = 0

    # ---- cost model ----
    def batch_time(self, rows: int) -> float:
        return self.overhead + self.per_row * rows

    def _estimate(self, rows: int) -> float:
        """Seconds until a new job of ``rows`` rows would be done, were it submitted now
        (called holding ``_cond``)."""
        queued = sum(j.rows for j in self._queue) + rows
        batches = max(1, math.ceil(queued / self.max_batch))
        running = max(0.0, self._busy_until - time.monotonic())
        return running + batches * self.overhead + queued * self.per_row

    @torch.inference_mode()
    def warm_up(self, repeats: int = 3) -> None:
        """Measure the cost model on this machine: the median time of 1 and of ``max_batch``
        rows (the first call of a network is slower; it is run once and not counted)."""
        m = self.holder.model
        times = {}
        for rows in (1, self.max_batch):
            z = torch.randn(rows, m.latent_dim)
            c = torch.zeros(rows, m.labels.dim)  # any labels cost the same
            self._forward(m, z, c)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                self._forward(m, z, c)
                ts.append(time.perf_counter() - t0)
            times[rows] = sorted(ts)[len(ts) // 2]
        slope = max(0.0, (times[self.max_batch] - times[1]) / max(1, self.max_batch - 1))
        self.per_row, self.overhead = slope, max(1e-4, times[1] - slope)

    @staticmethod
    def _forward(m: Model, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """z float (n, D), c float (n, K) -> uint8 (n, 3, R, R) on the CPU, in one pass."""
        return generate(m.generator, z, c, batch_size=max(1, z.shape[0]))

    # ---- queue ----
    def submit(self, z: torch.Tensor, c: torch.Tensor) -> Future:
        """Queue z float (n, D) and c float (n, K) (K = 0 without labels); the future's
        result is uint8 (n, 3, R, R)."""
        job = Job(z, c)
        with self._cond:
            queued = sum(j.rows for j in self._queue)
            if queued + job.rows > self.max_queue_rows:
                raise Overloaded(f"server busy: {queued} images are queued; try again shortly")
            wait = self._estimate(job.rows)
            if wait > self.max_wait:
                raise Overloaded(f"server busy: this request would wait about {wait:.1f} s "
                                 f"(limit {self.max_wait:g} s); try again shortly")
            self._queue.append(job)
            self._cond.notify()
        self._ensure_worker()
        return job.future

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._cond:
                if self._thread is None or not self._thread.is_alive():
                    self._stop = False
                    self._thread = threading.Thread(target=self._run, name="facegan-batcher",
                                                    daemon=True)
                    self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            pending, self._queue = self._queue, []
            self._cond.notify_all()
        for job in pending:
            _fail(job, Overloaded("server stopping"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _take(self) -> list[Job]:
        """Block for the first job, then take every waiting job that fits in one batch."""
        with self._cond:
            while not self._queue and not self._stop:
                self._cond.wait(timeout=1.0)
            if self._stop:
                return []
            jobs = [self._queue.pop(0)]
            rows = jobs[0].rows
            while self._queue and rows + self._queue[0].rows <= self.max_batch:
                rows += self._queue[0].rows
                jobs.append(self._queue.pop(0))
            self._busy_until = time.monotonic() + self.batch_time(rows)
            return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if not jobs:
                return
            now = time.monotonic()
            live = []
            for job in jobs:
                # A job can outstay its estimate when the machine is busier than measured:
                # answer "busy" rather than a reply the client has probably given up on.
                if now - job.queued_at > 2 * self.max_wait:
                    _fail(job, Overloaded("server busy: the request waited too long"))
                elif job.future.set_running_or_notify_cancel():
                    live.append(job)
            if live:
                self._run_batch(live)
            with self._cond:
                self._busy_until = 0.0

    def _run_batch(self, jobs: list[Job]) -> None:
        try:
            self.holder.maybe_reload()
            m = self.holder.model
            z = torch.cat([j.z for j in jobs])
            c = torch.cat([j.c for j in jobs])
            t0 = time.perf_counter()
            with torch.inference_mode():
                imgs = self._forward(m, z, c)
            took = time.perf_counter() - t0
            self.forward_calls += 1
            self.rows_done += z.shape[0]
            # Keep the cost model honest when the machine is busier (or idler) than at start.
            ratio = min(10.0, max(0.1, took / max(self.batch_time(z.shape[0]), 1e-6)))
            scale = 0.8 + 0.2 * ratio
            self.overhead *= scale
            self.per_row *= scale
        except Exception as e:  # a bug must reach the request, not kill the worker
            for j in jobs:
                j.future.set_exception(e)
            return
        i = 0
        for j in jobs:
            j.future.set_result(imgs[i:i + j.rows])
            i += j.rows


def _fail(job: Job, error: Exception) -> None:
    # A request whose client gave up has cancelled its future; it needs no answer.
    if job.future.set_running_or_notify_cancel():
        job.future.set_exception(error)
