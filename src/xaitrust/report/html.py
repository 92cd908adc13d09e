"""The static HTML report of a run: one self-contained page (figures embedded as PNG data URIs).

Every report opens with its ``Headline``: the question the run answers (a protocol's paper's question) and the
answer computed from the numbers, with their intervals; then "What this shows" (findings), the sections and the
resolved configuration. The page is at most 1240 px wide and wraps rather than overflows: wide tables shrink their
font and wrap their headers, and tables of more than ``LONG_TABLE`` rows are folded (``<details>``) so that the page
can be looked at rather than read.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..io import atomic_write

#: Tables with more rows than this are folded under their title.
LONG_TABLE = 25

STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; max-width: 1240px; margin: 1.5em auto; padding: 0 1em; color: #222; }
p, li, figcaption, summary { overflow-wrap: anywhere; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.45em; text-align: right; }
td { white-space: nowrap; } th { overflow-wrap: anywhere; min-width: 3.5em; }
th { background: #f2f2f2; font-weight: 600; } .table { max-width: 100%; overflow-x: auto; }
td:first-child, th:first-child { text-align: left; }
.table.wide table { font-size: 0.72em; } .table.wide th { white-space: normal; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.findings li { margin: 0.4em 0; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em;
                                        white-space: pre-wrap; }
.headline { background: #f4f7fb; border-left: 5px solid #2b6cb0; padding: 0.6em 1.2em; margin: 1em 0; }
.headline .question { font-style: italic; color: #333; } .headline li { margin: 0.3em 0; }
details > summary { cursor: pointer; color: #2b6cb0; margin: 0.4em 0; }
.good { background: #c6efce; } .bad { background: #ffc7ce; } .neutral { background: #fff2cc; }
.muted { color: #777; }
"""


@dataclass
class Headline:
    """What a report opens with: the ``question`` the run answers and ``answer`` sentences computed from its numbers
    (with their intervals)."""

    question: str
    answer: list[str]


@dataclass
class Section:
    """A part of the report: a heading, paragraphs, HTML blocks built by the report package (``blocks``, trusted,
    shown after the paragraphs), tables (title -> DataFrame) and figures (caption -> PNG path)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    blocks: list[str] = field(default_factory=list)


def figure_html(caption: str, path: Path) -> str:
    """A figure embedded as a PNG data URI, with its caption."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table_html(title: str, table: pd.DataFrame) -> str:
    """A table under its title: numbers to 4 significant digits, row numbers left out, folded when long, in a
    smaller font when it has many columns."""
    plain_index = isinstance(table.index, pd.RangeIndex)  # row numbers carry nothing: leave them out
    body = table.to_html(float_format=lambda v: f"{v:.4g}", border=0, na_rep="–", index=not plain_index)
    columns = table.shape[1] + (0 if plain_index else table.index.nlevels)
    box = f"<div class='table{' wide' if columns > 10 else ''}'>{body}</div>"
    if len(table) > LONG_TABLE:
        return f"<details><summary>{html.escape(title)} ({len(table)} rows)</summary>{box}</details>"
    return f"<h3>{html.escape(title)}</h3>{box}"


def headline_html(headline: Headline) -> str:
    """The question and its answer, in a box at the top of the page."""
    answer = "".join(f"<li>{html.escape(line)}</li>" for line in headline.answer)
    return (f"<div class='headline'><p class='question'>{html.escape(headline.question)}</p>"
            f"<ul>{answer}</ul></div>")


def write_report(path: str | Path, title: str, findings: list[str], sections: list[Section], config_text: str,
                 headline: Headline | None = None) -> Path:
    """Write the report page: title, the headline (question and answer), "What this shows" findings, the sections,
    and the resolved config."""
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append("<meta name='viewport' content='width=device-width, initial-scale=1'>")
    parts.append(f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    if headline is not None:
        parts.append(headline_html(headline))
    if findings:
        parts.append("<h2>What this shows</h2><ul class='findings'>")
        parts.extend(f"<li>{html.escape(finding)}</li>" for finding in findings)
        parts.append("</ul>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.extend(f"<p>{html.escape(paragraph)}</p>" for paragraph in section.paragraphs)
        parts.extend(section.blocks)
        parts.extend(table_html(name, table) for name, table in section.tables.items())
        parts.extend(figure_html(caption, figure) for caption, figure in section.figures.items())
    parts.append(f"<h2>Configuration</h2><pre>{html.escape(config_text)}</pre></body></html>")
    path = Path(path)
    atomic_write(path, lambda p: p.write_text("\n".join(parts), encoding="utf-8"))
    return path
