"""One display for the command line: transformers' log lines and Python warnings go through mlbuild's
logging (silent under ``--quiet``), library progress bars stay off, mlbuild's own lines stay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import logging, warnings
from mlbuild import logsetup
logsetup.configure(quiet={quiet}, debug=False)
import transformers  # imported after the setup, as a model backend does
from transformers.utils import logging as tl
tl.get_logger("transformers.modeling_utils").warning("GGUF weights asked for in torch.bfloat16 (dtype notice)")
warnings.warn("a library dtype warning", UserWarning)
for _ in tl.tqdm(range(3), desc="Loading weights"):
    pass
logging.getLogger("mlbuild.pipeline.runner").info("step: loading")
logging.getLogger("mlbuild.pipeline.runner").warning("calling https://alice:pw-S3CRET@h/v1 failed")
print("bars", tl.is_progress_bar_enabled())
from huggingface_hub.utils import are_progress_bars_disabled
print("hub bars off", are_progress_bars_disabled())
"""


def _run(quiet: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for k in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
        env.pop(k, None)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(quiet=quiet)], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("quiet", [False, True])
def test_library_warnings_and_bars_go_through_mlbuild_logging(quiet):
    res = _run(quiet)
    assert res.returncode == 0, res.stderr
    err = res.stderr
    assert "bars False" in res.stdout  # transformers' own bars off
    assert "hub bars off True" in res.stdout  # huggingface_hub's download bars off too (on with --debug)
    assert "[transformers]" not in err and "Loading weights" not in err
    assert "pw-S3CRET" not in err
    if quiet:
        assert "dtype" not in err and "step: loading" not in err
        assert "WARNING mlbuild.pipeline.runner: calling https://***@h/v1 failed" in err
    else:
        assert "WARNING transformers.modeling_utils: GGUF weights asked for in torch.bfloat16" in err
        assert "WARNING py.warnings:" in err and "a library dtype warning" in err
        assert "INFO mlbuild.pipeline.runner: step: loading" in err
        assert "calling https://***@h/v1 failed" in err
