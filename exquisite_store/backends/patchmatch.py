"""The offline default: PatchMatch content-aware fill (``pypatchmatch``), seeded.

It ignores prompt text. Fills run in a worker process so a slow fill can be
cancelled and never holds the GIL of a server.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np

from exquisite_store import imageio
from exquisite_store.backends.base import BackendRequest, BackendResult, LocalBackend
from exquisite_store.errors import Cancelled, PermanentBackendError, TransientBackendError

PATCH_SIZE = 7
#: a fill that takes longer than this is stopped (its worker killed): a transient error
DEADLINE_S = 900.0


def fill(
    image: np.ndarray, hole: np.ndarray, seed: int, patch_size: int = PATCH_SIZE
) -> np.ndarray:
    """Fill the ``hole`` (non-zero) pixels of an RGB image; same inputs, same output."""
    from patchmatch import patch_match

    patch_match.set_random_seed(seed % 2**32)
    return patch_match.inpaint(image, hole, patch_size=patch_size)


def _worker(conn, image, hole, seeds, patch_size) -> None:  # pragma: no cover - child
    try:
        outs = [
            imageio.encode_png(imageio.from_array(fill(image, hole, s, patch_size))) for s in seeds
        ]
        conn.send(("ok", outs))
    except BaseException as exc:  # report every failure to the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class PatchMatchBackend(LocalBackend):
    """Seeded PatchMatch fill of the masked area; candidate ``i`` uses ``seed + i``."""

    name = "patchmatch"
    ignores_prompt = True

    def __init__(
        self,
        *,
        patch_size: int = PATCH_SIZE,
        in_process: bool = False,
        deadline_s: float = DEADLINE_S,
    ) -> None:
        self.patch_size = patch_size
        self.in_process = in_process
        self.deadline_s = deadline_s

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """Fill the frame's transparent-mask area ``n`` times."""
        hole = (request.mask[:, :, 3] == 0).astype(np.uint8) * 255
        image = np.ascontiguousarray(request.image[:, :, :3])
        seeds = [request.seed + i for i in range(request.n)]
        if self.in_process:
            outs = [
                imageio.encode_png(imageio.from_array(fill(image, hole, s, self.patch_size)))
                for s in seeds
            ]
        else:
            outs = self._run_in_worker(image, hole, seeds, cancel)
        return BackendResult(images=outs, metadata={"patch_size": str(self.patch_size)})

    def _run_in_worker(self, image, hole, seeds, cancel) -> list[bytes]:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker, args=(child, image, hole, seeds, self.patch_size), daemon=True
        )
        proc.start()
        child.close()
        end = time.monotonic() + self.deadline_s
        try:
            while not parent.poll(0.05):
                if cancel is not None and cancel.is_set():
                    proc.kill()
                    raise Cancelled("cancelled during the patchmatch fill")
                if time.monotonic() > end:
                    proc.kill()
                    raise TransientBackendError(
                        f"the patchmatch fill took longer than {self.deadline_s:g}s; stopped"
                    )
                if not proc.is_alive() and not parent.poll(0):
                    raise TransientBackendError(
                        f"patchmatch worker died (exit code {proc.exitcode})"
                    )
            status, payload = parent.recv()
        except EOFError:
            raise TransientBackendError("patchmatch worker closed its pipe") from None
        finally:
            parent.close()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        if status != "ok":
            raise PermanentBackendError(f"patchmatch failed: {payload}")
        return payload
