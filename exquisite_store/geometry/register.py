"""Registering a model's output against the context it was sent (phase correlation, sub-pixel).

gpt-image models return the whole frame moved by a pixel or two. ``register`` finds that
move on the context, where the true pixels are known, and ``unshift`` moves the model's
rendering of the context and its new band back by it, so the seam strategy joins pixels
that line up. A shift is found to 1/16 px: the peak of the (half-whitened) phase
correlation, refined by an upsampled DFT around it (Guizar-Sicairos et al., 2008, as
scikit-image's ``phase_cross_correlation``; the tests check the two agree). A scale is found as the
difference of the shifts of the two halves of the context, along each axis.

The shift applied is quantised to 1/16 px and resampled with integer cubic weights, so a
step recomputes bit for bit; a shift under ``MIN_APPLIED_16`` sixteenths leaves the
pixels untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exquisite_store.errors import DimensionMismatch

# Sub-pixel resolution of a shift: 1/16 px.
UPSAMPLE = 16
# The smallest shift (in 1/16 px, either axis) worth resampling for: 1/8 px.
MIN_APPLIED_16 = 2
# A context flatter than this (levels of grey standard deviation) has nothing to lock on.
MIN_TEXTURE_LEVELS = 2.0
# The halves of the context must be this long along an axis to measure a scale on it.
MIN_SCALE_BASE_PX = 32
# At most this much of the context is registered on (the rows in the middle, the columns
# nearest the seam): enough to lock on, and the cost stays flat for a long seam.
MAX_ROWS, MAX_COLS = 512, 128
SEAM_MARGIN_PX = 6
# Beyond these an output is refused: a seam cannot hide a picture moved this far.
MAX_SHIFT_PX = 4.0
MAX_SCALE_PPM = 10_000  # 1%
# Integer cubic weights sum to this (per pass).
_WEIGHT_ONE = 1024


@dataclass(frozen=True)
class Registration:
    """How the model's rendering is moved against the truth (canonical orientation).

    ``dy_16`` / ``dx_16``: the model's content sits this many 1/16 px down / right of
    where it should; ``scale_ppm``: its worst scale deviation, parts per million
    (0 when it could not be measured); ``measured``: False when the context was too
    flat (or too small) to register on.
    """

    dy_16: int
    dx_16: int
    scale_ppm: int
    measured: bool

    @property
    def shift_px(self) -> float:
        """The length of the shift, in pixels."""
        return float(np.hypot(self.dy_16, self.dx_16)) / UPSAMPLE

    @property
    def applies(self) -> bool:
        """Whether ``unshift`` would move any pixel."""
        return max(abs(self.dy_16), abs(self.dx_16)) >= MIN_APPLIED_16


def beyond_limits(reg: Registration) -> str:
    """Why ``reg`` is beyond what a step accepts, or "" when it is within the limits."""
    if reg.shift_px > MAX_SHIFT_PX:
        return (
            f"the model moved its picture by {reg.shift_px:.2f} px "
            f"(limit {MAX_SHIFT_PX:g} px): its new band cannot line up with the canvas"
        )
    if reg.scale_ppm > MAX_SCALE_PPM:
        return (
            f"the model scaled its picture by {reg.scale_ppm / 1e4:.2f}% "
            f"(limit {MAX_SCALE_PPM / 1e4:g}%): its new band cannot line up with the canvas"
        )
    return ""


def register(truth: np.ndarray, model: np.ndarray) -> Registration:
    """Find how ``model`` (H x W x ch uint8) is moved against ``truth`` (same shape)."""
    if truth.shape != model.shape or truth.ndim != 3:
        raise DimensionMismatch(
            f"context {truth.shape} and model context {model.shape} differ",
            expected=truth.shape,
            got=model.shape,
        )
    h, w = truth.shape[:2]
    rows = slice(max(0, (h - MAX_ROWS) // 2), max(0, (h - MAX_ROWS) // 2) + MAX_ROWS)
    # The last columns before the seam are left out: on a grown canvas they are the
    # previous band's far edge, where its own shift was filled in by replication.
    edge = SEAM_MARGIN_PX if w >= 4 * SEAM_MARGIN_PX else 0
    cols = slice(max(0, w - edge - MAX_COLS), w - edge)
    ref, mov = _grey(truth[rows, cols]), _grey(model[rows, cols])
    h, w = ref.shape
    if h < 8 or w < 8 or ref.std() < MIN_TEXTURE_LEVELS:
        return Registration(0, 0, 0, measured=False)
    dy, dx = phase_shift(ref, mov)
    scale = 0.0
    if h >= 2 * MIN_SCALE_BASE_PX:  # rows: top half against bottom half
        top = phase_shift(ref[: h // 2], mov[: h // 2], refine=False)
        bottom = phase_shift(ref[h // 2 :], mov[h // 2 :], refine=False)
        scale = max(scale, abs(bottom[0] - top[0]) / (h // 2))
    if w >= 2 * MIN_SCALE_BASE_PX:
        left = phase_shift(ref[:, : w // 2], mov[:, : w // 2], refine=False)
        right = phase_shift(ref[:, w // 2 :], mov[:, w // 2 :], refine=False)
        scale = max(scale, abs(right[1] - left[1]) / (w // 2))
    return Registration(
        dy_16=int(round(dy * UPSAMPLE)),
        dx_16=int(round(dx * UPSAMPLE)),
        scale_ppm=int(round(scale * 1e6)),
        measured=True,
    )


def phase_shift(ref: np.ndarray, mov: np.ndarray, refine: bool = True) -> tuple[float, float]:
    """``(dy, dx)`` such that ``mov(y, x) ~ ref(y - dy, x - dx)``.

    To 1/UPSAMPLE px with ``refine``; without, to about 1/10 px by a parabola through
    the peak and its neighbours on each axis (much cheaper: the scale estimate).
    """
    window = np.outer(np.hanning(ref.shape[0]), np.hanning(ref.shape[1]))
    f_ref = np.fft.fft2((ref - ref.mean()) * window)
    f_mov = np.fft.fft2((mov - mov.mean()) * window)
    product = f_mov * f_ref.conj()
    # Half-whitened (|F|^0.5, not |F|): a blurred rendering has little left at high
    # frequencies, and fully whitening them weighs noise as much as the picture
    # (on blurred, shifted photos the error's 90th percentile: 0.65 px whitened, 0.12 half).
    magnitude = np.abs(product)
    product /= np.sqrt(np.maximum(magnitude, 1e-12 * magnitude.max() + 1e-30))
    corr = np.fft.ifft2(product)
    peak = np.array(np.unravel_index(np.argmax(np.abs(corr)), corr.shape), dtype=np.float64)
    shape = np.array(corr.shape, dtype=np.float64)
    if not refine:
        return _parabolic(np.abs(corr), peak, shape)
    peak[peak > shape // 2] -= shape[peak > shape // 2]
    # refine: the cross-correlation upsampled UPSAMPLE times in a 1.5 px box around the peak
    shifts = np.round(peak * UPSAMPLE) / UPSAMPLE
    size = int(np.ceil(UPSAMPLE * 1.5))
    centre = np.fix(size / 2.0)
    offsets = centre - shifts * UPSAMPLE
    fine = _upsampled_dft(product.conj(), size, offsets).conj()
    best = np.array(np.unravel_index(np.argmax(np.abs(fine)), fine.shape), dtype=np.float64)
    shifts = shifts + (best - centre) / UPSAMPLE
    return float(shifts[0]), float(shifts[1])


def _parabolic(surface: np.ndarray, peak: np.ndarray, shape: np.ndarray) -> tuple[float, float]:
    """The integer peak moved to the vertex of a parabola through it and its neighbours."""
    y, x = int(peak[0]), int(peak[1])
    out = []
    for axis, at in ((0, y), (1, x)):
        n = surface.shape[axis]
        line = surface[:, x] if axis == 0 else surface[y, :]
        left, mid, right = line[(at - 1) % n], line[at], line[(at + 1) % n]
        den = left - 2 * mid + right
        delta = 0.5 * (left - right) / den if den < 0 else 0.0
        value = at + delta
        out.append(value - shape[axis] if value > shape[axis] // 2 else value)
    return out[0], out[1]


def _upsampled_dft(data: np.ndarray, size: int, offsets: np.ndarray) -> np.ndarray:
    """The inverse DFT of ``data`` on a ``size``-square grid UPSAMPLE times finer at ``offsets``."""
    out = data
    for n_items, offset in zip(data.shape[::-1], offsets[::-1], strict=True):
        freq = np.fft.fftfreq(n_items, UPSAMPLE)
        kernel = np.exp(-2j * np.pi * (np.arange(size) - offset)[:, None] * freq)
        # einsum's own loop, not BLAS: a threaded BLAS on a busy machine is 10x slower here
        out = np.einsum("kn,...n->k...", kernel, out)
    return out


def _grey(arr: np.ndarray) -> np.ndarray:
    """Mean of the colour channels, float64."""
    return arr[:, :, :3].astype(np.float64).mean(axis=2)


def unshift(arr: np.ndarray, reg: Registration) -> np.ndarray:
    """``arr`` (uint8 H x W x ch) moved back by ``reg``'s shift; edges replicated.

    Output ``(y, x)`` is the input at ``(y + dy, x + dx)``, resampled with Keys' cubic
    (a = -1/2) in integers, one axis at a time; unchanged when ``reg`` does not apply.
    """
    if not reg.applies:
        return arr
    # int32 holds both passes: at most 255 x (1.27 x 1024)^2 in magnitude
    out = _shift_axis(arr.astype(np.int32), reg.dy_16, axis=0)
    out = _shift_axis(out, reg.dx_16, axis=1)
    den = _WEIGHT_ONE * _WEIGHT_ONE
    out += den // 2
    out //= den
    return np.clip(out, 0, 255).astype(np.uint8)


def _shift_axis(arr: np.ndarray, shift_16: int, axis: int) -> np.ndarray:
    """Sample ``arr`` at ``i + shift_16 / 16`` along ``axis`` (weights sum to _WEIGHT_ONE)."""
    n = arr.shape[axis]
    whole, frac = divmod(shift_16, UPSAMPLE)  # frac in [0, 16)
    reach = abs(whole) + 2
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (reach, reach)
    padded = np.pad(arr, pad, mode="edge")
    out = np.zeros_like(arr)
    for k, weight in zip(range(-1, 3), cubic_weights(frac), strict=True):
        if weight:
            start = reach + whole + k
            part = padded[(slice(None),) * axis + (slice(start, start + n),)]
            out += weight * part
    return out


def cubic_weights(frac_16: int) -> tuple[int, int, int, int]:
    """Integer Keys-cubic weights of the samples at -1, 0, 1, 2 for a fraction ``frac_16 / 16``."""
    t = frac_16 / UPSAMPLE
    raw = [_keys(t + 1), _keys(t), _keys(1 - t), _keys(2 - t)]
    ints = [int(round(v * _WEIGHT_ONE)) for v in raw]
    ints[1] += _WEIGHT_ONE - sum(ints)  # exact sum: a flat image stays flat
    return ints[0], ints[1], ints[2], ints[3]


def _keys(d: float, a: float = -0.5) -> float:
    """Keys' cubic convolution kernel at distance ``d``."""
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    if d < 2:
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return 0.0
