"""Process-wide memory tuning: freed memory stays with the process for the next request."""

import subprocess
import sys

from shared.config import REPO_ROOT

# Forward passes of 256 tiles through the network as saved, in a fresh process; prints the page
# faults per pass once the model is warm. (A batch now runs through the network optimised for
# inference, whose fused convolutions free and take back far less: about 150-200 faults a pass
# by default, 80 kept. The saved network still shows what the setting is for.)
FAULTS = """
import sys
from pathlib import Path
import numpy as np
import torch
if sys.argv[1] == "kept":
    from shared.process_memory import keep_freed_memory
    assert keep_freed_memory() == {"pillow": True, "malloc": True}
from shared.config import Settings
from shared.model_loader import ModelSpec, load_spec
model = load_spec(ModelSpec.of(Settings.from_env()))
tiles = np.random.default_rng(0).integers(0, 256, (256, 28, 28), dtype=np.uint8)
def faults():
    return int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[7])
x = model.to_input(tiles)
with torch.inference_mode():
    model.module(x)
    before = faults()
    for _ in range(10):
        model.module(x)
print((faults() - before) / 10)
"""


def _faults_per_pass(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", FAULTS, mode], cwd=REPO_ROOT, check=True,
                          capture_output=True, text=True, timeout=60)
    return float(done.stdout)


def test_pillow_keeps_freed_image_blocks_for_the_next_image():
    from PIL import Image

    from shared.process_memory import IMAGE_BLOCK_SIZE, IMAGE_BLOCKS_KEPT, keep_freed_memory

    keep_freed_memory()
    assert Image.core.get_blocks_max() == IMAGE_BLOCKS_KEPT
    assert Image.core.get_block_size() == IMAGE_BLOCK_SIZE


def test_malloc_keeps_freed_activations_instead_of_faulting_them_in_again():
    # By default torch's activations come from fresh mappings: thousands of pages fault in
    # again on every pass (about 4,800 measured).
    assert _faults_per_pass("default") > 1000
    # Kept: about 20.
    assert _faults_per_pass("kept") < 200
