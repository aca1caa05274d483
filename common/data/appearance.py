"""Procedural person/vehicle appearance for the synthetic datasets (SPEC section 2, last note).

Identity drives the strong cues: two garment colours, a stripe pattern (count, phase,
orientation) and the position of a dark "bag" block. The camera drives weak cues: the
background tint, a brightness gain and a small horizontal offset. The infrared/thermal
modality drops colour (a near-infrared luminance with its own channel mix, the person
brighter and the background darker) but keeps the identity's spatial pattern and relative
brightness, so a cross-modal model can still match.
Every image also gets per-image noise and jitter from the caller's generator.
"""
import numpy as np


def _identity_params(pid: int):
    r = np.random.default_rng(1_000_003 * (pid + 7))
    return {
        "top": r.uniform(0.1, 0.95, 3),
        "bottom": r.uniform(0.1, 0.95, 3),
        "stripes": int(r.integers(1, 6)),
        "phase": r.uniform(0, np.pi),
        "vertical": bool(r.integers(0, 2)),
        "bag": r.uniform(0.2, 0.8),
        "split": r.uniform(0.4, 0.6),
    }


def _camera_params(camid: int):
    r = np.random.default_rng(7919 * (camid + 3))
    return {"bg": r.uniform(0.2, 0.8, 3), "gain": r.uniform(0.85, 1.15), "shift": r.uniform(-0.06, 0.06)}


def render(pid: int, camid: int, rng: np.random.Generator, height: int = 64, width: int = 32,
           modality: str = "rgb") -> np.ndarray:
    """Return a uint8 (height, width, 3) image of identity ``pid`` seen by camera ``camid``.

    ``modality`` is ``'rgb'`` or ``'ir'`` (infrared / thermal: three equal channels).
    """
    ip, cp = _identity_params(pid), _camera_params(camid)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    yn, xn = ys / height, xs / width
    img = np.empty((height, width, 3), np.float32)
    img[:] = cp["bg"]
    cx = 0.5 + cp["shift"] + rng.uniform(-0.05, 0.05)
    body = (np.abs(xn - cx) < 0.28) & (yn > 0.08) & (yn < 0.97)
    top = body & (yn < ip["split"])
    bottom = body & ~top
    coord = xn if ip["vertical"] else yn
    stripe = 0.5 + 0.5 * np.sin(2 * np.pi * ip["stripes"] * coord * 2 + ip["phase"])
    img[top] = ip["top"] * (0.45 + 0.55 * stripe[top, None])
    img[bottom] = ip["bottom"]
    head = ((xn - cx) ** 2 / 0.02 + (yn - 0.06) ** 2 / 0.004) < 1
    img[head] = (0.85, 0.7, 0.6)
    bag = body & (np.abs(yn - ip["bag"]) < 0.07) & (xn > cx + 0.1)
    img[bag] = 0.08
    img *= cp["gain"]
    if modality == "ir":
        # near-infrared: a luminance with its own channel mix (not the RGB camera's), the
        # person lit by the IR illuminator (brighter, gamma-compressed), the background dark
        lum = img @ np.array([0.45, 0.35, 0.2], np.float32)
        lum = np.where(body | head, 0.15 + 0.85 * np.sqrt(lum), 0.3 * lum)
        img = np.repeat(lum[..., None], 3, axis=2)
    elif modality != "rgb":
        raise ValueError(f"modality must be 'rgb' or 'ir', got {modality!r}")
    img += rng.normal(0, 0.04, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def save(img: np.ndarray, path: str) -> None:
    """Write ``img`` to ``path`` (format from the extension: .jpg, .png, .bmp)."""
    import os
    from PIL import Image
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    kwargs = {"quality": 95} if path.lower().endswith((".jpg", ".jpeg")) else {}
    Image.fromarray(img).save(path, **kwargs)


# Dataset-level appearance styles ("domain shift") of the synthetic image writers
# (``python -m common.data.synthetic --shift STYLE``). Each is a fixed, deterministic
# re-rendering of a finished image, so the identities stay learnable and the default 'none'
# leaves every byte as before. A style changes what a network trained on unshifted images
# has learnt to rely on: the colour of the garments (a channel mix), their contrast and
# brightness, and a strong per-camera cast (camera style).
DOMAIN_SHIFTS = {
    "none": None,
    # warm, washed-out light (a DukeMTMC-like outdoor look): red up, blue down, low contrast,
    # slight blur, camera casts of +-25 %
    "warm": {"mix": ((1.15, 0.20, 0.0), (0.10, 0.90, 0.05), (0.0, 0.15, 0.60)), "saturation": 0.8,
             "contrast": 0.65, "brightness": 1.1, "gamma": 0.85, "camera": 0.25, "blur": True},
    # dim, desaturated, hard light (a CUHK03-like indoor look): swapped green/blue, dark,
    # high contrast, camera casts of +-35 %
    "dim": {"mix": ((0.80, 0.10, 0.10), (0.05, 0.25, 0.70), (0.10, 0.75, 0.15)), "saturation": 0.45,
            "contrast": 1.35, "brightness": 0.7, "gamma": 1.3, "camera": 0.35, "blur": False},
}


def domain_shift(img: np.ndarray, style: str, camid: int) -> np.ndarray:
    """``img`` (uint8 H x W x 3) re-rendered in dataset style ``style`` (a key of
    :data:`DOMAIN_SHIFTS`) as seen by camera ``camid``; 'none' returns it unchanged. The
    camera cast is a fixed per-(style, camera) channel gain; nothing is random."""
    if style not in DOMAIN_SHIFTS:
        raise ValueError(f"unknown domain shift {style!r}; expected one of {', '.join(DOMAIN_SHIFTS)}")
    s = DOMAIN_SHIFTS[style]
    if s is None:
        return img
    x = img.astype(np.float32) / 255.0
    x = x @ np.asarray(s["mix"], np.float32).T
    lum = x.mean(axis=2, keepdims=True)
    x = lum + s["saturation"] * (x - lum)
    x = 0.5 + s["contrast"] * (x - 0.5)
    x = np.clip(x * s["brightness"], 0.0, 1.0) ** s["gamma"]
    cast = np.random.default_rng([sum(map(ord, style)), int(camid)]).uniform(-1.0, 1.0, 3)
    x = x * (1.0 + s["camera"] * cast.astype(np.float32))
    if s["blur"]:
        pad = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
        x = sum(pad[i:i + x.shape[0], j:j + x.shape[1]] for i in range(3) for j in range(3)) / 9.0
    return (np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
