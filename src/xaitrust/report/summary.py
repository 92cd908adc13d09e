"""``summary.json``: the machine-readable summary beside a run's CSVs (its headline, verdict and tables)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write
from .html import Headline


def plain(value):
    """``value`` as JSON data: NaN and infinities become ``None``, NumPy and pandas scalars Python numbers, tables
    lists of records (one dict per row, the index reset when it is not a plain row number), dataclass-like objects
    their fields."""
    if isinstance(value, pd.DataFrame):
        table = value if isinstance(value.index, pd.RangeIndex) else value.reset_index()
        if isinstance(table.columns, pd.MultiIndex):
            table = table.set_axis([" / ".join(str(p) for p in c if str(p)) for c in table.columns], axis=1)
        return [plain(row) for row in table.to_dict(orient="records")]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is pd.NA or value is None:
        return None
    if hasattr(value, "__dataclass_fields__"):
        return {name: plain(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


def write_summary(path: str | Path, headline: Headline | None, **content) -> Path:
    """Write ``summary.json``: ``{"question": ..., "answer": [...], **content}`` with every value made plain
    (``plain``), keys sorted, so that the same results give the same bytes."""
    data = {} if headline is None else {"question": headline.question, "answer": headline.answer}
    data.update(content)
    text = json.dumps(plain(data), indent=2, sort_keys=True, allow_nan=False) + "\n"
    path = Path(path)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path
