"""Copy one remote file to a local path through the Snakemake storage plugin of its scheme
(``snakemake-storage-plugin-http`` for http(s)://, ``-xrootd`` for root://, ``-rucio`` for
rucio://scope/name DIDs), inside the job rather than in Snakemake's scheduler, so that

* transient failures (connection errors, HTTP 5xx / 429, a transfer shorter than announced)
  are retried with exponential back-off, while a missing file fails at once;
* the checksum (sha256 or adler32) is verified when the config gives one, and the file must
  start like a ROOT file;
* the output appears only when all of this succeeded (atomic rename), and every failure is
  one line naming the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from flavourflow.core import progress
from flavourflow.core.defaults import default
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.outputs import atomic_path

log = logging.getLogger(__name__)

#: URL scheme -> storage plugin (the package is snakemake_storage_plugin_<name>).
PLUGINS = {"http": "http", "https": "http", "root": "xrootd", "roots": "xrootd",
           "xroot": "xrootd", "rucio": "rucio"}
CHECKSUMS = ("sha256", "adler32")
ROOT_MAGIC = b"root"
_CHUNK = 1 << 20
#: Seconds between two looks at the size of the file being fetched (its progress).
POLL_SECONDS = 0.5


#: Exceptions (by class name, so that no plugin need be imported) retrying cannot help.
FATAL_ERRORS = {"ConfigNotFound", "ConfigLoadingError", "CannotAuthenticate", "AccessDenied",
                "InputValidationError", "XRootDFatalException"}
NOT_FOUND_ERRORS = {"DataIdentifierNotFound", "FileOrDirectoryNotFoundError"}


class PermanentError(Exception):
    """The remote file does not exist, or access is refused: retrying cannot help."""


def storage_object(url: str, local_path: Path, prefix: Path):
    """The plugin's StorageObject for ``url``, retrieving to ``local_path`` (``prefix``: the
    provider's scratch folder)."""
    scheme = urlparse(url).scheme
    if scheme not in PLUGINS:
        raise FlavourflowError(f"no storage plugin for scheme {scheme!r}; known: "
                               f"{', '.join(sorted(PLUGINS))}", path=url)
    package = f"snakemake_storage_plugin_{PLUGINS[scheme]}"
    try:
        plugin = importlib.import_module(package)
    except ImportError as err:
        raise FlavourflowError(f"{package.replace('_', '-')} is not installed "
                               f"(pip install 'flavourflow[fetch]'): {err}", path=url) from None
    try:
        provider = plugin.StorageProvider(local_prefix=prefix, logger=log,
                                          settings=plugin.StorageProviderSettings())
        query = url
        if hasattr(provider, "postprocess_query"):
            query = provider.postprocess_query(url)
        valid = provider.is_valid_query(query)
        if not valid:
            raise FlavourflowError(f"not a valid {PLUGINS[scheme]} query: {valid.reason}",
                                   path=url)
        obj = plugin.StorageObject(query=query, keep_local=True, retrieve=True,
                                   provider=provider)
    except FlavourflowError:
        raise
    except Exception as err:  # e.g. rucio: no configuration, or the server is unreachable
        if type(err).__name__ in FATAL_ERRORS:
            raise FlavourflowError(f"cannot set up the {PLUGINS[scheme]} storage plugin: "
                                   f"{type(err).__name__}: {err}", path=url) from None
        raise
    obj.set_local_path(local_path)
    return obj


def _check_exists(obj, url: str) -> None:
    """Raise PermanentError for a missing or refused file; other failures propagate (transient)."""
    httpr = getattr(obj, "httpr", None)
    if httpr is not None:  # http(s): tell 404 from a 5xx, which the plugin does not
        with httpr(verb="HEAD") as response:
            status = response.status_code
        if status in (404, 410):
            raise PermanentError(f"not found on the server (HTTP {status})")
        if status in (401, 403):  # credentials, not luck: a retry gets the same answer
            raise PermanentError(f"access refused by the server (HTTP {status})")
        if status != 200:
            raise ConnectionError(f"HTTP {status}")
        return
    if not obj.exists():
        raise PermanentError("not found on the server (no such file)")


@contextlib.contextmanager
def _watch(local: Path, expected: int, url: str) -> Iterator[None]:
    """Report the bytes the plugin has written to ``local`` so far as progress (the plugins
    report none): the file's size, polled every :data:`POLL_SECONDS` from a thread."""
    name = Path(urlparse(url).path).name or url
    with progress.bar(expected or None, f"fetch {name}", "B", unit_scale=True) as bar:
        stop = threading.Event()

        def look() -> None:
            with contextlib.suppress(OSError):  # (not created yet)
                bar.update(local.stat().st_size - bar.n)

        def poll() -> None:
            while not stop.wait(POLL_SECONDS):
                look()

        thread = threading.Thread(target=poll, name="fetch-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            look()  # the size at the end


def _attempt(obj, url: str, local: Path) -> int:
    """One transfer; returns the size. Raises on a short or failed transfer."""
    _check_exists(obj, url)
    expected = int(obj.size() or 0)
    local.unlink(missing_ok=True)
    with _watch(local, expected, url):
        obj.retrieve_object()
    if not local.is_file():
        raise OSError("the plugin wrote no file")
    got = local.stat().st_size
    if expected and got != expected:
        raise OSError(f"truncated transfer: {got} of {expected} bytes")
    return got


def file_checksum(path: Path, algorithm: str) -> str:
    """sha256 (hex) or adler32 (8 hex digits, as Rucio and XRootD print it) of a file."""
    if algorithm not in CHECKSUMS:
        raise ValueError(f"unknown checksum {algorithm!r}; known: {CHECKSUMS}")
    if algorithm == "sha256":
        digest = hashlib.sha256()
        for chunk in _chunks(path, algorithm):
            digest.update(chunk)
        return digest.hexdigest()
    value = 1
    for chunk in _chunks(path, algorithm):
        value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def _chunks(path: Path, algorithm: str) -> Iterator[bytes]:
    """The bytes of ``path``, :data:`_CHUNK` at a time, with progress (the checksum of a
    large file takes a while)."""
    with open(path, "rb") as f:
        yield from progress.track(iter(lambda: f.read(_CHUNK), b""), Path(path).stat().st_size,
                                  f"fetch: {algorithm}", "B", size=len,
                                  unit_scale=True)


def fetch(url: str, output: Path, checksum: dict[str, str] | None = None,
          retries: int | None = None, backoff: float | None = None) -> int:
    """Copy ``url`` to ``output``; return its size in bytes. ``checksum`` is
    {"sha256" | "adler32": hex}; ``retries`` extra attempts after transient failures, waiting
    ``backoff`` * 2^k seconds before the k-th (defaults: the schema's ``fetch.*``)."""
    retries = default("fetch.retries") if retries is None else retries
    backoff = default("fetch.backoff_s") if backoff is None else backoff
    checksum = dict(checksum or {})
    for algorithm in checksum:
        if algorithm not in CHECKSUMS:
            raise FlavourflowError(f"unknown checksum {algorithm!r}; known: "
                                   f"{', '.join(CHECKSUMS)}", path=url, field="checksum")
    output = Path(output)
    with atomic_path(output) as tmp, tempfile.TemporaryDirectory() as scratch:
        for attempt in range(retries + 1):
            try:
                obj = storage_object(url, tmp.resolve(), Path(scratch))
                size = _attempt(obj, url, tmp)
                break
            except FlavourflowError:
                raise
            except PermanentError as err:
                raise FlavourflowError(str(err), path=url) from None
            except Exception as err:
                reason = " ".join(f"{type(err).__name__}: {err}".split())
                if type(err).__name__ in NOT_FOUND_ERRORS:
                    raise FlavourflowError(f"not found on the server ({reason})",
                                           path=url) from None
                if type(err).__name__ in FATAL_ERRORS:
                    raise FlavourflowError(f"cannot fetch: {reason}", path=url) from None
                if attempt == retries:
                    raise FlavourflowError(f"transfer failed after {attempt + 1} attempt(s): "
                                           f"{reason}", path=url) from None
                wait = backoff * 2**attempt
                log.warning("%s: attempt %d failed (%s); retrying in %.1f s", url,
                            attempt + 1, reason, wait)
                time.sleep(wait)
        for algorithm, expected in checksum.items():
            got = file_checksum(tmp, algorithm)
            if got.lower() != str(expected).lower().removeprefix("0x"):
                raise FlavourflowError(f"{algorithm} checksum mismatch: got {got}, expected "
                                       f"{expected}", path=url, field="checksum")
        with open(tmp, "rb") as f:
            head = f.read(len(ROOT_MAGIC))
        if head != ROOT_MAGIC:
            raise FlavourflowError(f"not a ROOT file (starts with {head!r})", path=url)
    log.info("fetched %s (%d bytes) -> %s", url, size, output)
    return size
