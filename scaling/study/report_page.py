"""The study report: ``runs/<study>/report/report.md`` and ``report.html`` with figures and videos.

A report is a list of blocks (headings, paragraphs, tables, images, videos, code) rendered both as
markdown and as a standalone HTML page; figures and videos are copied next to the pages so the
``report/`` directory can be moved or shared as it is. ``report.html`` carries its figures inside
it (``data:`` URIs), so the page alone can be mailed; videos stay links to ``media/``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offline_data.atomic import write_text_atomic
from scaling.laws.identification import entry_caveats, entry_issues
from scaling.tasks import TASKS

TASK_TITLES = {name: task.title for name, task in TASKS.items()}


def task_title(task: str) -> str:
    """The task's title for a page (``WM-Token``), or its name when it has none."""
    return TASK_TITLES.get(task, task)

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".svg": "image/svg+xml", ".webp": "image/webp"}


@dataclass
class Block:
    """One element of a report page."""

    kind: str  # h1 | h2 | h3 | p | table | img | video | code | list
    text: str = ""  # heading/paragraph text, caption, or code
    rows: list[list[str]] = field(default_factory=list)  # table rows (first row = header) / items
    src: str = ""  # image or video file, relative to the report directory


class Report:
    """Collects blocks and writes the markdown and HTML pages."""

    def __init__(self, out_dir: str | os.PathLike, title: str):
        self.out_dir = Path(out_dir)
        self.title = title
        self.blocks: list[Block] = [Block("h1", title)]
        (self.out_dir / "media").mkdir(parents=True, exist_ok=True)

    def add(self, kind: str, text: str = "", rows: list[list[str]] | None = None,
            src: str = "") -> None:
        """Append a block."""
        self.blocks.append(Block(kind, text, rows or [], src))

    def media(self, path: str | os.PathLike, kind: str, caption: str, name: str | None = None
              ) -> None:
        """Copy a figure (``img``) or video (``video``) into the report and show it."""
        path = Path(path)
        if not path.is_file():
            self.add("p", f"*({caption}: {path.name} was not produced)*")
            return
        dest = self.out_dir / "media" / (name or path.name)
        if path.resolve() != dest.resolve():
            shutil.copyfile(path, dest)
        self.add(kind, caption, src=f"media/{dest.name}")

    def markdown(self) -> str:
        """The page as markdown."""
        out = []
        for b in self.blocks:
            if b.kind in ("h1", "h2", "h3"):
                out.append("#" * int(b.kind[1]) + " " + b.text)
            elif b.kind == "p":
                out.append(b.text)
            elif b.kind == "list":
                out.append("\n".join(f"- {r[0]}" for r in b.rows))
            elif b.kind == "table" and b.rows:
                head, *body = b.rows
                lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                lines += ["| " + " | ".join(r) + " |" for r in body]
                out.append(("**" + b.text + "**\n\n" if b.text else "") + "\n".join(lines))
            elif b.kind == "img":
                out.append(f"![{b.text}]({b.src})\n\n*{b.text}*")
            elif b.kind == "video":
                out.append(f"[▶ {b.text}]({b.src})")
            elif b.kind == "code":
                out.append("```\n" + b.text.rstrip() + "\n```")
        return "\n\n".join(out) + "\n"

    def html(self) -> str:
        """The page as standalone HTML: figures embedded as data URIs, videos linked."""
        e = html.escape
        out = []
        for b in self.blocks:
            if b.kind in ("h1", "h2", "h3"):
                out.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
            elif b.kind == "p":
                out.append(f"<p>{_inline(b.text)}</p>")
            elif b.kind == "list":
                out.append("<ul>" + "".join(f"<li>{_inline(r[0])}</li>" for r in b.rows) + "</ul>")
            elif b.kind == "table" and b.rows:
                head, *body = b.rows
                cap = f"<caption>{e(b.text)}</caption>" if b.text else ""
                out.append(f"<table>{cap}<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head)
                           + "</tr>" + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>"
                                                                  for c in r) + "</tr>"
                                               for r in body) + "</table>")
            elif b.kind == "img":
                src = image_data_uri(self.out_dir / b.src) or b.src
                out.append(f'<figure><img src="{e(src)}" alt="{e(b.text)}">'
                           f"<figcaption>{e(b.text)}</figcaption></figure>")
            elif b.kind == "video":
                out.append(f'<figure><video src="{e(b.src)}" controls loop muted></video>'
                           f"<figcaption>{e(b.text)}</figcaption></figure>")
            elif b.kind == "code":
                out.append(f"<pre>{e(b.text)}</pre>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
                 "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
                 "padding:3px 8px;text-align:right}th{background:#eee}img,video{max-width:100%}"
                 "caption{font-weight:bold;text-align:left}pre{background:#f6f6f6;padding:1em;"
                 "overflow:auto;font-size:12px}figcaption{font-style:italic;font-size:90%}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{e(self.title)}"
                f"</title><style>{style}</style></head><body>\n" + "\n".join(out)
                + "\n</body></html>\n")

    def write(self) -> tuple[Path, Path]:
        """Write ``report.md`` and ``report.html`` atomically; returns both paths."""
        md, page = self.out_dir / "report.md", self.out_dir / "report.html"
        write_text_atomic(md, self.markdown())
        write_text_atomic(page, self.html())
        return md, page


def compact_json(obj: Any, width: int = 96, indent: int = 0, used: int = 0) -> str:
    """``json.dumps(obj, indent=2)``, with short lists and objects kept on one line.

    A list or object whose one-line form fits ``width`` columns (a ladder of sizes, a table of
    overrides) stays on one line, so specs read short. ``indent`` is the indentation of the
    value's block, ``used`` the columns its first line already has (an object's key).
    """
    flat = json.dumps(obj)
    if not isinstance(obj, (list, dict)) or not obj or used + len(flat) <= width:
        return flat
    pad = " " * (indent + 2)
    if isinstance(obj, list):
        items = [pad + compact_json(v, width, indent + 2, indent + 2) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    items = []
    for k, v in obj.items():
        key = f"{pad}{json.dumps(k)}: "
        items.append(key + compact_json(v, width, indent + 2, len(key)))
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"


def image_data_uri(path: str | os.PathLike) -> str | None:
    """An image file as a ``data:`` URI; None for a missing file or a type that is not an image.

    >>> image_data_uri("missing.png") is None
    True
    """
    path = Path(path)
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _inline(text: str) -> str:
    """Escape HTML and render markdown's **bold**, *italic* and `code`."""
    import re

    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
    s = re.sub(r"(?<!\*)\*(?!\*)(.+?)\*", r"<i>\1</i>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


def fmt(value: Any, digits: int = 3) -> str:
    """Format a number compactly (``n/a`` for None or NaN)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return "n/a"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"


def with_ci(obj: dict | None, key: str, digits: int = 3) -> str:
    """``value [low, high]`` from a fit object with a ``ci`` mapping."""
    if not obj or key not in obj:
        return "n/a"
    ci = (obj.get("ci") or {}).get(key)
    s = fmt(obj[key], digits)
    if ci and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
        s += f" [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"
    return s


def skipped_reason(obj: Any) -> str | None:
    """Why a fit section was skipped, if it was (``None`` when it holds coefficients)."""
    if obj is None:
        return "not run"
    if isinstance(obj, dict):
        if obj.get("status") not in (None, "ok"):
            return str(obj.get("reason") or obj.get("status"))
        if obj.get("skipped") is True or obj.get("status") == "skipped":
            return str(obj.get("reason") or "skipped")
        if isinstance(obj.get("skipped"), str):
            return obj["skipped"]
        if "error" in obj:
            return str(obj["error"])
        return None
    return str(obj)


def coefficient_table(fits: dict[str, dict]) -> list[list[str]]:
    """Paper Table 1: frontier and parametric ``a`` (N_opt ~ C^a) and ``b`` (D_opt ~ C^b)."""
    rows = [["Task", "Frontier a (N_opt ∝ C^a)", "Frontier b (D_opt ∝ C^b)",
             "Parametric a", "Parametric b", "Parametric E, α, β", "Points"]]
    for task, fit in fits.items():
        fr, pa = fit.get("frontier"), fit.get("parametric")
        fr_ok, pa_ok = skipped_reason(fr) is None, skipped_reason(pa) is None
        # a fit that does not identify its a says so in its cells, not only in the text below
        fr_mark = " (not identified)" if fr_ok and entry_issues("frontier", fr) else ""
        pa_mark = " (not identified)" if pa_ok and entry_issues("parametric", pa) else (
            " (caveat below)" if pa_ok and entry_caveats(pa) else "")
        rows.append([
            TASK_TITLES.get(task, task),
            with_ci(fr, "a") + fr_mark if fr_ok else "N/A",
            with_ci(fr, "b") + fr_mark if fr_ok else "N/A",
            with_ci(pa, "a") + pa_mark if pa_ok else "N/A",
            with_ci(pa, "b") + pa_mark if pa_ok else "N/A",
            ", ".join(_at_zero(pa.get(k)) for k in ("E", "alpha", "beta")) if pa_ok else "N/A",
            str((fit.get("data") or {}).get("num_points", "")),
        ])
    return rows


def fit_figure_caption(title: str, fit: dict, crossed: bool) -> str:
    """The caption of a task's scaling-fit figure, naming only what it draws."""
    drawn = [name for name, key in (("efficient frontier", "frontier"),
                                    ("parametric fit", "parametric"))
             if fit.get(key) and skipped_reason(fit[key]) is None]
    return (f"{title}: loss vs FLOPs coloured by N"
            + (", " + " and ".join(drawn) if drawn else "")
            + (", with the budget protocol's crossings (x)" if crossed else "")
            + " (left); N_opt and D_opt vs compute (middle, right)")


def _at_zero(value: Any) -> str:
    """A coefficient collapsed onto its bound 0 (1e-81 and the like) shown as 0."""
    return "0" if isinstance(value, (int, float)) and 0 <= value < 1e-12 else fmt(value)


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file, or None when it does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None
