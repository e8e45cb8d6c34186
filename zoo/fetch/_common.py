"""What every part of the fetcher shares: the error type, hashing, and what a file must hash to."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

from zoo.errors import UserError
from zoo.store import sha256_of

CHUNK = 1 << 20

_HEX = re.compile(r"[0-9a-f]+")
# torchvision and mmcls end checkpoint names with the digest prefix: resnext101_32x8d-8ba56ff5.pth,
# resnext50_32x4d_b32x8_imagenet_20210429-56066e27.pth. Anchored at the extension so a date earlier
# in the name is not taken for a digest.
_NAME_DIGEST = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


class FetchError(UserError):
    """A download that failed or did not verify; the message says how to fetch the file by hand."""


def one_line(text: object) -> str:
    """Collapse whitespace: library errors span lines, ours must not."""
    return " ".join(str(text).split())


def manual_hint(url: str, dest: Path) -> str:
    return f"fetch it by hand: curl -L --create-dirs -o {dest} '{url}' and pass weights={dest}"


# One file hasher for the project: chunked, so multi-GB checkpoints never sit in memory.
sha256_file = sha256_of


def digest_in_name(url: str) -> Optional[str]:
    """The sha256 prefix a torchvision/mmcls style URL carries in its file name, if any."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    m = _NAME_DIGEST.search(name)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Expect:
    """What a file must hash to: the full digest, else a prefix, else anything (trust on first use)."""

    sha256: Optional[str] = None
    prefix: Optional[str] = None

    @classmethod
    def build(cls, sha256: Optional[str], prefix: Optional[str], url: Optional[str], where: str) -> "Expect":
        sha = sha256.strip().lower() if sha256 else None
        pre = prefix.strip().lower() if prefix else None
        if sha is not None and not (len(sha) == 64 and _HEX.fullmatch(sha)):
            raise FetchError(f"{where}: sha256 must be 64 hex digits, got '{sha256}'")
        if pre is not None and not (8 <= len(pre) <= 64 and _HEX.fullmatch(pre)):
            raise FetchError(f"{where}: sha256_prefix must be 8 to 64 hex digits, got '{prefix}'")
        if sha and pre and not sha.startswith(pre):
            raise FetchError(f"{where}: sha256 {sha} does not start with sha256_prefix {pre}")
        if sha is None and pre is None and url:
            pre = digest_in_name(url)
        return cls(sha, pre)

    def matches(self, got: str) -> bool:
        if self.sha256:
            return got == self.sha256
        return got.startswith(self.prefix) if self.prefix else True

    def describe(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}"
        return f"sha256 prefix {self.prefix}" if self.prefix else "any sha256"
