"""Every entry point gets the CPU settings on import of fracture_demo, and FRACTURE_CPU_TUNING=0 leaves them off."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import json, os, fracture_demo, torch; from fracture_demo import runtime; "
         "print(json.dumps({**runtime.SETTINGS, 'env': os.environ.get('OMP_WAIT_POLICY'), 'torch': torch.get_num_threads()}))")


def _settings(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "FRACTURE_CPU_TUNING")}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_tuning_applies_on_import_and_can_be_turned_off():
    from fracture_demo.runtime import usable_cores
    on = _settings()
    assert on["enabled"] and on["env"] == "PASSIVE" and on["torch"] == usable_cores()
    assert on["keep_freed_memory"] == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    off = _settings(FRACTURE_CPU_TUNING="0")
    assert off == {"enabled": False, "env": None, "torch": off["torch"]}
    assert _settings(OMP_WAIT_POLICY="ACTIVE")["env"] == "ACTIVE", "a user's own setting wins"
