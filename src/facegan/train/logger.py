"""What a run writes while it trains: metrics.jsonl, loss.png, train.log, TensorBoard scalars.

A failed write (a full disk) raises :class:`~facegan.files.WriteFailed`, one line naming the
file and the free space.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..files import append_jsonl, atomic_write, atomic_write_text, read_jsonl, reporting_write_errors


class RunLogger:
    """Writes a run's logs; ``enabled=False`` (ranks other than 0 of a multi-process run): every
    method does nothing, so only one process writes the run folder."""

    def __init__(self, run_dir: Path, tensorboard: bool = False, enabled: bool = True):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.log_path = self.run_dir / "train.log"
        self.tb = None
        if tensorboard and enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("TensorBoard logging needs the tensorboard package; "
                                "pip install 'facegan[tensorboard]' or drop train.tensorboard") from None
            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def event(self, message: str) -> None:
        """One timestamped line in train.log (the human-readable history of the run)."""
        if not self.enabled:
            return None
        with reporting_write_errors(self.log_path):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def metrics(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return None
        with reporting_write_errors(self.metrics_path):
            append_jsonl(self.metrics_path, record)
        if self.tb is not None:
            step = int(record.get("step", 0))
            prefix = "eval" if record.get("kind") == "eval" else "train"
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def image(self, tag: str, grid_chw_uint8, step: int) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, grid_chw_uint8, step)

    def truncate_after(self, step: int) -> None:
        """On resume, drop records logged after the checkpoint's step: they will be logged again
        (in metrics.jsonl, and in TensorBoard, whose events after ``step`` are purged)."""
        if not self.enabled:
            return None
        if self.tb is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb.close()
            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=step + 1)
        if not self.metrics_path.exists():
            return
        keep = [r for r in read_jsonl(self.metrics_path) if int(r.get("step", 0)) <= step]
        import json

        with reporting_write_errors(self.metrics_path):
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))

    def plot(self) -> Path | None:
        """Redraw loss.png from metrics.jsonl: losses, Wasserstein estimate and penalty, quality."""
        if not self.enabled:
            return None
        records = read_jsonl(self.metrics_path)
        train = [r for r in records if r.get("kind", "train") == "train"]
        evals = [r for r in records if r.get("kind") == "eval" and ("fid" in r or "kid_mean" in r)]
        if not train:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = 3 if evals else 2
        fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6))
        steps = [r["step"] for r in train]
        ax = axes[0]
        for key, label in (("d_loss", "critic / D loss"), ("g_loss", "G loss")):
            ax.plot(steps, [r.get(key) for r in train], label=label, lw=1)
        ax.set_xlabel("generator step")
        ax.set_title("losses")
        ax.legend(fontsize=8)
        ax = axes[1]
        if any("wasserstein" in r for r in train):
            ax.plot(steps, [r.get("wasserstein") for r in train], label="E[D(real)] - E[D(fake)]", lw=1)
        for key, label in (("gp", "gradient penalty"), ("r1", "R1 penalty"), ("r2", "R2 penalty")):
            if any(r.get(key) for r in train):
                ax.plot(steps, [r.get(key) for r in train], label=label, lw=1)
        ax.set_xlabel("generator step")
        ax.set_title("critic gap / penalty")
        ax.legend(fontsize=8)
        if evals:
            ax = axes[2]
            # One line per sample count: FID at another count is another quantity (its bias
            # falls with n), so points of different counts are never joined.
            ax2 = ax.twinx() if any("kid_mean" in r for r in evals) else None
            for i, (n, rs) in enumerate(eval_series(evals)):
                es, at = [r["step"] for r in rs], f" (n={n})" if n is not None else ""
                if any("fid" in r for r in rs):
                    ax.plot(es, [r.get("fid", float("nan")) for r in rs], "o-", color=f"C{2 * i}",
                            label=f"FID{at}")
                if ax2 is not None and any("kid_mean" in r for r in rs):
                    ax2.plot(es, [1000 * r.get("kid_mean", float("nan")) for r in rs], "s--",
                             color=f"C{2 * i + 1}", label=f"KID x 1e3{at}")
            ax.set_ylabel("FID")
            lines = ax.get_legend_handles_labels()
            if ax2 is not None:
                ax2.set_ylabel("KID x 1e3")
                more = ax2.get_legend_handles_labels()
                lines = (lines[0] + more[0], lines[1] + more[1])
            ax.legend(*lines, fontsize=8)
            ax.set_xlabel("generator step")
            ax.set_title("quality (lower is better)")
        fig.tight_layout()
        path = self.run_dir / "loss.png"
        try:
            with reporting_write_errors(path):
                atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
        finally:
            plt.close(fig)
        return path

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


def eval_series(evals: list[dict[str, Any]]) -> list[tuple[Any, list[dict[str, Any]]]]:
    """Evaluation records grouped by their sample count (``n``, or ``eval_n`` in records of
    older runs; None when neither), in the order of the counts; each group in log order."""
    by_n: dict[Any, list[dict[str, Any]]] = {}
    for r in evals:
        by_n.setdefault(r.get("n", r.get("eval_n")), []).append(r)
    return sorted(by_n.items(), key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None else 0))
