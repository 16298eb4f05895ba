# SPDX-License-Identifier: MIT OR Apache-2.0
"""Marker files between a plugin test's shell part and its Python client:
the side that reaches a point creates $tmp/NAME, the other waits for it
(the shell side with wait_marker in functions.sh)."""

import os
import sys
import time


class Markers:
    def __init__(self, tmp):
        self.tmp = tmp

    def wait_for(self, name, secs=60):
        """Wait for marker NAME; fail the test if it never comes."""
        end = time.time() + secs
        while not os.path.exists(os.path.join(self.tmp, name)):
            if time.time() > end:
                sys.exit(f"FAIL: {name} never came")
            time.sleep(0.02)

    def mark(self, name):
        """Create marker NAME."""
        open(os.path.join(self.tmp, name), "w").close()
