"""The model behind the page: a loaded generator, its attribute directions, and a batcher that
merges concurrent requests into one forward pass.

Every request becomes a :class:`Job` (latents z float (n, D), labels c float (n, K), K = 0
without labels).
One worker thread takes the first waiting job, adds every other job already waiting (up to
``max_batch`` rows), runs the generator once on the concatenation and hands each job its rows
back as uint8 (n, 3, R, R). The generator is only ever called from that thread, so there is
one copy of the model however many clients there are, and a CPU or GPU runs few, large
forward passes instead of many small ones. A job may carry a ``finish`` (a face resized to a
large size and encoded as a PNG): it runs on the job's images in a few encode threads, FIFO,
and its result is the job's answer.

A job that would wait longer than ``max_wait`` seconds (:meth:`Batcher.estimate`: the
generation and the resizing and encoding queued ahead of it, by measured costs) is refused at
once with :class:`Overloaded` (the page shows a 503 with a message and a Retry-After): a server
under load answers "busy" instead of queueing forever.

Long work (projecting a photo: hundreds of optimisation steps; preparing the projector:
training its encoder) is a :class:`Task`, run by the same worker one unit (a step) at a time
between image batches: the generator still has one caller, and an image request waits for the
unit running (tens of milliseconds), not for the whole projection. Units are costed like
batches (seconds per unit of each kind, measured at warm-up and as they run), so image waits
count the task running and a photo is refused at once when the tasks ahead of it would take
longer than ``max_wait``.
"""

from __future__ import annotations

import io
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..directions import directions_path, read_directions
from ..errors import UserError
from ..labels import LabelSpec
from ..sampling import LoadedGenerator, generate, load_generator

RELOAD_CHECK_S = 5.0  # how often the worker looks for a newer checkpoint / directions file
# Encodes smaller than this are not used to correct the per-pixel cost: their fixed costs
# (a few tenths of a millisecond) would read as a high cost per pixel.
MEASURE_PIXELS = 256 * 256
# The worker runs a task's units for about this long before it looks at the image queue again
# (sooner when images wait: then after one unit).
TASK_SLICE_S = 0.25
# Seconds per unit of a task's work, until measured on this machine (warm_up measures a
# projection step; every unit run corrects its kind's cost).
UNIT_COSTS = {"project_step": 0.02, "crop": 0.01, "align": 0.5, "setup": 0.5, "encoder_step": 0.1,
              "template_image": 0.1}


class Overloaded(Exception):
    """The request would wait too long (or the queue is full); the message says why and
    ``retry_after`` (whole seconds, at least 1) when trying again should fare better."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


def whole_seconds(s: float) -> int:
    """A Retry-After value: seconds rounded up, at least 1."""
    return max(1, math.ceil(s))


def png_bytes(img: torch.Tensor | Image.Image, size: int | None = None) -> bytes:
    """uint8 (3, H, W) or a PIL image -> PNG bytes, resized (Lanczos) to size x size if given."""
    pil = img if isinstance(img, Image.Image) else Image.fromarray(img.permute(1, 2, 0).numpy())
    if size is not None and size != pil.width:
        pil = pil.resize((size, size), Image.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


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
    finish: Callable[[torch.Tensor], object] | None = None  # run on uint8 (n, 3, R, R)
    pixels: int = 0  # output pixels finish makes (its cost); 0 without finish
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)

    @property
    def rows(self) -> int:
        return int(self.z.shape[0])


@dataclass(eq=False)  # compared by identity: the queue finds and removes this very task
class Task:
    """Long work the worker runs a unit at a time between image batches.

    ``work`` is a Python generator: each ``next()`` does one unit and yields its kind (a key
    of :attr:`Batcher.unit_cost`, such as 'project_step'); its return value is the task's
    result, an exception it raises the task's error. ``plan``: the units of each kind it does
    in all, from which its cost is estimated.
    """

    work: Generator[str, None, object]
    plan: dict[str, int]
    future: Future = field(default_factory=Future)
    done: dict[str, int] = field(default_factory=dict)  # units run so far, by kind
    queued_at: float = field(default_factory=time.monotonic)
    started: bool = False
    _cancel: threading.Event = field(default_factory=threading.Event)

    def left(self, cost: Mapping[str, float]) -> float:
        """Seconds of work not done yet, at ``cost`` seconds per unit of each kind."""
        return sum(max(0, n - self.done.get(k, 0)) * cost.get(k, 0.0) for k, n in self.plan.items())

    def unit(self, cost: Mapping[str, float]) -> float:
        """The longest unit it still has to run (what an image request may wait for)."""
        return max((cost.get(k, 0.0) for k, n in self.plan.items() if self.done.get(k, 0) < n),
                    default=0.0)

    def cancel(self) -> None:
        """Stop it before its next unit (its client gave up); a task not started never runs."""
        self._cancel.set()
        self.future.cancel()


class Batcher:
    """One worker thread; concurrent jobs merged into one forward pass of up to ``max_batch``
    rows (a larger job runs alone, never split).

    A job's ``finish`` runs in ``encode_threads`` threads (default half the CPUs), in order.

    ``submit`` refuses (raises :class:`Overloaded`) when :meth:`estimate` of its wait exceeds
    ``max_wait`` s, or when more than ``max_queue_rows`` rows wait. The costs it uses
    (``overhead``, ``per_row``, ``per_pixel``, ``unit_cost``) are measured by :meth:`warm_up`
    and corrected as batches, encodes and task units run.

    :meth:`submit_task` queues a :class:`Task` (first in, first out; one runs at a time, a
    unit after each image batch, or units for up to ``TASK_SLICE_S`` when no image waits).
    """

    def __init__(self, holder: ModelHolder, *, max_batch: int = 32, max_wait: float = 3.0,
                 max_queue_rows: int = 2048, overhead: float = 0.01, per_row: float = 0.002,
                 per_pixel: float = 2.5e-7, encode_threads: int | None = None):
        self.holder = holder
        self.max_batch, self.max_wait, self.max_queue_rows = max_batch, max_wait, max_queue_rows
        self.overhead, self.per_row, self.per_pixel = overhead, per_row, per_pixel
        # Half the CPUs: the rest stay with the generator, whose batches the encodes wait for.
        self.encode_threads = encode_threads or max(1, (os.cpu_count() or 2) // 2)
        self._queue: list[Job] = []
        self._tasks: list[Task] = []  # the first one is the one running
        self.unit_cost = dict(UNIT_COSTS)
        self._measured: set[str] = set()  # unit kinds whose cost was measured, not guessed
        self._cond = threading.Condition()  # an RLock: estimate() is called holding it too
        self._busy_until = 0.0  # estimated end of the batch or task unit running now (monotonic)
        self._unit_running = False  # what runs now is a task's unit (already in its units left)
        self._pending_pixels = 0  # output pixels admitted and not yet encoded
        self._encoder: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._stop = False
        self.forward_calls = 0  # generator forward passes so far (tests, /api/info)
        self.rows_done = 0

    # ---- cost model ----
    def batch_time(self, rows: int) -> float:
        return self.overhead + self.per_row * rows

    def estimate(self, rows: int, pixels: int = 0) -> float:
        """Seconds until a job of ``rows`` faces whose finish makes ``pixels`` output pixels
        (0: no finish) would be answered, were it submitted now.

        The work in front of it, in two measured units: generation, ``overhead`` s per batch
        plus ``per_row`` s per face, for the faces queued ahead and its own (in batches of
        ``max_batch``) after the batch running now; and, for a job with a finish, resizing and
        PNG encoding, ``per_pixel`` s per output pixel, for the pixels admitted ahead of it and
        not yet encoded and its own, shared by ``encode_threads`` threads. Pixels are counted
        because at large sizes they, not faces, are the cost: a 1024 x 1024 face has 256 times
        the pixels of a 64 x 64 one, and resizing and encoding it takes about 0.3 s of a CPU
        core where generating it takes milliseconds. A job without a finish (its PNG made by
        the caller: a face at the model's size) waits for generation only.
        """
        with self._cond:
            queued = sum(j.rows for j in self._queue) + rows
            batches = max(1, math.ceil(queued / self.max_batch))
            running = max(0.0, self._busy_until - time.monotonic())
            wait = running + batches * self.overhead + queued * self.per_row
            if self._tasks:  # a task runs one unit after each batch
                wait += batches * self._tasks[0].unit(self.unit_cost)
            if pixels:
                wait += (self._pending_pixels + pixels) * self.per_pixel / self.encode_threads
            return wait

    def task_backlog(self) -> float:
        """Seconds until a task submitted now would start: the units left of the tasks queued
        (the running one included), at the measured unit costs, and what runs now."""
        with self._cond:
            return self._seconds_through(self._tasks)

    def until_done(self, task: Task) -> float:
        """Seconds until ``task`` (queued or running) ends: its units left and those of the
        tasks ahead of it; 0 once it has ended."""
        with self._cond:
            if task not in self._tasks:
                return 0.0
            return self._seconds_through(self._tasks[:self._tasks.index(task) + 1])

    def _seconds_through(self, tasks: list[Task]) -> float:
        """What runs now plus the units left of ``tasks`` (holding the lock). A task's unit
        that runs now is not counted twice: it is one of its task's units left until it ends."""
        running = 0.0 if self._unit_running else max(0.0, self._busy_until - time.monotonic())
        return running + sum(t.left(self.unit_cost) for t in tasks)

    def task_cost(self, plan: Mapping[str, int]) -> float:
        """Seconds the units of ``plan`` (kind -> count) take at the measured costs."""
        with self._cond:
            return sum(n * self.unit_cost.get(k, 0.0) for k, n in plan.items())

    def warm_up(self, repeats: int = 3) -> None:
        """Measure the cost model on this machine: the median time of 1 and of ``max_batch``
        rows (the first call of a network is slower; it is run once and not counted), of a
        resize and encode, and of a projection step (:meth:`measure_project_step`)."""
        self._warm_up_images(repeats)
        self.measure_project_step(repeats)

    def measure_project_step(self, repeats: int = 3) -> None:
        """A first 'project_step' unit cost: the median time of the generator forward and
        backward for one latent (a projection step without the feature loss; the first
        projection's steps replace it)."""
        m = self.holder.model
        z = torch.randn(1, m.latent_dim, device=m.device, requires_grad=True)
        c = torch.zeros(1, m.labels.dim, device=m.device)
        ts = []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            (grad,) = torch.autograd.grad(m.generator(z, c).square().mean(), z)
            float(grad.sum())  # wait for a GPU to finish
            if i:  # the first call is slower; not counted
                ts.append(time.perf_counter() - t0)
        with self._cond:
            # A first figure: the first projection's own steps replace it (not marked measured),
            # as they include the feature loss and run in the worker's thread.
            self.unit_cost["project_step"] = sorted(ts)[len(ts) // 2]

    @torch.inference_mode()
    def _warm_up_images(self, repeats: int) -> None:
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
        # Resize + encode of one face to 512 px (a model that large: encode alone).
        img, side = self._forward(m, z[:1], c[:1])[0], max(512, m.resolution)
        png_bytes(img, side)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            png_bytes(img, side)
            ts.append(time.perf_counter() - t0)
        self.per_pixel = max(1e-10, sorted(ts)[len(ts) // 2] / side**2)

    @staticmethod
    def _forward(m: Model, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """z float (n, D), c float (n, K) -> uint8 (n, 3, R, R) on the CPU, in one pass."""
        return generate(m.generator, z, c, batch_size=max(1, z.shape[0]))

    # ---- queue ----
    def submit(self, z: torch.Tensor, c: torch.Tensor,
               finish: Callable[[torch.Tensor], object] | None = None, pixels: int = 0) -> Future:
        """Queue z float (n, D) and c float (n, K) (K = 0 without labels); the future's
        result is uint8 (n, 3, R, R), or with ``finish`` what ``finish`` returns for those
        images (run in the encode threads), ``pixels`` > 0 the output pixels it makes."""
        if (finish is None) != (pixels <= 0):
            raise ValueError("a finish comes with its pixels (> 0), and pixels with a finish")
        job = Job(z, c, finish, max(0, int(pixels)))
        with self._cond:
            queued = sum(j.rows for j in self._queue)
            if queued + job.rows > self.max_queue_rows:
                raise Overloaded(f"server busy: {queued} images are queued; try again shortly",
                                 whole_seconds(self.estimate(0)))
            wait = self.estimate(job.rows, job.pixels)
            if wait > self.max_wait:
                # By then the work ahead has shrunk enough for this job to fit.
                retry = whole_seconds(wait - self.max_wait)
                sized = ", counting the resizing of large images" if job.pixels else ""
                raise Overloaded(f"server busy: this request would wait about {wait:.1f} s"
                                 f"{sized} (limit {self.max_wait:g} s); try again in {retry} s",
                                 retry)
            self._queue.append(job)
            self._pending_pixels += job.pixels
            self._cond.notify()
        self._ensure_worker()
        return job.future

    def admit_task(self) -> None:
        """Raise :class:`Overloaded` when a task submitted now would wait longer than
        ``max_wait`` s for the tasks ahead of it (:meth:`task_backlog`) before it starts. Its
        own length is not held against it: a projection's is what its user asked for (the
        page says how long one takes), and it does not hold up image requests, which run
        between its steps."""
        with self._cond:
            wait = self.task_backlog()
            if wait > self.max_wait:
                retry = whole_seconds(wait - self.max_wait)
                ahead = len(self._tasks)
                raise Overloaded(f"server busy: the {ahead} photo{'s' if ahead != 1 else ''} ahead would "
                                 f"take about {wait:.1f} s (limit {self.max_wait:g} s); try again in "
                                 f"{retry} s", retry)

    def submit_task(self, task: Task, *, admit: bool = True) -> Task:
        """Queue ``task`` (first in, first out) and return it; its future gets its result.
        With ``admit``, refused as :meth:`admit_task` says (without: preparing the projector,
        which runs once whatever the queue)."""
        with self._cond:
            if admit:
                self.admit_task()
            self._tasks.append(task)
            self._cond.notify()
        self._ensure_worker()
        return task

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
            tasks, self._tasks = self._tasks, []
            self._cond.notify_all()
        for job in pending:
            self._fail(job, Overloaded("server stopping"))
        for task in tasks:
            if not task.started:  # the one running is answered by the worker, after its unit
                self._end_task(task, error=Overloaded("server stopping"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._cond:
            encoder, self._encoder = self._encoder, None
        if encoder is not None:
            encoder.shutdown(wait=False)  # encodes already queued still answer their requests

    def _take(self) -> list[Job] | None:
        """Block for the first job (or task), then take every waiting job that fits in one
        batch; [] when only a task waits, None when stopping."""
        with self._cond:
            while not self._queue and not self._tasks and not self._stop:
                self._cond.wait(timeout=1.0)
            if self._stop:
                return None
            if not self._queue:
                return []  # a task alone
            jobs = [self._queue.pop(0)]
            rows = jobs[0].rows
            while self._queue and rows + self._queue[0].rows <= self.max_batch:
                rows += self._queue[0].rows
                jobs.append(self._queue.pop(0))
            self._busy_until = time.monotonic() + self.batch_time(rows)
            self._unit_running = False
            return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            if jobs:
                self._run_jobs(jobs)
            self._run_slice()
            with self._cond:
                self._busy_until = 0.0

    def _run_jobs(self, jobs: list[Job]) -> None:
        now = time.monotonic()
        live = []
        for job in jobs:
            # A job can outstay its estimate when the machine is busier than measured:
            # answer "busy" rather than a reply the client has probably given up on.
            if now - job.queued_at > 2 * self.max_wait:
                self._fail(job, Overloaded("server busy: the request waited too long",
                                           whole_seconds(self.max_wait)))
            elif job.future.set_running_or_notify_cancel():
                live.append(job)
            else:  # its client went away
                self._release(job)
        if live:
            self._run_batch(live)

    def _run_slice(self) -> None:
        """Run units of the first task: one when images wait, else for up to TASK_SLICE_S."""
        with self._cond:
            task = self._tasks[0] if self._tasks else None
        if task is None:
            return
        if not task.started:
            if not task.future.set_running_or_notify_cancel():  # its client went away
                self._end_task(task)
                return
            task.started = True
        end = time.monotonic() + TASK_SLICE_S
        while True:
            if task._cancel.is_set() or self._stop:
                task.work.close()
                self._end_task(task, error=Overloaded("server stopping" if self._stop else
                                                      "the request was given up"))
                return
            with self._cond:
                self._busy_until = time.monotonic() + task.unit(self.unit_cost)
                self._unit_running = True
            t0 = time.perf_counter()
            try:
                kind = next(task.work)
            except StopIteration as stop:
                self._end_task(task, result=stop.value)
                return
            except Exception as e:  # a bug or a bad photo must reach the request, not kill the worker
                self._end_task(task, error=e)
                return
            took = time.perf_counter() - t0
            with self._cond:
                task.done[kind] = task.done.get(kind, 0) + 1
                self._measure_unit(kind, took)
                images_wait = bool(self._queue)
            if images_wait or time.monotonic() >= end:
                return

    def _measure_unit(self, kind: str, took: float) -> None:
        """Correct the cost of a unit of ``kind`` by one that took ``took`` s (holding _cond):
        the first measured replaces the guess, later ones move it a fifth of the way, as
        batches correct the generation costs."""
        if kind not in self._measured:
            self.unit_cost[kind] = took
            self._measured.add(kind)
        else:
            self.unit_cost[kind] = 0.8 * self.unit_cost.get(kind, took) + 0.2 * took

    def _end_task(self, task: Task, result: object = None, error: BaseException | None = None) -> None:
        with self._cond:
            if task in self._tasks:
                self._tasks.remove(task)
        if task.future.done():
            return
        if not task.started and not task.future.set_running_or_notify_cancel():
            return
        if error is not None:
            task.future.set_exception(error)
        else:
            task.future.set_result(result)

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
                self._release(j)
                j.future.set_exception(e)
            return
        i = 0
        for j in jobs:
            rows, i = imgs[i:i + j.rows], i + j.rows
            if j.finish is None:
                j.future.set_result(rows)
                continue
            with self._cond:
                if self._encoder is None:
                    self._encoder = ThreadPoolExecutor(self.encode_threads,
                                                       thread_name_prefix="facegan-encode")
                encoder = self._encoder
            try:
                encoder.submit(self._encode, j, rows)
            except RuntimeError:  # stopping: the encoder takes no more work
                self._encode(j, rows)

    def _encode(self, job: Job, imgs: torch.Tensor) -> None:
        """Run ``job.finish`` on its images uint8 (n, 3, R, R) (an encode thread) and answer."""
        t0 = time.perf_counter()
        try:
            result = job.finish(imgs)
        except Exception as e:
            self._release(job)
            job.future.set_exception(e)
            return
        took = time.perf_counter() - t0
        with self._cond:
            if job.pixels >= MEASURE_PIXELS:  # as batches correct the generation costs
                ratio = min(10.0, max(0.1, took / max(self.per_pixel * job.pixels, 1e-6)))
                self.per_pixel *= 0.8 + 0.2 * ratio
        self._release(job)
        job.future.set_result(result)

    def _release(self, job: Job) -> None:
        """The job's pixels are no longer ahead of anyone (called once per job, at its end)."""
        with self._cond:
            self._pending_pixels -= job.pixels

    def _fail(self, job: Job, error: Exception) -> None:
        self._release(job)
        # A request whose client gave up has cancelled its future; it needs no answer.
        if job.future.set_running_or_notify_cancel():
            job.future.set_exception(error)
