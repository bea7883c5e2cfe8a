"""Who owns what: tenants, their collections, and what an admin key shares.

A *tenant* owns documents. Every API key is one, by its name: a key revoked and created again
under the same name gets its documents back, which is how a key is rotated. With no keys at
all (the loopback dev mode) every request belongs to the one tenant ``local``.

The server keeps every tenant's documents in one index (one store, one set of search indexes,
so a replica over a shared store holds no copy), and tenancy is the collection name: tenant
``T``'s collection ``docs`` is stored as ``T/docs``. A client names its own collections by
their short name and never sees another tenant's; a collection an admin key shared is visible
to every key, read-only, under its stored name (``k-…/handbook``). Every route resolves a
collection or a document through :class:`lamina.server.library.Library`, which asks this module
what the caller may see: an unknown id and another tenant's id get the same 404, so ids cannot
be probed.

>>> tenant_id("alice") == tenant_id("alice") != tenant_id("bob")
True
>>> check_collection("my-docs_2024")
'my-docs_2024'
>>> check_collection("../x")  # doctest: +ELLIPSIS
Traceback (most recent call last):
lamina.server.tenancy.InvalidCollectionError: Invalid collection name '../x': ...
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from fastapi import Request

from lamina.errors import InvalidRequestError, LaminaError

__all__ = [
    "LOCAL",
    "ForbiddenError",
    "InvalidCollectionError",
    "NotFoundError",
    "Tenant",
    "check_collection",
    "internal_name",
    "split_internal",
    "tenant_id",
    "tenant_of",
]

#: The tenant of every request when no API key exists.
LOCAL = "local"
_COLLECTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TENANT = re.compile(r"local|k-[0-9a-f]{16}")


class NotFoundError(LaminaError):
    """A document, job, collection or run that does not exist for this caller (HTTP 404).
    Another tenant's ids get this too, word for word."""

    code = "not_found"


class ForbiddenError(LaminaError):
    """The caller sees the thing but may not change it (HTTP 403): deleting from a collection
    shared with it, sharing without an admin key."""

    code = "forbidden"


class InvalidCollectionError(InvalidRequestError):
    """A collection name that is not 1-64 letters, digits, ``_``, ``.``, ``-``."""

    code = "invalid_collection"

    def __init__(self, name: str) -> None:
        shown = name if len(name) <= 80 else name[:80] + "..."
        super().__init__(
            f"Invalid collection name {shown!r}: use 1 to 64 letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit (e.g. 'docs')."
        )


@dataclass(frozen=True)
class Tenant:
    """The owner a request acts for: ``id`` (``local`` or ``k-`` and 16 hex digits, never
    the key), the key's name (None in dev mode) and whether the key is an admin key."""

    id: str
    key: str | None
    admin: bool


def tenant_id(key_name: str) -> str:
    """The tenant of a key name: a stable hash, safe as a path and a collection prefix."""
    return "k-" + hashlib.sha256(key_name.encode("utf-8")).hexdigest()[:16]


def tenant_of(request: Request) -> Tenant:
    """The tenant of a request (the edge middleware put the verified key in its state)."""
    key = getattr(request.state, "key", None)
    if key is None:
        return Tenant(LOCAL, None, True)  # no keys: one user on loopback owns everything
    return Tenant(tenant_id(key.name), key.name, bool(key.admin))


def check_collection(name: str) -> str:
    """``name`` if it is a valid short collection name, else InvalidCollectionError."""
    if not _COLLECTION.fullmatch(name):
        raise InvalidCollectionError(name)
    return name


def internal_name(tenant: Tenant, name: str) -> str:
    """The stored name of the caller's own collection ``name``.

    >>> internal_name(Tenant("local", None, True), "docs")
    'local/docs'
    """
    return f"{tenant.id}/{check_collection(name)}"


def split_internal(stored: str) -> tuple[str, str] | None:
    """``(tenant id, short name)`` of a stored collection name; None for a collection the
    server did not make (e.g. one ingested by hand into its index).

    >>> split_internal("local/docs"), split_internal("docs")
    (('local', 'docs'), None)
    """
    owner, sep, name = stored.partition("/")
    if not sep or not _TENANT.fullmatch(owner) or not _COLLECTION.fullmatch(name):
        return None
    return owner, name
