"""``--push_to_hub``: upload a finished output folder (model, model card, validation grids; no checkpoints)."""

from __future__ import annotations

import os

from huggingface_hub import HfApi

# training state is large and useless to someone loading the model
IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "logs/**", "*.tmp/**"]


def push_to_hub(output_dir: str, hub_model_id: str | None = None, hub_token: str | None = None,
                api: HfApi | None = None) -> str:
    """Create (or reuse) the model repository and upload ``output_dir``; returns the repository id.

    ``hub_model_id`` defaults to the name of ``output_dir``, as in the diffusers examples.
    """
    api = api if api is not None else HfApi(token=hub_token)
    repo_name = hub_model_id or os.path.basename(os.path.normpath(output_dir))
    repo_id = api.create_repo(repo_id=repo_name, exist_ok=True).repo_id
    api.upload_folder(
        repo_id=repo_id, folder_path=output_dir, commit_message="End of training", ignore_patterns=IGNORE_PATTERNS
    )
    return repo_id
