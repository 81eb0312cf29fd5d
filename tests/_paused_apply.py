"""Test helper (not a test module): a real `apply` whose translator pauses, run as its own process.

The translator is the real one, wrapped: it translates the first K batches, then writes GATE/paused and
blocks until GATE/go exists. A test waits for `paused` (a state this run reports), so it knows the run is
mid-way, then kills it (SIGKILL, SIGINT) or starts a second apply; no sleep decides when. The same
fingerprint as the real translator: a rerun with the real CLI is the same migration.

    python tests/_paused_apply.py TRANSLATOR_DIR SOURCE DEST GATE K [--state-dir D] [--batch-size N]
        [--commit-seconds S] [--lease-seconds T]
Prints the apply's JSON summary; errors print `error: ...` and exit with the CLI's exit code.
"""
from __future__ import annotations

import argparse
import json
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
            while not (self.gate / "go").exists():  # the test releases it (or kills this process)
                time.sleep(0.01)
        return self.real(x)


def main() -> int:
    p = argparse.ArgumentParser()
    for name in ("translator", "source", "dest", "gate"):
        p.add_argument(name)
    p.add_argument("pause_after", type=int)
    p.add_argument("--state-dir")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--commit-seconds", type=float, default=0.0)
    p.add_argument("--lease-seconds", type=float, default=60.0)
    a = p.parse_args()
    from v2v_migrate import load_translator
    from v2v_migrate.apply import apply_migration
    from v2v_migrate.errors import KNOWN_ERRORS, exit_code

    gate = Path(a.gate)
    gate.mkdir(parents=True, exist_ok=True)
    translator = PausingTranslator(load_translator(a.translator), gate, a.pause_after)
    try:
        out = apply_migration(None, a.source, a.dest, translator=translator, batch_size=a.batch_size,
                              state_dir=a.state_dir, commit_seconds=a.commit_seconds, lease_seconds=a.lease_seconds)
    except KNOWN_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    print(json.dumps(out, default=str))
    return 130 if out.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
