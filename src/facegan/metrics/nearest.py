"""Memorisation check: are generated images closer to the training set than new real faces?

For each generated image we find its nearest training (reference) images twice: by mean
absolute pixel difference (L1 on the preprocessed uint8 R x R images scaled to [0, 1]) and
by Euclidean distance between 2048-d Inception features. The same search for held-out real
images -- faces that are not in the reference set -- says how near a *new* face typically
lands. Generated images much nearer than that (or at ~0 pixel distance) are likely copies.

Held-out images: the CelebA valid (else test) partition when the data has one, else the last
``holdout`` images of the data, which are then left out of the reference set.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, plural

NEAR_COPY_L1 = 0.02  # mean |difference| under ~5/255 per pixel: a near-copy at these sizes
# Ratios of median nearest distance, generated / held-out, taken in the space where it is largest.
CLOSER_RATIO = 0.9  # below: samples sit closer to the training set than new real faces do
MEMORISED_RATIO = 0.5  # below: much closer -- likely copies
# Pixel distances mean something only for images that sit among the data the way real faces
# do. A flat or noisy grey image is near *every* face (the centre of pixel space), so its
# nearest distance is small without any copying. The pixel comparison counts only when the
# generated images' typical distance to the training set (median over a fixed sample of it)
# is distributed like the held-out real images' (two-sample Kolmogorov-Smirnov p >= this).
RESEMBLANCE_ALPHA = 0.01
TYPICAL_SAMPLE = 1024  # reference images the typical distance is measured against
# Below these counts the verdict is printed with a caveat naming them. The ratio of two
# sample medians has a relative standard error of about 1.25 * cv * sqrt(2 / n), cv being how
# much nearest distances vary from image to image: taking that as 15-20%, under ~30 images a
# side two standard errors (a 95% interval) exceed the 10% margin of CLOSER_RATIO.
MIN_VERDICT_SAMPLES = 30
# In a small reference set a new face's nearest image is hardly nearer than a typical one, so
# both medians crowd toward the typical distance and the ratio toward 1, hiding closeness; a
# sample may also copy a training image the reference set does not hold.
MIN_VERDICT_REFERENCE = 1_000


def nearest(query: torch.Tensor, ref: torch.Tensor, k: int = 3, metric: str = "l1",
            chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest rows of ``ref`` (N, D) for each row of ``query`` (Q, D).

    metric 'l1': mean absolute difference (cdist p=1 / D); 'l2': Euclidean distance.
    uint8 rows (images) are compared in [0, 1] scale, converted one chunk at a time so a large
    reference set never exists as floats all at once.
    Returns (distances float (Q, k) ascending, indices int64 (Q, k)).
    """
    def as_float(t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(t.shape[0], -1)
        return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()

    k = min(k, ref.shape[0])
    q = as_float(query)
    best_d = torch.full((q.shape[0], 0), float("inf"))
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64)
    for s in range(0, ref.shape[0], chunk):
        r = as_float(ref[s:s + chunk])
        if metric == "l1":
            d = torch.cdist(q, r, p=1.0) / q.shape[1]
        elif metric == "l2":
            d = torch.cdist(q, r, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
        else:
            raise ValueError(f"unknown metric {metric}")
        idx = torch.arange(s, s + r.shape[0]).expand(q.shape[0], -1)
        all_d = torch.cat([best_d, d], 1)
        all_i = torch.cat([best_i, idx], 1)
        best_d, order = all_d.topk(k, dim=1, largest=False, sorted=True)
        best_i = all_i.gather(1, order)
    return best_d, best_i


def typical_distance(query: torch.Tensor, ref: torch.Tensor, sample: int = TYPICAL_SAMPLE,
                     seed: int = 0) -> torch.Tensor:
    """Median mean-absolute pixel distance (0..1) of each query image (uint8 (Q, ...)) to a
    fixed random sample of up to ``sample`` reference images (uint8 (N, ...)): float (Q,)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(ref.shape[0], generator=g)[:sample]
    q = query.reshape(query.shape[0], -1).float() / 255.0
    r = ref[idx].reshape(len(idx), -1).float() / 255.0
    return _median((torch.cdist(q, r, p=1.0) / q.shape[1]), dim=1)


def _median(d: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    # torch's median is the lower of the middle two for an even count (with 2 values, the
    # minimum); numpy's is their mean, the usual median.
    return torch.as_tensor(np.median(d.detach().double().cpu().numpy(), axis=dim))


def resemblance_p(gen_typical: torch.Tensor, held_typical: torch.Tensor) -> float:
    """Two-sample KS p-value: do generated and held-out images sit alike among the data?"""
    from scipy.stats import ks_2samp

    return float(ks_2samp(gen_typical.double().numpy(), held_typical.double().numpy()).pvalue)


def _summary(d: torch.Tensor) -> dict:
    d = d.double()
    return {"mean": float(d.mean()), "median": float(_median(d)), "min": float(d.min())}


@dataclass
class HeldOut:
    images: torch.Tensor  # uint8 (H, 3, R, R)
    reference: torch.Tensor  # int64 rows of the data that form the reference set
    source: str


def _held_out(data_set, dcfg, count: int) -> HeldOut:
    """Real images outside the reference set, and the reference rows."""
    from ..data import load_dataset

    n = len(data_set)
    if dcfg.partition == "train":
        train_names = set(data_set.names)
        for part in ("valid", "test"):
            try:
                other = load_dataset(replace(dcfg, partition=part), progress=False)
            except UserError:
                continue
            # A non-CelebA source ignores the partition: only count images really not in training.
            keep = [i for i, nm in enumerate(other.names) if nm not in train_names][:count]
            if len(keep) >= 2:
                return HeldOut(other.images[keep], torch.arange(n), f"CelebA {part} partition")
    if n - count < 1 or count < 2:
        raise UserError(f"the data has {plural(n, 'image')}: too few to hold out {count} and keep "
                        "a reference set; lower --holdout or --n")
    return HeldOut(data_set.images[n - count:], torch.arange(n - count),
                   f"last {count} images of the data (left out of the reference set)")


def _tile_rows(gen: torch.Tensor, rows: list[list[torch.Tensor]], pad: int = 2,
               gap: int = 8) -> np.ndarray:
    """One row per generated image: the image, then groups of neighbours separated by a gap."""
    r = gen.shape[-1]
    groups = len(rows[0]) if rows else 0
    ks = [rows[0][g].shape[0] for g in range(groups)] if rows else []
    width = pad + (r + pad) * (1 + sum(ks)) + gap * groups
    height = pad + (r + pad) * gen.shape[0]
    canvas = np.full((height, width, 3), 255, np.uint8)
    for i in range(gen.shape[0]):
        y = pad + i * (r + pad)
        x = pad
        canvas[y:y + r, x:x + r] = gen[i].permute(1, 2, 0).numpy()
        x += r + pad
        for g in range(groups):
            x += gap
            for img in rows[i][g]:
                canvas[y:y + r, x:x + r] = img.permute(1, 2, 0).numpy()
                x += r + pad
    return canvas


def save_png(path: str | Path, canvas: np.ndarray) -> Path:
    """Write ``canvas`` uint8 (H, W, 3) atomically: PNG, or JPEG for a .jpg name (as
    ``facegan sample`` does); UserError for another name."""
    from PIL import Image

    from ..sampling import save_image

    return save_image(Image.fromarray(canvas), path)


def nearest_check(checkpoint: str | Path, data: str, *, n: int = 32, out: str | Path = "nearest.png",
                  holdout: int | None = None, inception: str | None = None, use_inception: bool = True,
                  seed: int = 0, device="cpu", batch_size: int = 64, k: int = 3,
                  progress: bool = True, warn: Callable[[str], None] | None = None) -> dict:
    """Run the memorisation check; write the image ``out`` (.png or .jpg); return the
    statistics and a verdict (with a caveat naming the counts when they are too small for it
    to mean much: see MIN_VERDICT_SAMPLES and MIN_VERDICT_REFERENCE).

    warn: called with one line when ``data`` is not the data the run was trained on."""
    from ..data import load_dataset
    from ..runtime import resolve_device
    from ..sampling import image_format, load_generator
    from .evaluate import generate_uint8, other_data_warning
    from .features import extract_features
    from .inception import load_inception
    from .stats import real_stats

    if n < 2:
        raise UserError("--n must be at least 2")
    holdout = n if holdout is None else holdout
    if holdout < 2:
        raise UserError(f"--holdout must be at least 2 (held-out real images the generated ones "
                        f"are compared with), got {holdout}")
    image_format(out)  # a name it cannot write fails now, not after the work
    dev = resolve_device(device)
    loaded = load_generator(checkpoint, device=dev, ema=True)
    other = other_data_warning(str(data), loaded.config.data.path)
    if other and warn is not None:
        warn(other)
    net = load_inception(inception, device=dev) if use_inception else None
    dcfg = replace(loaded.config.data, path=str(data), hflip=False)
    data_set = load_dataset(dcfg, progress=progress and sys.stderr.isatty())
    held = _held_out(data_set, dcfg, holdout)
    ref_rows = held.reference
    ref_images = data_set.images[ref_rows]
    gen = generate_uint8(loaded.generator, n, seed, loaded.labels)
    if gen.shape[-1] != ref_images.shape[-1]:
        raise UserError(f"generator makes {gen.shape[-1]} px images but the data is "
                        f"{ref_images.shape[-1]} px")

    pix_d, pix_i = nearest(gen, ref_images, k=k, metric="l1")  # uint8 in, [0, 1] distances
    held_pix_d, _ = nearest(held.images, ref_images, k=1, metric="l1")
    gen_typ = typical_distance(gen, ref_images, seed=seed)
    held_typ = typical_distance(held.images, ref_images, seed=seed)
    result: dict = {
        "n": n, "n_heldout": int(held.images.shape[0]), "heldout": held.source,
        "n_reference": int(ref_rows.numel()), "step": loaded.step, "checkpoint": str(loaded.checkpoint),
        "pixel_l1": {"generated": _summary(pix_d[:, 0]), "heldout": _summary(held_pix_d[:, 0]),
                     "typical_generated": float(_median(gen_typ)),
                     "typical_heldout": float(_median(held_typ)),
                     "resemblance_p": resemblance_p(gen_typ, held_typ)},
    }
    groups = [[ref_images[pix_i[i]]] for i in range(n)]

    if net is not None:
        st = real_stats(data_set, net, cache_dir=dcfg.cache_dir, batch_size=batch_size,
                        progress=progress)
        if st.features is None or st.feature_index is None:
            raise UserError("cached statistics hold no features; delete the cache file and rerun")
        in_ref = np.isin(st.feature_index, ref_rows.numpy())
        ref_feats = torch.from_numpy(st.features[in_ref])
        ref_feat_rows = torch.from_numpy(st.feature_index[in_ref])
        gen_feats = torch.from_numpy(extract_features(net, gen, batch_size=batch_size))
        held_feats = torch.from_numpy(extract_features(net, held.images, batch_size=batch_size))
        inc_d, inc_i = nearest(gen_feats, ref_feats, k=k, metric="l2")
        held_inc_d, _ = nearest(held_feats, ref_feats, k=1, metric="l2")
        result["inception_l2"] = {"generated": _summary(inc_d[:, 0]),
                                  "heldout": _summary(held_inc_d[:, 0]),
                                  "n_reference": int(ref_feats.shape[0])}
        for i in range(n):
            groups[i].append(data_set.images[ref_feat_rows[inc_i[i]]])

    near_copies = int((pix_d[:, 0] < NEAR_COPY_L1).sum())
    ratios = {"pixel_l1": result["pixel_l1"]["generated"]["median"]
              / max(result["pixel_l1"]["heldout"]["median"], 1e-12)}
    if "inception_l2" in result:
        ratios["inception_l2"] = (result["inception_l2"]["generated"]["median"]
                                  / max(result["inception_l2"]["heldout"]["median"], 1e-12))
    result["median_ratio"] = ratios
    result["near_copies"] = near_copies
    pix = result["pixel_l1"]
    pixel_conclusive = pix["resemblance_p"] >= RESEMBLANCE_ALPHA
    result["pixel_conclusive"] = pixel_conclusive
    # Copies are near in every space; a blurry average face is near in pixels only, so the
    # verdict takes the largest ratio (the space where samples look least like copies), over
    # the spaces whose distances can be compared with held-out real images.
    usable = {k: v for k, v in ratios.items() if k != "pixel_l1" or pixel_conclusive}
    worst = max(usable.values()) if usable else float("nan")
    if near_copies:
        are = "is a near-copy of a training image" if near_copies == 1 else \
            "are near-copies of training images"
        verdict = (f"MEMORISATION SUSPECTED: {near_copies} of {plural(n, 'sample')} {are} "
                   f"(pixel L1 < {NEAR_COPY_L1}); nearest-distance median ratio "
                   f"generated/held-out = {ratios['pixel_l1']:.2f} (pixels)")
    elif not usable:
        verdict = (f"INCONCLUSIVE: the samples do not sit among the training images the way real "
                   f"faces do (typical pixel distance to a training image, not the nearest one: samples "
                   f"{pix['typical_generated']:.3f}, held-out real images {pix['typical_heldout']:.3f}; KS p = {pix['resemblance_p']:.2g}), "
                   "so nearness in pixels says nothing about copying; rerun without --no-inception")
    elif worst < MEMORISED_RATIO:
        verdict = (f"MEMORISATION SUSPECTED: nearest-distance median ratio generated/held-out = "
                   f"{worst:.2f}")
    elif worst < CLOSER_RATIO:
        verdict = (f"CLOSER THAN NEW FACES: samples sit nearer the training set than held-out real "
                   f"images do (median ratio {worst:.2f}); look at {out}")
    else:
        verdict = (f"NO SIGN OF MEMORISATION: samples are no closer to the training set than held-out "
                   f"real images are (median ratio {worst:.2f})")
    if usable and not pixel_conclusive:
        verdict += "; pixel distances left out (samples unlike the data in pixel space)"
    # A near-copy is evidence at any count; a ratio of medians from few images is not.
    n_held, n_ref = result["n_heldout"], result["n_reference"]
    few = min(n, n_held) < MIN_VERDICT_SAMPLES or n_ref < MIN_VERDICT_REFERENCE
    result["verdict_tentative"] = bool(few and usable and not near_copies)
    if result["verdict_tentative"]:
        verdict += (f" -- TENTATIVE: {n} generated, {n_held} held-out and "
                    f"{plural(n_ref, 'reference image')} are too few for this verdict to mean much "
                    f"(wanted: at least {MIN_VERDICT_SAMPLES} generated and held-out, "
                    f"{MIN_VERDICT_REFERENCE:,} reference); rerun with a larger --n, --holdout or "
                    "data set")
    result["verdict"] = verdict
    canvas = _tile_rows(gen, groups)
    result["png"] = str(save_png(out, canvas))
    return result
