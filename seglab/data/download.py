"""Fetching public datasets with torchvision's download utilities, failing fast without a network.

``torchvision.datasets.utils`` opens URLs without a timeout: on a cluster node with no route out a
download would hang. Every fetch here runs under a short socket timeout and turns any network error
into a ``DataError`` that says how to fetch the files by hand.
"""

from __future__ import annotations

import hashlib
import socket
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from seglab.data.io import DataError

NETWORK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Resource:
    """One archive of a dataset: where it lives and how to check it (md5 and/or sha1)."""

    url: str
    filename: str
    md5: str | None = None
    sha1: str | None = None


@contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """A default timeout for every socket opened inside the block (urllib has none of its own)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_and_extract(
    resources: list[Resource],
    root: Path,
    dataset: str,
    manual: str,
    timeout: float = NETWORK_TIMEOUT_S,
    extract: bool = True,
) -> None:
    """Downloads (or reuses verified copies of) ``resources`` into ``root`` and extracts them there
    (unless ``extract`` is False: multi-part archives are extracted by their own tool).

    ``manual`` tells the user how to do it by hand; it ends every error message."""
    from torchvision.datasets.utils import download_url, extract_archive

    root.mkdir(parents=True, exist_ok=True)
    for res in resources:
        archive = root / res.filename
        try:
            with socket_timeout(timeout):
                download_url(res.url, str(root), res.filename, res.md5)
        except (urllib.error.URLError, OSError, RuntimeError) as e:
            raise DataError(
                f"{dataset}: cannot download {res.url} ({type(e).__name__}: {e}). {manual}"
            ) from None
        if res.sha1 is not None and _sha1(archive) != res.sha1:
            raise DataError(
                f"{archive}: checksum mismatch (expected sha1 {res.sha1}); delete it and retry. "
                f"{manual}"
            )
        if extract:
            extract_archive(str(archive), str(root))
