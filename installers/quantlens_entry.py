"""Entry point of the frozen app (PyInstaller): the window, a CLI command, or a worker child.

A frozen build starts its llama.cpp workers as ``[sys.executable, "--worker"]``
(qtapp/core/jobs/job.py), which ``qtapp.__main__.main`` routes to the worker.
"""

import sys

from qtapp.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
