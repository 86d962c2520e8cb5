"""Resumable batch order: a seeded permutation per epoch, its state saved in checkpoints."""

from __future__ import annotations

import torch


class BatchSampler:
    """Draws index batches from ``n`` items, one fresh permutation per epoch (last partial batch
    dropped), plus per-sample horizontal-flip flags. Its whole state is a few tensors, so a
    resumed run continues the exact same data order.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, hflip: bool = True):
        if n < batch_size:
            raise ValueError("fewer items than one batch")
        self.n, self.batch_size, self.hflip = n, batch_size, hflip
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.gen)
        self.pos = 0
        self.epoch = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (indices int64 (B,), flip bool (B,))."""
        if self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.gen)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        if self.hflip:
            flip = torch.rand(self.batch_size, generator=self.gen) < 0.5
        else:
            flip = torch.zeros(self.batch_size, dtype=torch.bool)
        return idx, flip

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": self.perm.clone(), "pos": self.pos,
                "epoch": self.epoch, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n"]) != self.n:
            raise ValueError(f"the data has {self.n} images but the checkpoint's order was for {state['n']}")
        self.gen.set_state(state["gen"])
        self.perm = state["perm"].clone()
        self.pos = int(state["pos"])
        self.epoch = int(state["epoch"])
