"""Resumable training state in safetensors + JSON (nothing is ever unpickled)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STATE_DIR = ".train_state"


def save_state(out_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict,
               ema: torch.nn.Module | None = None) -> None:
    """Atomically write model, optimizer, loop counters and the weights' moving average, if one is kept (a kill
    mid-write keeps the old state)."""
    d = out_dir / STATE_DIR
    d.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors |= {f"ema.{k}": v.detach().contiguous().cpu() for k, v in ema.state_dict().items()}
    scalars = {}
    for pid, st in opt["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, d / "state.safetensors.tmp")
    (d / "meta.json.tmp").write_text(json.dumps({**meta, "param_groups": opt["param_groups"], "optim_scalars": scalars}))
    os.replace(d / "state.safetensors.tmp", d / "state.safetensors")
    os.replace(d / "meta.json.tmp", d / "meta.json")


def load_state(out_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               ema: torch.nn.Module | None = None) -> dict | None:
    d = out_dir / STATE_DIR
    if not (d / "meta.json").is_file():
        return None
    meta = json.loads((d / "meta.json").read_text())
    tensors = load_file(d / "state.safetensors")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for k, v in meta.pop("optim_scalars").items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta
