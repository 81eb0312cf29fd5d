"""One writer per destination: an exclusive `fcntl.flock` on a lock file keyed by the destination.

The lock file lives in a machine-wide folder (`$V2V_LOCK_DIR`, default `<tmp>/v2v-migrate-locks-<uid>`),
not in the state dir, so two applies started from different working directories (hence different state
dirs) still exclude each other. flock locks die with their process, so a kill -9 never leaves a stale lock;
the pid written into the file only serves to name the holder in the error message.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from v2v_migrate.checkpoint import dest_key, normalize_uri
from connectors.errors import StoreLockedError


def lock_dir() -> Path:
    return Path(os.environ.get("V2V_LOCK_DIR") or Path(tempfile.gettempdir()) / f"v2v-migrate-locks-{os.getuid()}")


class DestinationLock:
    """Context manager: `with DestinationLock(dest_uri): ...` raises StoreLockedError when held elsewhere."""

    def __init__(self, dest_uri: str):
        self.dest_uri = normalize_uri(dest_uri)
        self.path = lock_dir() / f"{dest_key(dest_uri)}.lock"
        self._fd: int | None = None

    def acquire(self) -> "DestinationLock":
        import fcntl  # POSIX only; imported here so that importing the package works everywhere

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = self._read_holder()
            raise StoreLockedError(
                f"Destination {self.dest_uri} is being written by another apply (pid {holder}).",
                f"wait for process {holder} to finish (or stop it; it resumes later), "
                "or choose another destination.",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{self.dest_uri}\n".encode())
        self._fd = fd
        return self

    def _read_holder(self) -> str:
        try:
            return self.path.read_text().split("\n", 1)[0].strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DestinationLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
