"""The docs are a Sphinx site that builds without a warning (warnings are errors here and in CI)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

pytest.importorskip("sphinx", reason="the docs extra (sphinx, myst-parser) is not installed")
pytest.importorskip("myst_parser", reason="the docs extra (sphinx, myst-parser) is not installed")


@pytest.mark.slow
def test_the_docs_build_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(REPO / "docs"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    warnings = [line for line in result.stderr.splitlines() if ("WARNING" in line or "ERROR" in line) and "absl" not in line]
    assert result.returncode == 0, "\n".join(warnings) or result.stderr
    api = (tmp_path / "api.html").read_text(encoding="utf-8")
    for name in ("mlpipeline.helper.Model.report", "mlpipeline.utils.Versions.addV", "mlpipeline.pytorch.TorchModel"):
        assert f'id="{name}"' in api  # the reference comes from the docstrings
    for page in ("quickstart", "script-api", "configuration", "modes", "outputs", "watching", "reliability", "cluster", "frameworks", "performance", "architecture"):
        assert (tmp_path / f"{page}.html").is_file(), page
