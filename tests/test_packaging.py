"""The distribution: an sdist and a wheel built from this checkout install into fresh virtual
environments and import cleanly, with no warning on the way.

Offline and fast (a few seconds): ``python -m build --no-isolation`` builds the sdist, then the
wheel from that sdist, with the setuptools of the dev environment; each fresh venv gets the
package alone (``--no-deps --no-index``) and finds its dependencies on ``PYTHONPATH`` (the dev
environment's site-packages, which holds this checkout only as an editable-install ``.pth``
that is not processed there, so the import must come from the fresh venv; the test checks it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAME = "fastapi_realtime-0.1.0"
WARNING = re.compile(r"\w*Warning\b|deprecat", re.IGNORECASE)
"""A warning class name (``SetuptoolsDeprecationWarning``, ``BuildBackendWarning``) or a
deprecation notice. distutils' lowercase ``warning: byte-compiling is disabled`` lines (when
``PYTHONDONTWRITEBYTECODE`` is set) are about the machine, not the project."""
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
TIMEOUT = 120


def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a command; return stdout and stderr together; fail with both when it fails."""
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, timeout=TIMEOUT, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{output}"
    return output


def warnings_in(output: str) -> list[str]:
    return [line for line in output.splitlines() if WARNING.search(line) and not line.startswith("warning: ")]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    output = run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    assert warnings_in(output) == [], output
    return out


def build_env(tmp: Path) -> Path:
    """A directory holding only setuptools (links into the dev environment), to build the sdist."""
    env = tmp / "build-env"
    env.mkdir()
    for entry in SITE_PACKAGES.iterdir():
        if entry.name.startswith(("setuptools", "pkg_resources", "_distutils_hack")):
            (env / entry.name).symlink_to(entry)
    return env


def install_and_import(tmp: Path, artifact: Path, build_path: Path | None = None) -> None:
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1"}
    env.pop("PYTHONPATH", None)
    if build_path is not None:
        env["PYTHONPATH"] = str(build_path)
    installed = run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "--no-build-isolation", artifact, env=env,
    )  # fmt: skip
    assert warnings_in(installed) == [], installed
    env["PYTHONPATH"] = str(SITE_PACKAGES)  # the dependencies
    imported = run(
        python, "-W", "error", "-c",
        "import fastapi_realtime, fastapi_realtime.testing; print(fastapi_realtime.__file__)",
        env=env, cwd=tmp,
    )  # fmt: skip
    assert imported.strip().startswith(str(venv)), imported  # this venv's copy, nothing else printed
    dist_info = next((venv / "lib").glob(f"python*/site-packages/{NAME}.dist-info"))
    assert "License-Expression: MIT" in (dist_info / "METADATA").read_text()
    assert (dist_info / "licenses" / "LICENSE").is_file()


def test_the_wheel_ships_the_package_its_types_and_the_license(dist: Path) -> None:
    names = zipfile.ZipFile(dist / f"{NAME}-py3-none-any.whl").namelist()
    assert {"fastapi_realtime/py.typed", "fastapi_realtime/testing.py", f"{NAME}.dist-info/licenses/LICENSE"} <= set(
        names
    )


def test_the_sdist_ships_the_license_and_the_readme(dist: Path) -> None:
    with tarfile.open(dist / f"{NAME}.tar.gz") as sdist:
        names = set(sdist.getnames())
    assert {f"{NAME}/LICENSE", f"{NAME}/README.md", f"{NAME}/pyproject.toml"} <= names


def test_the_wheel_installs_and_imports_in_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    install_and_import(tmp_path, dist / f"{NAME}-py3-none-any.whl")


def test_the_sdist_installs_and_imports_in_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    install_and_import(tmp_path, dist / f"{NAME}.tar.gz", build_path=build_env(tmp_path))
