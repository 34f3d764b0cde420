"""A Griffe extension for the API reference: read the docstrings' reStructuredText bits as Markdown.

The docstrings are Google style (Args/Returns/Raises) but keep a few reStructuredText habits that doctest and
Sphinx readers know: ``Example::`` before a doctest, roles such as ``:class:`~lit_deep.data.X```, double
backquotes and ``.. math::`` lines. This extension rewrites them as the Google parser and Markdown expect,
on the documentation's copy of each docstring only (the source is not touched):

- ``Example::`` -> ``Examples:`` (a Google section: the doctest is shown as a Python block);
- ``:role:`~a.b.C``` -> ```C```, ``:role:`a.b.C``` -> ```a.b.C```;
- ````code```` -> ```code```;
- ``.. math:: formula`` -> a displayed formula in a code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|obj|exc):`(~?)([^`]+)`")
_DOUBLE = re.compile(r"``([^`]+)``")
_EXAMPLE = re.compile(r"^(\s*)Examples?::\s*$", flags=re.M)
_MATH = re.compile(r"^(\s*)\.\. math:: (.+)$", flags=re.M)


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def markdown_docstring(text: str) -> str:
    """The docstring ``text`` with its reStructuredText habits rewritten as Markdown (see the module)."""
    text = _EXAMPLE.sub(r"\1Examples:", text)
    text = _MATH.sub(lambda m: f"{m.group(1)}```text\n{m.group(1)}{m.group(2)}\n{m.group(1)}```", text)
    text = _ROLE.sub(_role, text)
    return _DOUBLE.sub(r"`\1`", text)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring Griffe loads with :func:`markdown_docstring`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called for every object Griffe creates (module, class, function, attribute)."""
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
