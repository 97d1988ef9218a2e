"""Plain-URL downloads for datasets with stable sources: progress, resume, and sha256 checks.

``download(url, dest)`` fetches into ``<dest>.part`` (never trusted, never read as the dataset) and renames
it to ``dest`` only once its sha256 is right. The expected sum is the one shipped with the source when its
provider publishes one (``sha256=``), else the one recorded in a ``SHA256SUMS`` file beside the downloads on
first download (``sha256sum -c`` reads it) and checked on every later call. A wrong sum is a
``DownloadError`` (exit code 2) and the partial file is deleted, so no later run resumes from bad bytes.

An interrupted transfer resumes with an HTTP ``Range`` request (``If-Range`` with the first response's
``ETag`` or ``Last-Modified``, so a file that changed on the server is fetched afresh rather than spliced);
a transfer cut mid-way is resumed in the same call up to ``retries`` times. Offline, nothing is fetched and a
missing file is an error naming the URL. Only ``http``/``https`` URLs are fetched.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .fileio import atomic_write_text, sha256_file

SUMS_NAME = "SHA256SUMS"
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_USER_AGENT = "sparc-eval data download"


class DownloadError(DataError):
    """A download failed or a file does not match its sha256; names the URL and the file."""


@dataclass(frozen=True)
class Downloaded:
    """A verified file. ``checked`` says against what: ``shipped`` (a published sum), ``recorded`` (the sum
    recorded when it was first downloaded) or ``first-download`` (its sum was recorded just now)."""

    url: str
    path: Path
    sha256: str
    size: int
    checked: str


# -- sums files -----------------------------------------------------------------------------------------
def read_sums(path: Path | str) -> dict[str, str]:
    """``{name: sha256}`` from a ``sha256sum``-format file (``<hex>  <name>``); {} when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    sums = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _SUM_LINE.match(line.strip())
        if m is None:
            raise DownloadError(f"{path}:{lineno}: expected '<sha256>  <file name>' (sha256sum format), found {line!r:.80}")
        sums[m.group(2)] = m.group(1).lower()
    return sums


def record_sum(path: Path | str, name: str, digest: str) -> None:
    """Add or replace ``name``'s sum in the sums file (rewritten atomically, sorted by name)."""
    sums = read_sums(path)
    sums[name] = digest
    atomic_write_text(path, "".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))


def _sum_key(dest: Path, sums_file: Path) -> str:
    try:
        return dest.resolve().relative_to(sums_file.resolve().parent).as_posix()
    except ValueError:
        return dest.name


# -- the transfer ----------------------------------------------------------------------------------------
def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_meta(part: Path, url: str) -> dict:
    """Validators of a partial download of ``url`` (``{}`` when there is none or it is for another URL)."""
    try:
        meta = json.loads(_meta_path(part).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) and meta.get("url") == url else {}


def _discard(part: Path) -> None:
    for p in (part, _meta_path(part)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _progress(total: int | None, initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                disable=not enabled, file=sys.stderr, leave=False)


def _fetch_once(url: str, part: Path, timeout: float, progress: bool, chunk: int) -> None:
    """One request: resume ``part`` when it holds a prefix of the same file, else start over. Raises on a
    transfer cut short (``http.client.IncompleteRead`` or a short body), leaving what arrived in ``part``."""
    meta = _read_meta(part, url)
    have = part.stat().st_size if part.is_file() and meta else 0
    if have == 0:
        _discard(part)
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    validator = meta.get("etag") or meta.get("last_modified")
    if have and validator:
        headers.update({"Range": f"bytes={have}-", "If-Range": validator})
    elif have:
        _discard(part)
        have = 0
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the range starts at the end: the part may already be whole
            total = re.search(r"/(\d+)$", e.headers.get("Content-Range", "") or "")
            if total and int(total.group(1)) == have:
                return
            _discard(part)
        raise
    with response:
        if response.status == 206:
            start = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if start is None or int(start.group(1)) != have:
                raise DownloadError(f"{url}: the server answered a resume request with the range "
                                    f"{response.headers.get('Content-Range')!r}, not bytes {have}-; delete {part} and retry")
        else:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        meta = {"url": url, "etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified")}
        part.parent.mkdir(parents=True, exist_ok=True)
        _meta_path(part).write_text(json.dumps(meta))
        received = 0
        with part.open("ab" if have else "wb") as out, _progress(total, have, part.name[:-5], progress) as bar:
            for block in iter(lambda: response.read(chunk), b""):
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if length and length.isdigit() and received < int(length):
            raise http.client.IncompleteRead(b"", int(length) - received)


def download(url: str, dest: Path | str, *, sha256: str | None = None, sums_file: Path | str | None = None,
             offline: bool = False, progress: bool = True, timeout: float = 30.0, retries: int = 3,
             chunk: int = 1 << 20) -> Downloaded:
    """``url`` as the verified file ``dest`` (see the module docstring). ``sha256`` is a published sum;
    ``sums_file`` (default ``<dest folder>/SHA256SUMS``) records and checks sums when none is published."""
    dest = Path(dest)
    if not re.match(r"^https?://", url):
        raise DownloadError(f"{url}: only http(s) URLs are downloaded")
    sums_path = Path(sums_file) if sums_file is not None else dest.parent / SUMS_NAME
    key = _sum_key(dest, sums_path)
    recorded = read_sums(sums_path).get(key)
    expected, source = (sha256.lower(), "shipped") if sha256 else (recorded, "recorded")
    if dest.is_file():
        digest = sha256_file(dest)
        if expected is None:
            record_sum(sums_path, key, digest)
            return Downloaded(url, dest, digest, dest.stat().st_size, "first-download")
        if digest != expected:
            raise DownloadError(f"{dest}: sha256 {digest} does not match the {source} sum {expected} "
                                f"({sums_path if source == 'recorded' else 'published for ' + url}); the file changed "
                                f"or is not the one from {url}. Delete it to download it again.")
        return Downloaded(url, dest, digest, dest.stat().st_size, source)
    if offline:
        raise DownloadError(f"{dest} is missing and offline mode is on, so it was not downloaded; fetch {url} to "
                            f"that path (or run `sparc-eval data download` where there is network)")
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, timeout, progress, chunk)
            break
        except urllib.error.HTTPError as e:
            hint = ("it needs a login: download it in a browser and put it at that path" if e.code in (401, 403)
                    else "check the URL")
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason} while downloading {dest.name}; {hint}") from None
        except (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionResetError, TimeoutError) as e:
            if attempt == retries:
                raise DownloadError(f"{url}: the transfer broke off {retries + 1} times ({type(e).__name__}); what "
                                    f"arrived is kept in {part} and the next run resumes from it") from None
        except urllib.error.URLError as e:
            raise DownloadError(f"{url}: cannot reach the server ({e.reason}); check the network, or download it by "
                                f"hand to {dest}") from None
    h = hashlib.sha256()
    with part.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if expected is not None and digest != expected:
        _discard(part)
        raise DownloadError(f"{url}: the downloaded file has sha256 {digest}, but the {source} sum is {expected}; "
                            f"the partial file was deleted (not kept for a later run to trust). Retry later, or check "
                            f"the source.")
    size = part.stat().st_size
    os.replace(part, dest)
    _discard(part)
    if expected is None:
        record_sum(sums_path, key, digest)
    return Downloaded(url, dest, digest, size, source if expected is not None else "first-download")
