"""Load test of `facegan serve` on loopback: many clients asking for faces at once.

Starts the real command (`python -m facegan serve RUN --port 0`) in a subprocess, then:

1. single-image latency: one client, one 64x64 face per request (a new seed each), the median
   and fastest of ``--single`` sequential requests after a warm-up (full HTTP round trip:
   request, batcher, generator, PNG);
2. load: ``--clients`` concurrent clients (20 by default), each on its own connection, asking
   for a face after face (random seeds) for ``--seconds`` (20 by default); prints requests/s,
   p50 / p95 / p99 latency, errors (anything but 200 and 503), refusals (503, "busy"), the
   server's generator calls (so the mean batch the batcher merged), and the server's resident
   memory (RSS) before, at a quarter, half and three quarters of the load, after, and at its
   highest, to show whether it stays flat.

    python benchmarks/bench_serve.py                       # a fresh sngan-celeba64 64 px model
    python benchmarks/bench_serve.py RUN --clients 20 --seconds 20
    python benchmarks/bench_serve.py RUN --clients 50 --seconds 60 --single 50

Without RUN, an untrained sngan-celeba64 generator (64 px, the DCGAN widths) is written to a
temporary run: the cost of a forward pass does not depend on the weights. The clients run in
this process (asyncio + httpx) on the same machine, so they share its CPU with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from facegan.runtime import cpu_name


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux /proc; NaN elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def fresh_run(folder: Path) -> Path:
    """An untrained sngan-celeba64 checkpoint in ``folder`` (a run folder of its own)."""
    from facegan.checkpoint import save_checkpoint
    from facegan.config import get_preset
    from facegan.models import NetSpec, build_networks

    cfg = get_preset("sngan-celeba64")
    g, _ = build_networks(cfg.model, NetSpec(cfg.data.resolution, 3, 0))
    run = folder / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(cfg.to_json())
    save_checkpoint(run / "checkpoints" / "latest.pt",
                    {"config": cfg, "G": g.state_dict(), "G_ema": g.state_dict(), "step": 0,
                     "labels": None, "label_dim": 0})
    return run


def generator_alone(run: str, device: str, batches=(1, 8, 32), repeats: int = 5):
    """[(batch, median seconds of one forward pass)]: the floor under the HTTP figures."""
    import torch

    from facegan.sampling import latents, load_generator

    lg = load_generator(run, device=device)
    g = lg.generator
    out = []
    with torch.inference_mode():
        for b in batches:
            z = latents(b, g.latent_dim, 0, device)
            c = lg.labels.draw(b).to(z.device)  # (b, K), K = 0 without labels
            g(z, c)  # the first call of a network is slower: not counted
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                g(z, c)
                ts.append(time.perf_counter() - t0)
            out.append((b, statistics.median(ts)))
    del g, lg
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


async def client(url: str, until: float, lat: list[float], codes: dict, errors: list[str]) -> None:
    async with httpx.AsyncClient(timeout=60) as c:  # one connection per client
        rng = random.Random()
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            try:
                r = await c.get(f"{url}api/image.png", params={"seed": rng.randrange(2**31)})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t0)
                elif r.status_code != 503:
                    errors.append(f"{r.status_code}: {r.text[:100]}")
                else:
                    await asyncio.sleep(0.05)  # a refused client backs off a little
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")


async def load(url: str, clients: int, seconds: float):
    lat, codes, errors = [], {}, []
    until = time.perf_counter() + seconds
    t0 = time.perf_counter()
    await asyncio.gather(*(client(url, until, lat, codes, errors) for _ in range(clients)))
    return lat, codes, errors, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="run folder or checkpoint (default: a fresh "
                    "sngan-celeba64 64 px generator)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--single", type=int, default=30, help="sequential requests for the "
                    "single-image latency")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-wait", type=float, default=3.0, help="the server's --max-wait")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or str(fresh_run(Path(tmp)))
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[1] / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.Popen([sys.executable, "-m", "facegan", "serve", run, "--port", "0",
                                 "--device", args.device, "--max-wait", str(args.max_wait)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            line = proc.stdout.readline()
            if not line.startswith("facegan serve: http"):
                sys.exit(f"the server did not start: {line}{proc.stderr.read()}")
            url = line.split()[2]
            info = httpx.get(url + "api/info", timeout=30).json()
            print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs); model: {info['preset']}, "
                  f"{info['resolution']}px, latent {info['latent_dim']}, step {info['step']}, "
                  f"device {info['device']}")

            # 1. one image at a time
            with httpx.Client(timeout=60) as c:
                for s in range(3):
                    c.get(url + "api/image.png", params={"seed": s})
                times = []
                for s in range(args.single):
                    t0 = time.perf_counter()
                    r = c.get(url + "api/image.png", params={"seed": 1000 + s})
                    times.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
            print(f"single {info['resolution']}x{info['resolution']} image, HTTP round trip: median "
                  f"{1000 * statistics.median(times):.1f} ms, fastest {1000 * min(times):.1f} ms "
                  f"({args.single} requests)")
            gen = generator_alone(run, args.device)
            print("the generator alone, in this process: " + ", ".join(
                f"batch {b}: {1000 * t:.1f} ms ({1000 * t / b:.1f} ms per image)" for b, t in gen))

            # 2. load
            rss = [rss_mb(proc.pid)]
            timeline = []  # (seconds into the load, RSS MiB)
            done = threading.Event()
            t_load = time.perf_counter()

            def watch():
                while not done.wait(0.5):
                    timeline.append((time.perf_counter() - t_load, rss_mb(proc.pid)))

            threading.Thread(target=watch, daemon=True).start()
            before = httpx.get(url + "api/info", timeout=30).json()["stats"]
            lat, codes, errors, took = asyncio.run(load(url, args.clients, args.seconds))
            done.set()
            rss.append(rss_mb(proc.pid))
            after = httpx.get(url + "api/info", timeout=30).json()["stats"]
            calls = after["forward_calls"] - before["forward_calls"]
            images = after["images"] - before["images"]
            ok = codes.get(200, 0)
            print(f"load: {args.clients} clients for {args.seconds:g} s: {ok / took:.1f} requests/s "
                  f"({ok} faces), latency p50 {1000 * pct(lat, 50):.0f} ms, p95 "
                  f"{1000 * pct(lat, 95):.0f} ms, p99 {1000 * pct(lat, 99):.0f} ms; errors "
                  f"{len(errors)}, refused (503) {codes.get(503, 0)}")
            print(f"batching: {images} images in {calls} generator calls (mean batch "
                  f"{images / max(calls, 1):.1f})")
            peak = max([rss[0], rss[1], *(m for _, m in timeline)])
            marks = [min(timeline, key=lambda tm: abs(tm[0] - f * took)) for f in (0.25, 0.5, 0.75)
                     if timeline]
            print(f"server memory (RSS): {rss[0]:.0f} MiB before, "
                  + "".join(f"{m:.0f} at {t:.0f} s, " for t, m in marks)
                  + f"{rss[1]:.0f} MiB after, {peak:.0f} MiB at most")
            if errors:
                print("first errors: " + "; ".join(errors[:3]))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
