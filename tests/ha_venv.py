"""Build (once) and find the Home Assistant Core venv the ``homeassistant`` tests run against.

Home Assistant needs Python 3.13 (it does not run on the project's 3.11), so it lives in its own
venv, cached under the checkout's ignored ``.cache/ha-venv``. ``.ci/run`` builds it with
``python3 tests/ha_venv.py``; the session fixture builds it too when it is missing. A venv is not
relocatable, so it is built in place and marked complete by a stamp file that lists the pins:
a venv without the stamp (a build that was interrupted) or with other pins is built again.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: the packages Home Assistant Core needs here, pinned (see shared HOMEASSISTANT.md): the frontend,
#: or HA starts in recovery mode; paho-mqtt for the MQTT integration; pyotp and PyQRCode for the
#: default login-code module, which HA would otherwise try to pip-install at start
PINS = (
    "homeassistant==2025.4.4",
    "home-assistant-frontend==20250411.0",
    "paho-mqtt==2.1.0",
    "pyotp==2.8.0",
    "PyQRCode==1.2.1",
)
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".cache" / "ha-venv"
_STAMP = VENV / ".sig-complete"


def find_python313() -> str | None:
    """Return the path of a Python 3.13 interpreter, or None when the machine has none.

    ``$SIG_HASS_PYTHON`` names the one to use (a path that is no Python 3.13: as if there were none).
    """
    chosen = os.environ.get("SIG_HASS_PYTHON")
    if chosen is not None:
        return chosen if os.access(chosen, os.X_OK) and _is_313(chosen) else None
    candidates = [shutil.which("python3.13") or ""]
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv"), "/root/.pyenv"]
    for root in roots:
        if root:
            candidates += sorted(glob.glob(os.path.join(root, "versions", "3.13*", "bin", "python3")), reverse=True)
    for path in candidates:
        if path and os.access(path, os.X_OK) and _is_313(path):
            return path
    return None


def _is_313(path: str) -> bool:
    # pyenv's shims exist for versions that are not selected, and fail when run: ask the interpreter
    try:
        out = subprocess.run([path, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "True"


def hass_python() -> Path:
    """The HA venv's interpreter."""
    return VENV / "bin" / "python"


def is_ready() -> bool:
    """Whether the cached venv is complete and has these pins."""
    try:
        return _STAMP.read_text().split() == list(PINS)
    except OSError:
        return False


def build(log: bool = True) -> Path:
    """Build the venv unless the cached one is ready; return its interpreter.

    Raises RuntimeError when there is no Python 3.13, CalledProcessError when an install fails.
    """
    if is_ready():
        return hass_python()
    python = find_python313()
    if python is None:
        raise RuntimeError("no Python 3.13 on this machine (Home Assistant 2025.4 needs it)")
    started = time.monotonic()
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    run = subprocess.check_call
    run([python, "-m", "venv", str(VENV)])
    pip = [str(hass_python()), "-m", "pip", "install", "-q"]
    # uv resolves and installs HA's hundreds of packages about six times faster than pip
    run([*pip, "uv"])
    run([str(VENV / "bin" / "uv"), "pip", "install", "-q", "--python", str(hass_python()), *PINS])
    # The machines set PYTHONDONTWRITEBYTECODE=1: without compiled files HA's API comes up in 7-8 s
    # instead of 3-4 s on every start.
    # (a few files of some packages do not compile on purpose: their exit status is not an error)
    subprocess.call([str(hass_python()), "-m", "compileall", "-q", "-j", "0", str(VENV / "lib")],
                    stdout=subprocess.DEVNULL)
    _STAMP.write_text("\n".join(PINS) + "\n")
    if log:
        print("Home Assistant venv built in %.0f s: %s" % (time.monotonic() - started, VENV), flush=True)
    return hass_python()


def main() -> int:
    """Build the venv for ``.ci/run``; without Python 3.13 say so and succeed (the tests skip)."""
    if is_ready():
        print("Home Assistant venv: cached in %s" % VENV)
        return 0
    if find_python313() is None:
        print("Home Assistant venv: no Python 3.13 here, the homeassistant tests will skip")
        return 0
    build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
