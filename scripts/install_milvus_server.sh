#!/usr/bin/env bash
# Installs a real Milvus server for the tests into .tools/milvus (its own venv: the launcher's pinned
# dependencies stay out of the project's .venv), and unpacks its binaries once into .tools/milvus/runtime,
# which every test server links instead of unpacking ~450 MB into each fresh data folder.
# PyPI's milvus==2.3.5 ships the standalone server (etcd built in) for Linux x86_64 and macOS arm64 only;
# elsewhere this says so and exits 0, and the server tests skip with that reason.
set -euo pipefail
cd "$(dirname "$0")/.."
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64|Darwin-arm64) ;;
  *) echo "install_milvus_server: no milvus==2.3.5 wheel for $(uname -s)-$(uname -m); server tests will skip"; exit 0 ;;
esac
TOOL=.tools/milvus
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x "$TOOL/bin/milvus-server" ]; then
  "$PY" -m venv "$TOOL"
  "$TOOL/bin/python" -m pip install -q "milvus==2.3.5"
fi
"$TOOL/bin/python" -c "import milvus; milvus._initialize_data_files('$TOOL/runtime')"
echo "install_milvus_server: $TOOL/bin/milvus-server (Milvus 2.3.5 standalone)"
