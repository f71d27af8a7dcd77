"""engine/native_stderr.py: native start-up notices written to file descriptor 2 are dropped, anything
else written there comes back after the call, also when the call fails."""

from __future__ import annotations

import os

import pytest

from engine.native_stderr import quiet_native_stderr

NOTICES = (
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"W0000 00:00:1796277317.507689   13582 inference_feedback_manager.cc:114] Feedback manager "
    b"requires a model with a single signature inference. Disabling support for feedback tensors.\n"
)
REAL_ERROR = b"E0000 00:00:1796277317.6 12 calculator_graph.cc:887] model file not found\n"


def test_known_notices_are_dropped_and_other_lines_written_back_after_the_call(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with quiet_native_stderr():
        os.write(2, NOTICES + REAL_ERROR)
        os.write(1, b"stdout is untouched\n")
        assert capfd.readouterr().err == ""  # nothing reaches stderr during the call
    captured = capfd.readouterr()
    assert captured.err == REAL_ERROR.decode()
    assert captured.out == ""  # read inside the block already


def test_what_a_failing_call_wrote_reaches_stderr_with_its_exception(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(RuntimeError, match="graph failed"), quiet_native_stderr():
        os.write(2, NOTICES + REAL_ERROR)
        raise RuntimeError("graph failed")
    assert capfd.readouterr().err == REAL_ERROR.decode()
    os.write(2, b"after\n")  # fd 2 is the real one again
    assert capfd.readouterr().err == "after\n"
