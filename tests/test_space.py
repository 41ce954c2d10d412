"""The Space deploys: a snapshot pushed to a stand-in Space remote carries weights and images through Git LFS."""
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(*args, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(not shutil.which("git-lfs"), reason="git-lfs is not installed (.ci/run installs it)")
def test_deploy_pushes_weights_as_lfs_objects(tmp_path):
    remote = tmp_path / "space.git"
    _git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    res = subprocess.run(["bash", "scripts/deploy_space.sh", remote.as_uri()], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    pushed = _git("ls-tree", "-r", "--name-only", "main", cwd=remote).split()
    committed = _git("ls-tree", "-r", "--name-only", "HEAD", cwd=ROOT).split()
    assert set(pushed) == set(committed) | {".gitattributes"}
    weights = [p for p in pushed if p.endswith((".safetensors", ".png", ".jpg"))]
    assert any(p.endswith("model.safetensors") for p in weights)
    for path in weights:
        pointer = _git("show", f"main:{path}", cwd=remote)
        assert pointer.startswith("version https://git-lfs.github.com/spec/v1"), f"{path} was pushed as a plain blob"
        oid = pointer.split("oid sha256:")[1].split()[0]
        data = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, check=True, capture_output=True).stdout
        assert oid == hashlib.sha256(data).hexdigest(), path
        stored = remote / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
        assert stored.is_file() and stored.read_bytes() == data, f"{path}: its LFS object did not reach the remote"
