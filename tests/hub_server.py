"""A loopback stand-in for the Hugging Face Hub (and for plain download URLs), for tests only.

It serves, on ``127.0.0.1``, what ``huggingface_hub`` reads (checked against the installed version by
``test_hub_server.py``):

- ``HEAD``/``GET /<repo>/resolve/<rev>/<file>`` and ``/datasets/<repo>/resolve/<rev>/<file>`` with
  ``X-Repo-Commit``, ``ETag`` (the git blob id of a regular file; for an LFS file its sha256, also in
  ``X-Linked-Etag`` with ``X-Linked-Size``, so the cached blob is named by the sha256) and ``Range``;
- ``/api/{models,datasets}/<repo>[/revision/<rev>]`` (``sha``, ``siblings``; ``?blobs=true`` adds sizes,
  blob ids and LFS info) and ``/api/{models,datasets}/<repo>/tree/<rev>[/<path>]`` listings;
- errors as the Hub sends them: an unknown repo is 401 ``RepoNotFound``, an unknown revision 404
  ``RevisionNotFound``, a missing file 404 ``EntryNotFound``, a gated repo without its token 401 ``GatedRepo``;
- ``GET``/``HEAD /files/<path>``: plain URLs for ``sparc_eval.download`` (``ETag``, ``Range``).

Faults for the bad-input tests: :meth:`HubStandIn.fault` makes one file answer 404 or 401, truncates
its next transfer (the connection closes half-way, once), or serves wrong bytes under the right
headers; ``hang`` makes every request wait (a client timeout); :meth:`stop` leaves the port refusing.
Every request is logged (``requests``; ``ranges`` has the ``Range`` header of each resumed ``GET``), so a
test can prove that an offline run touched nothing and that a transfer resumed.

Tests use the ``hub`` fixture (import it: ``from hub_server import hub_fixture``) and run the code under test
in a subprocess with :meth:`HubStandIn.env`, because ``huggingface_hub`` reads ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE`` once, when it is imported.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".tar", ".npz", ".msgpack", ".zip", ".gz", ".onnx")
FAULTS = ("404", "401", "500", "truncate", "wrong-bytes")


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a regular file's ETag and ``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class HubFile:
    data: bytes
    lfs: bool

    @functools.cached_property  # hashed once: repos may hold real-size weights
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @functools.cached_property  # hashed once: repos may hold real-size weights
    def pointer(self) -> bytes:
        """The git-lfs pointer stored in git for an LFS file."""
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
                f"size {len(self.data)}\n").encode()

    @functools.cached_property  # hashed once: repos may hold real-size weights
    def oid(self) -> str:
        """The git blob id of what git stores (the pointer for LFS files)."""
        return git_blob_id(self.pointer if self.lfs else self.data)

    @functools.cached_property  # hashed once: repos may hold real-size weights
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    token: str | None = None  # gated: downloads need "Authorization: Bearer <token>"

    def resolve(self, rev: str) -> str | None:
        if rev in self.refs:
            return self.refs[rev]
        return rev if rev in self.commits else None


@dataclass
class Fault:
    kind: str
    times: int | None  # None: every request


class HubStandIn:
    """The server. ``endpoint`` is its base URL (what ``HF_ENDPOINT`` is set to)."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.urls: dict[str, bytes] = {}
        self.faults: dict[str, Fault] = {}
        self.requests: list[tuple[str, str]] = []
        self.ranges: list[tuple[str, str]] = []  # (path, Range header) of each GET that asked for a range
        self.unknown: list[str] = []
        self.hang = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubStandIn:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down; the port then refuses connections (nothing else binds it in a test)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- content -----------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: Mapping[str, bytes | str | Path], *, repo_type: str = "model",
                 branch: str = "main", tag: str | None = None, lfs: Mapping[str, bool] | None = None) -> str:
        """Commit ``files`` (the whole tree) on ``branch`` of ``repo_id``; returns the commit sha. A file is
        LFS when its name ends in a weights/archive suffix, unless ``lfs`` says otherwise."""
        repo = self.repos.setdefault((repo_type, repo_id), Repo(repo_id, repo_type))
        tree = {}
        for name, content in files.items():
            data = Path(content).read_bytes() if isinstance(content, Path) else (
                content.encode() if isinstance(content, str) else bytes(content))
            is_lfs = (lfs or {}).get(name, name.endswith(LFS_SUFFIXES))
            tree[name] = HubFile(data, is_lfs)
        parent = repo.refs.get(branch, "")
        listing = json.dumps([parent, repo_type, repo_id, sorted((n, f.oid) for n, f in tree.items())])
        sha = hashlib.sha1(listing.encode()).hexdigest()
        repo.commits[sha] = tree
        repo.refs[branch] = sha
        if tag:
            repo.refs[tag] = sha
        return sha

    def gate(self, repo_id: str, token: str, repo_type: str = "model") -> None:
        """Make downloads from ``repo_id`` need ``Authorization: Bearer <token>`` (401 GatedRepo otherwise)."""
        self.repos[(repo_type, repo_id)].token = token

    def add_url(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``/files/<path>``; returns the full URL."""
        self.urls[path.lstrip("/")] = bytes(data)
        return f"{self.endpoint}/files/{path.lstrip('/')}"

    def fault(self, target: str, kind: str, times: int | None = None) -> None:
        """Make requests for ``target`` fail. ``target`` is a file path in a repo (``ORG/NAME/FILE``,
        ``datasets/ORG/NAME/FILE``) or a plain URL path (``files/NAME``). ``kind``: ``404``, ``401``, ``500``,
        ``truncate`` (the body stops half-way and the connection closes; ``times`` defaults to 1 for it) or
        ``wrong-bytes`` (one byte flipped, headers unchanged)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULTS}")
        if times is None and kind == "truncate":
            times = 1
        self.faults[target.strip("/")] = Fault(kind, times)

    def clear_faults(self) -> None:
        self.faults.clear()

    def _take_fault(self, target: str, head: bool) -> str | None:
        """The fault for this request (counted down); transfer faults wait for a ``GET``."""
        with self._lock:
            f = self.faults.get(target)
            if f is None or (head and f.kind in ("truncate", "wrong-bytes")):
                return None
            if f.times is not None:
                f.times -= 1
                if f.times <= 0:
                    del self.faults[target]
            return f.kind

    # -- clients -------------------------------------------------------------------------------------
    def env(self, hf_home: Path, *, offline: bool = False, token: str | None = None,
            base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a subprocess that talks to this stand-in: ``HF_ENDPOINT`` here, a private
        ``HF_HOME`` (cache, no stored token), ``HF_HUB_OFFLINE`` unset unless ``offline``, short timeouts, no
        telemetry and no Xet."""
        env = dict(os.environ if base is None else base)
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE",
                    "HF_HOME", "HF_TOKEN_PATH", "HF_HUB_ENABLE_HF_TRANSFER"):
            env.pop(key, None)
        env.update({"HF_ENDPOINT": self.endpoint, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1",
                    "HF_HUB_DISABLE_XET": "1", "HF_HUB_ETAG_TIMEOUT": "3", "HF_HUB_DOWNLOAD_TIMEOUT": "3",
                    "HF_HUB_DISABLE_PROGRESS_BARS": "1", "NO_PROXY": "127.0.0.1,localhost",
                    "no_proxy": "127.0.0.1,localhost"})
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    def requests_for(self, needle: str) -> list[tuple[str, str]]:
        return [r for r in self.requests if needle in r[1]]


def _json_bytes(obj) -> bytes:
    return json.dumps(obj).encode()


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # quiet: the test log is the requests list
        pass

    # -- plumbing -------------------------------------------------------------------------------------
    def do_HEAD(self):
        self._dispatch(head=True)

    def do_GET(self):
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        hub = self.hub
        with hub._lock:
            hub.requests.append((self.command, self.path))
            if self.command == "GET" and self.headers.get("Range"):
                hub.ranges.append((self.path, self.headers["Range"]))
        if hub.hang:
            time.sleep(hub.hang)
            self.close_connection = True
            return
        split = urlsplit(self.path)
        parts = [unquote(p) for p in split.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        try:
            if parts and parts[0] == "api":
                self._api(parts[1:], query, head)
            elif parts and parts[0] == "files":
                self._plain("/".join(parts[1:]), head)
            elif "resolve" in parts:
                self._resolve(parts, head)
            else:
                self._unknown()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _unknown(self) -> None:
        with self.hub._lock:
            self.hub.unknown.append(f"{self.command} {self.path}")
        self._send(404, b'{"error": "not served by the stand-in"}', {"Content-Type": "application/json"}, False)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str], head: bool,
              length: int | None = None) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Date", formatdate(usegmt=True))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, head: bool,
               extra: Mapping[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, _json_bytes({"error": message}), headers, head)

    def _split_repo(self, parts: list[str], marker: str) -> tuple[str, str, list[str]] | None:
        """(repo type, repo id, parts after the id) where the id ends before ``marker`` (or the end)."""
        repo_type = "model"
        if parts and parts[0] == "datasets":
            repo_type, parts = "dataset", parts[1:]
        for n in (2, 1):
            if len(parts) >= n and (self.hub.repos.get((repo_type, "/".join(parts[:n]))) is not None):
                return repo_type, "/".join(parts[:n]), parts[n:]
        if marker in parts:
            i = parts.index(marker)
            return repo_type, "/".join(parts[:i]), parts[i:]
        return repo_type, "/".join(parts[:2]), parts[2:]

    # -- /resolve ------------------------------------------------------------------------------------------
    def _resolve(self, parts: list[str], head: bool) -> None:
        hub = self.hub
        repo_type, repo_id, rest = self._split_repo(parts, "resolve")
        repo = hub.repos.get((repo_type, repo_id))
        if repo is None or len(rest) < 3 or rest[0] != "resolve":
            return self._error(401, "RepoNotFound", "Repository not found", head)
        rev, filename = rest[1], "/".join(rest[2:])
        target = ("datasets/" if repo_type == "dataset" else "") + f"{repo_id}/{filename}"
        if repo.token is not None and self.headers.get("Authorization") != f"Bearer {repo.token}":
            return self._error(401, "GatedRepo", f"Access to {repo_type} {repo_id} is restricted. You must have "
                               "access to it and be authenticated to access it. Please log in.", head)
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
        hf = repo.commits[sha].get(filename)
        fault = hub._take_fault(target, head) if hf is not None else None
        if hf is None or fault == "404":
            return self._error(404, "EntryNotFound", f"{filename} does not exist on \"{rev}\"", head,
                               {"X-Repo-Commit": sha})
        if fault == "401":
            return self._error(401, "GatedRepo", f"Access to {repo_type} {repo_id} is restricted.", head)
        if fault == "500":
            return self._error(500, None, "Internal Error", head)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{hf.etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream", "Content-Disposition": f'inline; filename="{filename}"'}
        if hf.lfs:
            headers.update({"X-Linked-Etag": f'"{hf.sha256}"', "X-Linked-Size": str(len(hf.data))})
        self._body(hf.data, headers, head, fault)

    def _body(self, data: bytes, headers: dict[str, str], head: bool, fault: str | None) -> None:
        if fault == "wrong-bytes" and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        total = len(data)
        start, end = 0, total - 1
        status = 200
        rng = self.headers.get("Range")
        if rng and not head:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m is None or int(m.group(1)) >= max(total, 1):
                return self._send(416, b"", {"Content-Range": f"bytes */{total}"}, head)
            if_range = self.headers.get("If-Range")
            if if_range is None or if_range == headers.get("ETag"):
                start = int(m.group(1))
                end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
                status = 206
                headers = {**headers, "Content-Range": f"bytes {start}-{end}/{total}"}
        body = data[start:end + 1]
        if fault == "truncate" and not head:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: max(1, len(body) // 2)])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(status, body, headers, head)

    # -- plain URLs ------------------------------------------------------------------------------------------
    def _plain(self, path: str, head: bool) -> None:
        hub = self.hub
        data = hub.urls.get(path)
        if data is None:
            return self._send(404, b"not found", {"Content-Type": "text/plain"}, head)
        fault = hub._take_fault(f"files/{path}", head)
        if fault in ("404", "401", "500"):
            return self._send(int(fault), b"refused", {"Content-Type": "text/plain"}, head)
        headers = {"ETag": f'"{git_blob_id(data)}"', "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
                   "Last-Modified": formatdate(0, usegmt=True)}
        self._body(data, headers, head, fault)

    # -- /api ----------------------------------------------------------------------------------------------
    def _api(self, parts: list[str], query: dict[str, str], head: bool) -> None:
        hub = self.hub
        if not parts or parts[0] not in ("models", "datasets"):
            return self._unknown()
        repo_type = "model" if parts[0] == "models" else "dataset"
        rest = parts[1:]
        repo = None
        for n in (2, 1):
            if len(rest) >= n and (repo_type, "/".join(rest[:n])) in hub.repos:
                repo, rest = hub.repos[(repo_type, "/".join(rest[:n]))], rest[n:]
                break
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found", head)
        if not rest:
            return self._info(repo, "main", query, head)
        if rest[0] == "revision" and len(rest) >= 2:
            return self._info(repo, "/".join(rest[1:]), query, head)
        if rest[0] == "tree" and len(rest) >= 2:
            return self._tree(repo, rest[1], "/".join(rest[2:]), query, head)
        return self._unknown()

    def _info(self, repo: Repo, rev: str, query: dict[str, str], head: bool) -> None:
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
        blobs = query.get("blobs", "").lower() == "true"
        siblings = []
        for name, f in sorted(repo.commits[sha].items()):
            s = {"rfilename": name}
            if blobs:
                s.update({"size": len(f.data), "blobId": f.oid})
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": len(f.pointer)}
            siblings.append(s)
        info = {"_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id, "sha": sha,
                "private": False, "gated": "manual" if repo.token else False, "disabled": False,
                "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
                "tags": [], "downloads": 0, "likes": 0, "siblings": siblings}
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        self._send(200, _json_bytes(info), {"Content-Type": "application/json"}, head)

    def _tree(self, repo: Repo, rev: str, path: str, query: dict[str, str], head: bool) -> None:
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
        recursive = query.get("recursive", "").lower() == "true"
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        files = {n: f for n, f in repo.commits[sha].items() if n.startswith(prefix)}
        if prefix and not files:
            return self._error(404, "EntryNotFound", f"{path} does not exist on \"{rev}\"", head)
        entries: dict[str, dict] = {}
        for name, f in sorted(files.items()):
            rel = name[len(prefix):]
            dirs = rel.split("/")[:-1]
            for i in range(len(dirs) if recursive else min(1, len(dirs))):
                d = prefix + "/".join(dirs[: i + 1])
                entries.setdefault(d, {"type": "directory", "oid": git_blob_id(d.encode()), "size": 0, "path": d})
            if recursive or not dirs:
                e = {"type": "file", "oid": f.oid, "size": len(f.data), "path": name}
                if f.lfs:
                    e["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": len(f.pointer)}
                entries[name] = e
        self._send(200, _json_bytes(sorted(entries.values(), key=lambda e: e["path"])),
                   {"Content-Type": "application/json"}, head)


@pytest.fixture(name="hub")
def hub_fixture():
    """A running :class:`HubStandIn` (stopped after the test)."""
    server = HubStandIn().start()
    yield server
    server.stop()
