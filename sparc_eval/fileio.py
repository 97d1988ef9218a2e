"""Small file utilities shared by every layer: atomic writes, hashing, the cache folder.

Atomic writes go to a temp file in the target's folder and are renamed over the target, so a
killed process never leaves a half-written file and concurrent writers of the same content are
safe (the last rename wins, each rename is whole). Written files get the usual permissions
(``0o666`` less the umask), not the private ``0o600`` of temp files, so shared caches and result
folders stay readable by others.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def cache_root() -> Path:
    """``$SPARC_EVAL_CACHE``, else ``$XDG_CACHE_HOME/sparc-eval``, else ``~/.cache/sparc-eval``."""
    env = os.environ.get("SPARC_EVAL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sparc-eval"


def umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """Permissions of a new file (``0o666 & ~umask``) or folder (``0o777 & ~umask``)."""
    return (0o777 if directory else 0o666) & ~umask()


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed to ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj) -> str:
    """Hash of a JSON-serialisable object, independent of key order."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode())


def memo_check(key: str, digest: str) -> str:
    """The checksum a file-hash memo entry carries: binds its digest to its key (the file's path and
    stat), so a damaged, hand-edited or copied-over entry fails and is recomputed."""
    return sha256_json(["sparc-eval file-hash memo", key, digest])


def memo_problem(key: str, text: str) -> str | None:
    """Why the content of memo entry ``key`` cannot be trusted, or None."""
    try:
        entry = json.loads(text)
    except ValueError:
        return "not JSON (damaged, or written before memo checksums)"
    if not isinstance(entry, dict) or entry.get("key") != key:
        return "its key is not its file name (copied from another entry?)"
    digest = entry.get("sha256")
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        return "no sha256 digest"
    if entry.get("check") != memo_check(key, digest):
        return "its check does not match its digest (edited or damaged)"
    return None


def sha256_file(path: Path | str, memo: bool = True) -> str:
    """sha256 of a file's bytes. With ``memo``, the digest is remembered in the cache folder keyed by
    (absolute path, inode, size, mtime, ctime), so multi-GB checkpoints are hashed once; a file
    replaced by another (new inode) or rewritten with its mtime restored (new ctime) is hashed again.
    Each memo entry carries a checksum binding digest and key (``memo_check``); an entry that fails
    it is a miss, recomputed and rewritten."""
    path = Path(path)
    st = path.stat()
    key = sha256_json([str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    memo_file = cache_root() / "file-hashes" / key
    if memo:
        try:
            text = memo_file.read_text()
        except (OSError, UnicodeDecodeError):
            text = None
        if text is not None and memo_problem(key, text) is None:
            return json.loads(text)["sha256"]
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if memo:
        try:
            atomic_write_json(memo_file, {"sha256": digest, "key": key, "check": memo_check(key, digest),
                                          "path": str(path.resolve())})
        except OSError:
            pass
    return digest
