"""Small folders: from scratch, with DiffAugment, and fine-tuned from a bigger run, side by side.

Trains one preset on a small folder (``--data CATS_DIR``, e.g. 1,000 cat faces) four ways at
once, each process on an equal share of the CPU (``--threads`` each) for the same training
minutes, and evaluates each with ``bench_quality.py``'s protocol (FID/KID of the EMA generator
against all the folder's images) at the ``--curve`` minutes and at the end:

* ``scratch``: no augmentation;
* ``diffaugment``: DiffAugment ``color,translation,cutout`` on every critic input;
* ``finetune``: ``--init-from SOURCE_RUN`` (a run of the same preset on a big set), no
  augmentation;
* ``finetune-freezed``: the same with DiffAugment and the first ``--freeze-d`` critic stages
  kept fixed (FreezeD).

Overfitting shows as the critic's real/fake gap (the logged ``wasserstein`` estimate, the mean
of D(real) - D(fake)) widening while FID stops falling or rises; the table prints the mean gap
over each fifth of each run (the first fifth holds the start's transient). ``--report`` prints
the table again from the folders of an earlier call without training.

    python benchmarks/small_folder.py --data CATS_DIR --source RUN --preset wgangp-ln-celeba64 --minutes 20 --curve 5,10 --out OUT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
AUGMENT = "color,translation,cutout"


def variants(source: str, freeze_d: int) -> dict[str, list[str]]:
    return {
        "scratch": ["train.augment="],
        "diffaugment": [f"train.augment={AUGMENT}"],
        "finetune": ["train.augment=", f"train.init_from={source}"],
        "finetune-freezed": [f"train.augment={AUGMENT}", f"train.init_from={source}",
                             f"train.freeze_d={freeze_d}"],
    }


def critic_gaps(run: Path, parts: int = 5) -> list[float]:
    """Mean logged real/fake gap over each of ``parts`` equal shares of the training records."""
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    gaps = [r["wasserstein"] for r in recs if r.get("kind") == "train" and "wasserstein" in r]
    cuts = [round(i * len(gaps) / parts) for i in range(parts + 1)]
    return [sum(gaps[a:b]) / max(1, b - a) for a, b in zip(cuts, cuts[1:])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the small folder")
    ap.add_argument("--source", required=True, help="run folder of the same preset on a big set")
    ap.add_argument("--preset", default="wgangp-ln-celeba64")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--curve", default="5,10", help="also evaluate at these training minutes ('' for none)")
    ap.add_argument("--n", type=int, default=1000, help="generated images per evaluation")
    ap.add_argument("--freeze-d", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="threads per run")
    ap.add_argument("--only", default="", help="comma list of variants to run (default all)")
    ap.add_argument("--report", action="store_true", help="only print the table of an earlier call's --out")
    ap.add_argument("--out", required=True)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = variants(str(Path(args.source).resolve()), args.freeze_d)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    procs = {}
    for name, extra in ({} if args.report else chosen).items():
        cmd = [sys.executable, str(HERE / "bench_quality.py"), "--data", args.data, "--preset", args.preset,
               "--minutes", str(args.minutes), "--curve", args.curve, "--curve-n", str(args.n), "--n", str(args.n),
               "--out", str(out / name), "train.keep_every=1000", *extra, *args.overrides]
        log = open(out / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    failed = []
    for name, (p, log) in procs.items():
        if p.wait() != 0:
            failed.append(name)
        log.close()
    rows = {}
    for name in chosen:
        q = out / name / "quality.json"
        if not q.exists():
            continue
        points = json.loads(q.read_text())["points"]
        rows[name] = {"points": points, "gaps": [round(g, 3) for g in critic_gaps(out / name / "run")]}
    marks = sorted({p["minutes"] for r in rows.values() for p in r["points"]})
    print("| run | " + " | ".join(f"FID {m:g} min" for m in marks) + " | steps | critic gap by fifth of the run |")
    print("|---|" + "---|" * (len(marks) + 2))
    for name, r in rows.items():
        fids = {p["minutes"]: p["fid"] for p in r["points"]}
        steps = r["points"][-1]["step"] if r["points"] else 0
        print(f"| {name} | " + " | ".join(f"{fids[m]:.1f}" if m in fids else "" for m in marks)
              + f" | {steps} | {' '.join(f'{g:.2f}' for g in r['gaps'])} |")
    (out / "small_folder.json").write_text(json.dumps(rows, indent=2) + "\n")
    if failed:
        print(f"small_folder: failed: {', '.join(failed)} (see their logs in {out})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
