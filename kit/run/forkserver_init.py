"""Imported first by the process executor's forkserver (``kit.run.executors.preload_modules``).

The forkserver's preload takes module names only, so the one thing that must happen before the
heavy imports (bitsandbytes' import-time notice about its CPU kernel, transformers' progress
bars) is done by importing this module: the same quieting every cell's child does for itself.
"""

from kit.run.child import quiet_library_output

quiet_library_output()
