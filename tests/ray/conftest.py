"""A real multi-node Ray cluster on this machine, for the Ray service's tests.

``ray start --head`` plus two ``ray start --address`` worker nodes, each in a session of its own (so the fixture
stops each node, and a test kills one, by process group), bound to 127.0.0.1, with distinct custom resources:
the head offers ``head_only``, the workers ``node_a`` and ``node_b``. Started once per test session, stopped at
its end. Small on purpose (2 cores here): 2 logical CPUs per node, 100 MB object stores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'nni-pl[ray]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_query(address: str, expression: str) -> Any:
    """The JSON value of ``expression`` evaluated by a fresh Ray driver (a process of its own: this one never
    initialises Ray, so that tests may fork), ``None`` if it fails.

    The value is printed on a line of its own behind a marker: Ray writes its own warnings to stdout too (e.g.
    "raylet has lagging heartbeats" on a busy machine), before or after it."""
    code = (
        f"import json, ray; ray.init(address={address!r}, log_to_driver=False, configure_logging=False); "
        f"print({_QUERY_MARK!r} + json.dumps({expression}), flush=True)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return None
    values = [line[len(_QUERY_MARK) :] for line in out.stdout.splitlines() if line.startswith(_QUERY_MARK)]
    return json.loads(values[-1]) if values else None


_QUERY_MARK = "@@ray-query@@ "


@dataclass
class RayNode:
    pid: int
    resources: dict[str, float]
    log: Path

    def kill(self) -> None:
        """SIGKILL every process of the node (as a machine that loses power would)."""
        from nni_pl.training.ray_service import _kill_session_leftovers

        _kill_session_leftovers(self.pid)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


@dataclass
class RayCluster:
    address: str
    folder: Path
    nodes: list[RayNode] = field(default_factory=list)

    def add_node(self, resources: dict[str, float], *, num_cpus: int = 2, head: bool = False) -> RayNode:
        ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable))
        assert ray_bin, "the ray command is missing next to this Python"
        log = self.folder / f"node-{len(self.nodes)}.log"
        common = [
            "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
            f"--resources={json.dumps(resources)}", "--object-store-memory=100000000",
        ]  # fmt: skip
        if head:
            args = [ray_bin, "start", "--head", f"--port={self.address.rpartition(':')[2]}",
                    "--include-dashboard=false", f"--ray-client-server-port={_free_port()}", *common]  # fmt: skip
        else:
            args = [ray_bin, "start", f"--address={self.address}", *common]
        with open(log, "ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))  # fmt: skip
        node = RayNode(pid=proc.pid, resources=resources, log=log)
        self.nodes.append(node)
        self.wait_for(lambda n: any(all(x.get("Resources", {}).get(k) == v for k, v in resources.items())
                                    for x in n), f"node {resources}")  # fmt: skip
        return node

    def live_nodes(self) -> list[dict]:
        return ray_query(self.address, "[n for n in ray.nodes() if n['Alive']]") or []

    def wait_for(self, check, what: str, timeout: float = 90.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if check(self.live_nodes()):
                    return
            except (ValueError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.5)
        logs = "\n".join(n.log.read_text(errors="replace")[-2000:] for n in self.nodes)
        raise AssertionError(f"the Ray cluster did not show {what} within {timeout:.0f} s:\n{logs}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            try:
                os.killpg(node.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(1.0)
        for node in reversed(self.nodes):
            node.kill()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    folder = tmp_path_factory.mktemp("ray-cluster")
    cluster = RayCluster(address=f"127.0.0.1:{_free_port()}", folder=folder)
    try:
        cluster.add_node({"head_only": 1}, head=True)
        cluster.add_node({"node_a": 1})
        cluster.add_node({"node_b": 1})
        yield cluster
    finally:
        cluster.stop()
