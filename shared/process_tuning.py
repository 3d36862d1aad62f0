"""How a process that classifies is set up to serve: the memory it frees kept instead of faulted
in again, and NumPy's BLAS on the calling thread alone.

Both allocators a request or a batch goes through give freed memory back to the OS by default,
so the next image or forward pass pays a page fault per 4 KiB page to get it back:

- Pillow frees each image's blocks to the C allocator (its pool of freed blocks is off by
  default): 50-130 page faults a request in the local server, about 0.3 with the pool (per
  request over 1,000 requests, ``/proc/<pid>/stat``). 16 blocks of at most 1 MiB: a 450 px RGB
  upload fits one; what the pool keeps is bounded at 16 MiB.
- glibc's malloc serves torch's activations (about 25 MiB a layer for a forward pass of 256
  tiles) from ``mmap`` above a threshold and trims the heap's top once more than a threshold is
  free; both thresholds start low and the dynamic one never settles for tensors of this size.
  A batch of 200,000 IDX tiles took about 3 million page faults (15 an item) and a third of
  the CPU; with the thresholds below, a few thousand, and 1.5x the items/s (same run,
  alternating). The cost: up to ``HEAP_TOP_KEPT`` of freed heap stays with the process.
  (glibc's ``mallopt``: https://man7.org/linux/man-pages/man3/mallopt.3.html; the Python
  worker on Azure Functions runs on Linux with glibc.)

NumPy's OpenBLAS starts a thread a core for a matrix product and leaves them spinning for work
after it: preprocessing's one product (a photo's background, ``shared.preprocess._Paper``)
then cost the process twice its own thread's CPU, 5.4 against 2.7 ms for a 1200x900 photo
(thread and process CPU over 90 photos), with the same thread time on one BLAS thread. A
server's other worker needs that core. Torch's threads are its own (``EMNIST_EDGE_TORCH_THREADS``).

Each process root that classifies calls ``tune_process()`` once, as it starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy  # noqa: F401  (loaded before its BLAS's threads are limited: see tune_process)
from PIL import Image
from threadpoolctl import threadpool_limits

IMAGE_BLOCK_SIZE = 2**20
IMAGE_BLOCKS_KEPT = 16

# mallopt's parameters (malloc.h). The mmap threshold's documented maximum on 64-bit systems
# is 32 MiB (allocations above it are rare here and may still be mapped); setting it also turns
# the dynamic threshold off.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
HEAP_TOP_KEPT = 128 * 2**20


def tune_process() -> dict[str, bool]:
    """Turn on Pillow's pool of freed image blocks, raise glibc's malloc thresholds and put
    NumPy's BLAS on one thread, for this process; which took effect (``malloc`` is False off
    glibc, ``blas`` where NumPy's BLAS is none that threadpoolctl knows)."""
    Image.core.set_block_size(IMAGE_BLOCK_SIZE)
    Image.core.set_blocks_max(IMAGE_BLOCKS_KEPT)
    # threadpoolctl limits the libraries loaded when it is called: NumPy's is (imported above).
    blas = threadpool_limits(limits=1, user_api="blas").get_original_num_threads()["blas"]
    return {"pillow": True, "malloc": _tune_malloc(), "blas": blas is not None}


def _tune_malloc() -> bool:
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): its allocator as it is
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(M_TRIM_THRESHOLD, HEAP_TOP_KEPT))
