# SPDX-License-Identifier: MIT OR Apache-2.0
"""Marker files between a plugin test's shell part and its Python client:
the side that reaches a point creates $MARKER_DIR/NAME, the other waits for
it (the shell side with wait_marker in functions.sh, which also sets
MARKER_DIR to the test's temporary directory)."""

import os
import sys
import time

DIR = os.environ["MARKER_DIR"]


def wait_for(name, secs=60):
    """Wait for marker NAME; fail the test if it never comes."""
    end = time.time() + secs
    while not os.path.exists(os.path.join(DIR, name)):
        if time.time() > end:
            sys.exit(f"FAIL: {name} never came")
        time.sleep(0.02)


def mark(name):
    """Create marker NAME."""
    open(os.path.join(DIR, name), "w").close()
