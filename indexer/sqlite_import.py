"""`sqlite_utils`, imported without pandas.

sqlite-utils imports pandas at import time when it is installed, only to map `pandas.Timestamp`
values to TEXT columns. An index never stores pandas values (metadata comes from JSON, CSV and
Python scalars), and that import costs about a third of a second on every `l2v` command where
pandas is installed (the benchmark and MTEB extras bring it). So pandas is hidden while
sqlite-utils loads, unless it is already loaded; `import pandas` works normally afterwards.
"""

from __future__ import annotations

import sys

if "pandas" in sys.modules:
    import sqlite_utils
else:
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` raises ImportError meanwhile
    try:
        import sqlite_utils
    finally:
        del sys.modules["pandas"]

__all__ = ["sqlite_utils"]
