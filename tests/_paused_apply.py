"""Test helper (not a test module): the real `v2v-migrate` CLI, paused mid-run, in its own process.

The translator is the real one, wrapped: it translates the first K batches, then writes GATE/paused and
blocks until GATE/go exists. A test waits for `paused` (a state this run reports), so it knows the run is
mid-way, then kills it (SIGKILL, SIGINT) or starts a second apply: no sleep decides when. The wrapper keeps
the real translator's fingerprint, so a rerun with the plain CLI is the same migration.
With K written as `upsert:K`, the destination's connector pauses instead, before its (K+1)-th upsert: the
Ray engine translates in its actors, but upserts in this process.

    python tests/_paused_apply.py GATE K apply --translator DIR --source URI --dest URI ...
"""
from __future__ import annotations

import sys
import time
from pathlib import Path


class PausingTranslator:
    def __init__(self, real, gate: Path, pause_after: int):
        self.real, self.gate, self.pause_after, self.calls = real, gate, pause_after, 0
        self.fingerprint, self.source_dim, self.target_dim = real.fingerprint, real.source_dim, real.target_dim

    def __call__(self, x):
        self.calls += 1
        if self.calls == self.pause_after + 1:
            (self.gate / "paused").write_text(str(self.pause_after))
            while not (self.gate / "go").exists():  # the test releases it, or kills this process
                time.sleep(0.01)
        return self.real(x)


def pause_upserts(dest_uri: str, gate: Path, pause_after: int) -> None:
    import importlib

    import connectors

    module, name = connectors._REGISTRY[connectors.split_uri(dest_uri)[0]]
    cls = getattr(importlib.import_module(module), name)
    real_upsert, calls = cls.upsert, [0]

    def upsert(self, batch):
        calls[0] += 1
        if calls[0] == pause_after + 1:
            (gate / "paused").write_text(str(pause_after))
            while not (gate / "go").exists():
                time.sleep(0.01)
        return real_upsert(self, batch)

    cls.upsert = upsert


def main() -> int:
    gate, pause, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    gate.mkdir(parents=True, exist_ok=True)
    import v2v_migrate.preflight as preflight
    from v2v_migrate.cli import main as cli_main

    if pause.startswith("upsert:"):
        pause_upserts(argv[argv.index("--dest") + 1], gate, int(pause.split(":")[1]))
    else:
        real_load = preflight.load_translator
        preflight.load_translator = lambda path, device="auto": PausingTranslator(real_load(path, device), gate,
                                                                                  int(pause))
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
