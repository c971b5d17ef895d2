"""A tiny document model rendered as Markdown or standalone HTML, for the DPO's documents
(``explain``, ``audit report``): what they say is built once, how it looks is chosen last."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape
from typing import Literal

Format = Literal["md", "html"]


@dataclass
class Doc:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def h2(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", headers, rows))

    def code(self, text: str, lang: str = "") -> None:
        self.blocks.append(("code", lang, text))

    def render(self, fmt: Format, heading: int = 1) -> str:
        return self.markdown(heading) if fmt == "md" else self.html()

    def markdown(self, heading: int = 1) -> str:
        h = "#" * heading
        out = [f"{h} {self.title}", ""]
        for b in self.blocks:
            if b[0] == "h2":
                out += [f"{h}# {b[1]}", ""]
            elif b[0] == "p":
                out += [b[1], ""]
            elif b[0] == "ul":
                out += [f"- {i}" for i in b[1]] + [""]
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("|" + "|".join("---" for _ in b[1]) + "|")
                out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in b[2]]
                out.append("")
            elif b[0] == "code":
                fence = "```"
                while fence in b[2]:
                    fence += "`"
                out += [fence + b[1], b[2].rstrip("\n"), fence, ""]
        return "\n".join(out)

    def html(self) -> str:
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
               f"<title>{escape(self.title)}</title>",
               "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
               "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .5em;"
               "vertical-align:top;text-align:left}pre{background:#f4f4f4;padding:1em;"
               "overflow-x:auto}</style></head><body>", f"<h1>{escape(self.title)}</h1>"]
        for b in self.blocks:
            if b[0] == "h2":
                out.append(f"<h2>{escape(b[1])}</h2>")
            elif b[0] == "p":
                out.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{escape(h)}</th>" for h in b[1])
                body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                               for row in b[2])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif b[0] == "code":
                out.append(f"<pre><code>{escape(b[2])}</code></pre>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _inline(text: str) -> str:
    """Escape, then turn the inline Markdown these documents use (`code`, **strong**,
    *emphasis*) into HTML."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else _emphasis(p) for i, p in enumerate(parts))


def _emphasis(text: str) -> str:
    text = re.sub(r"\*\*(\S(?:.*?\S)?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\*(\S(?:.*?\S)?)\*", r"<em>\1</em>", text)


def code(text: str) -> str:
    """Inline code that survives any backticks inside ``text``."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"
