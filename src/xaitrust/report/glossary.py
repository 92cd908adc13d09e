"""The glossary of a report: for each metric shown, its one or two sentences, its source and which direction is
better, read from the metric registry (``Metric.description``, ``source``, ``higher_is_better``), so that every
metric a page shows has an entry, worded as its registration."""

from __future__ import annotations

import html
import re

from ..evaluation import get_metric

_CODE = re.compile(r"`([^`]+)`")


def _text(text: str) -> str:
    """Escaped text with the registry's ``parameter`` spans as code."""
    return _CODE.sub(r"<code>\1</code>", html.escape(text))


def glossary_html(metrics) -> str:
    """A definition list of ``metrics`` (registry names, ``path/to/file.py:Name`` or ``Metric``; each once, in the
    order given): name, better direction, description and source."""
    entries, seen = [], set()
    for metric in map(get_metric, metrics):
        if metric.name in seen:
            continue
        seen.add(metric.name)
        direction = "higher is better" if metric.higher_is_better else "lower is better"
        source = f" <span class='muted'>Source: {html.escape(metric.source)}.</span>" if metric.source else ""
        entries.append(f"<dt><b>{html.escape(metric.name)}</b> ({direction})</dt>"
                       f"<dd>{_text(metric.description)}{source}</dd>")
    return f"<dl class='glossary'>{''.join(entries)}</dl>"
