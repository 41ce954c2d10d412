#!/usr/bin/env bash
# Deploy this checkout as a Hugging Face Space: one commit, weights and images as Git LFS pointers.
#   scripts/deploy_space.sh https://huggingface.co/spaces/OWNER/NAME     (needs git-lfs; token via `hf auth login`)
# The Space runs app.py on the bundled weights (README front matter: sdk gradio, app_file app.py) and
# needs no network besides its own. History is not pushed: older commits hold the weights as plain blobs,
# which a Space refuses, so the Space gets one snapshot of the committed tree (HEAD).
set -euo pipefail
remote=${1:?usage: scripts/deploy_space.sh SPACE_GIT_URL}
command -v git-lfs >/dev/null || { echo "git-lfs is needed (apt-get install git-lfs)" >&2; exit 2; }
src=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$src" archive HEAD | tar -x -C "$work"       # the committed tree, nothing untracked
cp "$src/scripts/space.gitattributes" "$work/.gitattributes"   # weights and images through LFS
cd "$work"
git init -q -b main
git lfs install --local >/dev/null
git add -A
git -c user.name="${GIT_AUTHOR_NAME:-fracture-demo}" -c user.email="${GIT_AUTHOR_EMAIL:-deploy@localhost}" \
    commit -qm "Deploy $(git -C "$src" rev-parse --short HEAD) as a Space"
git push -f "$remote" main
echo "deployed $(git -C "$src" rev-parse --short HEAD) to $remote"
