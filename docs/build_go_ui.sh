#!/usr/bin/env bash
# Build the Go llama-swap's own web UI from its sources, for the browser test
# tests/browser/test_go_ui.py (see docs/COMPATIBILITY.md, "llama-swap's own web UI").
#
#   docs/build_go_ui.sh DEST [REPO]
#
# DEST   where the builds go: DEST/newest (the newest commit's ui/) and
#        DEST/seed (commit 02e015fa's ui-svelte/, the seed this project started from).
# REPO   a llama-swap git repository (a clone, a bare mirror, or a URL);
#        default https://github.com/mostlygeek/llama-swap.git
#
# Needs git, node >= 20.19 and npm (the npm registry must be reachable).
# Then: LLAMA_SWAP_GO_UI=DEST .venv/bin/python -m pytest -n 0 tests/browser/test_go_ui.py
set -euo pipefail

dest=${1:?usage: $0 DEST [REPO]}
repo=${2:-https://github.com/mostlygeek/llama-swap.git}
seed_commit=02e015fa49
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
src="$dest/src"

if [ -d "$repo" ]; then
    gitdir=$repo
else
    gitdir="$src/llama-swap.git"
    [ -d "$gitdir" ] || git clone --bare --quiet "$repo" "$gitdir"
fi

# build NAME COMMIT UI_FOLDER
build() {
    local name=$1 commit=$2 folder=$3
    local tree="$src/$name"
    rm -rf "$tree" && mkdir -p "$tree"
    git --git-dir="$gitdir" archive "$commit" "$folder" | tar -x -C "$tree"
    git --git-dir="$gitdir" rev-parse "$commit" >"$tree/COMMIT"
    (
        cd "$tree/$folder"
        npm ci --no-audit --no-fund --loglevel=error
        npx vite build --emptyOutDir --outDir "$dest/$name" --logLevel warn
    )
    cp "$tree/COMMIT" "$dest/$name/COMMIT"
    echo "built $name ($(cut -c1-8 "$tree/COMMIT")) into $dest/$name"
}

build newest HEAD ui
build seed "$seed_commit" ui-svelte
