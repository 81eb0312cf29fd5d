"""A real Milvus server for the tests: the standalone binary that PyPI's `milvus==2.3.5` ships (etcd built in).

The launcher (`milvus-server`) lives in its own tool folder, not in the project's .venv (its pinned
dependencies would fight ours): `scripts/install_milvus_server.sh` creates `.tools/milvus`, and
`$V2V_MILVUS_SERVER` may point at another launcher. Where neither exists, or where no wheel exists for the
platform (there are wheels for Linux x86_64 and macOS arm64 only), the tests that need a server skip with
the reason.

Each server gets a fresh data folder and free ports for every component, the embedded etcd's peer port
included (the launcher has no option for it: an etcd config file named by ETCD_CONFIG_PATH sets it), so
that several test sessions on one machine never meet. Its components address each other on 127.0.0.1
(`--extra-config X.ip=127.0.0.1`; otherwise they talk over the machine's network address); Milvus 2.3.5
still listens on all interfaces for its proxy and metrics ports, which no option changes. It is ready when
the launcher prints `Ctrl+C to exit` and the proxy port accepts connections, and is stopped with SIGINT:
the launcher then stops its child, while SIGTERM would kill the launcher alone and orphan the server.
`stop()` then `start()` restarts it on the same data folder and ports (fault tests).
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOL_DIR = REPO / ".tools" / "milvus"
LAUNCHER_ENV = "V2V_MILVUS_SERVER"
READY_LINE = "Ctrl+C to exit"
COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode")
# The launcher's port options (each component listens on its own port; all are chosen free here).
PORT_OPTIONS = ("etcd_port", "root_coord_port", "proxy_port", "proxy_internal_port", "query_coord_port",
                "query_node_port", "index_coord_port", "index_node_port", "data_coord_port", "data_node_port")
START_TIMEOUT = 180.0
LAUNCH_WITH_REUSEADDR = """
import socket, sys
import milvus

def try_bind_port(self, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None

milvus.MilvusServerConfig.try_bind_port = try_bind_port
sys.argv[0] = "milvus-server"
sys.exit(milvus.main())
"""
AUTH_USER, AUTH_PASSWORD = "root", "Milvus"  # the server's built-in account when authorization is on


def unavailable_reason() -> str | None:
    """Why no Milvus server can run here, or None when one can."""
    if launcher() is not None:
        return None
    machine = f"{platform.system()}-{platform.machine()}"
    if machine not in ("Linux-x86_64", "Darwin-arm64"):
        return f"milvus==2.3.5 has no wheel for {machine} (Linux x86_64 and macOS arm64 only)"
    return (f"no Milvus server launcher: run `make milvus-server` (creates {TOOL_DIR.relative_to(REPO)}) "
            f"or set {LAUNCHER_ENV} to a milvus-server executable")


def launcher() -> Path | None:
    given = os.environ.get(LAUNCHER_ENV)
    if given:
        return Path(given) if Path(given).is_file() else None
    path = TOOL_DIR / "bin" / "milvus-server"
    return path if path.is_file() else None


def free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 right now (held open together so that they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class MilvusServer:
    """One Milvus standalone server. `url` is http://127.0.0.1:PORT; `uri(name)` a store URI for a collection."""

    def __init__(self, data_dir: Path, auth: bool = False):
        self.data_dir = Path(data_dir)
        self.auth = auth
        self.user, self.password = (AUTH_USER, AUTH_PASSWORD) if auth else (None, None)
        self.ports: dict[str, int] = {}   # the launcher's port options
        self.etcd_peer_port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._child_pid: int | None = None
        self._output: list[str] = []

    @property
    def port(self) -> int:
        return self.ports["proxy_port"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def uri(self, collection: str) -> str:
        return f"milvus:{self.url}#{collection}"

    def credentials_env(self) -> dict[str, str]:
        """Environment variables a client needs (empty without authorization)."""
        return {"MILVUS_USER": self.user, "MILVUS_PASSWORD": self.password} if self.auth else {}

    @property
    def server_pid(self) -> int | None:
        """The server process's pid (the launcher's child), for measuring it."""
        return self._child_pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        # The launcher's own main(), run by its interpreter with one change: its check that a port is free
        # binds without SO_REUSEADDR, so after a restart it sees the proxy port as taken while old client
        # connections sit in TIME_WAIT (60 s) and moves the server to the next port. The server itself
        # binds with SO_REUSEADDR; the check now does too, so a restart keeps its port.
        python = launcher().parent / "python"
        cmd = [str(python), "-c", LAUNCH_WITH_REUSEADDR, "--data", str(self.data_dir)]
        for option, port in self.ports.items():
            cmd += [f"--{option.replace('_', '-')}", str(port)]
        for component in COMPONENTS:
            cmd += ["--extra-config", f"{component}.ip=127.0.0.1"]
        if self.auth:
            cmd += ["--extra-config", "common.security.authorizationEnabled=true"]
        return cmd

    def _share_binaries(self) -> None:
        """The launcher unpacks ~450 MB of binaries into DATA/bin on every fresh folder; the install script
        unpacked them once into the tool folder, so link that instead (they are only read)."""
        unpacked = TOOL_DIR / "runtime" / "bin"
        bin_dir = self.data_dir / "bin"
        if unpacked.is_dir() and not bin_dir.exists() and launcher() == TOOL_DIR / "bin" / "milvus-server":
            self.data_dir.mkdir(parents=True, exist_ok=True)
            bin_dir.symlink_to(unpacked, target_is_directory=True)

    def start(self, attempts: int = 3) -> "MilvusServer":
        """Start (or restart, on the same data folder and ports); returns once the server takes requests."""
        if self.running:
            return self
        first = not self.ports
        for attempt in range(attempts):
            if first:  # a port taken between choosing it and the server binding it: choose again
                *ports, self.etcd_peer_port = free_ports(len(PORT_OPTIONS) + 1)
                self.ports = dict(zip(PORT_OPTIONS, ports))
            self._share_binaries()
            if self._launch():
                return self
            self.stop()
            if not first:
                break
        raise RuntimeError(f"Milvus server did not start in {self.data_dir}: "
                           + " | ".join(self._output[-8:]) + f" (logs: {self.data_dir / 'logs'})")

    def _etcd_config(self) -> Path:
        """The embedded etcd's listen addresses (Milvus reads the file named by ETCD_CONFIG_PATH)."""
        peer, client = f"http://127.0.0.1:{self.etcd_peer_port}", f"http://127.0.0.1:{self.ports['etcd_port']}"
        path = self.data_dir / "etcd.yaml"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(f"name: v2v-test\nlisten-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
                        f"initial-cluster: v2v-test={peer}\nlisten-client-urls: {client}\n"
                        f"advertise-client-urls: {client}\n")
        return path

    def _launch(self) -> bool:
        self._output = []
        env = dict(os.environ, ETCD_CONFIG_PATH=str(self._etcd_config()))
        self._proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, text=True, start_new_session=True, env=env)
        ready = threading.Event()

        def pump(stream) -> None:  # keep reading: a full pipe would block the launcher
            for line in stream:
                self._output.append(line.rstrip())
                match = re.search(r"Process:\s+(\d+)", line)
                if match:
                    self._child_pid = int(match.group(1))
                if READY_LINE in line:
                    ready.set()

        threading.Thread(target=pump, args=(self._proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not ready.wait(0.2):
            if self._proc.poll() is not None:
                return False
        # The launcher's readiness is the health endpoint; after a restart that can answer before the
        # proxy listens again, so wait for the proxy port too.
        while time.monotonic() < deadline and self._proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return ready.is_set()
            except OSError:
                time.sleep(0.2)
        return False

    def stop(self) -> None:
        """SIGINT to the launcher, which stops the server (SIGTERM, then SIGKILL after 1 s) and exits;
        anything left after 60 s is killed."""
        proc, self._proc = self._proc, None
        child, self._child_pid = self._child_pid, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        if child is not None:
            _wait_gone(child, timeout=30)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait for a process to exit (a zombie counts as gone); kill it if it lingers past `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text():
                return
        except (ProcessLookupError, FileNotFoundError):
            return
        except OSError:
            pass
        time.sleep(0.1)
    _signal(pid, signal.SIGKILL)
