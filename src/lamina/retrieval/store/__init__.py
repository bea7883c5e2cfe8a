"""Where an index's source of truth lives: the :class:`~.base.Store` boundary and its engines.

A store is named by a URL whose scheme picks the engine:

- none given: ``lamina.sqlite`` in the index directory (SQLite, the default);
- ``sqlite://PATH`` or a plain path: SQLite in that directory (``sqlite:///abs/dir``);
- ``postgresql://...`` or ``postgres://...``: PostgreSQL with pgvector (``lamina[postgres]``).

Engines are registered by scheme in the ``lamina.stores`` entry-point group (the built-in ones
in Lamina's own ``pyproject.toml``) or with :func:`register_store`; a third-party package adds
one the same way, and can test it with the contract suite in :mod:`lamina.testing.stores`::

    [project.entry-points."lamina.stores"]
    mydb = "my_package.store:MyStore"   # a class with from_url(url, directory=, create=, settings=)

>>> [scheme for scheme in store_schemes() if scheme in ("postgres", "postgresql", "sqlite")]
['postgres', 'postgresql', 'sqlite']
>>> scheme_of("postgresql://me@db/lamina"), scheme_of("/data/index"), scheme_of("sqlite://x")
('postgresql', 'sqlite', 'sqlite')
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from lamina.errors import ConfigError
from lamina.registry import Registry
from lamina.retrieval.store.base import IndexStore
from lamina.settings import Settings, get_settings

__all__ = [
    "STORES",
    "StoreFactory",
    "open_store",
    "register_store",
    "scheme_of",
    "store_schemes",
]


class StoreFactory(Protocol):
    def from_url(
        self, url: str, *, directory: Path, create: bool, settings: Settings
    ) -> IndexStore:
        """Open (``create``: or create) the store at ``url``; ``directory`` is the index's."""
        ...


STORES: Registry[StoreFactory] = Registry("lamina.stores", kind="store", plural="schemes")

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
#: ``host=db dbname=lamina``: a libpq keyword string, which would otherwise read as a path.
_KEYWORDS = re.compile(r"\s*[a-z_]+\s*=")


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Register a store engine for a URL scheme at run time (entry points are the usual way)."""
    STORES.register(scheme, factory)


def store_schemes() -> list[str]:
    """Every URL scheme a store is registered for."""
    return STORES.names()


def scheme_of(url: str) -> str:
    """The URL's scheme, lower-cased; a path (no ``scheme://``) is ``sqlite``."""
    found = _SCHEME.match(url)
    return found.group(1).lower() if found else "sqlite"


def open_store(
    store: IndexStore | str | None,
    directory: Path,
    *,
    create: bool = True,
    settings: Settings | None = None,
) -> IndexStore:
    """The store an index in ``directory`` uses: an instance as given, else the engine the
    URL's scheme names (SQLite in ``directory`` when there is no URL)."""
    if store is not None and not isinstance(store, str):
        return store
    url = store or ""
    scheme = scheme_of(url)
    if not _SCHEME.match(url) and _KEYWORDS.match(url):
        raise ConfigError(
            f"The store {url!r} looks like a libpq keyword string: give it as a URI instead, "
            f"postgresql://USER@HOST:PORT/DBNAME."
        )
    if scheme not in STORES:
        raise ConfigError(
            f"Unknown store {url!r}: no store engine is registered for the scheme {scheme!r}. "
            f"Known schemes: {', '.join(store_schemes())}. Give a postgresql:// URI, a "
            f"sqlite:// URL or a path, or no store for the SQLite file in the index directory."
        )
    factory = STORES.get(scheme)
    return factory.from_url(
        url, directory=directory, create=create, settings=settings or get_settings()
    )
