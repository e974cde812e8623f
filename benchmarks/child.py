"""Runs one benchmark function in a fresh interpreter: ``python -m benchmarks.child module:function JSON``.

Prints the function's JSON-able result as the last stdout line (``benchmarks.common.RESULT_PREFIX``).
"""

from __future__ import annotations

import importlib
import json
import sys

from benchmarks.common import RESULT_PREFIX


def main(argv: list[str]) -> None:
    target, kwargs = argv[0], json.loads(argv[1])
    module, func = target.split(":")
    result = getattr(importlib.import_module(module), func)(**kwargs)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
