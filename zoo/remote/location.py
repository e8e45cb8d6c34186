"""An object-storage location for ``out_dir=`` or ``cache_dir=`` (``s3://bucket/prefix``, ``gs://``,
``file://`` and whatever else fsspec serves), and the one-line errors a bad one gets.

Local paths never come here, so they never import fsspec. Endpoint, credentials and region come from
where the storage library looks for them (for S3: ``AWS_*`` variables, ``~/.aws/config`` and
``~/.aws/credentials``, and ``AWS_ENDPOINT_URL``); ``store.endpoint_url=`` names an S3-compatible
server. No message names a credential: the values of the credential variables are masked in every
error text that leaves this module.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from zoo.errors import UserError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS")
# Refusals of the credentials, as S3 and S3-compatible servers name them.
_AUTH_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken",
               "NoCredentialsError", "Unable to locate credentials", "Forbidden", "403")


def is_url(value: Any) -> bool:
    """Whether ``value`` names object storage (``scheme://...``) rather than a local path."""
    return value is not None and bool(_SCHEME.match(str(value)))


def mask(text: str) -> str:
    """``text`` with the values of the credential variables replaced by ``***``."""
    for name in SECRET_ENV:
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


@dataclass
class Location:
    """A folder in object storage: paths below it are relative, with ``/``."""

    url: str      # as given, without a trailing slash
    key: str      # the config key that named it (out_dir, cache_dir), for messages
    fs: Any       # the fsspec file system
    root: str     # the file system's path of the folder (bucket/prefix)
    endpoint: Optional[str] = None

    def path(self, rel: str = "") -> str:
        return f"{self.root}/{rel}".rstrip("/") if rel else self.root

    def url_of(self, rel: str) -> str:
        return f"{self.url}/{rel}" if rel else self.url

    def error(self, e: BaseException, doing: str) -> UserError:
        return store_error(self.url, self.key, e, doing, self.endpoint)

    def read_bytes(self, rel: str) -> Optional[bytes]:
        """The object's bytes, or None when there is none."""
        try:
            return self.fs.cat_file(self.path(rel))
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001 - the storage library's own errors: one line
            raise self.error(e, f"reading {rel}") from None

    def read_json(self, rel: str) -> Optional[Dict[str, Any]]:
        data = self.read_bytes(rel)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None  # a torn or foreign object reads as absent: it is replaced, never trusted

    @property
    def local(self) -> bool:
        protocol = self.fs.protocol
        return bool({"file", "local"} & set(protocol if isinstance(protocol, (tuple, list)) else (protocol,)))

    def _parents(self, rel: str) -> None:
        if self.local:  # object stores have no folders; a file system needs them made
            self.fs.makedirs(self.path(rel).rsplit("/", 1)[0], exist_ok=True)

    def write(self, rel: str, data: bytes) -> None:
        try:
            self._parents(rel)
            self.fs.pipe_file(self.path(rel), data)
        except Exception as e:  # noqa: BLE001
            raise self.error(e, f"writing {rel}") from None

    def create(self, rel: str, data: bytes) -> bool:
        """Write only if there is no such object (a conditional write, ``If-None-Match: *`` on S3):
        True when this call created it, False when one was there."""
        try:
            if self.local:
                return self._create_local(rel, data)
            self.fs.pipe_file(self.path(rel), data, mode="create")
            return True
        except FileExistsError:
            return False
        except Exception as e:  # noqa: BLE001
            if "PreconditionFailed" in str(e) or "412" in str(e):
                return False
            raise self.error(e, f"creating {rel}") from None

    def _create_local(self, rel: str, data: bytes) -> bool:
        path = Path(self.path(rel))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def put(self, local: Path, rel: str) -> None:
        try:
            self._parents(rel)
            self.fs.put_file(str(local), self.path(rel))
        except Exception as e:  # noqa: BLE001
            raise self.error(e, f"uploading {rel}") from None

    def get(self, rel: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fs.get_file(self.path(rel), str(local))
        except Exception as e:  # noqa: BLE001
            raise self.error(e, f"downloading {rel}") from None

    def remove(self, rel: str, recursive: bool = False) -> None:
        try:
            self.fs.rm(self.path(rel), recursive=recursive)
        except FileNotFoundError:
            pass
        except Exception as e:  # noqa: BLE001
            raise self.error(e, f"deleting {rel}") from None

    def files(self, rel: str = "") -> List[str]:
        """Every object under ``rel``, relative to this location."""
        try:
            found = self.fs.find(self.path(rel))
        except FileNotFoundError:
            return []
        except Exception as e:  # noqa: BLE001
            raise self.error(e, f"listing {rel or 'the store'}") from None
        prefix = self.root.rstrip("/") + "/"
        return sorted(p[len(prefix):] for p in found if p.startswith(prefix))

    def manifests(self, name: str = "manifest.json") -> Iterator[str]:
        """The relative paths of every ``name`` object under this location."""
        for rel in self.files():
            if rel.rsplit("/", 1)[-1] == name:
                yield rel


def store_error(url: str, key: str, e: BaseException, doing: str, endpoint: Optional[str] = None) -> UserError:
    """One line for a failure of the store: what went wrong, with the URL, and what to set."""
    text = mask(" ".join(str(e).split()) or type(e).__name__)
    names = f"{type(e).__name__} {text}"
    where = endpoint or os.environ.get("AWS_ENDPOINT_URL") or "the provider's default endpoint"
    if any(code in names for code in _AUTH_CODES) or isinstance(e, PermissionError):
        return UserError(f"{key}={url}: the store refused the credentials while {doing} ({text[:160]}); set "
                         f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, ~/.aws/credentials) "
                         f"to a key that may read and write this bucket")
    if any(s in names for s in ("EndpointConnectionError", "ConnectTimeout", "Could not connect", "ConnectionRefused",
                                "Connection refused", "ConnectError", "ClientConnectorError", "Name or service")):
        return UserError(f"{key}={url}: cannot reach the store at {where} while {doing}; check the network, or set "
                         f"store.endpoint_url= (or AWS_ENDPOINT_URL) to your S3-compatible server")
    if "NoSuchBucket" in names or (isinstance(e, FileNotFoundError) and doing == "opening it"):
        return UserError(f"{key}={url}: no such bucket at {where}; create it, or fix the URL")
    return UserError(f"{key}={url}: the store failed while {doing}: {text[:200]}")


def open_location(url: str, key: str, endpoint_url: Optional[str] = None) -> Location:
    """The location ``url`` names, checked: the bucket answers with these credentials (exit 2 if not)."""
    try:
        import fsspec
    except ImportError:
        raise UserError(f"{key}={url}: object storage needs fsspec; pip install 'resnext-zoo[s3]'") from None
    import logging

    for name in ("botocore", "aiobotocore", "s3fs", "fsspec"):  # their INFO lines ("Found credentials ...") are noise
        logging.getLogger(name).setLevel(logging.WARNING)
    url = url.rstrip("/")
    protocol = url.split("://", 1)[0].lower()
    options: Dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        # Fail in seconds, not after the library's long retry schedule, when the endpoint is down.
        options = {"config_kwargs": {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}},
                   "skip_instance_cache": True}
        if endpoint_url:
            options["client_kwargs"] = {"endpoint_url": endpoint_url}
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError as e:
        raise UserError(f"{key}={url}: {protocol}:// needs a package that is not installed ({e.name}); "
                        f"pip install 'resnext-zoo[s3]' (S3) or the fsspec backend for {protocol}") from None
    except ValueError as e:
        raise UserError(f"{key}={url}: not a storage URL fsspec knows ({mask(str(e))[:120]})") from None
    loc = Location(url=url, key=key, fs=fs, root=root.rstrip("/"), endpoint=endpoint_url)
    bucket = loc.root.split("/", 1)[0]
    try:
        if protocol in ("file", "local"):
            Path(loc.root).mkdir(parents=True, exist_ok=True)
        else:
            fs.ls(bucket)  # one listing request: it needs the endpoint, the bucket and the credentials
    except Exception as e:  # noqa: BLE001
        raise store_error(url, key, e, "opening it", endpoint_url) from None
    return loc
