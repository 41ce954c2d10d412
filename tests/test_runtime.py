"""The CPU settings: entry points apply them when they start; importing the library changes nothing."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# its dependencies first (timm and pytorch-grad-cam's own imports set variables of theirs), then the library
LIBRARY = ("import json, os, torch, timm, pytorch_grad_cam, pydicom, sklearn, huggingface_hub, safetensors; "
           "env, n = dict(os.environ), torch.get_num_threads(); import fracture_demo as fd, pkgutil, importlib; "
           "[importlib.import_module(m.name) for m in pkgutil.walk_packages(fd.__path__, 'fracture_demo.')]; fd.load; "
           "print(json.dumps({'env_same': dict(os.environ) == env, 'threads_same': torch.get_num_threads() == n}))")
ENTRY = ("import json, os, {entry}, torch; from fracture_demo import runtime; "
         "print(json.dumps({{**runtime.apply(), 'env': os.environ.get('OMP_WAIT_POLICY'), 'torch': torch.get_num_threads()}}))")


def _run(code: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "FRACTURE_CPU_TUNING")}
    env = {k: v for k, v in {**clean, "OMP_NUM_THREADS": "1", **env}.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_importing_the_library_leaves_the_process_as_it_was():
    assert _run(LIBRARY) == {"env_same": True, "threads_same": True}
    bare = _run("import json, os, sys; env = dict(os.environ); import fracture_demo; "
                "print(json.dumps({'env_same': dict(os.environ) == env, 'torch': 'torch' in sys.modules}))")
    assert bare == {"env_same": True, "torch": False}, "import fracture_demo loads nothing heavy and sets nothing"


def test_entry_points_apply_the_settings_and_they_can_be_turned_off():
    from fracture_demo.runtime import usable_cores
    for entry in ("train", "bench", "app"):  # the training commands, the benchmarks, the app
        on = _run(ENTRY.format(entry=entry), OMP_NUM_THREADS=None)
        assert on["enabled"] and on["env"] == "PASSIVE" and on["torch"] == usable_cores(), entry
        assert on["keep_freed_memory"] == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    off = _run(ENTRY.format(entry="train"), FRACTURE_CPU_TUNING="0")
    assert off == {"enabled": False, "env": None, "torch": off["torch"]}
    assert _run(ENTRY.format(entry="train"), OMP_WAIT_POLICY="ACTIVE")["env"] == "ACTIVE", "a user's own setting wins"
