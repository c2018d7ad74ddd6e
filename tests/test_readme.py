"""Every code block of README.md is run or checked, so the README cannot drift from the code.

The rules, for whoever adds a block (a block that fits none of them fails this test, with a
message saying which rule to follow). Markers are HTML comment lines right above the fence.

1. Every fenced block names its language: ``python``; ``bash`` (or ``sh``, ``shell``,
   ``console``); ``js`` (or ``javascript``); ``json`` and ``toml`` (parsed); ``text`` (layouts,
   sample output: not checked). Any other language, or none, fails.
2. ``python``: a block is a complete program, run as it is, unless marked:
   - ``<!-- continues -->``: appended to the previous python block (the tour is one program
     built that way);
   - ``<!-- fragment -->``: a piece that cannot run alone (undefined names, top-level
     ``await``): it is compiled, and its ``import`` statements are run, so every name it imports
     exists;
   - ``<!-- file: NAME.py -->`` above a program's first block names its file (default
     ``readme_block_<line>.py``). All programs are written into one directory, so later ones
     can import named ones (``from tour import app``).
   A program named ``test_*.py`` (with a ``conftest.py`` program, if any) is a pytest file:
   they are run together with pytest and must pass. Every other program is run with
   ``python -W error`` (no warning allowed); if it defines a FastAPI ``app``, the app's
   lifespan is then started and stopped under ``TestClient``.
3. ``bash``: each command (``#`` comments, backslash continuations and ``VAR=value`` prefixes
   handled) is checked: ``make TARGET...`` (the targets exist), ``pip install ...`` (run for
   real, offline: ``--no-deps --no-index`` into a temporary directory, ``$REPO_URL`` set to this
   checkout; each ``[extra]`` must exist in pyproject.toml), ``python -m MODULE`` (the module
   exists), ``uvicorn MODULE:ATTR`` (every such word importable, from the checkout or the README's programs);
   any other command: its program must be installed (on ``PATH`` or in the venv).
4. ``js``: run with Node.js (``tests/js``'s ``node_modules``: the pinned centrifuge-js and
   ``ws``) against a live server of the nearest python program above it that defines ``app``,
   ``hub`` and ``SECRET``: ``ws://127.0.0.1:8000`` becomes the server's address and ``token``
   is defined (user ``readme``, signed with ``SECRET``). It must run without error; if it
   defines ``sub``, the test waits until it is subscribed, publishes a marker into every
   channel of the hub and expects the marker in the script's output. Marked
   ``<!-- fragment -->``, it is only syntax-checked (``node --check``).
5. ``nginx``: the block is what goes in nginx's ``http`` context (``server`` blocks and their
   zones); it is checked by ``nginx -t`` inside a minimal configuration. Without nginx
   installed the check is skipped locally and fails under ``CI=true`` (``.ci/run`` installs it).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from js_harness import JS_DIR
from servers import running_server

from fastapi_realtime.testing import make_token

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BASH = {"bash", "sh", "shell", "console"}
JS = {"js", "javascript"}
LANGUAGES = {"python", "json", "toml", "text", "nginx"} | BASH | JS
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!--\s*(continues|fragment|file:\s*(\S+))\s*-->\s*$")
TIMEOUT = 60.0
"""Seconds one run of a program, one pip install or one node script may take."""
WAIT = 10.0
"""Seconds the js test waits for one line of the script's output."""

RUN_APP = """
import runpy, sys
from fastapi import FastAPI
from fastapi.testclient import TestClient
namespace = runpy.run_path(sys.argv[1], run_name="readme_program")
app = namespace.get("app")
if isinstance(app, FastAPI):
    with TestClient(app):
        pass
"""


@dataclass
class Block:
    language: str
    line: int
    code: str
    markers: set[str] = field(default_factory=set)
    file: str | None = None

    @property
    def fragment(self) -> bool:
        return "fragment" in self.markers

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.language})"


@dataclass
class Program:
    name: str
    line: int
    code: str

    @property
    def is_pytest_file(self) -> bool:
        return self.name.startswith("test_") or self.name == "conftest.py"


def blocks() -> list[Block]:
    found: list[Block] = []
    lines = README.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        block = Block(match.group(1), index + 1, "")
        back = index - 1
        while back >= 0 and (marker := MARKER.match(lines[back])) is not None:
            block.markers.add("file" if marker.group(2) else marker.group(1))
            block.file = marker.group(2) or block.file
            back -= 1
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"{block}: the block never closes"
        block.code = "\n".join(lines[index + 1 : end]) + "\n"
        found.append(block)
        index = end + 1
    return found


def of(languages: set[str]) -> list[Block]:
    return [b for b in blocks() if b.language in languages]


def programs() -> list[Program]:
    result: list[Program] = []
    for block in of({"python"}):
        if block.fragment:
            continue
        if "continues" in block.markers:
            assert result, f"{block}: marked continues, but no python program comes before it"
            result[-1].code += "\n\n" + block.code
        else:
            result.append(Program(block.file or f"readme_block_{block.line}.py", block.line, block.code))
    return result


@pytest.fixture(scope="module")
def program_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("readme")
    names = [p.name for p in programs()]
    assert len(names) == len(set(names)), f"two README programs share a file name: {names}"
    for program in programs():
        (directory / program.name).write_text(program.code)
    return directory


def run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{shlex.join(args)} exited {done.returncode}:\n{output}"
    return output


def ids(value: Any) -> str | None:
    return f"line-{value.line}" if isinstance(value, Block | Program) else None


# -- every block --------------------------------------------------------------------------


def test_every_block_names_a_language_with_a_rule() -> None:
    unknown = [str(b) for b in blocks() if b.language not in LANGUAGES]
    assert unknown == [], f"blocks with no rule in tests/test_readme.py (see its docstring): {unknown}"


def test_markers_are_used_where_they_mean_something() -> None:
    for block in blocks():
        allowed = {"python": {"continues", "fragment", "file"}}.get(
            block.language, {"fragment"} if block.language in JS else set()
        )
        assert block.markers <= allowed, f"{block}: markers {block.markers - allowed} mean nothing here"


@pytest.mark.parametrize("block", of({"json", "toml"}), ids=ids)
def test_data_block_parses(block: Block) -> None:
    if block.language == "json":
        json.loads(block.code)
    else:
        tomllib.loads(block.code)


@pytest.mark.parametrize("block", of({"nginx"}), ids=ids)
def test_nginx_block_passes_nginx_t(block: Block, tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if nginx is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed: .ci/run installs nginx-light")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{block.code}\n}}\n"
    )
    done = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{block}: nginx -t failed:\n{done.stderr}"


# -- python -------------------------------------------------------------------------------


@pytest.mark.parametrize("program", [p for p in programs() if not p.is_pytest_file], ids=ids)
def test_python_program_runs_and_its_app_starts(program: Program, program_dir: Path) -> None:
    run([sys.executable, "-W", "error", "-c", RUN_APP, program.name], cwd=program_dir)


def test_python_test_programs_pass(program_dir: Path) -> None:
    files = [p.name for p in programs() if p.name.startswith("test_")]
    if not files:
        pytest.skip("the README has no test program")
    args = ["-q", "-p", "no:cacheprovider", "-p", "no:asyncio", "-W", "error", "--rootdir", "."]
    output = run([sys.executable, "-m", "pytest", *args, *files], cwd=program_dir)
    assert " passed" in output and "failed" not in output, output


@pytest.mark.parametrize("block", [b for b in of({"python"}) if b.fragment], ids=ids)
def test_python_fragment_compiles_and_its_imports_exist(block: Block) -> None:
    tree = compile(block.code, str(block), "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    exec(compile(ast.Module(body=imports, type_ignores=[]), str(block), "exec"), {})


# -- bash ---------------------------------------------------------------------------------


def make_targets() -> set[str]:
    found = (re.match(r"^([A-Za-z][\w-]*)\s*:(?!=)", line) for line in (ROOT / "Makefile").read_text().splitlines())
    return {m.group(1) for m in found if m is not None}


def extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project.get("optional-dependencies", {}))


def pip_install(words: list[str], tmp_path: Path) -> None:
    for named in re.findall(r"\[([\w,-]+)\]", " ".join(words)):
        assert set(named.split(",")) <= extras(), f"an extra that pyproject.toml does not define: {words}"
    env = {**os.environ, "REPO_URL": ROOT.as_uri(), "PIP_NO_CACHE_DIR": "1"}
    target = tmp_path / "target"
    offline = ["--no-deps", "--no-index", "--no-build-isolation", "--target", str(target)]
    args = [os.path.expandvars(w.replace("$REPO_URL", env["REPO_URL"])) for w in words[2:]]
    run([sys.executable, "-m", "pip", "install", "-q", *offline, *args], cwd=ROOT, env=env)
    assert (target / "fastapi_realtime" / "__init__.py").is_file()


def check_command(words: list[str], tmp_path: Path, program_dir: Path) -> None:
    """Check one bash command of the README, as the module docstring says."""
    if words[0] == "make":
        assert set(words[1:]) <= make_targets(), f"a make target the Makefile does not have: {words}"
    elif words[:2] == ["pip", "install"]:
        pip_install(words, tmp_path)
    elif words[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(words[2]) is not None, f"no module {words[2]}"
    elif words[0] == "uvicorn":
        for word in [w for w in words[1:] if ":" in w]:  # the app, and e.g. --ws MODULE:CLASS
            module, _, attribute = word.partition(":")
            with pytest.MonkeyPatch.context() as patch:
                patch.syspath_prepend(str(program_dir))
                assert hasattr(importlib.import_module(module), attribute), f"{module} has no {attribute}"
    else:
        program = words[0]
        assert shutil.which(program) or (Path(sys.executable).parent / program).exists(), (
            f"{program!r} is not installed here: install it in Makefile/.ci/run, or add a rule to check_command"
        )


def commands() -> list[tuple[str, list[str]]]:
    found = []
    for block in of(BASH):
        for number, line in enumerate(block.code.replace("\\\n", " ").splitlines(), start=1):
            words = shlex.split(line.removeprefix("$ "), comments=True)
            while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
                words = words[1:]
            if words:
                found.append((f"{block.line}+{number}", words))
    return found


@pytest.mark.parametrize(("where", "words"), commands(), ids=[w for w, _ in commands()])
def test_bash_command_is_real(where: str, words: list[str], tmp_path: Path, program_dir: Path) -> None:
    check_command(words, tmp_path, program_dir)


# -- js -----------------------------------------------------------------------------------


def js_blocks() -> list[tuple[Block, Program]]:
    found = []
    for block in of(JS):
        if block.fragment:
            continue
        above = [p for p in programs() if p.line < block.line and not p.is_pytest_file]
        apps = [p for p in above if all(re.search(rf"^{n}\b", p.code, re.M) for n in ("app", "hub", "SECRET"))]
        assert apps, f"{block}: no python program above it defines app, hub and SECRET (or mark it a fragment)"
        found.append((block, apps[-1]))
    return found


@pytest.mark.parametrize("block", [b for b in of(JS) if b.fragment], ids=ids)
def test_js_fragment_parses(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "fragment.mjs"
    script.write_text(block.code)
    run(["node", "--check", str(script)], cwd=tmp_path)


async def read_line_with(stream: asyncio.StreamReader, text: str, seen: list[str]) -> None:
    async with asyncio.timeout(WAIT):
        while True:
            line = (await stream.readline()).decode()
            assert line, f"the script ended before it printed {text!r}; it printed: {seen}"
            seen.append(line)
            if text in line:
                return


@pytest.mark.parametrize(("block", "program"), js_blocks(), ids=ids)
async def test_js_block_runs_against_the_app(
    block: Block, program: Program, program_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(program_dir))
    namespace: dict[str, Any] = runpy.run_path(str(program_dir / program.name), run_name="readme_program")
    script = program_dir / f"readme_block_{block.line}.mjs"
    with contextlib.suppress(FileExistsError):
        (program_dir / "node_modules").symlink_to(JS_DIR / "node_modules")
    async with running_server(namespace["app"]) as server:
        code = block.code.replace("ws://127.0.0.1:8000", server.ws_url)
        token = make_token(namespace["SECRET"], user="readme")
        script.write_text(
            f"const token = {json.dumps(token)};\n{code}\n"
            "if (typeof sub !== 'undefined') sub.on('subscribed', () => console.log('README-READY'));\n"
            "else console.log('README-READY');\n"
        )
        proc = await asyncio.create_subprocess_exec(
            "node", str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        seen: list[str] = []
        failure: BaseException | None = None
        try:
            await read_line_with(proc.stdout, "README-READY", seen)
            if re.search(r"\b(const|let|var) sub\b", code):
                hub = namespace["hub"]
                for channel in hub.channels():
                    await hub.publish(channel, {"readme": f"marker in {channel}"})
                await read_line_with(proc.stdout, "marker in", seen)
        except (AssertionError, TimeoutError) as exc:
            failure = exc
        finally:
            if proc.returncode is None:
                proc.kill()
            stderr = (await proc.communicate())[1].decode()
        assert failure is None, f"{block}: {failure!r}\nstderr of the script:\n{stderr}"
        assert proc.returncode in (0, -9) and "Error" not in stderr, f"{block}: stderr of the script:\n{stderr}"
