"""Request parameters -> latents and labels, every value checked and bounded.

A face is named by its seed: its latent is ``sampling.latents(1, D, seed)[0]`` and, for a
conditional model with no condition chosen, its label ``LabelSpec.draw(1, seed)``,
exactly what ``facegan sample RUN --n 1 --seed SEED`` draws; so the page can print the
command that draws the same face again. Or by its latent: ``z`` (instead of ``seed``) is D
float32 values, little-endian, as unpadded base64url (what ``/api/project`` answers for a
photo, :func:`encode_latent`), checked strictly (:func:`parse_latent`: its exact length, the
alphabet, finite values within +-LATENT_MAX); its labels are the condition's, any it leaves
open drawn with seed LATENT_LABEL_SEED, as ``facegan project`` draws them. Everything else is
a change of that face, the same for a seed's face and a latent's:

- ``seed2`` or ``z2`` + ``t`` + ``interp``: the point a fraction t of the way to another face
  (``sampling.lerp`` or ``sampling.slerp``; labels blended linearly, as ``morph_classes`` does);
- ``class`` / ``attr``: the condition (``--class NAME`` / ``--attr A=0,B=1`` of ``sample``,
  parsed by :func:`facegan.labels.parse_condition`);
- ``edit``: ``z + strength * direction`` for directions of ``RUN/directions.json``;
- ``truncation``: the truncation trick, T from 0.05 to 4 (``--truncation T`` of ``sample``):
  every seed's latent is ``sampling.latents(1, D, seed, truncation=T)[0]``, its labels
  unchanged; absent or empty: no truncation. A given latent (``z`` / ``z2``) is used as it
  is: truncation only concerns drawing a latent from a seed.

A bad value raises :class:`BadRequest` with a message meant for the person at the page.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .. import labels
from ..errors import UserError
from ..labels import Condition, LabelSpec
from ..sampling import latents, lerp, slerp
from .engine import Model

SEED_MAX = 2**31 - 1  # fits a JavaScript number and a 32-bit int everywhere
NEW_SEEDS_BELOW = 1_000_000  # fresh seeds have at most 6 digits: easy to read and to type
STRENGTH_MAX = 5.0  # |strength| of a direction edit, in units of the latent's (unit) direction
MAX_FACES = 64  # seeds per /api/seeds request
STRIP_STEPS = (2, 16)  # frames in an interpolation strip
MAX_SIZE = 1024  # largest side of a resized PNG
MAX_TEXT = 2000  # characters in any one parameter
INTERPS = {"lerp": lerp, "slerp": slerp}
# T of the truncation trick: below 0.05 every face is nearly the mean face; above 4 almost no
# latent value is cut (4 sigma), so it would be the same as none.
TRUNCATION_RANGE = (0.05, 4.0)
# |value| of a given latent: a normal value beyond 6 has odds of 1e-9, and a projected latent
# stays on the normal's shell (projection's prior), so anything near 16 is no face's latent.
LATENT_MAX = 16.0
LATENT_PARAMS = ("z", "z2")
MAX_LATENT_TEXT = 4 * MAX_TEXT  # characters of z= / z2=: up to 1,500 latent values
LATENT_LABEL_SEED = 0  # `facegan project --seed 0`: labels a condition leaves open, for a latent
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class BadRequest(ValueError):
    """A request that cannot be served as asked (answered 400 with this message)."""


@dataclass(frozen=True)
class Face:
    """One image to draw: its latent float (D,) and labels float (K,) (K = 0 without labels)."""

    z: torch.Tensor
    c: torch.Tensor


def check_names(query: Mapping[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(query) - allowed - {"v"})  # v: the page's cache-busting version
    if unknown:
        raise BadRequest(f"unknown parameter '{unknown[0]}'; this endpoint takes "
                         f"{', '.join(sorted(allowed))}")
    for k, v in query.items():
        limit = MAX_LATENT_TEXT if k in LATENT_PARAMS else MAX_TEXT
        if len(v) > limit:
            raise BadRequest(f"parameter '{k}' is too long ({len(v)} characters, at most {limit})")


def get_int(query: Mapping[str, str], name: str, lo: int, hi: int, default: int | None = None) -> int:
    text = query.get(name)
    if text is None or text == "":
        if default is None:
            raise BadRequest(f"parameter '{name}' is required (an integer from {lo} to {hi})")
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer from {lo} to {hi}, not '{text[:40]}'") from None
    if not lo <= value <= hi:
        raise BadRequest(f"'{name}' = {value} is out of range; give an integer from {lo} to {hi}")
    return value


def get_float(query: Mapping[str, str], name: str, lo: float, hi: float, default: float) -> float:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"'{name}' must be a number from {lo:g} to {hi:g}, not '{text[:40]}'") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise BadRequest(f"'{name}' = {text[:40]} is out of range; give a number from {lo:g} to {hi:g}")
    return value


def get_choice(query: Mapping[str, str], name: str, choices, default: str) -> str:
    value = query.get(name) or default
    if value not in choices:
        raise BadRequest(f"'{name}' must be one of {', '.join(choices)}, not '{value[:40]}'")
    return value


# ---- conditions -----------------------------------------------------------------------------

def parse_condition(query: Mapping[str, str], spec: LabelSpec) -> Condition:
    """The query's ``class`` / ``attr`` -> a checked :class:`facegan.labels.Condition` (the
    grammar of ``sample --class`` / ``--attr``); BadRequest naming what the model has."""
    try:
        return labels.parse_condition(spec, query.get("class") or None, query.get("attr") or None,
                                      class_opt="class=", attr_opt="attr=")
    except UserError as e:
        raise BadRequest(str(e)) from None


def face_labels(cond: Condition, spec: LabelSpec, seed: int) -> torch.Tensor:
    """float (K,) for the face of ``seed``: what ``sample --n 1 --seed SEED`` with the same
    options draws (K = 0 for an unconditional model)."""
    return cond.labels(spec, 1, seed)[0]


def parse_truncation(query: Mapping[str, str]) -> float | None:
    """The query's ``truncation`` -> T in TRUNCATION_RANGE, or None when absent or empty."""
    text = query.get("truncation")
    if text is None or text.strip() == "":
        return None
    lo, hi = TRUNCATION_RANGE
    return get_float(query, "truncation", lo, hi, default=hi)


# ---- edits ----------------------------------------------------------------------------------

def parse_edits(query: Mapping[str, str], model: Model) -> tuple[tuple[str, float], ...]:
    """'Smiling:1.5,Male:-2' -> (('Smiling', 1.5), ('Male', -2.0)), names from directions.json,
    strengths finite and within +-STRENGTH_MAX."""
    text = query.get("edit") or ""
    edits: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, colon, value = (s.strip() for s in part.rpartition(":"))
        if not colon:
            raise BadRequest(f"edit '{part[:60]}': write NAME:STRENGTH, e.g. Smiling:1.5")
        if name not in model.directions:
            have = ", ".join(model.directions) or "none (no directions.json in the run folder)"
            raise BadRequest(f"unknown direction '{name[:60]}'; this run has: {have}")
        if name in edits:
            raise BadRequest(f"direction '{name}' is given twice")
        try:
            s = float(value)
        except ValueError:
            raise BadRequest(f"edit '{part[:60]}': the strength must be a number") from None
        if not math.isfinite(s) or abs(s) > STRENGTH_MAX:
            raise BadRequest(f"edit strength {value[:40]} for '{name}' is out of range; give a "
                             f"number from {-STRENGTH_MAX:g} to {STRENGTH_MAX:g}")
        edits[name] = s
    return tuple(edits.items())


def apply_edits(z: torch.Tensor, edits, model: Model) -> torch.Tensor:
    """z float (D,) + sum of strength * unit direction (D,)."""
    for name, s in edits:
        if s:
            z = z + s * model.directions[name].vector
    return z


# ---- latents --------------------------------------------------------------------------------

def encode_latent(z: torch.Tensor) -> str:
    """float (D,) -> its D float32 values, little-endian, as unpadded base64url (the ``z=`` of
    the image endpoints; :func:`parse_latent` reads it back exactly)."""
    raw = z.detach().cpu().numpy().astype("<f4").tobytes()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def latent_text_length(dim: int) -> int:
    """Characters of :func:`encode_latent` for a latent of ``dim`` values (no padding)."""
    n = 4 * dim
    return 4 * (n // 3) + (0, 2, 3)[n % 3]


def parse_latent(query: Mapping[str, str], name: str, dim: int) -> torch.Tensor:
    """The query's latent ``name`` (z or z2) -> float32 (dim,); BadRequest unless it is
    exactly ``dim`` float32 values as base64url (padding optional), all finite and within
    +-LATENT_MAX."""
    text = query.get(name) or ""
    want = latent_text_length(dim)
    what = (f"'{name}' must be a latent of this model: {dim} little-endian float32 values as "
            f"base64url ({want} characters of A-Z a-z 0-9 - _), as /api/project answers it")
    body = text.rstrip("=")  # padding is optional
    if len(text) - len(body) > 2 or not _BASE64URL.fullmatch(body):
        raise BadRequest(what)
    if len(body) != want:
        raise BadRequest(f"'{name}' has {len(body)} characters; {what}")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    arr = np.frombuffer(raw, dtype="<f4")
    if arr.shape != (dim,):  # cannot happen for a text of the right length; kept as a guard
        raise BadRequest(what)
    if not np.isfinite(arr).all():
        raise BadRequest(f"'{name}' holds values that are not finite (nan or inf)")
    peak = float(np.abs(arr).max(initial=0.0))
    if peak > LATENT_MAX:
        raise BadRequest(f"'{name}' holds a value of magnitude {peak:.3g}; a latent's values lie "
                         f"within +-{LATENT_MAX:g}")
    return torch.from_numpy(arr.astype(np.float32))


def latent_labels(cond: Condition, spec: LabelSpec) -> torch.Tensor:
    """float (K,) for a given latent: the condition's labels, any it leaves open drawn with
    LATENT_LABEL_SEED (what ``facegan project`` with its default seed projects with)."""
    return cond.labels(spec, 1, LATENT_LABEL_SEED)[0]


# ---- faces ----------------------------------------------------------------------------------

FACE_PARAMS = {"seed", "z", "seed2", "z2", "t", "interp", "class", "attr", "edit", "size", "download",
               "truncation"}
STRIP_PARAMS = {"seed", "z", "seed2", "z2", "steps", "interp", "class", "attr", "truncation"}


def face_latent(seed: int, model: Model, truncation: float | None = None) -> torch.Tensor:
    """float (D,): the latent ``facegan sample --n 1 --seed SEED [--truncation T]`` uses."""
    return latents(1, model.latent_dim, seed, truncation=truncation)[0]


def face_end(query: Mapping[str, str], model: Model, cond: Condition, truncation: float | None,
             seed_name: str = "seed", z_name: str = "z") -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """One face of a request, named by ``seed_name`` or ``z_name`` (one of them, not both) ->
    (latent float (D,), labels float (K,), the seed or None for a given latent)."""
    if query.get(z_name):
        if query.get(seed_name):
            raise BadRequest(f"give '{seed_name}' (a seed) or '{z_name}' (a latent), not both")
        return parse_latent(query, z_name, model.latent_dim), latent_labels(cond, model.labels), None
    if not query.get(seed_name):
        raise BadRequest(f"parameter '{seed_name}' is required (an integer from 0 to {SEED_MAX}), "
                         f"or a latent as '{z_name}' (from /api/project)")
    seed = get_int(query, seed_name, 0, SEED_MAX)
    return face_latent(seed, model, truncation), face_labels(cond, model.labels, seed), seed


def between(za: torch.Tensor, zb: torch.Tensor, t: torch.Tensor, interp: str) -> torch.Tensor:
    """(D,), (D,), fractions t (T,) -> (T, D) by ``sampling.lerp`` / ``sampling.slerp``."""
    return INTERPS[interp](za[None], zb[None], t)[0]


def blend(ca: torch.Tensor, cb: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Labels (K,), (K,), fractions t (T,) -> (T, K) blended linearly (every conditioning path
    is linear in c)."""
    return (1 - t)[:, None] * ca[None] + t[:, None] * cb[None]


def parse_face(query: Mapping[str, str], model: Model) -> tuple[Face, dict]:
    """An /api/image.png query -> (the face, the parsed options the response needs: ``seed``
    and ``seed2`` are None for a face given by its latent)."""
    check_names(query, FACE_PARAMS)
    r = model.resolution
    cond = parse_condition(query, model.labels)
    trunc = parse_truncation(query)
    z, c, seed = face_end(query, model, cond, trunc)
    edits = parse_edits(query, model)
    size = get_int(query, "size", r, MAX_SIZE, default=r)
    download = get_choice(query, "download", ("0", "1"), "0") == "1"
    opts = {"seed": seed, "size": size, "download": download, "condition": cond, "edits": edits,
            "truncation": trunc}
    if "seed2" in query or "z2" in query or "t" in query:
        z2, c2, seed2 = face_end(query, model, cond, trunc, "seed2", "z2")
        t = torch.tensor([get_float(query, "t", 0.0, 1.0, 0.5)])
        interp = get_choice(query, "interp", tuple(INTERPS), "slerp")
        z = between(z, z2, t, interp)[0]
        c = blend(c, c2, t)[0]
        opts.update(seed2=seed2, t=float(t), interp=interp)
    elif "interp" in query:
        raise BadRequest("'interp' goes with seed2 (or z2) and t (a point between two faces)")
    return Face(apply_edits(z, edits, model), c), opts


def parse_strip(query: Mapping[str, str], model: Model) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """An /api/strip.png query -> (z float (T, D), c float (T, K), options): T frames evenly
    spaced from one face (seed or z) to the other (seed2 or z2), ends included."""
    check_names(query, STRIP_PARAMS)
    cond = parse_condition(query, model.labels)
    trunc = parse_truncation(query)
    za, ca, seed = face_end(query, model, cond, trunc)
    zb, cb, seed2 = face_end(query, model, cond, trunc, "seed2", "z2")
    steps = get_int(query, "steps", *STRIP_STEPS, default=8)
    interp = get_choice(query, "interp", tuple(INTERPS), "slerp")
    t = torch.linspace(0, 1, steps)
    z = between(za, zb, t, interp)
    c = blend(ca, cb, t)
    return z, c, {"seed": seed, "seed2": seed2, "steps": steps, "interp": interp, "truncation": trunc}


# ---- photos ---------------------------------------------------------------------------------

PROJECT_PARAMS = {"align", "class", "attr"}


def parse_project(query: Mapping[str, str], model: Model, align_default: bool) -> tuple[bool, Condition]:
    """A /api/project query -> (align the face?, the condition). A conditional model needs
    the photo's labels (``class`` / ``attr``), as ``facegan project`` does."""
    check_names(query, PROJECT_PARAMS)
    align = get_choice(query, "align", ("0", "1"), "1" if align_default else "0") == "1"
    cond = parse_condition(query, model.labels)
    spec = model.labels
    if spec.conditional and not (query.get("class") or query.get("attr")):
        what, how = (("classes", "class=NAME") if spec.kind == "class" else
                     ("attributes", f"attr={spec.names[0]}=0|1,..."))
        raise BadRequest(f"this model is conditional ({what}: {', '.join(spec.names)}); say which "
                         f"the photo shows with {how} (on the page: the selector above the faces)")
    return align, cond
