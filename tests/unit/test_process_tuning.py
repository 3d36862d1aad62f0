"""Process-wide tuning: freed memory stays with the process for the next request, and NumPy's
BLAS runs on the calling thread alone."""

import subprocess
import sys

from shared.config import REPO_ROOT

# Forward passes of 256 tiles through the network as saved, in a fresh process; prints the
# median page faults of a pass once warm. "default" is glibc as a fresh worker starts: its mmap
# threshold at the documented default (128 KiB), which also stops glibc from raising it by
# itself after a large block is freed. Left to that dynamic threshold, a run faulted anywhere
# from 550 to 4,400 pages a pass, depending on what the process had freed before. (A batch now
# runs through the network optimised for inference, which frees and takes back far less: 80-200
# faults a pass either way. The saved network still shows what the setting is for.)
# Warm means three passes: with the memory kept, the first two still fault in what the heap
# grows to (about 5,700 and 850 pages) and later ones none. The median, not the mean, so that
# one pass disturbed by the machine (a CI run once averaged 235 over ten) does not decide it.
FAULTS = """
import statistics
import sys
from pathlib import Path
import torch
if sys.argv[1] == "kept":
    from shared.process_tuning import tune_process
    assert tune_process() == {"pillow": True, "malloc": True, "blas": True}
else:
    import ctypes
    from shared.process_tuning import M_MMAP_THRESHOLD
    assert ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 128 * 1024)
from shared.config import Settings
torch.set_num_threads(1)
module = torch.jit.load(str(Settings.from_env().model_path)).eval()
x = torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(0))
def faults():
    return int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[7])
per_pass = []
with torch.inference_mode():
    for _ in range(3):
        module(x)
    for _ in range(11):
        before = faults()
        module(x)
        per_pass.append(faults() - before)
print(statistics.median(per_pass))
"""


def _faults_per_pass(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", FAULTS, mode], cwd=REPO_ROOT, check=True,
                          capture_output=True, text=True, timeout=60)
    return float(done.stdout)


def test_pillow_keeps_freed_image_blocks_for_the_next_image():
    from PIL import Image

    from shared.process_tuning import IMAGE_BLOCK_SIZE, IMAGE_BLOCKS_KEPT, tune_process

    tune_process()
    assert Image.core.get_blocks_max() == IMAGE_BLOCKS_KEPT
    assert Image.core.get_block_size() == IMAGE_BLOCK_SIZE


def test_malloc_keeps_freed_activations_instead_of_faulting_them_in_again():
    # By default torch's activations come from fresh mappings: thousands of pages fault in
    # again on every pass (about 8,650 measured at glibc's default threshold).
    assert _faults_per_pass("default") > 1000
    # Kept: none once warm.
    assert _faults_per_pass("kept") < 200


def test_numpy_blas_runs_on_the_calling_thread_alone():
    # A fresh process: the limit is process-wide, and OpenBLAS starts with a thread a core.
    # NumPy is not imported first: tune_process must work whatever its root imported before.
    probe = ("from shared.process_tuning import tune_process\n"
             "from threadpoolctl import threadpool_info\n"
             "tune_process()\n"
             "print([p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'])")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, check=True,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[1]"
