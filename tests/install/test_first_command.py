"""The README's first command, exactly as a new user runs it on a fresh machine.

``pip install . && pullguard serve --dev`` in a bare virtual environment: no test extras, nothing
of this checkout on ``PYTHONPATH``, a home and working folder of its own. Test extras installed in
the suite's own environment can hide a dependency the package forgot to declare (gunicorn's gevent
worker needs ``packaging``, which only gunicorn's ``gevent`` extra brings); this test cannot be
fooled that way because the server runs from the venv's own ``pullguard`` script.

It serves a real captured AdmissionReview over HTTPS and stops the server with SIGTERM. It needs
PyPI (``pip install .`` resolves the dependencies there, as the user's would).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REVIEWS, ROOT, free_port

pytestmark = pytest.mark.install


def _copy_checkout(target: Path) -> Path:
    """The files git tracks (or would track), as they are in the working tree: no certs/, no
    build/ or egg-info of an earlier install, no virtual environments."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    source = target / "pullguard"
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.decode().split("\0")):
            src = ROOT / name
            if src.is_file():
                dst = source / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    else:  # not a git checkout (an unpacked archive): everything but what a build leaves behind
        shutil.copytree(
            ROOT,
            source,
            ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "certs", ".venv*"),
        )
    return source


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv with nothing but ``pip install .`` of this checkout."""
    work = tmp_path_factory.mktemp("first-command")
    source = _copy_checkout(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, f"pip install . failed:\n{installed.stderr[-3000:]}"
    yield venv


def test_pip_check_is_clean(bare_venv: Path) -> None:
    """Every declared requirement of every installed distribution is met."""
    checked = subprocess.run(
        [str(bare_venv / "bin" / "pip"), "check"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_serve_dev_from_a_bare_venv_answers_a_real_review(bare_venv: Path, tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "KUBECONFIG", "POD_NAMESPACE"}
    }
    env.update(HOME=str(home), PATH=f"{bare_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [str(bare_venv / "bin" / "pullguard"), "serve", "--dev", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        ca = tmp_path / "certs" / "ca.crt"
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and process.poll() is None:
            if ca.exists():
                try:
                    with httpx.Client(
                        base_url=url, verify=ssl.create_default_context(cafile=str(ca)), timeout=2
                    ) as client:
                        ready = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready:
                    break
            time.sleep(0.25)
        assert ready, f"pullguard serve --dev did not serve within 60 s:\n{log.read_text()}"

        captured = json.loads((REVIEWS / "pod-create-plain.json").read_text())
        review = captured["body"]
        with httpx.Client(
            base_url=url, verify=ssl.create_default_context(cafile=str(ca)), timeout=10
        ) as client:
            for path in ("/validate", "/mutate"):
                answer = client.post(
                    path, json=review, headers={"Content-Type": "application/json"}
                )
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["kind"] == "AdmissionReview"
                assert body["response"]["uid"] == review["request"]["uid"]
                assert isinstance(body["response"]["allowed"], bool)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, f"exit {code} after SIGTERM:\n{log.read_text()}"
