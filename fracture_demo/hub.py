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
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.md", "*.png"]))
    except GatedRepoError as exc:  # before its parent class: the repo exists, this user may not read it yet
        raise PermissionError(f"model {name!r} is gated on the Hub: accept its terms on its page, then log in "
                              f"(`hf auth login` or $HF_TOKEN)") from exc
    except RevisionNotFoundError as exc:
        raise FileNotFoundError(f"model {name!r} has no revision {revision!r} on the Hub") from exc
    except RepositoryNotFoundError as exc:  # the Hub answers a private repo's stranger the same way
        raise FileNotFoundError(f"model {name!r} not found: no such local folder, and no such Hub repo "
                                f"(or it is private and you are not logged in: `hf auth login` or $HF_TOKEN)") from exc
    except LocalEntryNotFoundError as exc:  # offline mode, or no network, and not in the local cache
        raise ConnectionError(f"model {name!r} is not in the local Hub cache and the Hub cannot be reached "
                              f"(no network, or HF_HUB_OFFLINE is set): pass a local model folder") from exc
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status in (401, 403):
            raise PermissionError(f"model {name!r}: the Hub refused access ({status}): log in with an account "
                                  f"that may read it (`hf auth login` or $HF_TOKEN)") from exc
        raise


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
