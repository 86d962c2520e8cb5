"""Projection, measured: how close ``facegan project`` gets, against baselines, and what an
edit of a projected real face keeps.

Three parts, on one trained run (EMA generator):

1. **The generator's own samples** (``--n-own``): faces ``G(z)`` drawn from seeded latents,
   quantised to uint8 as any image is, then projected as a photo would be (encoder guess, then
   optimisation). A projector that works finds them again: median PSNR (dB).
2. **Held-out real photos** (``--n-real``, taken evenly from the images of ``--data`` the run
   never trained on: those past its ``data.max_images``, or outside its CelebA partition). Each is aligned as ``facegan
   project`` aligns (MTCNN onto the run's template; ``--no-align`` for the run's crop), then
   found four ways, in the same run:

   - ``random-best``: the best of ``--random`` random latents (by the optimiser's own loss:
     pixel MSE + feature weight x critic feature distance);
   - ``encoder``: the encoder's guess alone;
   - ``optimised``: ``facegan project``'s default, the guess optimised with the feature loss
     ``--features`` (default: ``facegan project``'s);
   - ``optimised, pixels only``: the same with ``--features none``.

   For each: median PSNR, SSIM and critic feature distance, and the seconds each stage takes
   (alignment, the encoder's one-off training, its guess, the optimisation) with its share.
3. **Edits of projected real faces** (when the run has ``directions.json`` and ``--data`` has
   CelebA attributes): the attribute classifier's probability of the edited attribute at
   strengths -S..S, whether it rises monotonically, the mean change of the other attributes,
   the same over the edited attribute's own change ("per unit": both from strength 0 to each
   end), and identity drift (Inception-feature distance between a face and its edit at +-S over the
   distance between two different faces), for the projected real faces and, in the same run,
   for as many random faces (``facegan``'s edit metrics). The projected faces are edited two
   ways: the projection alone (``facegan edit --no-detail``) and with the photo's own detail
   kept (``facegan edit``'s default: the edit's change applied to the photo).

   The random faces' classifier figures come from ``--edit-random`` faces (default 1000):
   those of 100 faces vary by about 0.003 in the other attributes' change from one draw to
   the next, as much as the differences being measured.
4. **Which feature loss projects best** (``--compare-features critic,inception,classifier,none``,
   instead of parts 1-3's baselines): the same held-out photos projected with each feature loss
   (``--steps`` each), judged alike: median PSNR and SSIM; the distance of every feature
   network (each loss also judged by the others); the distance between the FID Inception's
   2048 pool features (at 299 px: not the early blocks at 96 px that the 'inception' loss
   uses) of photo and projection; the attribute classifier's agreement with the photo (share
   of its 40 attributes on the same side of 0.5, and the mean absolute difference of the
   probabilities; the 'classifier' loss is this network's features, so it is not a neutral
   judge there); seconds per photo; and the others' change of the four edits against
   ``--edit-random`` random faces. The latents go to ``OUT/compare-latents.pt``.

    python benchmarks/bench_projection.py RUN --data CELEBA_DIR --out OUT
    python benchmarks/bench_projection.py RUN --data CELEBA_DIR --out OUT --n-real 50 \
        --compare-features critic,inception,classifier,none

Prints the tables and writes ``OUT/projection.json`` and ``OUT/projection.png`` (rows: real
photo's crop, best random, encoder, optimised, and the Smiling edit of the optimised one at
-S, +S when that direction exists, then the same with the photo's detail kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import add_data_option, require_data

from facegan.data.sources import CELEBA_IMAGES, list_source
from facegan.data.transforms import to_float
from facegan.files import atomic_write_text
from facegan.projection import (
    DEFAULT_FEATURE_WEIGHT,
    DEFAULT_FEATURES,
    DEFAULT_PRIOR_WEIGHT,
    DEFAULT_PRIOR_WIDTH,
    DEFAULT_STEPS,
    FEATURES,
    CriticFeatures,
    FeatureNet,
    encoder_for,
    face_aligner,
    load_critic,
    load_features,
    load_photo,
    optimise_latent,
    psnr,
    ssim,
)
from facegan.runtime import cpu_name
from facegan.sampling import generate, keep_detail, latents, load_generator, make_grid, photo_detail


def heldout_names(lg, data: str, start: int | None = None) -> tuple[list[str], str, object]:
    """(names of the images the run never trained on, the rule, the listing of all images);
    ``start``: the images from that index on, whatever the run trained on."""
    cfg = dataclasses.replace(lg.config.data, path=data, partition="all", max_images=0)
    listing = list_source(cfg)
    if start is not None:
        return listing.names[start:], f"the images from number {start} on (--heldout-from)", listing
    trained = list_source(dataclasses.replace(lg.config.data, path=data))
    seen = set(trained.head(lg.config.data.max_images).names)
    unseen = [n for n in listing.names if n not in seen]
    if not unseen:
        sys.exit(f"bench_projection: {lg.run_dir} trained on all of its data (data.partition="
                 f"{lg.config.data.partition}, data.max_images={lg.config.data.max_images}); train "
                 "it with --max-images N (or --partition train on CelebA) so some images stay unseen")
    return unseen, f"the {len(unseen)} of {len(listing)} images the run did not train on", listing


def evenly(items: list, n: int) -> list:
    if n >= len(items):
        return list(items)
    return [items[round(i * (len(items) - 1) / max(1, n - 1))] for i in range(n)]


def scores(images: torch.Tensor, targets: torch.Tensor, feats: CriticFeatures, c: torch.Tensor,
           device, target_feats: list[torch.Tensor] | None = None) -> dict[str, list[float]]:
    """Per image: PSNR, SSIM, critic feature distance of uint8 images against uint8 targets
    (``target_feats``: the targets' critic features, when already computed)."""
    with torch.no_grad():
        if target_feats is None:
            target_feats = feats(to_float(targets).to(device), c.to(device))
        fd = CriticFeatures.distance(feats(to_float(images).to(device), c.to(device)), target_feats).cpu()
    return {"psnr": [psnr(a, b) for a, b in zip(images, targets)],
            "ssim": [ssim(a, b) for a, b in zip(images, targets)],
            "feature_distance": [float(v) for v in fd]}


def median_row(name: str, s: dict[str, list[float]], seconds: float | None) -> dict:
    return {"method": name, "psnr": statistics.median(s["psnr"]), "ssim": statistics.median(s["ssim"]),
            "feature_distance": statistics.median(s["feature_distance"]),
            "psnr_p10": sorted(s["psnr"])[len(s["psnr"]) // 10],
            "seconds_per_image": seconds}


def best_random(g, targets: torch.Tensor, feats: CriticFeatures, c1: torch.Tensor, n: int, seed: int,
                weight: float, device, chunk: int = 250) -> torch.Tensor:
    """For each target uint8 (N, 3, R, R): the latent among ``n`` random ones whose image has
    the lowest pixel MSE + weight x feature distance (the optimiser's loss, prior aside)."""
    z = latents(n, g.latent_dim, seed)
    tf = to_float(targets).to(device)
    with torch.no_grad():
        tfeat = feats(tf, c1.expand(len(tf), -1).to(device))
        best_loss = torch.full((len(tf),), float("inf"))
        best = torch.zeros(len(tf), dtype=torch.long)
        for i in range(0, n, chunk):
            zc = z[i:i + chunk]
            cc = c1.expand(len(zc), -1)
            x = to_float(generate(g, zc, cc)).to(device)  # as the image would be saved
            xf = feats(x, cc.to(device))
            for j in range(len(tf)):  # (chunk,) losses against target j
                pix = (x - tf[j:j + 1]).square().flatten(1).mean(1)
                fd = CriticFeatures.distance(xf, [t[j:j + 1].expand_as(f) for t, f in zip(tfeat, xf)])
                loss = (pix + weight * fd).cpu()
                k = int(loss.argmin())
                if loss[k] < best_loss[j]:
                    best_loss[j], best[j] = loss[k], i + k
    return z[best]


def compare_features(args, lg, enc, tg: torch.Tensor, data: str, out_dir: Path) -> dict:
    """Project the same photos uint8 (N, 3, R, R) with each feature loss of
    ``--compare-features`` and judge them alike: PSNR, SSIM, the distance of each feature
    network (each loss judged by the others too), the FID Inception's pool-feature distance,
    the attribute classifier's agreement with the photo, seconds per photo, and the edit
    metrics of the projected faces against random faces."""
    from facegan.directions import get_direction, load_directions
    from facegan.metrics import load_inception
    from facegan.metrics.classifier import classifier_for_data
    from facegan.metrics.conditional import edit_metrics
    from facegan.metrics.features import extract_features

    g = lg.generator
    device = next(g.parameters()).device
    n = len(tg)
    c = torch.zeros(n, 0)
    variants = [v.strip() for v in args.compare_features.split(",") if v.strip()]
    bad = [v for v in variants if v not in FEATURES]
    if bad:
        sys.exit(f"bench_projection: unknown feature loss '{bad[0]}'; use {', '.join(FEATURES)}")
    judges: dict[str, FeatureNet] = {k: load_features(lg, k, data=data) for k in FEATURES if k != "none"}
    clf = classifier_for_data(dataclasses.replace(lg.config.data, path=data), progress=True)
    inc = load_inception(None, device="cpu")
    x_t = to_float(tg).to(device)
    with torch.no_grad():
        t_feats = {k: j(x_t, c) for k, j in judges.items()}
    p_photo = clf.probs(tg)  # (N, 40)
    f_photo = torch.from_numpy(extract_features(inc, tg)).double()  # (N, 2048)
    with torch.no_grad():
        z0 = enc(x_t).cpu()
    doc = load_directions(lg.run_dir) if (Path(lg.run_dir or ".") / "directions.json").is_file() else None
    attrs = [a.strip() for a in args.attrs.split(",") if a.strip() and doc and a.strip() in doc["directions"]]
    out: dict = {"n": n, "steps": args.steps, "prior_weight": args.prior_weight,
                 "prior_width": args.prior_width, "rows": [],
                 "inception_loss_size": getattr(judges["inception"], "size", None)}
    latents_out = {"z0": z0}
    for v in variants:
        t = time.perf_counter()
        z = optimise_latent(g, to_float(tg), z0, c, steps=args.steps, features=judges.get(v),
                            prior_weight=args.prior_weight, prior_width=args.prior_width)
        secs = (time.perf_counter() - t) / n
        latents_out[v] = z
        imgs = generate(g, z, c)
        x = to_float(imgs).to(device)
        row: dict = {"features": v, "seconds_per_image": secs,
                     "psnr": statistics.median(psnr(a, b) for a, b in zip(imgs, tg)),
                     "ssim": statistics.median(ssim(a, b) for a, b in zip(imgs, tg))}
        with torch.no_grad():
            for k, j in judges.items():
                row[f"{k}_distance"] = float(FeatureNet.distance(j(x, c), t_feats[k]).median())
        f = torch.from_numpy(extract_features(inc, imgs)).double()
        row["inception_pool_distance"] = float((f - f_photo).norm(dim=1).median())
        p_img = clf.probs(imgs)
        row["attribute_agreement"] = float(((p_img > 0.5) == (p_photo > 0.5)).float().mean())
        row["attribute_abs_diff"] = float((p_img - p_photo).abs().mean())
        row["latent_norm"] = float((z.square().mean(1)).sqrt().median())
        row["edits"] = {}
        for a in attrs:
            m = edit_metrics(g, clf, get_direction(doc, a, lg.run_dir), a, strength=args.strength, z=z)
            row["edits"][a] = {"others_change": m["others_change"], "monotonic": m["monotonic"],
                               "target": m["target"]}
        out["rows"].append(row)
        print(f"  {v}: {row['psnr']:.2f} dB, SSIM {row['ssim']:.3f}, {secs:.2f} s/photo; others' change "
              + ", ".join(f"{a} {e['others_change']:.3f}" for a, e in row["edits"].items()), flush=True)
    out["random_edits"] = {}
    for a in attrs:
        m = edit_metrics(g, clf, get_direction(doc, a, lg.run_dir), a, strength=args.strength,
                         n=args.edit_random, seed=args.seed)
        out["random_edits"][a] = {"others_change": m["others_change"], "monotonic": m["monotonic"],
                                  "target": m["target"], "n": args.edit_random}
    latents_out["random"] = latents(args.edit_random, g.latent_dim, args.seed)
    torch.save(latents_out, out_dir / "compare-latents.pt")

    print(f"\n== feature losses: the same {n} photos, {args.steps} steps each")
    print("| features | median PSNR | median SSIM | Inception pool distance | attribute agreement | "
          "mean |p(photo) - p(proj)| | critic dist. | Inception-96 dist. | classifier dist. | s / photo |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in out["rows"]:
        print(f"| {r['features']} | {r['psnr']:.2f} dB | {r['ssim']:.3f} | {r['inception_pool_distance']:.2f} | "
              f"{100 * r['attribute_agreement']:.1f}% | {r['attribute_abs_diff']:.3f} | {r['critic_distance']:.3f} | "
              f"{r['inception_distance']:.3f} | {r['classifier_distance']:.3f} | {r['seconds_per_image']:.2f} |")
    if attrs:
        print(f"\nothers' change at strength +-{args.strength:g} (projected {n} / random {args.edit_random}):")
        print("| features | " + " | ".join(attrs) + " |")
        print("|---|" + "---|" * len(attrs))
        for r in out["rows"]:
            print(f"| {r['features']} | " + " | ".join(f"{r['edits'][a]['others_change']:.3f}" for a in attrs) + " |")
        print("| random faces | " + " | ".join(f"{out['random_edits'][a]['others_change']:.3f}" for a in attrs) + " |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", metavar="RUN", help="a run folder (trained with some images held out)")
    add_data_option(ap)
    ap.add_argument("--n-own", type=int, default=50, help="the generator's own samples to project")
    ap.add_argument("--n-real", type=int, default=100, help="held-out real photos to project")
    ap.add_argument("--random", type=int, default=1000, help="random latents of the random-best baseline")
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimisation steps (facegan project's default)")
    ap.add_argument("--prior-weight", type=float, default=DEFAULT_PRIOR_WEIGHT,
                    help="weight of the latent prior in the optimisation (facegan project's default)")
    ap.add_argument("--prior-width", type=float, default=DEFAULT_PRIOR_WIDTH,
                    help="standard deviations of |z|^2 / D around 1 where the prior is zero "
                    "(facegan project's default)")
    ap.add_argument("--features", default=DEFAULT_FEATURES, choices=FEATURES,
                    help="feature loss of the 'optimised' row (facegan project's default: %(default)s)")
    ap.add_argument("--compare-features", metavar="LIST", help="instead of the baselines: project the "
                    f"same held-out photos with each of these feature losses (of {','.join(FEATURES)}) "
                    "and compare them by judges fair to all, and by the edit metrics")
    ap.add_argument("--edit-random", type=int, default=1000, help="random faces of the edit baseline "
                    "(its classifier figures; identity drift from as many as there are photos)")
    ap.add_argument("--no-align", action="store_true", help="take the photos as they are (the run's crop)")
    ap.add_argument("--attrs", default="Smiling,Eyeglasses,Young,Male", help="directions to edit with")
    ap.add_argument("--strength", type=float, default=3.0)
    ap.add_argument("--heldout-from", type=int, help="take the photos from this image number on "
                    "(default: those the run did not train on)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    data = str(Path(require_data(args)).resolve())
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    lg = load_generator(args.run, device="cpu")
    g, spec = lg.generator, lg.labels
    if spec.conditional:
        sys.exit("bench_projection: measures unconditional runs")
    device = next(g.parameters()).device
    c1 = torch.zeros(1, 0)
    feats = load_critic(lg)
    res: dict = {"machine": cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "run": str(args.run), "step": lg.step, "preset": lg.config.preset, "steps": args.steps,
                 "prior_weight": args.prior_weight, "prior_width": args.prior_width,
                 "features": args.features}
    print(f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); run "
          f"{lg.config.preset} step {lg.step}, {lg.config.data.resolution} px")

    t = time.perf_counter()
    enc, trained = encoder_for(lg, seed=args.seed, progress=True)
    enc_train = time.perf_counter() - t
    res["encoder_seconds"] = round(enc_train, 1) if trained else None

    def project(targets: torch.Tensor, features) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        """(guess latents, optimised latents, guess seconds, optimisation seconds) for all rows."""
        c = c1.expand(len(targets), -1)
        t0 = time.perf_counter()
        with torch.no_grad():
            z0 = enc(to_float(targets).to(device)).cpu()
        t1 = time.perf_counter()
        z = optimise_latent(g, to_float(targets), z0, c, steps=args.steps, features=features,
                           prior_weight=args.prior_weight, prior_width=args.prior_width)
        return z0, z, t1 - t0, time.perf_counter() - t1

    # 1. own samples
    if args.n_own > 0 and not args.compare_features:
        own = generate(g, latents(args.n_own, g.latent_dim, 10_000 + args.seed), c1.expand(args.n_own, -1))
        z0, z, _, t_opt = project(own, load_features(lg, args.features, data=data))
        c = c1.expand(len(own), -1)
        s_guess = scores(generate(g, z0, c), own, feats, c, device)
        s_opt = scores(generate(g, z, c), own, feats, c, device)
        res["own"] = {"n": args.n_own, "encoder": median_row("encoder", s_guess, None),
                      "optimised": median_row("optimised", s_opt, t_opt / len(own)),
                      "share_at_30db": sum(p >= 30 for p in s_opt["psnr"]) / len(own)}
        print(f"\n== the generator's own samples ({args.n_own}): median PSNR encoder "
              f"{res['own']['encoder']['psnr']:.1f} dB -> optimised {res['own']['optimised']['psnr']:.1f} dB "
              f"({100 * res['own']['share_at_30db']:.0f}% at >= 30 dB), SSIM "
              f"{res['own']['optimised']['ssim']:.3f}")

    # 2. held-out real photos
    names, rule, listing = heldout_names(lg, data, args.heldout_from)
    chosen = evenly(names, args.n_real)
    aligner = None if args.no_align else face_aligner(lg)
    folder = Path(data) / CELEBA_IMAGES
    targets, used, failed = [], [], []
    t = time.perf_counter()
    for name in chosen:
        src = folder / name if (folder / name).is_file() else Path(data) / name
        try:
            ph = load_photo(src, lg.config.data, align=aligner, name=Path(name).stem)
        except Exception as e:  # a photo MTCNN finds no face in: counted, not fatal
            failed.append((name, str(e)))
            continue
        targets.append(ph.target)
        used.append(name)
    t_align = (time.perf_counter() - t) / max(1, len(chosen))
    if not targets:
        sys.exit(f"bench_projection: none of the {len(chosen)} photos could be loaded ({failed[:1]})")
    tg = torch.stack(targets)
    n = len(tg)
    c = c1.expand(n, -1)
    if args.compare_features:
        res["compare_features"] = compare_features(args, lg, enc, tg, data, out_dir)
        res["compare_features"]["rule"] = rule
        atomic_write_text(out_dir / "projection.json", json.dumps(res, indent=1) + "\n")
        print(f"\nwrote {out_dir / 'projection.json'}")
        return 0
    print(f"\n== {n} held-out real photos ({rule}; {len(failed)} without a face found), "
          f"{'aligned by MTCNN' if aligner else 'the run crop'}; {args.steps} optimisation steps")
    t = time.perf_counter()
    zr = best_random(g, tg, feats, c1, args.random, 20_000 + args.seed, DEFAULT_FEATURE_WEIGHT, device)
    t_rand = (time.perf_counter() - t) / n
    z0, z, t_guess, t_opt = project(tg, load_features(lg, args.features, data=data))
    _, zp, _, t_pix = project(tg, None)
    imgs = {"random-best": generate(g, zr, c), "encoder": generate(g, z0, c),
            "optimised": generate(g, z, c), "optimised, pixels only": generate(g, zp, c)}
    secs = {"random-best": t_rand, "encoder": t_guess / n, "optimised": (t_guess + t_opt) / n,
            "optimised, pixels only": (t_guess + t_pix) / n}
    with torch.no_grad():
        tfeat = feats(to_float(tg).to(device), c.to(device))  # the targets' features, once for all rows
    rows = [median_row(k, scores(v, tg, feats, c, device, tfeat), secs[k]) for k, v in imgs.items()]
    res["real"] = {"n": n, "rule": rule, "aligned": aligner is not None, "no_face": [f for f, _ in failed],
                   "rows": rows}
    print("| method | median PSNR | 10th pct PSNR | median SSIM | median feature distance | s / photo |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['psnr']:.1f} dB | {r['psnr_p10']:.1f} dB | {r['ssim']:.3f} | "
              f"{r['feature_distance']:.3f} | {r['seconds_per_image']:.2f} |")
    stages = {"alignment": t_align, "encoder guess": t_guess / n, "optimisation": t_opt / n}
    total = sum(stages.values())
    res["stages_seconds_per_photo"] = {k: round(v, 3) for k, v in stages.items()}
    print("stages per photo: " + ", ".join(f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in stages.items())
          + (f"; the encoder's one-off training {enc_train:.0f} s" if trained else "; encoder read from the run"))

    # 3. edits of projected real faces
    grid_rows = [tg, imgs["random-best"], imgs["encoder"], imgs["optimised"]]
    dirs_file = Path(lg.run_dir or ".") / "directions.json"
    if dirs_file.is_file() and args.attrs:
        from facegan.directions import edit_latent_images, get_direction, load_directions
        from facegan.metrics import load_inception
        from facegan.metrics.classifier import classifier_for_data
        from facegan.metrics.conditional import edit_metrics

        doc = load_directions(lg.run_dir)
        clf = classifier_for_data(dataclasses.replace(lg.config.data, path=data), progress=True)
        net = load_inception(None, device="cpu")
        res["edits"] = {}
        print(f"\n== edits at strengths -{args.strength:g}..{args.strength:g}: {n} projected real faces "
              f"vs {args.edit_random} random faces (classifier held-out accuracy {clf.describe()[:60]}...)")
        print("| direction | faces | p(attribute) at -S ... +S | monotonic | others' change | per unit "
              "| drift / random |")
        print("|---|---|---|---|---|---|---|")
        for attr in [a.strip() for a in args.attrs.split(",") if a.strip()]:
            if attr not in doc["directions"]:
                print(f"| {attr} | (no direction in {dirs_file.name}) |||||")
                continue
            v = get_direction(doc, attr, lg.run_dir)
            real = edit_metrics(g, clf, v, attr, strength=args.strength, net=net, z=z)
            # facegan edit's default for a projected photo: the photo's own detail kept
            detail = edit_metrics(g, clf, v, attr, strength=args.strength, net=net, z=z, photos=tg)
            # The classifier's figures of random faces from --edit-random of them: 100 faces
            # vary by about 0.003 in others' change from one draw to the next, as much as the
            # differences measured. Identity drift (Inception on three images per face) from n.
            rand = edit_metrics(g, clf, v, attr, strength=args.strength, n=args.edit_random, seed=args.seed)
            drift = edit_metrics(g, clf, v, attr, strength=args.strength, net=net, n=n, seed=args.seed)
            rand.update({k: drift[k] for k in ("identity_drift", "random_pair_distance", "drift_ratio")})
            res["edits"][attr] = {"real": real, "real_detail": detail, "random": rand}
            for who, m in (("projected", real), ("projected + photo's detail", detail), ("random", rand)):
                print(f"| {attr} | {who} | {' '.join(f'{p:.2f}' for p in m['target'])} | "
                      f"{'yes' if m['monotonic'] else 'no'} | {m['others_change']:.3f} | "
                      f"{m['others_change'] / max(m['target_abs_change'], 1e-9):.2f} | {m['drift_ratio']:.2f} |")
        if "Smiling" in doc["directions"]:
            v = get_direction(doc, "Smiling", lg.run_dir)
            e = edit_latent_images(g, z, v, torch.tensor([-args.strength, args.strength]), c)
            ed = keep_detail(e, photo_detail(tg, imgs["optimised"])[:, None])  # the same edits, detail kept
            grid_rows += [e[:, 0], e[:, 1], ed[:, 0], ed[:, 1]]
    k = min(12, n)
    make_grid(torch.stack([r[:k] for r in grid_rows]).flatten(0, 1), nrow=k).save(out_dir / "projection.png")
    atomic_write_text(out_dir / "projection.json", json.dumps(res, indent=1) + "\n")
    print(f"\nwrote {out_dir / 'projection.json'} and {out_dir / 'projection.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
