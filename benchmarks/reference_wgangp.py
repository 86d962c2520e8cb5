"""A plain WGAN-GP loop written the way common tutorials write it, as the speed reference.

Same networks as facegan's wgangp-celeba64 preset (built here from facegan.models so the
architectures are identical), batch 64, 5 critic steps, lambda 10, Adam 1e-4 (0.5, 0.9), and
the tutorials' habits: a Dataset that opens and decodes each JPEG with PIL on every access
(torchvision transforms), fp32, contiguous memory format, separate critic passes for real and
fake, a generator forward with autograd on inside the critic loop, ``retain_graph=True``,
``zero_grad()`` and the generator step reusing the last critic iteration's fakes.

facegan's networks follow its model contract: ``G(z, c)`` and ``D(x, c) -> (score, aux)``,
with ``c`` an empty (N, 0) label tensor here (unconditional), so the loop passes ``c`` and
keeps the score; nothing else about the tutorial habits changes.

``run_reference(..., time_budget=S)`` stops after S seconds of training instead of after
``gen_steps`` (bench_quality.py); ``crop`` frames the images as facegan's data does
(``facegan.data.crop_box``) before the tutorial's resize, so both see the same faces.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from facegan.data import crop_box


class JPEGFolder(Dataset):
    def __init__(self, files: list[Path], size: int = 64, crop: str | None = None):
        self.files = files
        box = [transforms.Lambda(lambda im: im.crop(crop_box(crop, *im.size)))] if crop else []
        self.tf = transforms.Compose([
            *box, transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tf(Image.open(self.files[i]).convert("RGB"))


def no_labels(n: int, device=None) -> torch.Tensor:
    """The label tensor of an unconditional facegan network: float (n, 0)."""
    return torch.zeros(n, 0, device=device)


def gradient_penalty(critic, real, fake):
    bs, c, h, w = real.shape
    alpha = torch.rand((bs, 1, 1, 1)).repeat(1, c, h, w)
    interpolated = real * alpha + fake * (1 - alpha)
    scores = critic(interpolated, no_labels(bs))[0]
    gradient = torch.autograd.grad(inputs=interpolated, outputs=scores, grad_outputs=torch.ones_like(scores),
                                   create_graph=True, retain_graph=True)[0]
    gradient = gradient.view(gradient.shape[0], -1)
    return torch.mean((gradient.norm(2, dim=1) - 1) ** 2)


def run_reference(files: list[Path], gen, critic, gen_steps: int, *, latent_dim: int = 128,
                  batch_size: int = 64, critic_iters: int = 5, lambda_gp: float = 10.0,
                  size: int = 64, crop: str | None = None, time_budget: float = 0.0) -> dict:
    """Train ``gen_steps`` generator steps, or until ``time_budget`` seconds of training are
    spent when it is positive; returns timings (s) per generator step."""
    loader = DataLoader(JPEGFolder(files, size, crop), batch_size=batch_size, shuffle=True, drop_last=True)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_c = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.5, 0.9))
    it = iter(loader)

    def next_real():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    times = []
    for _ in range(gen_steps):
        t0 = time.perf_counter()
        for _ in range(critic_iters):
            real = next_real()
            noise = torch.randn(batch_size, latent_dim)
            labels = no_labels(batch_size)
            fake = gen(noise, labels)
            critic_real = critic(real, labels)[0].reshape(-1)
            critic_fake = critic(fake, labels)[0].reshape(-1)
            gp = gradient_penalty(critic, real, fake)
            loss_critic = -(torch.mean(critic_real) - torch.mean(critic_fake)) + lambda_gp * gp
            critic.zero_grad()
            loss_critic.backward(retain_graph=True)
            opt_c.step()
        gen_fake = critic(fake, labels)[0].reshape(-1)
        loss_gen = -torch.mean(gen_fake)
        gen.zero_grad()
        loss_gen.backward()
        opt_g.step()
        times.append(time.perf_counter() - t0)
        if time_budget and sum(times) >= time_budget:
            break
    return {"step_times": times}
