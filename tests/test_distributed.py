"""Many processes: shares of the global batch, gradient all-reduce, synchronised batch norm, and
whole 2-process gloo runs through torchrun (tiny widths, 16 px)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facegan
from facegan.augment import DiffAugment
from facegan.checkpoint import load_checkpoint
from facegan.losses import bce_targets
from facegan.train.distributed import DistEnv

TINY = ["data.resolution=16", "model.latent_dim=8", "model.g_width=4", "model.d_width=4",
        "train.n_samples=4", "train.log_every=1", "train.sample_every=2", "train.checkpoint_every=2",
        "train.precision=fp32", "train.ema_decay=0.9"]


# facegan's own source folder, as tracebacks name it. Matching just "facegan/" would also
# match torchrun's frames whenever the clone (and a virtual environment inside it) sits in a
# folder named facegan, git's default.
_SOURCES = {str(Path(facegan.__file__).parent), str(Path(facegan.__file__).resolve().parent)}


def facegan_frames(stderr: str) -> list[str]:
    """The traceback lines of ``stderr`` that point into facegan's own source files."""
    return [line for line in stderr.splitlines() if line.strip().startswith('File "')
            and any(line.split('"')[1].startswith(src + os.sep) for src in _SOURCES)]


def test_facegan_frames_tell_facegan_from_a_folder_of_the_same_name():
    src = next(iter(_SOURCES))
    ours = f'  File "{src}{os.sep}train{os.sep}start.py", line 5, in start_run'
    theirs = (f'  File "{os.sep}home{os.sep}me{os.sep}facegan{os.sep}.venv{os.sep}lib{os.sep}torch'
              f'{os.sep}distributed{os.sep}run.py", line 9, in main')
    assert facegan_frames(f"Traceback:\n{theirs}\n{ours}\n") == [ours]
    assert facegan_frames(theirs) == []


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dist") / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(96):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def run_facegan(nproc: int, *args, env=None, **kw) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N -m facegan ...`` (N = 1: plain ``python -m``)."""
    cmd = [sys.executable, "-m", "facegan", *map(str, args)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "facegan", *map(str, args)]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env or _env(), timeout=300, **kw)


def run_worker(tmp_path: Path, source: str, *args) -> subprocess.CompletedProcess:
    """Write ``source`` (a worker script, dedented) under ``tmp_path`` and run it on 2 processes
    through torchrun with ``args``."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(script), *map(str, args)], check=False, capture_output=True, text=True,
                          env=_env(), timeout=300)


def params(run: Path) -> dict[str, torch.Tensor]:
    ck = load_checkpoint(run / "checkpoints" / "latest.pt")
    out = {f"G.{k}": v for k, v in ck["G"].items()}
    out.update({f"D.{k}": v for k, v in ck["D"].items()})
    out.update({f"G_ema.{k}": v for k, v in ck["G_ema"].items()})
    return out


def assert_same_params(a: Path, b: Path, atol=2e-5, rtol=1e-4):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    moved = 0
    for k in pa:
        if pa[k].is_floating_point():
            torch.testing.assert_close(pa[k], pb[k], atol=atol, rtol=rtol, msg=lambda m, k=k: f"{k}: {m}")
            moved += 1
        else:
            assert torch.equal(pa[k], pb[k]), k
    assert moved > 10


# ---- shares of one global draw: independent of the number of processes ------------------------

def test_share_splits_the_global_batch_in_rank_order():
    t = torch.arange(12)
    parts = [DistEnv(rank=r, world_size=3).share(t) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert DistEnv().share(t) is t and DistEnv(world_size=3).local_size(12) == 4


def test_augmentation_shares_equal_the_single_process_draw():
    x = torch.randn(8, 3, 16, 16)
    whole = DiffAugment("color,translation,cutout", seed=5)(x)
    halves = [DiffAugment("color,translation,cutout", seed=5, share=(r, 2))(x[4 * r:4 * r + 4]) for r in range(2)]
    torch.testing.assert_close(torch.cat(halves), whole)
    # ... and the two ranks do get different augmentations for the same images.
    assert not torch.allclose(halves[0], DiffAugment("color,translation,cutout", seed=5, share=(1, 2))(x[:4]))


def test_bce_label_tricks_share_the_global_draw():
    g = [torch.Generator().manual_seed(1) for _ in range(3)]
    whole = bce_targets(8, real=True, smoothing=0.1, noise=0.3, flip=0.4, generator=g[0])
    halves = [bce_targets(4, real=True, smoothing=0.1, noise=0.3, flip=0.4, generator=g[1 + r], share=(r, 2))
              for r in range(2)]
    torch.testing.assert_close(torch.cat(halves), whole)


# ---- whole runs through torchrun --------------------------------------------------------------

@pytest.mark.parametrize("preset,extra", [
    # No batch norm: residual spectral-norm nets, hinge + R1, DiffAugment (its draws are shared).
    ("sngan-celeba64", ["train.augment=color,rotation,translation,cutout", "loss.reg_every=1"]),
    # Batch norm in G and D (SyncBatchNorm), BCE with random label smoothing/noise/flips; the
    # EMA generator's standing statistics, each rank running its share of every batch.
    ("dcgan-celeba64", ["train.standing_stats=128"]),
    # WGAN-GP: the penalty's double backward, batch-norm generator, layer-norm critic, and the
    # minibatch standard deviation (each rank's groups are the one process's: 32 a rank, groups of 4).
    ("wgangp-celeba64", ["model.d_norm=layer", "train.n_critic=2", "model.d_mbstd=4"]),
    # R3GAN: normalisation-free nets, relativistic pairing (real batches in the G step), R1 + R2.
    ("r3gan-celeba64", ["loss.reg_every=1", "train.anneal_kimg=0.1"]),
    # Simultaneous updates: one backward for both nets, each rank's gradients averaged for each.
    ("wgangp-ln-wide-b32-celeba64", ["train.simultaneous=true", "loss.reg_every=2"]),
    # Progressive growing: step 1 at 8 px, step 2 fades 16 px in, step 3 at 16 px.
    ("wgangp-ln-celeba64", ["model.grow_from=8", "train.grow_kimg=0.064", "train.fade_kimg=0.064"]),
])
def test_two_processes_match_one_with_the_same_global_batch(images, tmp_path, preset, extra):
    args = ["train", "--data", images, "--preset", preset, "--steps", 3, "--no-progress", "--batch-size", 64,
            *TINY, *extra]
    one = run_facegan(1, *args, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = run_facegan(2, *args, "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    assert_same_params(tmp_path / "one", tmp_path / "two")
    # Rank 0 alone writes: each step logged once, one start and one end line, one message.
    steps = [r["step"] for r in map(json.loads, (tmp_path / "two" / "metrics.jsonl").read_text().splitlines())]
    assert steps == [1, 2, 3]
    log = (tmp_path / "two" / "train.log").read_text()
    assert log.count("start: preset") == 1 and log.count(": done") == 1
    assert two.stdout.count("trained to step 3") == 1 and two.stderr.count(f"training {preset}") == 1
    assert sorted(p.name for p in (tmp_path / "two" / "samples").iterdir()) == ["step_000002.png", "step_000003.png"]
    assert load_checkpoint(tmp_path / "two" / "checkpoints" / "latest.pt")["world_size"] == 2
    # The figures logged are the global batch's (the mean over ranks), as one process logs them.
    rec1 = json.loads((tmp_path / "one" / "metrics.jsonl").read_text().splitlines()[-1])
    rec2 = json.loads(steps and (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec1["d_loss"] == pytest.approx(rec2["d_loss"], rel=1e-3, abs=1e-4)


def test_without_sync_bn_the_ranks_normalise_alone(images, tmp_path):
    """train.sync_bn=false is a real switch: the result then differs from one process."""
    args = ["train", "--data", images, "--preset", "dcgan-celeba64", "--steps", 2, "--no-progress",
            "--batch-size", 32, *TINY, "loss.label_noise=0", "loss.label_flip=0"]
    assert run_facegan(1, *args, "--out", tmp_path / "one").returncode == 0
    r = run_facegan(2, *args, "train.sync_bn=false", "--out", tmp_path / "two")
    assert r.returncode == 0, r.stderr
    with pytest.raises(AssertionError):
        assert_same_params(tmp_path / "one", tmp_path / "two")


def test_resume_on_another_process_count_continues_the_same_run(images, tmp_path):
    args = ["--no-progress", *TINY, "--batch-size", 16, "train.augment=translation"]
    # 4 steps on one process, uninterrupted...
    r = run_facegan(1, "train", "--data", images, "--out", tmp_path / "straight", "--steps", 4, *args)
    assert r.returncode == 0, r.stderr
    # ... against 2 steps on 2 processes, then 2 more on 1 process.
    r = run_facegan(2, "train", "--data", images, "--out", tmp_path / "moved", "--steps", 2, *args)
    assert r.returncode == 0, r.stderr
    r = run_facegan(1, "train", "--resume", tmp_path / "moved", "--steps", 4, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "trained on 2 process(es) and continues on 1" in r.stderr
    assert "continues on 1" in (tmp_path / "moved" / "train.log").read_text()
    assert_same_params(tmp_path / "straight", tmp_path / "moved")


def test_batch_that_does_not_split_is_a_user_error(images, tmp_path):
    r = run_facegan(2, "train", "--data", images, "--out", tmp_path / "r", "--steps", 2, "--no-progress",
                    *TINY, "--batch-size", 7)
    assert r.returncode != 0
    assert r.stderr.count("facegan: error: train.batch_size=7 (the global batch) does not split over 2 "
                          "processes; use a multiple of 2") == 1
    # torchrun reports the failed workers with its own traceback; facegan's code shows none.
    assert facegan_frames(r.stderr) == []
    assert not (tmp_path / "r" / "checkpoints").exists()


def _worker_pids(tag: str) -> dict[int, int]:
    """rank -> pid of the facegan workers started with FACEGAN_TEST_TAG=tag."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = dict(kv.split("=", 1) for kv in (proc / "environ").read_text().split("\0") if "=" in kv)
            cmd = (proc / "cmdline").read_text()
        except (OSError, ValueError):
            continue
        if env.get("FACEGAN_TEST_TAG") == tag and "RANK" in env and "facegan" in cmd and "torch.distributed.run" not in cmd:
            found[int(env["RANK"])] = int(proc.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker processes through /proc")
def test_sigterm_to_one_rank_stops_both_with_one_checkpoint(images, tmp_path):
    tag = uuid.uuid4().hex
    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "facegan",
           "train", "--data", str(images), "--out", str(run), "--steps", "100000", "--no-progress", *TINY,
           "--batch-size", "8", "train.checkpoint_every=100000", "train.sample_every=100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(FACEGAN_TEST_TAG=tag))
    try:
        deadline = time.time() + 120
        metrics = run / "metrics.jsonl"
        while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        pids = _worker_pids(tag)
        assert set(pids) == {0, 1}
        os.kill(pids[1], signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    ck = load_checkpoint(run / "checkpoints" / "latest.pt")
    last = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert ck["step"] == last >= 3  # one checkpoint, at the step both stopped
    log = (run / "train.log").read_text()
    assert log.count("checkpoint written") == 1 and "a stop signal to another process" in log
    assert err.count(f"continue with: facegan train --resume {run}") == 1
    assert facegan_frames(err) == []
    # Both workers ended with the interruption's status, neither was killed.
    assert err.count("exitcode") == 0 or "exitcode  : 130" in err
    # It resumes on one process.
    r = run_facegan(1, "train", "--resume", run, "--steps", ck["step"] + 2, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == ck["step"] + 2


SHUTDOWN_WORKER = """
import weakref, torch, torch.distributed as dist
from facegan.train.distributed import init_from_env, shutdown

env = init_from_env("cpu")
world = weakref.ref(dist.group.WORLD)
# What a run does once joined: the first optimizer imports torch.distributed.nn lazily (through
# torch._dynamo), the ranks agree on flags; then it leaves.
torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
import torch.distributed.nn
env.any_flags(True)
# The training time every rank goes by (time budget, cool-down) is the slowest rank's.
print(f"rank {env.rank}: agreed {env.max_over_ranks(10.0 + env.rank, 0.5)} {env.any_flags(env.rank == 1)}",
      flush=True)
shutdown(env)
shutdown(env)  # twice is harmless (a failed start, then the command's own ending)
print(f"rank {env.rank}: group freed {world() is None}", flush=True)
"""


def test_shutdown_frees_the_process_group(tmp_path):
    """The default group dies at shutdown, not at interpreter exit: a gloo group alive then
    keeps worker threads that abort the process (SIGABRT, 'terminate called without an active
    exception') when one drops a tensor while the interpreter finalizes. Checked directly, so
    it does not depend on the race (benchmarks/stress_distributed.py runs the race)."""
    r = run_worker(tmp_path, SHUTDOWN_WORKER)
    assert r.returncode == 0, r.stderr
    assert "rank 0: group freed True" in r.stdout and "rank 1: group freed True" in r.stdout, r.stdout
    assert "rank 0: agreed [11.0, 0.5] [True]" in r.stdout and "rank 1: agreed [11.0, 0.5] [True]" in r.stdout


SYNC_WORKER = """
import torch
from facegan.train.distributed import init_from_env, shutdown

env = init_from_env("cpu")
net = torch.nn.ModuleDict({"both": torch.nn.Linear(2, 1), "one": torch.nn.Linear(2, 1),
                           "none": torch.nn.Linear(2, 1)})
x = torch.ones(1, 2) * (env.rank + 1)
loss = net["both"](x).sum() + (net["one"](x).sum() if env.rank == 0 else 0)
loss.backward()
env.sync_grads(net)
g = {k: None if m.weight.grad is None else m.weight.grad.tolist() for k, m in net.items()}
print(f"rank {env.rank}: {g}", flush=True)
# A channels_last weight gets its reduced gradient in its own layout (fused Adam on a GPU
# refuses a parameter and gradient of different strides), with the same values as contiguous.
conv = torch.nn.Conv2d(2, 3, 3).to(memory_format=torch.channels_last)
x = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(env.rank)).to(memory_format=torch.channels_last)
conv(x).square().sum().backward()
before = conv.weight.grad.clone()
env.sync_grads(conv)
same_layout = conv.weight.grad.stride() == conv.weight.stride()
print(f"rank {env.rank}: layout kept {same_layout} sum {conv.weight.grad.sum().item():.4f}", flush=True)
shutdown(env)
"""


def test_gradient_sync_keeps_unused_parameters_without_a_gradient(tmp_path):
    """The mean over ranks, a gradient missing on one rank counting as zero there; a parameter
    no rank used keeps None, as in one process, so the optimizer does not count it as stepped."""
    r = run_worker(tmp_path, SYNC_WORKER)
    assert r.returncode == 0, r.stderr
    want = "{'both': [[1.5, 1.5]], 'one': [[0.5, 0.5]], 'none': None}"
    assert f"rank 0: {want}" in r.stdout and f"rank 1: {want}" in r.stdout, r.stdout
    # The ranks' lines may interleave on the shared stdout: found by pattern, not by line.
    kept = dict(re.findall(r"rank (\d): layout kept True sum (-?[\d.]+)", r.stdout))
    assert set(kept) == {"0", "1"} and kept["0"] == kept["1"], r.stdout  # the same mean on both


NAN_WORKER = """
import sys, torch
from facegan.config import apply_overrides, get_preset
from facegan.data import load_dataset
from facegan.train import TrainingDiverged, build_trainer
from facegan.train.distributed import init_from_env, shutdown

cfg = apply_overrides(get_preset("wgangp-celeba64"), [f"data.path={sys.argv[1]}", *sys.argv[3:]])
env = init_from_env("cpu")
trainer = build_trainer(cfg, load_dataset(cfg.data, progress=False), sys.argv[2], progress=False, dist=env)
trainer.save()
if env.rank == 1:  # a NaN on rank 1 alone, from the third step on
    step = trainer.generator_step
    def poisoned():
        out = step()
        if trainer.step >= 2:
            out["g_loss"] = out["g_loss"] * float("nan")
        return out
    trainer.generator_step = poisoned
try:
    trainer.train(8)
except TrainingDiverged as e:
    print(f"rank {env.rank} stopped at step {trainer.step}: {e}", flush=True)
shutdown(env)
"""


def test_nan_on_one_rank_stops_all_and_keeps_the_last_good_checkpoint(images, tmp_path):
    run = tmp_path / "r"
    r = run_worker(tmp_path, NAN_WORKER, images, run, *TINY, "train.batch_size=8", "train.log_every=4")
    assert r.returncode == 0, r.stderr
    # Both ranks stop at the same check (the log window ending at step 4), not only rank 1.
    assert "rank 0 stopped at step 4: training diverged at step 3" in r.stdout
    assert "rank 1 stopped at step 4: training diverged at step 3" in r.stdout
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 2
