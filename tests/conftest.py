"""Test-wide settings: a bounded torch thread count (a busy 2-core box is 100x slower with spinning threads) and
no network access to the Hub."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


import pytest  # noqa: E402

# in-process training runs share accelerate's process-wide state: every test starts from a fresh one (autouse)
from script_helpers import fresh_accelerate_state  # noqa: E402, F401


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny random glyph CLIP (16 px, projection 8) with the glyph tokenizer, saved as a standard CLIP folder."""
    from transformers import CLIPModel

    from diffusion_canon.data.tokenizer import build_glyph_tokenizer
    from diffusion_canon.clip.glyph_clip import glyph_clip_config, glyph_clip_image_processor

    folder = tmp_path_factory.mktemp("clip")
    tokenizer = build_glyph_tokenizer(folder, model_max_length=24)
    torch.manual_seed(0)
    CLIPModel(glyph_clip_config(tokenizer, image_size=16, hidden_size=16, num_layers=1, patch_size=8,
                                projection_dim=8)).save_pretrained(folder)
    glyph_clip_image_processor(16).save_pretrained(folder)
    return folder
