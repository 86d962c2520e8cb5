"""DCGAN generator and discriminator / critic (Radford et al. 2015), any power-of-two size.

Resolution, width, latent size and the critic's normalisation are parameters, so one file
serves 32, 64 and 128 px and every recipe (DCGAN with BCE, WGAN, WGAN-GP).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .conditioning import (
    D_CONDS,
    G_CONDS,
    ACHead,
    ConditionalBatchNorm2d,
    LabelEmbedding,
    ProjectionHead,
    check_labels,
    concat_label_maps,
    network_cond,
    norm_forward,
    sequential_forward,
)
from .grow import downscale, growth_levels, split_lod, upscale
from .layers import MinibatchStd, norm2d, sn
from .spec import check_resolution


def stage_widths(resolution: int, width: int, max_width: int) -> list[int]:
    """Channel counts at 4x4, 8x8, ..., resolution/2 (generator order; the critic reverses it).

    64 px, width 64 -> [512, 256, 128, 64].
    """
    n = int(math.log2(resolution)) - 2
    return [min(width * 2 ** (n - 1 - i), max_width) for i in range(n)]


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _add_spectral_norm(module: nn.Module) -> None:
    """Spectral norm, in place, on every (transposed) convolution ``module`` holds so far (its
    net, the critic's score head with its minibatch-std layer, the growing heads), after the
    DCGAN init (the parametrization keeps the initialised weight as its raw weight)."""
    for conv in [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]:
        sn(conv)


class DCGANGenerator(nn.Module):
    """Latent vector to image.

    forward(z, c): z float (N, latent_dim), labels c float (N, K), K = label_dim (0 without
    labels: c is ``torch.zeros(N, 0)`` and is not read) -> images float (N, channels, R, R)
    in [-1, 1] (tanh).
    Layout: 4x4 transposed conv from the latent, then stride-2 4x4 transposed convs with
    norm + ReLU, each doubling the size, and a last transposed conv to ``channels``.

    Conditional (label_dim K > 0): cond="concat": the first transposed conv reads
    [z, embed(c)], embed a :class:`.conditioning.LabelEmbedding` to ``embed_dim`` (default
    latent_dim) features;
    cond="cbn": every batch norm is a :class:`.conditioning.ConditionalBatchNorm2d` of c
    (needs norm="batch").

    Growing (``grow_from`` > 0, :mod:`.grow`): ``to_rgb[m - 1]`` draws the R / 2^m image from the
    features at R / 2^(m + 1) (a transposed conv like the last layer), for m = 1 up to
    log2(R / grow_from); at a level of detail ``lod`` > 0 the stages above are skipped and the
    image is scaled up to R x R.
    """

    def __init__(self, latent_dim: int = 128, resolution: int = 64, width: int = 64,
                 max_width: int = 1024, norm: str = "batch", channels: int = 3, use_sn: bool = False,
                 label_dim: int = 0, cond: str = "concat", embed_dim: int | None = None,
                 grow_from: int = 0):
        super().__init__()
        check_resolution(resolution)
        self.latent_dim = latent_dim
        self.resolution = resolution
        self.label_dim = label_dim
        self.cond = network_cond(label_dim, cond, G_CONDS, "generator")
        self.embed_dim = (embed_dim or latent_dim) if self.cond == "concat" else 0
        if self.cond == "cbn" and norm != "batch":
            raise ValueError(f"conditional batch norm replaces batch norm; got norm '{norm}'")

        def make_norm(c: int) -> nn.Module:
            return ConditionalBatchNorm2d(c, label_dim) if self.cond == "cbn" else norm2d(norm, c)

        widths = stage_widths(resolution, width, max_width)
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + self.embed_dim, widths[0], 4, 1, 0, bias=bias),
            make_norm(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias), make_norm(c_out),
                       nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.n_stages = len(widths)
        self.grow_levels = growth_levels(resolution, grow_from)
        if self.grow_levels:
            self.to_rgb = nn.ModuleList(
                nn.ConvTranspose2d(widths[self.n_stages - 1 - m], channels, 4, 2, 1)
                for m in range(1, self.grow_levels + 1))
            self.register_buffer("lod", torch.tensor(float(self.grow_levels)))
        dcgan_init(self)
        if use_sn:
            _add_spectral_norm(self)
        # After the DCGAN init, which would draw the conditional norms' zero maps from
        # N(0, 0.02); built last, so an unconditional generator's weights are as before.
        for m in self.net:
            if isinstance(m, ConditionalBatchNorm2d):
                m.reset_parameters()
        self.embed = LabelEmbedding(label_dim, self.embed_dim) if self.cond == "concat" else None

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        check_labels(c, n, self.label_dim, "DCGANGenerator")
        lod = float(self.lod) if self.grow_levels else 0.0
        if self.cond is None and lod <= 0:
            return self.net(z.reshape(n, self.latent_dim, 1, 1))
        z = z.reshape(n, self.latent_dim)
        c = c.to(z.dtype)  # a .double() net gets double labels
        if self.embed is not None:
            z = torch.cat([z, self.embed(c)], dim=1)
        x = z.reshape(n, -1, 1, 1)
        if lod <= 0:
            return sequential_forward(self.net, x, c)
        return self._grown(x, c, lod)

    def _layers(self, x: torch.Tensor, c: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for m in self.net[start:stop]:
            x = norm_forward(m, x, c)
        return x

    def _to_image(self, level: int, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The R / 2^level image from the features at R / 2^(level + 1)."""
        if level == 0:
            return self._layers(h, c, 3 * self.n_stages, len(self.net))
        return torch.tanh(self.to_rgb[level - 1](h))

    def _grown(self, x: torch.Tensor, c: torch.Tensor, lod: float) -> torch.Tensor:
        coarse, a = split_lod(lod)
        stages = self.n_stages - coarse  # the ones that reach R / 2^(coarse + 1)
        h = self._layers(x, c, 0, 3 * stages)
        img = self._to_image(coarse, h, c)
        if a > 0:
            fine = self._to_image(coarse - 1, self._layers(h, c, 3 * stages, 3 * stages + 3), c)
            img = torch.lerp(upscale(img, 2), fine, a)
            coarse -= 1
        return upscale(img, 2 ** coarse)


class DCGANCritic(nn.Module):
    """Image to one unbounded score per image (a logit for BCE, a critic value for WGAN).

    forward(x, c): x float (N, channels, R, R) in [-1, 1], labels c float (N, K), K = label_dim
    (0 without labels) -> (scores float (N,), aux float (N, K) or None); aux is None except
    for cond="ac", and an unconditional critic (K = 0) returns (scores, None).
    Layout: stride-2 4x4 convs with LeakyReLU 0.2 (no norm on the first, as in DCGAN), halving
    the size down to 4x4, then a 4x4 conv to one score. With ``mbstd`` > 0 that conv reads one
    more map, the minibatch standard deviation over groups of ``mbstd`` consecutive samples
    (:class:`.layers.MinibatchStd`; ``net[-1]`` is then the two in a Sequential).

    Conditional (label_dim K > 0): the heads read h, the 4x4 features (after LeakyReLU and
    dropout) summed over the 16 positions (N, F) as in the ResNet critic, so the embeddings
    are F wide whatever the resolution; the unconditional score stays the 4x4 conv over the
    unpooled features (``net[-1]``).
    cond="concat": c as K constant maps appended to the image's channels; aux None.
    cond="projection": ``scores = net[-1](features) + <proj.embed(c), h>`` (Miyato & Koyama
    2018), proj a :class:`.conditioning.ProjectionHead`; aux None.
    cond="ac": the unconditional score (c not read); aux = ``ac(h)``, label logits of a
    :class:`.conditioning.ACHead`.
    The heads are Xavier-initialised (not DCGAN's N(0, 0.02)) and spectrally normalised when
    use_sn.

    Growing (``grow_from`` > 0, :mod:`.grow`; not with cond="concat"): ``from_rgb[m - 1]`` reads
    the image averaged down to R / 2^m (a stride-2 conv and LeakyReLU like the first layer, to
    the features after stage m), for m = 1 up to log2(R / grow_from); at a level of detail
    ``lod`` > 0 the first stages are skipped.
    """

    def __init__(self, resolution: int = 64, width: int = 64, max_width: int = 1024,
                 norm: str = "instance", dropout: float = 0.0, channels: int = 3,
                 use_sn: bool = False, label_dim: int = 0, cond: str = "projection",
                 grow_from: int = 0, mbstd: int = 0):
        super().__init__()
        check_resolution(resolution)
        self.resolution = resolution
        self.norm = norm
        self.label_dim = label_dim
        self.cond = network_cond(label_dim, cond, D_CONDS, "critic")
        widths = stage_widths(resolution, width, max_width)[::-1]
        layers: list[nn.Module] = []
        c_prev = channels + (label_dim if self.cond == "concat" else 0)
        self.stage_starts: list[int] = []  # the index in net of each stage's first layer
        for i, c in enumerate(widths):
            self.stage_starts.append(len(layers))
            use_norm = i > 0 and norm != "none"
            layers.append(nn.Conv2d(c_prev, c, 4, 2, 1, bias=not use_norm))
            if use_norm:
                layers.append(norm2d(norm, c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout2d(dropout))
            c_prev = c
        self.stage_starts.append(len(layers))
        score = nn.Conv2d(c_prev + (1 if mbstd else 0), 1, 4, 1, 0)
        layers.append(nn.Sequential(MinibatchStd(mbstd), score) if mbstd else score)
        self.net = nn.Sequential(*layers)
        self.grow_levels = growth_levels(resolution, grow_from)
        if self.grow_levels:
            if self.cond == "concat":
                raise ValueError("a growing critic cannot take labels as image channels; use "
                                 "cond='projection' or 'ac'")
            self.from_rgb = nn.ModuleList(
                nn.Sequential(nn.Conv2d(channels, widths[m], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))
                for m in range(1, self.grow_levels + 1))
            self.register_buffer("lod", torch.tensor(float(self.grow_levels)))
        dcgan_init(self)
        if use_sn:
            _add_spectral_norm(self)
        features = c_prev
        self.proj = (ProjectionHead(features, label_dim, use_sn) if self.cond == "projection"
                     else None)
        self.ac = ACHead(features, label_dim, use_sn) if self.cond == "ac" else None

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = x.shape[0]
        check_labels(c, n, self.label_dim, "DCGANCritic")
        lod = float(self.lod) if self.grow_levels else 0.0
        if self.cond is None and lod <= 0:
            return self.net(x).reshape(n), None
        c = c.to(x.dtype)
        if self.cond == "concat":
            return self.net(concat_label_maps(x, c)).reshape(n), None
        feats = self._grown(x, lod) if lod > 0 else self.net[:-1](x)  # [N, F, 4, 4]
        if self.cond is None:
            return self.net[-1](feats).reshape(n), None
        scores = self.net[-1](feats).reshape(n)
        h = feats.sum(dim=(2, 3))  # [N, F]
        if self.proj is not None:
            return scores + self.proj(h, c), None
        return scores, self.ac(h)

    def _stage(self, j: int, h: torch.Tensor) -> torch.Tensor:
        """Stage j: R / 2^j in, R / 2^(j + 1) out."""
        return self.net[self.stage_starts[j]:self.stage_starts[j + 1]](h)

    def _from_image(self, level: int, x: torch.Tensor) -> torch.Tensor:
        """The features after stage ``level`` from the R x R images averaged down to R / 2^level."""
        x = downscale(x, 2 ** level)
        return self._stage(0, x) if level == 0 else self.from_rgb[level - 1](x)

    def _grown(self, x: torch.Tensor, lod: float) -> torch.Tensor:
        coarse, a = split_lod(lod)
        h = self._from_image(coarse, x)
        if a > 0:
            h = torch.lerp(h, self._stage(coarse, self._from_image(coarse - 1, x)), a)
        return self.net[self.stage_starts[coarse + 1]:-1](h)
