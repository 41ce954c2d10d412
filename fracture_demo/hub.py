"""A model folder on disk is a model repo on the Hub: one resolver, one uploader."""
from __future__ import annotations

import os
from pathlib import Path

#: Files a training run keeps for itself; never uploaded.
PRIVATE_PATTERNS = [".train_state/*", ".train_state/**"]


def resolve_model_dir(folder_or_id: str | os.PathLike, revision: str | None = None) -> Path:
    """A local model folder as is, or a Hub id downloaded (or taken from the cache when offline)."""
    path = Path(folder_or_id)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is a folder but not a model folder (no config.json)")
        return path
    name = str(folder_or_id)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/")):
        raise FileNotFoundError(f"model {name!r} not found: not a local model folder, nor a Hub id (owner/name)")
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.md", "*.png"]))
    except Exception as exc:  # offline, missing repo, gated: all mean "can't get it"
        raise FileNotFoundError(f"model {name!r} not found locally and not downloadable from the Hub "
                                f"({exc.__class__.__name__}); offline, pass a local model folder") from exc


def push_folder(folder: str | os.PathLike, repo_id: str, private: bool = False, api=None,
                commit_message: str = "Upload fracture classifier") -> str:
    """Create ``repo_id`` if needed and upload ``folder``; returns the repo URL.

    The token comes from ``HF_TOKEN`` or the user's login inside huggingface_hub; this code
    never reads, prints or stores it. ``api`` lets tests pass a local stand-in for ``HfApi``.
    """
    if api is None:
        from huggingface_hub import HfApi
        api = HfApi()
    url = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                      commit_message=commit_message, ignore_patterns=PRIVATE_PATTERNS)
    return str(url)
