"""Resumable batch order: a seeded permutation per epoch, its state saved in checkpoints."""

from __future__ import annotations

import torch


def flip_flags(n: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """Per-sample horizontal-flip flags, bool (n,): fair coins from ``gen``, or all False."""
    if hflip:
        return torch.rand(n, generator=gen) < 0.5
    return torch.zeros(n, dtype=torch.bool)


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
        return idx, flip_flags(self.batch_size, self.hflip, self.gen)

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


class ClassBalancedSampler:
    """Class-balanced real batches for class labels: every class is drawn equally often.

    The batch's classes come from a stream of shuffled rounds (each round holds every class
    once), so over any B * K / gcd draws each class appears the same number of times; within
    a class, its images come from their own reshuffled permutation. A small class therefore
    repeats its images more often (a class of 10 images among classes of 1,000 shows each of
    its images ~100x as often): that is the price of balance, and augmentation (hflip,
    ``train.augment``) is what keeps the critic from memorising those few images.
    Same interface and resumable state as :class:`BatchSampler`.

    y: int64 (N,) class index of every image, every class in 0..K-1 present.
    """

    def __init__(self, y: torch.Tensor, batch_size: int, seed: int = 0, hflip: bool = True):
        y = y.long().cpu()
        self.n, self.batch_size, self.hflip = int(y.shape[0]), batch_size, hflip
        self.k = int(y.max()) + 1
        self.members = [torch.nonzero(y == j).flatten() for j in range(self.k)]
        if any(len(m) == 0 for m in self.members):
            raise ValueError("every class needs at least one image")
        self.gen = torch.Generator().manual_seed(seed)
        self.rounds = torch.randperm(self.k, generator=self.gen)
        self.round_pos = 0
        self.perms = [torch.randperm(len(m), generator=self.gen) for m in self.members]
        self.pos = [0] * self.k
        self.epoch = 0  # full class rounds consumed

    def _next_class(self) -> int:
        if self.round_pos == self.k:
            self.rounds = torch.randperm(self.k, generator=self.gen)
            self.round_pos = 0
            self.epoch += 1
        j = int(self.rounds[self.round_pos])
        self.round_pos += 1
        return j

    def _next_of(self, j: int) -> int:
        if self.pos[j] == len(self.members[j]):
            self.perms[j] = torch.randperm(len(self.members[j]), generator=self.gen)
            self.pos[j] = 0
        i = int(self.members[j][self.perms[j][self.pos[j]]])
        self.pos[j] += 1
        return i

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (indices int64 (B,), flip bool (B,))."""
        idx = torch.tensor([self._next_of(self._next_class()) for _ in range(self.batch_size)],
                           dtype=torch.long)
        return idx, flip_flags(self.batch_size, self.hflip, self.gen)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "rounds": self.rounds.clone(), "round_pos": self.round_pos,
                "perms": [p.clone() for p in self.perms], "pos": list(self.pos), "epoch": self.epoch,
                "n": self.n, "balanced": True}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n"]) != self.n or not state.get("balanced") or len(state["perms"]) != self.k:
            raise ValueError("the checkpoint's batch order is not a class-balanced one for this "
                             "data (train.class_balance cannot change on resume)")
        self.gen.set_state(state["gen"])
        self.rounds = state["rounds"].clone()
        self.round_pos = int(state["round_pos"])
        self.perms = [p.clone() for p in state["perms"]]
        self.pos = [int(p) for p in state["pos"]]
        self.epoch = int(state["epoch"])


class LabelDraw:
    """The generator's labels: indices of random data images (uniform, with replacement), so
    sampled labels follow the data's label distribution. Seeded; its state goes in checkpoints.
    """

    def __init__(self, n: int, seed: int = 0):
        self.n = n
        self.gen = torch.Generator().manual_seed(seed)

    def next(self, count: int) -> torch.Tensor:
        """int64 (count,) indices in [0, n)."""
        return torch.randint(self.n, (count,), generator=self.gen)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        if int(state["n"]) != self.n:
            raise ValueError(f"the data has {self.n} images but the checkpoint's label draws were for {state['n']}")
        self.gen.set_state(state["gen"])
