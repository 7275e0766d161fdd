"""Starting the service: API keys, the loopback rule, uvicorn."""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path

_HASH = re.compile(r"[0-9a-f]{64}")


def read_api_keys(path: str | Path) -> set[str]:
    """The sha256 hex digests in ``path``, one per line (``#`` comments and blank lines skipped); a key itself is
    never stored. One line for a key: ``printf %s KEY | sha256sum | cut -d' ' -f1``.

    Raises:
        ValueError: a line is not a sha256 hex digest (the line is named), or the file has none.
    """
    hashes = set()
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip().lower()
        if not text:
            continue
        if not _HASH.fullmatch(text):
            raise ValueError(
                f"{path} line {number}: not a sha256 hex digest (64 hex digits); store sha256(KEY), not the key"
            )
        hashes.add(text)
    if not hashes:
        raise ValueError(f"{path} holds no API key hashes; add one sha256 hex digest per line")
    return hashes


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address, ``localhost``, or a name that resolves only to loopback addresses
    (``localhost`` is taken as loopback without resolving it; ``""`` binds every interface)."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in found)
