"""The world canvas that sprites are composited into, frame after frame."""

from __future__ import annotations

from fleet.sim.render.raster import F32
from fleet.sim.render.sprites import Sprite


def _half(s: slice) -> slice:
    """The chroma (half-resolution) rows or columns of an even-aligned luma slice."""
    return slice(s.start // 2, s.stop // 2)


class Canvas:
    """The world canvas; sprites are drawn per frame and undone from a pristine copy."""

    def __init__(self, luma: F32, chroma: F32) -> None:
        self._pristine = (luma, chroma)
        self.luma, self.chroma = luma.copy(), chroma.copy()
        self._dirty: list[tuple[slice, slice]] = []

    def draw(self, sprite: Sprite, cx: float, cy: float) -> None:
        """Blend `sprite` centred at canvas px (cx, cy), on even px so chroma lines up."""
        h, w = sprite.luma.shape
        x0, y0 = 2 * round((cx - w / 2) / 2), 2 * round((cy - h / 2) / 2)
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + w, self.luma.shape[1]), min(y0 + h, self.luma.shape[0])
        if xa >= xb or ya >= yb:
            return
        src_y, src_x = slice(ya - y0, yb - y0), slice(xa - x0, xb - x0)
        dst_y, dst_x = slice(ya, yb), slice(xa, xb)
        dst = self.luma[dst_y, dst_x]
        dst += sprite.alpha[src_y, src_x] * (sprite.luma[src_y, src_x] - dst)
        src_c = (_half(src_y), _half(src_x))
        dst_c = self.chroma[:, _half(dst_y), _half(dst_x)]
        dst_c += sprite.alpha_c[src_c] * (sprite.chroma[(slice(None), *src_c)] - dst_c)
        self._dirty.append((dst_y, dst_x))

    def reset(self) -> None:
        """Undo every draw since the last reset."""
        luma, chroma = self._pristine
        for ys, xs in self._dirty:
            self.luma[ys, xs] = luma[ys, xs]
            cs = (slice(None), _half(ys), _half(xs))
            self.chroma[cs] = chroma[cs]
        self._dirty.clear()
