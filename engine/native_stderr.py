"""Keep native libraries' start-up notices off our stderr without hiding their real errors.

mediapipe's C++ side (absl logging, TF-Lite) writes straight to file descriptor 2, so Python's
`sys.stderr` and `logging` cannot filter it: every `facelab apply` began with 7-8 lines of notices
before our one line. `quiet_native_stderr` points fd 2 at a temporary file around such a call only,
then writes back whatever was not a known notice: an error from the library still reaches the user
or the log, after the call instead of during it.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

# Printed by every healthy mediapipe start-up or first inference; none of them needs action.
KNOWN_NOTICES = re.compile(
    r"Created TensorFlow Lite XNNPACK delegate"
    r"|All log messages before absl::InitializeLog\(\) is called"
    r"|inference_feedback_manager\.cc"
    r"|landmark_projection_calculator\.cc"
)


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Run the body with fd 2 captured; afterwards write back every captured line that is not one of
    KNOWN_NOTICES, also when the body raises. Only for native calls: fd 2 is process-wide, so another
    thread's output in that window is delayed (and kept), not lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines = sink.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not KNOWN_NOTICES.search(line))
            data = kept.encode()
            while data:
                data = data[os.write(2, data) :]
