"""The static HTML report of a run: one self-contained page (figures embedded as PNG data URIs)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..io import atomic_write

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } .table { overflow-x: auto; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.findings li { margin: 0.4em 0; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
"""


@dataclass
class Section:
    """A part of the report: a heading, paragraphs, tables (title -> DataFrame) and figures (caption -> PNG path)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)


def _figure_html(caption: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table_html(title: str, table: pd.DataFrame) -> str:
    plain_index = isinstance(table.index, pd.RangeIndex)  # row numbers carry nothing: leave them out
    body = table.to_html(float_format=lambda v: f"{v:.4g}", border=0, na_rep="–", index=not plain_index)
    return f"<h3>{html.escape(title)}</h3><div class='table'>{body}</div>"


def write_report(path: str | Path, title: str, findings: list[str], sections: list[Section], config_text: str) -> Path:
    """Write the report page: title, "what this shows" findings, the sections, and the resolved config."""
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    parts.append("<h2>What this shows</h2><ul class='findings'>")
    parts.extend(f"<li>{html.escape(finding)}</li>" for finding in findings)
    parts.append("</ul>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.extend(f"<p>{html.escape(paragraph)}</p>" for paragraph in section.paragraphs)
        parts.extend(_table_html(name, table) for name, table in section.tables.items())
        parts.extend(_figure_html(caption, figure) for caption, figure in section.figures.items())
    parts.append(f"<h2>Configuration</h2><pre>{html.escape(config_text)}</pre></body></html>")
    path = Path(path)
    atomic_write(path, lambda p: p.write_text("\n".join(parts), encoding="utf-8"))
    return path
