"""Content digests for result records: written with a record, checked when it is read.

A record (a protocol's network, an audit's finished attack) is plain JSON that a person can open and edit.
An edited number must never flow silently into a table, so every record is written *sealed*: with the
sha256 of its own canonical JSON under the key ``"sha256"``. A reader calls :func:`check_seal`; a record
whose content no longer matches its digest is refused with a message that names it.

The digest guards against edits and damage, not against an adversary (anyone can recompute it).

>>> r = seal({"clean_pct": 98.5, "eps": [0.1, 0.2]})
>>> check_seal(r, "run0/control") == {"clean_pct": 98.5, "eps": [0.1, 0.2]}
True
>>> r["clean_pct"] = 100.0
>>> check_seal(r, "run0/control")
Traceback (most recent call last):
...
nanosgm.plumbing.seal.RecordEdited: run0/control was changed after it was written (its content no longer matches its sha256); restore the file (e.g. git checkout) or delete the record to recompute it
"""
from __future__ import annotations

import hashlib
import json

from .errors import NanosgmError

__all__ = ["SEAL_KEY", "RecordEdited", "content_digest", "seal", "check_seal", "is_sealed", "unsealed", "unsealed_note"]

SEAL_KEY = "sha256"


class RecordEdited(NanosgmError, ValueError):
    """A sealed record whose content no longer matches its digest."""


def content_digest(body: dict) -> str:
    """sha256 (hex) of ``body`` as canonical JSON: sorted keys, no spaces, floats as Python's repr.

    A JSON round trip (``json.loads(json.dumps(x))``) keeps every float exactly, so the digest of a record
    read back from disk equals the digest computed when it was written."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def unsealed(record: dict) -> dict:
    """A copy of ``record`` without its digest: what the digest is computed over.

    >>> unsealed(seal({"epochs": 10})) == {"epochs": 10}
    True
    """
    return {k: v for k, v in record.items() if k != SEAL_KEY}


def seal(record: dict) -> dict:
    """A copy of ``record`` with its content digest under ``"sha256"`` (an old digest is replaced)."""
    body = unsealed(record)
    return {**body, SEAL_KEY: content_digest(body)}


def is_sealed(record: object) -> bool:
    """Whether ``record`` carries a digest (records written before digests existed do not)."""
    return isinstance(record, dict) and SEAL_KEY in record


def check_seal(record: dict, where: str, fix: str | None = None) -> dict:
    """``record`` without its digest, after checking the digest; :class:`RecordEdited` if they differ.

    ``where`` names the record in the message (a file and a key); ``fix``, when given, is the advice that
    ends it (what to do where deleting the record would not recompute it). A record without a digest is
    refused too; callers that accept records written before digests test :func:`is_sealed` first and say so
    (:func:`unsealed_note`)."""
    if not isinstance(record, dict):
        raise RecordEdited(f"{where} is not a JSON object; "
                           f"{fix or 'restore the file (e.g. git checkout) or delete the record'}")
    if SEAL_KEY not in record:
        raise RecordEdited(f"{where} carries no content digest ({SEAL_KEY!r}); "
                           f"{fix or 'restore the file or delete the record'}")
    body = unsealed(record)
    if record[SEAL_KEY] != content_digest(body):
        fix = fix or "restore the file (e.g. git checkout) or delete the record to recompute it"
        raise RecordEdited(f"{where} was changed after it was written (its content no longer matches its "
                           f"{SEAL_KEY}); {fix}")
    return body


def unsealed_note(where: str, then: str) -> str:
    """The one-line note for a record read without a digest (written before records were sealed): an edit
    to it cannot be detected. ``then`` says what is done with it ("plotted as it is").

    >>> unsealed_note("run/results.json", "plotted as it is").startswith("note: run/results.json carries no content")
    True
    """
    return (f"note: {where} carries no content digest (written before results were sealed), so an edit to it "
            f"cannot be detected; {then}")
