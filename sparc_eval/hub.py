"""Files from the Hugging Face Hub, fetched on first use into the standard cache and verified.

``fetch_file``, ``fetch_first`` and ``fetch_snapshot`` download through ``huggingface_hub`` into the
standard Hugging Face cache (``HF_HUB_CACHE``; ``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured) and return
each file with its identity: repo, requested revision, resolved commit and sha256. Every file is checked
against the Hub's ETag, which names the cached blob: for an LFS file (weights, shards) that is its sha256,
for a regular git file its git blob id (``sha1("blob <size>\\0" + bytes)``). A file that does not match is
removed from the cache (so no later run trusts it) and reported.

Offline (``offline=True``, or ``HF_HUB_OFFLINE=1``/``TRANSFORMERS_OFFLINE=1`` in the environment) nothing
touches the network: only the cache is read, and a miss names the ``hf download`` command that fetches the
file. ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` once, when it is imported, so a CLI
flag must reach the environment first (:func:`set_offline`); this module also passes
``local_files_only=True`` itself, so an offline call here never makes a request either way.

Online, one metadata request with the ``HF_HUB_ETAG_TIMEOUT`` (default 10 s) comes first: when the Hub
cannot be reached (refused, timed out, 5xx) a cached copy is used if there is one, else the error names the
repo, the file and the offline alternative, without ``huggingface_hub``'s minute-long retry loop.

Errors are ``HubError`` (a ``SparcEvalError``: exit code 2) subclasses. ``huggingface_hub`` is imported
lazily, inside the functions.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, SparcEvalError
from .fileio import sha256_file, sha256_json

_TRUE = {"1", "ON", "YES", "TRUE"}
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_GIT_OID_RE = re.compile(r"^[0-9a-f]{40}$")

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class HubError(SparcEvalError):
    """A file could not be fetched from the Hub or its cache; names the repo, the file and what to do."""

    def __init__(self, message: str, *, repo: str, filename: str | None = None, repo_type: str = "model",
                 revision: str | None = None):
        super().__init__(message)
        self.repo, self.filename, self.repo_type, self.revision = repo, filename, repo_type, revision


class HubOfflineMiss(HubError):
    """Offline, and the file is not in the cache."""


class HubUnreachable(HubError):
    """The Hub did not answer (connection refused, timeout, server error) and the file is not cached."""


class HubNotFound(HubError):
    """The repo, revision or file does not exist on the Hub (or a private repo was asked for without a token);
    ``missing`` says which: ``repo``, ``revision`` or ``file``."""

    def __init__(self, message: str, *, missing: str = "file", **kw):
        super().__init__(message, **kw)
        self.missing = missing


class HubAccessDenied(HubError):
    """The repo is gated or private and the token (``HF_TOKEN``) is missing or lacks access."""


class HubIntegrityError(HubError):
    """A downloaded file does not match the Hub's checksum (the cached copy was removed)."""


@dataclass(frozen=True)
class HubFile:
    """One file in the local cache with its identity on the Hub. ``etag`` is the Hub's checksum of the file
    (sha256 for LFS files, the git blob id otherwise; None when the cache holds copies instead of links, so
    the blob name is lost); ``verified`` says whether the bytes were checked against it."""

    repo: str
    repo_type: str
    revision: str
    commit: str
    filename: str
    path: Path
    sha256: str
    size: int
    etag: str | None
    lfs: bool | None
    verified: bool

    def record(self) -> dict:
        """The identity to store in a result (``model.source`` / ``dataset.source``)."""
        return {"repo": self.repo, "repo_type": self.repo_type, "revision": self.revision, "commit": self.commit,
                "file": self.filename, "sha256": self.sha256, "size": self.size, "etag": self.etag, "lfs": self.lfs,
                "verified": self.verified}


@dataclass(frozen=True)
class HubSnapshot:
    """Several files of one commit of a repo; ``folder`` is the cache's snapshot folder (the files lie under
    it at their repo paths)."""

    repo: str
    repo_type: str
    revision: str
    commit: str
    folder: Path
    files: tuple[HubFile, ...]

    @property
    def sha256(self) -> str:
        """One digest of the snapshot's content: sha256 of the sorted (path, sha256) list."""
        return sha256_json(sorted((f.filename, f.sha256) for f in self.files))

    def file(self, name: str) -> HubFile | None:
        return next((f for f in self.files if f.filename == name), None)

    def record(self) -> dict:
        return {"repo": self.repo, "repo_type": self.repo_type, "revision": self.revision, "commit": self.commit,
                "sha256": self.sha256, "files": {f.filename: f.sha256 for f in self.files}}


# -- names and modes ----------------------------------------------------------------------------------------
def parse_repo_ref(text: str, what: str = "repo") -> tuple[str, str | None]:
    """``ORG/NAME[@REV]`` -> (``ORG/NAME``, ``REV`` or None); ``ConfigError`` for anything else."""
    repo, at, rev = text.strip().partition("@")
    if not _REPO_RE.match(repo) or (at and not rev.strip()) or "@" in rev:
        raise ConfigError(f"{what} {text!r}: expected a Hugging Face repo id ORG/NAME, optionally with @REVISION "
                          f"(a branch, tag or commit), e.g. laion/CLIP-ViT-B-32-laion2B-s34B-b79K@main")
    return repo, (rev.strip() or None)


def offline_mode(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set (as
    huggingface_hub reads them), or huggingface_hub was imported in offline mode."""
    if offline is not None:
        return offline
    if any((os.environ.get(k) or "").upper() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def set_offline(offline: bool) -> bool:
    """Put offline mode in the environment (``HF_HUB_OFFLINE=1``), for the CLI's ``--offline``; call it before
    anything imports huggingface_hub, transformers or open_clip. Returns False when huggingface_hub was already
    imported in the other mode (its global then lags; calls through this module still honour ``offline``)."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    return constants is None or bool(getattr(constants, "HF_HUB_OFFLINE", False)) == offline_mode()


def download_command(repo: str, filename: str | None = None, *, revision: str | None = None,
                     repo_type: str = "model") -> str:
    """The ``hf download`` command (the CLI huggingface_hub ships) that fetches ``filename`` (or the repo)."""
    cmd = ["hf", "download", repo] + ([filename] if filename else [])
    if repo_type != "model":
        cmd += ["--repo-type", repo_type]
    if revision and revision != "main":
        cmd += ["--revision", revision]
    return " ".join(shlex.quote(c) for c in cmd)


def endpoint() -> str:
    """The Hub endpoint in use (``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


# -- verification ---------------------------------------------------------------------------------------------
def git_blob_id(path: Path) -> str:
    """The git object id of a file's bytes (what the Hub reports as a regular file's ETag)."""
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _commit_of(path: Path) -> str:
    parts = Path(path).parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return "unknown"


def verify_cached(path: Path | str, *, repo: str, filename: str, revision: str, repo_type: str = "model") -> HubFile:
    """The identity of a cached file, its bytes checked against the blob name (the Hub's ETag). A mismatch
    removes the blob and its link and raises ``HubIntegrityError``."""
    path = Path(path)
    real = Path(os.path.realpath(path))
    size = real.stat().st_size
    digest = sha256_file(real)
    etag = real.name if real.parent.name == "blobs" else None
    lfs: bool | None = None
    ok = False
    if etag is not None and _SHA256_RE.match(etag):
        lfs, ok = True, digest == etag
        found = digest
    elif etag is not None and _GIT_OID_RE.match(etag):
        found = git_blob_id(real)
        lfs, ok = False, found == etag
    else:
        etag, found = None, digest
    if etag is not None and not ok:
        for p in (path, real):
            try:
                p.unlink()
            except OSError:
                pass
        raise HubIntegrityError(
            f"{repo}/{filename} (revision {revision}): the downloaded file does not match the Hub's checksum "
            f"({'sha256' if lfs else 'git blob id'} {found}, expected {etag}); the cached copy was removed, so the "
            f"next run fetches it again (or: {download_command(repo, filename, revision=revision, repo_type=repo_type)}"
            f" --force-download)", repo=repo, filename=filename, repo_type=repo_type, revision=revision)
    return HubFile(repo=repo, repo_type=repo_type, revision=revision, commit=_commit_of(path), filename=filename,
                   path=path, sha256=digest, size=size, etag=etag, lfs=lfs, verified=etag is not None)


# -- errors -------------------------------------------------------------------------------------------------------
def _offline_hint(repo: str, filename: str | None, revision: str, repo_type: str) -> str:
    return (f"fetch it where there is network with `{download_command(repo, filename, revision=revision, repo_type=repo_type)}` "
            f"and run with --offline (HF_HUB_OFFLINE=1)")


def _network_error_types() -> tuple[type[BaseException], ...]:
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    return (httpx2.TransportError, OfflineModeIsEnabled, ConnectionError, TimeoutError)


def _translate(e: BaseException, repo: str, filename: str | None, revision: str, repo_type: str,
               offline: bool) -> HubError:
    """A ``HubError`` for an exception raised by huggingface_hub."""
    from huggingface_hub import errors as hfe

    what = f"{repo}/{filename}" if filename else repo
    where = f"{what} (revision {revision}, {repo_type} repo)"
    kw = dict(repo=repo, filename=filename, repo_type=repo_type, revision=revision)
    cmd = download_command(repo, filename, revision=revision, repo_type=repo_type)
    if offline or isinstance(e, hfe.OfflineModeIsEnabled):
        return HubOfflineMiss(f"{where}: not in the Hugging Face cache, and offline mode is on (--offline or "
                              f"HF_HUB_OFFLINE=1), so nothing was downloaded. Fetch it once with network: `{cmd}`", **kw)
    url = f"{endpoint()}/{'datasets/' if repo_type == 'dataset' else ''}{repo}"
    if isinstance(e, hfe.GatedRepoError):
        return HubAccessDenied(f"{where}: the repo is gated; accept its terms at {url} and set HF_TOKEN to a token "
                               f"with access (or {_offline_hint(repo, filename, revision, repo_type)})", **kw)
    cached_only = "(with --offline only what the Hugging Face cache holds is read)"
    if isinstance(e, hfe.RepositoryNotFoundError):
        return HubNotFound(f"{where}: no such repo at {endpoint()} (a private repo looks the same without a token: set "
                           f"HF_TOKEN); check the name {cached_only}", missing="repo", **kw)
    if isinstance(e, hfe.RevisionNotFoundError):
        return HubNotFound(f"{where}: the repo has no revision {revision!r} (a branch, tag or commit); check it "
                           f"{cached_only}", missing="revision", **kw)
    if isinstance(e, hfe.RemoteEntryNotFoundError):
        return HubNotFound(f"{where}: the repo has no file {filename!r} at that revision", **kw)
    if isinstance(e, hfe.HfHubHTTPError) and getattr(e.response, "status_code", 0) in (401, 403):
        return HubAccessDenied(f"{where}: access refused ({e.response.status_code}); set HF_TOKEN to a token with "
                               f"access (or {_offline_hint(repo, filename, revision, repo_type)})", **kw)
    cause = e
    while isinstance(cause, hfe.LocalEntryNotFoundError) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, hfe.HfHubHTTPError):
        status = getattr(cause.response, "status_code", "?")
        reason = f"the Hub answered HTTP {status}"
    elif isinstance(cause, _network_error_types()):
        reason = f"{type(cause).__name__}: {str(cause)[:160] or 'no answer'}"
    elif isinstance(e, OSError) and "Consistency check failed" in str(e):
        return HubIntegrityError(f"{where}: the transfer ended with the wrong size ({str(e).splitlines()[0]}); run "
                                 f"again, it resumes", **kw)
    else:
        reason = f"{type(cause).__name__}: {str(cause)[:160]}"
    return HubUnreachable(f"{where}: could not reach {endpoint()} ({reason}) and it is not in the cache; check the "
                          f"network and HF_ENDPOINT, or {_offline_hint(repo, filename, revision, repo_type)}", **kw)


def _cached(repo: str, filename: str, revision: str, repo_type: str, cache_dir: str | None) -> str | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return hf_hub_download(repo, filename, revision=revision, repo_type=repo_type, cache_dir=cache_dir,
                               local_files_only=True)
    except (LocalEntryNotFoundError, OSError):
        return None


def _probe(repo: str, filename: str, revision: str, repo_type: str) -> BaseException | None:
    """One metadata request without retries; the error, or None when the Hub answered for this file."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    url = hf_hub_url(repo, filename, repo_type=repo_type, revision=revision)
    try:
        get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except (HfHubHTTPError, *_network_error_types()) as e:
        return e
    return None


def _fallback_or_raise(e: BaseException, cached: Callable[[], object], translate: Callable[[], HubError]):
    """huggingface_hub's rule: a cached copy serves when the Hub is unreachable, refuses access or errs;
    a missing revision or file on a reachable Hub is an error."""
    from huggingface_hub import errors as hfe

    if not isinstance(e, (hfe.RevisionNotFoundError, hfe.RemoteEntryNotFoundError)):
        hit = cached()
        if hit is not None:
            return hit
    raise translate() from None


# -- single files -----------------------------------------------------------------------------------------------
def fetch_file(repo: str, filename: str, *, revision: str | None = None, repo_type: str = "model",
               offline: bool | None = None, cache_dir: str | None = None) -> HubFile:
    """``filename`` of ``repo`` at ``revision`` (default ``main``) from the cache, downloading it first when
    online and needed; verified and identified (:class:`HubFile`)."""
    from huggingface_hub import hf_hub_download

    revision = revision or "main"
    offline = offline_mode(offline)
    args = (repo, filename, revision, repo_type)

    def translate(err: BaseException) -> HubError:
        return _translate(err, repo, filename, revision, repo_type, offline)

    if offline:
        hit = _cached(repo, filename, revision, repo_type, cache_dir)
        if hit is None:
            raise translate(OSError("not cached"))
        return verify_cached(hit, repo=repo, filename=filename, revision=revision, repo_type=repo_type)
    problem = _probe(*args)
    if problem is not None:
        hit = _fallback_or_raise(problem, lambda: _cached(*args, cache_dir), lambda: translate(problem))
        return verify_cached(hit, repo=repo, filename=filename, revision=revision, repo_type=repo_type)
    try:
        path = hf_hub_download(repo, filename, revision=revision, repo_type=repo_type, cache_dir=cache_dir)
    except Exception as e:  # every huggingface_hub failure becomes a HubError naming the file
        raise translate(e) from None
    return verify_cached(path, repo=repo, filename=filename, revision=revision, repo_type=repo_type)


def fetch_first(repo: str, filenames: Sequence[str], *, revision: str | None = None, repo_type: str = "model",
                offline: bool | None = None, cache_dir: str | None = None) -> HubFile:
    """The first of ``filenames`` that the repo has (e.g. a safetensors file before its pickle twin). Offline,
    the first that is cached; a miss names the first (preferred) file."""
    misses: list[HubError] = []
    for name in filenames:
        try:
            return fetch_file(repo, name, revision=revision, repo_type=repo_type, offline=offline, cache_dir=cache_dir)
        except (HubNotFound, HubOfflineMiss) as e:
            if isinstance(e, HubNotFound) and e.missing != "file":
                raise
            misses.append(e)
    first = misses[0]
    if isinstance(first, HubOfflineMiss):
        raise first
    raise HubNotFound(f"{repo} (revision {revision or 'main'}): the repo has none of {list(filenames)}",
                      repo=repo, filename=filenames[0], repo_type=repo_type, revision=revision or "main")


# -- several files ----------------------------------------------------------------------------------------------------
def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatch(name, p) for p in patterns)


def _cached_snapshot(repo: str, revision: str, repo_type: str, cache_dir: str | None,
                     patterns: Sequence[str] | None) -> tuple[Path, list[str]] | None:
    """The cached snapshot folder of ``revision`` and the repo paths it should hold that match ``patterns``
    (from the tree listing cached by an earlier download, else what the folder holds), without any request."""
    from huggingface_hub import constants, get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError
    from huggingface_hub.file_download import repo_folder_name

    storage = Path(cache_dir or constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type=repo_type)
    if _GIT_OID_RE.match(revision):
        commit = revision
    else:
        ref = storage / "refs" / revision
        if not ref.is_file():
            return None
        commit = ref.read_text().strip()
    folder = storage / "snapshots" / commit
    if not folder.is_dir():
        return None
    try:
        listed = [f.path for f in get_cached_repo_tree(repo, repo_type=repo_type, revision=commit, cache_dir=cache_dir)]
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        listed = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return folder, sorted(n for n in listed if _matches(n, patterns))


def fetch_snapshot(repo: str, *, revision: str | None = None, repo_type: str = "model",
                   patterns: Sequence[str] | None = None, choose: Callable[[list[str]], list[str]] | None = None,
                   offline: bool | None = None, cache_dir: str | None = None) -> HubSnapshot:
    """The files of one commit of ``repo`` that match ``patterns`` (fnmatch; None = all), narrowed by
    ``choose`` (given the matching repo paths, returns those to use, e.g. safetensors over pickles), downloaded
    with ``snapshot_download`` (which records the revision and tree for later offline use), each verified."""
    from huggingface_hub import HfApi, constants, snapshot_download

    revision = revision or "main"
    offline = offline_mode(offline)

    def translate(err: BaseException) -> HubError:
        return _translate(err, repo, None, revision, repo_type, offline)

    def from_cache() -> tuple[Path, list[str]] | None:
        return _cached_snapshot(repo, revision, repo_type, cache_dir, patterns)

    if offline:
        cached = from_cache()
        if cached is None:
            raise translate(OSError("not cached"))
        folder, names = cached
    else:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            info = HfApi().repo_info(repo, revision=revision, repo_type=repo_type, timeout=constants.HF_HUB_ETAG_TIMEOUT)
        except (HfHubHTTPError, *_network_error_types()) as e:
            err = e
            folder, names = _fallback_or_raise(err, from_cache, lambda: translate(err))
        else:
            names = sorted(s.rfilename for s in info.siblings or [] if _matches(s.rfilename, patterns))
            chosen = choose(names) if choose else names
            if not chosen:
                raise HubNotFound(f"{repo} (revision {revision}, {repo_type} repo): no file matches "
                                  f"{list(patterns or [])}", repo=repo, repo_type=repo_type, revision=revision)
            try:
                folder = Path(snapshot_download(repo, revision=revision, repo_type=repo_type, cache_dir=cache_dir,
                                                allow_patterns=chosen))
            except Exception as e:  # every huggingface_hub failure becomes a HubError
                raise translate(e) from None
    chosen = choose(names) if choose else names
    cmd = download_command(repo, revision=revision, repo_type=repo_type)
    if not chosen:
        raise HubOfflineMiss(f"{repo} (revision {revision}): the cached snapshot has no file matching "
                             f"{list(patterns or [])}; fetch it with `{cmd}`",
                             repo=repo, repo_type=repo_type, revision=revision)
    missing = [n for n in chosen if not (folder / n).is_file()]
    if missing:
        raise HubOfflineMiss(f"{repo} (revision {revision}): the cached snapshot lacks {missing[:3]}"
                             f"{' and more' if len(missing) > 3 else ''} (an interrupted download?); fetch them with "
                             f"`{cmd}`", repo=repo, repo_type=repo_type, revision=revision)
    files = tuple(verify_cached(folder / n, repo=repo, filename=n, revision=revision, repo_type=repo_type)
                  for n in chosen)
    return HubSnapshot(repo=repo, repo_type=repo_type, revision=revision, commit=_commit_of(folder / chosen[0]),
                       folder=folder, files=files)


def cached_blobs(repo: str, *, revision: str | None = None, filenames: Sequence[str] = (),
                 patterns: Sequence[str] | None = None, repo_type: str = "model",
                 cache_dir: str | None = None) -> dict[str, str]:
    """Without any request and without reading file contents: ``{repo path: blob name}`` of what the cache
    holds of ``repo`` at ``revision`` — the first of ``filenames`` that is cached, or every cached file
    matching ``patterns``. The blob name is the Hub's checksum (the sha256 of an LFS file), so this is a
    cheap identity of cached weights; {} when nothing is cached."""
    from huggingface_hub import try_to_load_from_cache

    revision = revision or "main"
    out: dict[str, str] = {}
    for name in filenames:
        hit = try_to_load_from_cache(repo, name, cache_dir=cache_dir, revision=revision, repo_type=repo_type)
        if isinstance(hit, str):
            out[name] = Path(os.path.realpath(hit)).name
            break
    if patterns is not None:
        cached = _cached_snapshot(repo, revision, repo_type, cache_dir, patterns)
        if cached is not None:
            folder, names = cached
            out.update({n: Path(os.path.realpath(folder / n)).name for n in names if (folder / n).is_file()})
    return out


# -- model repos ---------------------------------------------------------------------------------------------------
HF_MODEL_PATTERNS = ("*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model*.bin")


def hf_model_files(names: list[str]) -> list[str]:
    """The files a transformers model needs from a repo listing: configs, tokenizer and processor files, and
    the weights as safetensors when the repo has them (pickled ``pytorch_model*.bin`` only otherwise)."""
    top = [n for n in names if "/" not in n]
    has_safe = any(n.endswith(".safetensors") for n in top)
    return [n for n in top if not (has_safe and n.endswith(".bin"))]


def fetch_hf_model(ref: str, *, offline: bool | None = None, cache_dir: str | None = None) -> HubSnapshot:
    """``hf:ORG/NAME[@REV]``'s files (:data:`HF_MODEL_PATTERNS`, chosen by :func:`hf_model_files`); load the
    model from ``snapshot.folder``."""
    repo, rev = parse_repo_ref(ref, "hf: model")
    return fetch_snapshot(repo, revision=rev, patterns=HF_MODEL_PATTERNS, choose=hf_model_files, offline=offline,
                          cache_dir=cache_dir)


@dataclass(frozen=True)
class OpenClipHub:
    """An open_clip Hub model: its ``open_clip_config.json`` (None for a pretrained tag, whose architecture is
    open_clip's own) and weights file."""

    config: HubFile | None
    weights: HubFile

    def record(self) -> dict:
        out = {"weights": self.weights.record()}
        if self.config is not None:
            out["config"] = self.config.record()
        return out


def fetch_open_clip_hub(ref: str, *, offline: bool | None = None, cache_dir: str | None = None) -> OpenClipHub:
    """``open_clip:hf-hub:ORG/NAME[@REV]``: its ``open_clip_config.json`` and weights (safetensors preferred,
    as open_clip does)."""
    repo, rev = parse_repo_ref(ref, "open_clip hf-hub: model")
    config = fetch_file(repo, OPEN_CLIP_CONFIG, revision=rev, offline=offline, cache_dir=cache_dir)
    weights = fetch_first(repo, OPEN_CLIP_WEIGHTS, revision=rev, offline=offline, cache_dir=cache_dir)
    return OpenClipHub(config=config, weights=weights)


def open_clip_tag_source(pretrained_cfg: dict) -> tuple[str, list[str]] | None:
    """(repo, candidate files) of an open_clip pretrained tag's Hugging Face source (``pretrained_cfg`` from
    ``open_clip.get_pretrained_cfg(arch, tag)``), or None when the tag has none. ``hf_hub`` is ``ORG/NAME/``
    (open_clip's default file names) or ``ORG/NAME/FILE``; a ``.bin``/``.pth`` file is tried after its
    safetensors twin, as open_clip does."""
    hub = (pretrained_cfg.get("hf_hub") or "").strip()
    if not hub:
        return None
    parts = hub.split("/")
    repo = "/".join(parts[:2])
    filename = "/".join(parts[2:])
    if not filename:
        return repo, list(OPEN_CLIP_WEIGHTS)
    if filename == OPEN_CLIP_WEIGHTS[1]:
        return repo, list(OPEN_CLIP_WEIGHTS)
    if filename.endswith((".bin", ".pth")):
        return repo, [filename[:-4] + ".safetensors", filename]
    return repo, [filename]


def fetch_open_clip_tag(arch: str, tag: str, pretrained_cfg: dict, *, offline: bool | None = None,
                        cache_dir: str | None = None) -> OpenClipHub:
    """The weights of ``open_clip:ARCH --pretrained TAG`` from the tag's Hugging Face repo (``pretrained_cfg`` =
    ``open_clip.get_pretrained_cfg(arch, tag)``, looked up by the caller so that configs it registered count)."""
    source = open_clip_tag_source(pretrained_cfg)
    if source is None:
        url = pretrained_cfg.get("url") or "(none)"
        raise HubNotFound(f"open_clip:{arch} --pretrained {tag}: the tag has no Hugging Face source (its URL is {url}); "
                          f"download the file and pass its path to --pretrained", repo="", missing="repo")
    repo, names = source
    return OpenClipHub(config=None, weights=fetch_first(repo, names, offline=offline, cache_dir=cache_dir))


# -- dataset repos ---------------------------------------------------------------------------------------------------
WDS_METADATA = ("classnames.txt", "zeroshot_classification_templates.txt", "dataset_type.txt")


def fetch_wds(repo: str, *, revision: str | None = None, split: str = "test", offline: bool | None = None,
              cache_dir: str | None = None) -> HubSnapshot:
    """A CLIP_benchmark webdataset repo (``clip-benchmark/wds_<name>``, a dataset repo): the shards and
    ``nshards.txt`` of ``split`` and the metadata files, in the cache once; ``snapshot.folder`` is then laid
    out as a local wds folder (``<split>/0.tar ...``, ``classnames.txt``, ...). Other splits are not fetched."""
    patterns = [f"{split}/*", *WDS_METADATA]
    snapshot = fetch_snapshot(repo, revision=revision, repo_type="dataset", patterns=patterns, offline=offline,
                              cache_dir=cache_dir)
    if snapshot.file(f"{split}/nshards.txt") is None:
        raise HubNotFound(f"{repo} (revision {snapshot.revision}, dataset repo): no {split}/nshards.txt; not a "
                          f"CLIP_benchmark webdataset repo, or it has no split {split!r}", repo=repo,
                          filename=f"{split}/nshards.txt", repo_type="dataset", revision=snapshot.revision)
    return snapshot
