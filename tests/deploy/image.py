"""Build deploy/Dockerfile.cpu with buildah and run the image with podman, on a machine that has no Docker daemon
and cannot reach docker.io or download.pytorch.org.

Only two things differ from a production build, and neither is in the Dockerfile:
- the base: `buildah bud --from` puts a local stand-in for python:3.11-slim in the FROM line (Debian bookworm by
  debootstrap, the tests' own Python 3.11 copied into /usr/local), kept in the container storage between runs;
- torch: a pip config bind-mounted for the build's RUN steps only adds a directory of wheels (`find-links`) holding
  the CPU wheel and its dependencies, so `pip install --index-url https://download.pytorch.org/whl/cpu torch==...`
  finds it there when the index is out of reach. The same config carries the host's CA bundle, for machines that
  reach PyPI through an intercepting proxy.
Everything else comes from PyPI, as in production. `python -m tests.deploy.image` builds the image by hand.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile.cpu"
WORK = ROOT / "build" / "image-test"
BASE = "localhost/vlserve-test-base:bookworm-py" + ".".join(map(str, sys.version_info[:3]))
IMAGE = "localhost/vlserve:test-cpu"
TOOLS = ("buildah", "podman", "runc", "debootstrap")
INSTALL = "`make image-tools` installs them as root (apt-get install buildah podman runc debootstrap)"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the copied interpreter's extension modules link against (ldd of lib-dynload, tkinter left out).
PACKAGES = (
    "ca-certificates",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "libncursesw6",
    "libuuid1",
    "libnsl2",
    "libbz2-1.0",
    "liblzma5",
    "zlib1g",
    "libreadline8",
    "libgdbm6",
)
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def run(*args: str | Path, timeout: float = 600) -> str:
    """Run a command; on failure raise with the tail of its output, which is what one needs to read."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise RuntimeError(f"{' '.join(map(str, args))} exited {result.returncode}:\n{tail}")
    return result.stdout


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for path in sources:
        text = path.read_text() if path.is_file() else ""
        match = re.search(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s", text, re.MULTILINE)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], capture_output=True).returncode == 0


def ensure_base() -> str:
    """The local base image: made once (debootstrap, about a minute and a half), then taken from storage."""
    if image_exists(BASE):
        return BASE
    rootfs = WORK / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    run("debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "bookworm", rootfs, debian_mirror(),
        timeout=900)  # fmt: skip
    # python:slim compiles CPython into /usr/local; here the tests' own interpreter (bookworm's 3.11.2 is too old:
    # redis needs async-timeout before 3.11.3, which the lock leaves out) is copied there, without its packages.
    prefix = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    local = rootfs / "usr/local"
    shutil.copy2(prefix / "bin" / version, local / "bin" / version)
    for lib in (prefix / "lib").glob(f"lib{version}.so*"):
        shutil.copy2(lib, local / "lib" / lib.name, follow_symlinks=False)
    skip = shutil.ignore_patterns("site-packages", "test", "tkinter", "_tkinter*", "idlelib")
    shutil.copytree(prefix / "lib" / version, local / "lib" / version, symlinks=True, ignore=skip)
    (local / "lib" / version / "site-packages").mkdir()
    for alias in ("python3", "python"):
        (local / "bin" / alias).symlink_to(version)
    run("chroot", rootfs, "ldconfig")
    run("chroot", rootfs, "python", "-m", "ensurepip", "--default-pip")
    (rootfs / "var/lib/apt/lists").mkdir(exist_ok=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    changes = [f"ENV PATH={PATH}", "ENV LANG=C.UTF-8", 'CMD ["python3"]']
    imported = subprocess.run(
        ["podman", "import", *(x for c in changes for x in ("--change", c)), "-", BASE],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
    )
    tar.wait()
    shutil.rmtree(rootfs)
    if imported.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"podman import of the base failed: {imported.stderr[-2000:]}")
    return BASE


def pinned_torch() -> str:
    return re.search(r"^TORCH \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)


def torch_wheels() -> Path:
    """The CPU torch wheel and its dependencies, from wherever this machine's pip config finds them."""
    wheels = WORK / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(wheels)]
    # torch alone first: if pip here would take the CUDA build from PyPI, stop before its gigabytes of dependencies.
    run(*pip, "--no-deps", pinned_torch(), timeout=900)
    (torch,) = wheels.glob(pinned_torch().replace("==", "-") + "*.whl")
    if "+cpu" not in torch.name:
        raise RuntimeError(f"{torch.name} is not the CPU build: put the CPU wheel where pip finds it (find-links)")
    run(*pip, torch, timeout=900)
    return wheels


def build_pip_config() -> Path:
    """The pip.conf the build's RUN steps see: the wheel directory, the host's CA bundle, the host's index."""
    conf = configparser.ConfigParser()
    conf["global"] = {"find-links": "/wheels"}
    if CA_BUNDLE.is_file():
        conf["global"]["cert"] = str(CA_BUNDLE)
    host = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    index = re.search(r"^global\.index-url='(.+)'$", host, re.MULTILINE)
    if index and not index.group(1).startswith("file:"):
        conf["global"]["index-url"] = index.group(1)
    path = WORK / "pip.conf"
    with path.open("w") as out:
        conf.write(out)
    return path


def build() -> str:
    """Build deploy/Dockerfile.cpu as IMAGE; unchanged steps come from the layer cache."""
    volumes = [f"{torch_wheels()}:/wheels:ro", f"{build_pip_config()}:/etc/pip.conf:ro"]
    if CA_BUNDLE.is_file():
        volumes.append(f"{CA_BUNDLE}:{CA_BUNDLE}:ro")
    run(
        "buildah", "bud", "--isolation", "chroot", "--layers", "--format", "docker",
        "--from", ensure_base(), *(x for v in volumes for x in ("--volume", v)),
        "--file", DOCKERFILE, "--tag", IMAGE, ROOT,
        timeout=1800,
    )  # fmt: skip
    return IMAGE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def podman_run_options() -> list[str]:
    """Options that make `podman run` work in an unprivileged sandbox VM, each for a reason seen there:
    runc, because crun refuses a hybrid cgroup v1/v2 layout; the host network, as no bridge can be set up;
    rlimits no higher than ours, as podman's defaults would raise them without CAP_SYS_RESOURCE."""
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return [
        "--runtime", "runc", "run", "--rm", "--network", "host",
        "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096",
    ]  # fmt: skip


@contextlib.contextmanager
def running(image: str, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The image run with its own ENTRYPOINT and ENV, `args` appended; stopped (SIGTERM, then kill) on exit."""
    name = f"vlserve-image-test-{os.getpid()}"
    log = (WORK / f"{name}.log").open("w+")
    process = subprocess.Popen(
        ["podman", *podman_run_options(), "--name", name, image, *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield log.name, process
    finally:
        subprocess.run(["podman", "stop", "--time", "20", name], capture_output=True)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()


def wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 180) -> httpx.Response:
    """GET url until it answers 200, the container exits, or timeout passes; the last answer or error raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200 or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        if process.poll() is not None:
            raise RuntimeError(f"the container exited with {process.returncode} before {url} answered 200")
        time.sleep(1)


if __name__ == "__main__":
    started = time.monotonic()
    print(build(), f"built in {time.monotonic() - started:.0f} s")
