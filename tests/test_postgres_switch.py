"""Without PostgreSQL its tests skip; with ``PROBE_REQUIRE_POSTGRES`` set they fail instead.

Each case runs pytest in a child process on a one-test file that asks for `postgres_url`,
next to a copy of this suite's conftest, and reads the outcome from what pytest prints.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import closed_port

ROOT = Path(__file__).resolve().parent.parent
TINY = """
def test_needs_postgres(postgres_url):
    assert "_main_" in postgres_url  # outside xdist: the worker is "main"
"""
UNSET = "PROBE_TEST_POSTGRES_URL is not set"
REQUIRED = ", and PROBE_REQUIRE_POSTGRES is set"


def _pytest(tmp_path: Path, *, url: str | None, require: bool) -> tuple[int, str]:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # none of this suite's options
    (tmp_path / "test_tiny.py").write_text(TINY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROBE_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT)  # the same `probe` as this test's
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # a sync test: no plugin needed, a fast start
    if url is not None:
        env["PROBE_TEST_POSTGRES_URL"] = url
    if require:
        env["PROBE_REQUIRE_POSTGRES"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsE", "-p", "no:cacheprovider"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def _summary(output: str) -> str:
    """Pytest's last line without its time: ``1 skipped``."""
    return output.strip().splitlines()[-1].split(" in ")[0]


@pytest.mark.parametrize(
    ("url", "require", "code", "summary", "says"),
    [
        pytest.param(None, False, 0, "1 skipped", UNSET, id="unset"),
        pytest.param(None, True, 1, "1 error", UNSET + REQUIRED, id="unset-required"),
        pytest.param("closed", False, 0, "1 skipped", "is unreachable: connection failed",
                     id="unreachable"),
        pytest.param("closed", True, 1, "1 error", "is unreachable: connection failed",
                     id="unreachable-required"),
    ],
)  # fmt: skip
def test_postgres_tests_skip_or_fail_without_a_server(
    tmp_path: Path, url: str | None, require: bool, code: int, summary: str, says: str
) -> None:
    if url == "closed":
        url = f"postgresql+psycopg://probe:hunter2@127.0.0.1:{closed_port()}/test"
    returncode, output = _pytest(tmp_path, url=url, require=require)
    assert (returncode, _summary(output)) == (code, summary), output
    assert says in output
    assert "Traceback" not in output  # a reason, not a stack
    assert "hunter2" not in output


def test_postgres_tests_run_on_a_database_of_their_own(
    postgres_url: str,  # this test is itself one that needs PostgreSQL: skipped or failed alike
    tmp_path: Path,
) -> None:
    returncode, output = _pytest(tmp_path, url=os.environ["PROBE_TEST_POSTGRES_URL"], require=True)
    assert returncode == 0, output
    assert _summary(output) == "1 passed"
