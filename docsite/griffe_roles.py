"""A griffe extension for the site's API reference: the docstrings' Sphinx roles as links.

The docstrings cross-reference with Sphinx roles (``:func:`optimal_decoder```,
``:mod:`vaetheory.optimal_gemm```), which markdown would print as written.  Each becomes a
mkdocs-autorefs link to the object it names: a dotted name as written, a bare name first in the
docstring's own module.  A name that is in neither stays code, unlinked; a link that the site
cannot resolve fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|mod|class|meth|data|attr|obj|exc):`~?([\w.]+)(?:\(\))?`")


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for obj in walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(lambda m: link(m[1], obj), obj.docstring.value)


def walk(obj):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from walk(member)


def link(name: str, obj) -> str:
    target = resolve(name, obj)
    return f"[`{name}`][{target}]" if target else f"`{name}`"


def resolve(name: str, obj) -> str | None:
    module = obj if obj.is_module else obj.module
    scopes = [obj.parent] if obj.parent is not None and obj.parent.is_class else []
    for scope in [*scopes, module]:
        head, _, rest = name.partition(".")
        if head in scope.members:
            found = scope.members[head]
            target = f"{found.path}.{rest}" if rest else found.path
            return target if public(target) else None
    root = name.split(".")[0]
    if root in ("vaetheory", "mlpvae"):
        return name if public(name) else None
    return None


def public(path: str) -> bool:
    return not any(part.startswith("_") for part in path.split("."))
