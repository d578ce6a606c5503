"""Running the kubelet's credential-provider plugins, bounded, and keeping their answers.

:func:`read_provider_config` reads the kubelet's ``CredentialProviderConfig`` (a file, or a
folder merged as the kubelet merges it) and checks the executables are in the bin dir.
:class:`CredentialProviders` runs a plugin as the kubelet does (``$ENV=... <bin>/<name>
args... <<< CredentialProviderRequest``, the process's environment plus the provider's
``env``), reads its ``CredentialProviderResponse``, and caches it under the kubelet's key
(image, registry or global) for ``cacheDuration`` (else ``defaultCacheDuration``; 0: not
kept), the cache bounded in bytes.

Bounds, so a hostile or broken plugin costs one admission's budget and never a worker:
each run ends at the caller's deadline (the plugin's whole process group is killed); stdout
past :data:`webhook.core.credprovider.MAX_RESPONSE_BYTES` kills it; stderr keeps its first
:data:`STDERR_KEPT` bytes; at most :data:`MAX_RUNNING` plugins run at once; concurrent asks
for the same provider and image run it once (the kubelet's singleflight), each caller
waiting only until its own deadline. Under admission each run counts against the review's
namespace. Guaranteed: a namespace holding no run gets one unless :data:`MAX_RUNNING` other
namespaces each hold exactly one (a free slot, else the newest run of the namespace holding the
most, two or more, is stopped for it: "preempted"), and a namespace's only run is never
stopped. Beyond its first: at most :data:`PLUGINS_PER_TENANT` runs (running or waiting for a
slot) per namespace, and the last :data:`PLUGINS_RESERVE` slots shared among the namespaces
holding runs (as the registry client shares its flights); a run over its share is refused at
once. So one tenant's made-up hosts switch the check off for the others only from
:data:`MAX_RUNNING` namespaces of one hanging run each, and only while those runs last.

No decisions: it answers "these credentials" or "this provider failed, because". A
credential never reaches a log line or an exception: stderr is logged through
:func:`webhook.core.credprovider.redact`, failures name the provider and the reason only.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import selectors
import signal
import stat
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from webhook.core.credprovider import (
    MAX_CONFIG_BYTES,
    MAX_RESPONSE_BYTES,
    Provider,
    ProviderConfig,
    ProviderConfigError,
    ProviderResponse,
    ResponseError,
    cache_key,
    cache_lookup_keys,
    load_provider_config_documents,
    parse_response,
    redact,
    request_bytes,
)
from webhook.core.nodecreds import DEFAULT_SERVE_BIN_DIRS, NodeCredentialView, ProviderAnswer

log = logging.getLogger("pullguard.credproviders")

STDERR_KEPT = 8 * 1024
MAX_RUNNING = 8
#: Plugin runs (running, or waiting for one of the :data:`MAX_RUNNING` slots) one namespace
#: may hold at once under admission (rev24f F1: one tenant's 30 reviews of made-up ECR
#: hosts, each a new cache key whose plugin cannot answer, held all 8 slots for their whole
#: budget, and another namespace's tag never pushed was admitted "not checked"). A review
#: asks for its images one after the other, so this is that many reviews in flight with a
#: cache miss each.
PLUGINS_PER_TENANT = 4
#: The last slots: once the others are held, a namespace already holding a run may take
#: another only within its part of these (the reserve divided by the namespaces holding runs,
#: itself counted; the registry client's FLIGHTS_RESERVE). A namespace's first run is not
#: bound by it: that one takes a free slot or stops another's newest run (fair24: four
#: namespaces of one run each had left a fifth refused with four slots free, and four of
#: 4 + 2 + 1 + 1 runs held every slot).
PLUGINS_RESERVE = 4
#: The share that runs for no review count against: the in-cluster audit's, and the CLI's
#: (``check``, ``diagnose``, ``audit``), which judge one object at a time. Not a namespace
#: name (those are DNS labels), so no review's share is this one, and the max-min rule sees
#: the audit's run as a namespace's (rev24h F2: uncounted, it held a slot outside every
#: share, and three namespaces locked a fourth's first run out).
AUDIT_TENANT = "(audit)"
DEFAULT_CACHE_BYTES = 4 * 1024 * 1024
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_READ_CHUNK = 64 * 1024
_NO_ANSWER = "no answer within"
#: A plugin is not started with less than this left of the budget: it could not answer,
#: and every image of a pod would start (and kill) one (rev24c F7).
MIN_RUN_SECONDS = 0.05
#: What a review keeps of ``registry.timeoutSeconds`` to write its answer: plugin runs and
#: registry questions end this much earlier (admission and the CLI alike).
ANSWER_MARGIN_SECONDS = 0.15
#: The ``env`` names a provider document may give under ``serve``: settings that select (a
#: region, a profile of the image's own AWS config, an endpoint flag), none of them a path or a
#: program. The document is hot-reloaded from a ConfigMap, and any other name could make the
#: plugin run what a ConfigMap editor wrote (``BASH_ENV``, ``LD_PRELOAD``, ``PYTHONPATH``,
#: ``AWS_CONFIG_FILE`` with a ``credential_process``, ``HOME``, ...), in a pod whose
#: ServiceAccount reads every Secret. Others go on pullguard's container: the plugin inherits
#: its environment, and the Deployment is not a ConfigMap.
SERVE_PROVIDER_ENV = frozenset(
    {
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
        "AWS_EC2_METADATA_DISABLED",
    }
)


class _LastParse:
    """The last documents parsed in this process and what came of them."""

    texts: tuple[tuple[str, str], ...] | None = None
    config: ProviderConfig | None = None
    problems: tuple[str, ...] = ()


_LAST = _LastParse()


def _parsed(texts: tuple[tuple[str, str], ...], problems: list[str]) -> ProviderConfig | None:
    """The documents ``texts`` parsed (their problems added to ``problems``), or the last
    parse of the same bytes: polled every 2 s on the worker's loop, a document near the
    bounds took 0.7 s to parse each time (rev24b F5). Parsing is a function of the bytes
    alone; the bin dir and the executables are checked again at every poll."""
    if _LAST.texts != texts:
        try:
            config: ProviderConfig | None = load_provider_config_documents(texts)
            found: tuple[str, ...] = ()
        except ProviderConfigError as error:
            config, found = None, tuple(error.problems)
        _LAST.config, _LAST.problems, _LAST.texts = config, found, texts
    problems.extend(_LAST.problems)
    return _LAST.config


def _configuration_folders(where: Path) -> tuple[Path, ...]:
    """The folder the provider configuration is read from (the ConfigMap's mount), as
    written and with its symlinks resolved (a mount's files are links into ``..data``)."""
    if where.is_dir():
        return (where.absolute(), where.resolve())
    return (where.parent.absolute(), where.parent.resolve(), where.resolve().parent)


def _names_a_file_in(arg: str, folders: Sequence[Path]) -> bool:
    """``arg``, the value of ``--flag=arg`` or of an attached ``-fPATH``, is a path into
    ``folders``: absolute, or relative to the plugin's working folder (pullguard's, ``/`` in
    the image: rev24e)."""
    attached = arg[2:] if len(arg) > 2 and arg[0] == "-" and arg[1] != "-" else ""
    for candidate in (arg, arg.partition("=")[2], attached):
        if not candidate or "\x00" in candidate or "/" not in candidate:
            continue
        named = Path(candidate) if candidate.startswith("/") else Path.cwd() / candidate
        for path in (named.absolute(), named.resolve()):
            if any(path == f or f in path.parents for f in folders):
                return True
    return False


def read_provider_config(
    path: str, bin_dir: str, allowed_bin_dirs: Sequence[str] | None = None
) -> ProviderConfig:
    """The configuration at ``path`` with its executables checked in ``bin_dir``, or
    :class:`ProviderConfigError` listing every problem (unreadable files included).

    ``allowed_bin_dirs`` (``serve``'s ``--credential-provider-bin-dir``): ``bin_dir`` must be
    one of them or under one (symlinks resolved), and each executable, resolved, must stay
    in it, each provider's ``env`` may name only :data:`SERVE_PROVIDER_ENV`, and no ``args``
    entry may name a file in the configuration's own folder (rev24d: acr's azure.json
    argument pointed at another key of the same ConfigMap); ``None``
    (the CLI commands, run by a person who chose the folder): any folder, any env."""
    problems: list[str] = []
    texts: list[tuple[str, str]] = []
    where = Path(path)
    try:
        if where.is_dir():
            files = sorted(
                p for p in where.iterdir() if p.suffix in _CONFIG_SUFFIXES and not p.is_dir()
            )
            if not files:
                problems.append(f"{path}: no configuration files (*.json, *.yaml, *.yml) in it")
        else:
            files = [where]
        texts.extend((str(file), _read_bounded(file)) for file in files)
    except OSError as error:
        problems.append(f"{path}: cannot be read ({error.strerror or type(error).__name__})")
    config: ProviderConfig | None = None
    if not problems:
        config = _parsed(tuple(texts), problems)
    root: str | None = None
    if "\x00" in bin_dir or not Path(bin_dir).is_dir():
        problems.append(f"registry.imageCredentialProviderBinDir: {bin_dir} is not a folder")
    elif allowed_bin_dirs is not None:
        root = _allowed_root(bin_dir, allowed_bin_dirs)
        if root is None:
            problems.append(
                f"registry.imageCredentialProviderBinDir: {bin_dir} is not a folder pullguard "
                "was started to run credential providers from; start serve with "
                f"--credential-provider-bin-dir {bin_dir} (now: "
                f"{', '.join(allowed_bin_dirs) or 'none'})"
            )
    if config is not None and not problems:
        folders = _configuration_folders(where)
        for index, provider in enumerate(config.providers):
            problem = _executable_problem(Path(bin_dir), provider.name, root)
            if problem:
                problems.append(f"providers[{index}].name: {provider.name!r}: {problem}")
            if allowed_bin_dirs is None:
                continue  # a person's own run: the document is theirs
            for at, arg in enumerate(provider.args):
                if _names_a_file_in(arg, folders):
                    problems.append(
                        f"providers[{index}].args[{at}]: {arg!r} names a file beside the "
                        "provider configuration (a ConfigMap edit must not choose what the "
                        "plugin loads); mount that file outside the configuration's folder"
                    )
            for at, env in enumerate(provider.env):
                if env.name not in SERVE_PROVIDER_ENV:
                    problems.append(
                        f"providers[{index}].env[{at}].name: {env.name!r}: serve passes a "
                        "provider only "
                        + ", ".join(sorted(SERVE_PROVIDER_ENV))
                        + " from this document (a ConfigMap edit must not choose what the "
                        "plugin loads or runs); set it on pullguard's container instead, "
                        "the plugin inherits its environment"
                    )
    if problems or config is None:
        raise ProviderConfigError(problems)
    return config


def _read_bounded(file: Path) -> str:
    with file.open("rb") as handle:
        # one byte past the bound is enough for the core to say it is too large
        data = handle.read(MAX_CONFIG_BYTES + 1)
    return data.decode("utf-8", "surrogateescape")


def _allowed_root(bin_dir: str, allowed: Sequence[str]) -> str | None:
    """The allowed folder (resolved) that ``bin_dir`` (resolved) is, or is under."""
    real = Path(os.path.realpath(bin_dir))
    for folder in allowed:
        if "\x00" in folder:
            continue
        root = Path(os.path.realpath(folder))
        if real == root or real.is_relative_to(root):
            return str(root)
    return None


def _executable_problem(bin_dir: Path, name: str, root: str | None) -> str | None:
    executable = bin_dir / name
    if "\x00" in name:
        return "a NUL character in a name (no executable can have it)"
    try:
        info = executable.stat()
    except (OSError, ValueError):
        return f"no executable {executable}"
    if root is not None:
        real = Path(os.path.realpath(executable))
        if not real.is_relative_to(Path(root)):
            return (
                f"{executable} leads out of {root} (to {real}): pullguard runs only "
                "executables in the folders it was started with"
            )
    if not stat.S_ISREG(info.st_mode) or not os.access(executable, os.X_OK):
        return f"{executable} is not an executable file"
    return None


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one plugin run gave: its exit status (``None``: killed), stdout, the start of
    stderr, and why it was stopped (``""``: it finished)."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    stopped: str = ""


def run_plugin(
    argv: list[str],
    env: Mapping[str, str],
    stdin: bytes,
    timeout: float,
    *,
    max_stdout: int = MAX_RESPONSE_BYTES,
    stderr_kept: int = STDERR_KEPT,
    stop: RunStop | None = None,
) -> RunResult:
    """Run ``argv`` with ``stdin``, reading its output in this thread until it exits, its
    stdout passes ``max_stdout`` bytes, ``timeout`` seconds pass, or ``stop`` is set (its
    reason is then the result's ``stopped``); then its process group is killed. Never waits
    past ``timeout`` (plus the reaping of a killed process)."""
    deadline = time.monotonic() + max(timeout, 0.0)
    process = subprocess.Popen(  # noqa: S603 - the admin's configured executable, no shell
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        close_fds=True,
        start_new_session=True,
    )
    assert process.stdin and process.stdout and process.stderr
    stdout = bytearray()
    stderr = bytearray()
    stopped = ""
    selector = selectors.DefaultSelector()
    try:
        try:
            # A request is a few hundred bytes: it fits a pipe's buffer, so this never blocks.
            process.stdin.write(stdin)
            process.stdin.close()
        except OSError:
            pass  # the plugin closed its stdin early: its answer says the rest
        outputs = 0
        for pipe in (process.stdout, process.stderr):
            os.set_blocking(pipe.fileno(), False)
            selector.register(pipe, selectors.EVENT_READ)
            outputs += 1
        if stop is not None:
            selector.register(stop, selectors.EVENT_READ)
        while outputs:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stopped = f"{_NO_ANSWER} {timeout:.1f} s"
                break
            for key, _ in selector.select(remaining):
                if key.fileobj is stop:
                    stopped = stop.reason
                    break
                try:
                    chunk = os.read(key.fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(key.fileobj)
                    outputs -= 1
                    continue
                if key.fileobj is process.stdout:
                    stdout += chunk
                    if len(stdout) > max_stdout:
                        stopped = f"more than {max_stdout} bytes on stdout"
                        break
                elif len(stderr) < stderr_kept:
                    stderr += chunk[: stderr_kept - len(stderr)]
            if stopped:
                break
        if not stopped:
            stopped = _wait(process, deadline, stop)
            if stopped == _NO_ANSWER:
                stopped = f"{_NO_ANSWER} {timeout:.1f} s (it closed its output and kept running)"
    finally:
        selector.close()
        if stopped or process.returncode is None:
            _kill(process)
        for pipe in (process.stdout, process.stderr):
            pipe.close()
    return RunResult(None if stopped else process.returncode, bytes(stdout), bytes(stderr), stopped)


def _wait(process: subprocess.Popen[bytes], deadline: float, stop: RunStop | None) -> str:
    """Wait for a plugin that closed its output to exit: ``""`` when it did,
    :data:`_NO_ANSWER` at ``deadline``, or ``stop``'s reason once it is set."""
    while True:
        remaining = deadline - time.monotonic()
        if stop is None or remaining <= 0:
            try:
                process.wait(max(remaining, 0.0))
            except subprocess.TimeoutExpired:
                return _NO_ANSWER
            return ""
        try:
            process.wait(min(remaining, 0.05))
        except subprocess.TimeoutExpired:
            if stop.reason:
                return stop.reason
            continue
        return ""


class RunStop:
    """Stops one :func:`run_plugin` from another thread: :meth:`set` wakes its loop (a
    pipe it watches beside the plugin's output), which kills the plugin's process group and
    answers the reason. :meth:`close` once the run is over; never :meth:`set` after."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self.reason = ""

    def fileno(self) -> int:
        return self._read

    def set(self, reason: str) -> None:
        if self.reason:
            return
        self.reason = reason
        with contextlib.suppress(OSError):  # a full pipe is already readable
            os.write(self._write, b"!")

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(2.0)
    except subprocess.TimeoutExpired:
        log.warning("credential provider process %d did not exit after SIGKILL", process.pid)


class ProviderFailed(Exception):
    """A plugin gave no usable answer; the text names the provider and the reason only.

    ``holds_within``: a run offered at most this many seconds would fail the same way
    (``inf``: any run, as for a plugin that exits non-zero or answers nonsense; the seconds
    it had, with 5% and 50 ms to spare, for one that did not answer in time; ``0``: nothing
    to learn from, as for all plugin slots taken)."""

    def __init__(self, provider: str, reason: str, *, holds_within: float = math.inf) -> None:
        super().__init__(f"credential provider {provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.holds_within = holds_within


class _Run:
    """One plugin run a namespace holds (see :meth:`CredentialProviders._share`)."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.number = 0
        """Its order among the runs held (a newer run has a higher number)."""
        self.stop = RunStop()


class _Flight:
    """One running plugin that other callers for the same key wait on."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: ProviderResponse | None = None
        self.error: ProviderFailed | None = None


class AnswerCache:
    """Plugin answers by (provider, kubelet cache key) until they expire, at most
    ``max_bytes`` in all (the oldest go first)."""

    def __init__(self, max_bytes: int, clock: Callable[[], float]) -> None:
        self._max = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[float, ProviderResponse, int]] = (
            OrderedDict()
        )
        self._bytes = 0

    def get(self, provider: str, image: str) -> ProviderResponse | None:
        """The kept answer for ``image``: looked up by image, registry, then global."""
        now = self._clock()
        with self._lock:
            for key in cache_lookup_keys(image):
                entry = self._entries.get((provider, key))
                if entry is None:
                    continue
                if entry[0] <= now:
                    self._drop((provider, key))
                    continue
                return entry[1]
        return None

    def put(self, provider: str, key: str, response: ProviderResponse, seconds: float) -> None:
        size = response.size() + len(provider) + len(key)
        if seconds <= 0 or size > self._max:
            return
        with self._lock:
            self._drop((provider, key))
            now = self._clock()
            for old in [k for k, v in self._entries.items() if v[0] <= now]:
                self._drop(old)
            while self._entries and self._bytes + size > self._max:
                self._drop(next(iter(self._entries)))
            self._entries[(provider, key)] = (now + seconds, response, size)
            self._bytes += size

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[2]

    @property
    def size_bytes(self) -> int:
        """The bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)


class CredentialProviders:
    """The configured providers, run on demand with their answers cached.

    ``provide(image, timeout)`` asks every provider whose ``matchImages`` cover ``image``
    (a repository without tag, as the kubelet asks), in the configuration's order.

    ``remember_failures`` (the CLI commands, whose run is minutes at most): a provider that
    failed for an image (a repository without tag, the kubelet's singleflight key) is not
    run again for it while these providers live (one CLI run) when the same failure would
    follow (see
    :attr:`ProviderFailed.holds_within`); a failure for one repository says nothing of
    another's (rev24c F1: a provider taken to hang for every image after a few slow ones
    gave ``check`` an "ok" where admission denies). Admission never remembers one: a plugin
    that recovers is used at the next review.
    """

    def __init__(
        self,
        config: ProviderConfig,
        bin_dir: str,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_running: int = MAX_RUNNING,
        environ: Callable[[], Mapping[str, str]] = lambda: os.environ,
        clock: Callable[[], float] = time.monotonic,
        remember_failures: bool = False,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._on_refused = on_refused
        self._remember = remember_failures
        self._failures: dict[tuple[str, str], ProviderFailed] = {}
        self._bin_dir = bin_dir
        self._environ = environ
        self._clock = clock
        self.cache = AnswerCache(cache_bytes, clock)
        self._slots = threading.BoundedSemaphore(max_running)
        self._max_running = max_running
        self._lock = threading.Lock()
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._held = 0
        self._held_by: collections.Counter[str] = collections.Counter()
        self._runs: dict[str, list[_Run]] = {}
        """Each namespace's runs held, oldest first (the newest is the one stopped)."""
        self._numbered = 0
        self.execs = 0
        """Plugin runs started (for the benchmarks' "execs per 1,000 admissions")."""

    def provide(
        self,
        image: str,
        timeout: float,
        tenant: str | None = None,
        *,
        may_run: Callable[[], str] | None = None,
    ) -> list[ProviderAnswer]:
        """Each matching provider's answer for ``image``, in the configuration's order, all
        of them within ``timeout`` seconds. ``tenant``: the review's namespace, whose share
        of plugin runs a run counts against (``None``: no share). ``may_run``: asked before
        a run is taken for ``tenant``; a reason (a namespace the cluster does not have)
        answers "not run: REASON" instead, and a cached answer is still given."""
        deadline = self._clock() + timeout
        answers = []
        for provider in self.config.matching(image):
            try:
                response, cached = self._response(provider, image, deadline, tenant, may_run)
            except ProviderFailed as failed:
                answers.append(ProviderAnswer(provider.name, error=failed.reason))
                continue
            # The whole answer: the kubelet adds every provider's answer to one keyring and
            # looks the image up once (NodeCredentials.credentials), not per provider.
            answers.append(ProviderAnswer(provider.name, response.auth, cached=cached))
        return answers

    def _response(
        self,
        provider: Provider,
        image: str,
        deadline: float,
        tenant: str | None = None,
        may_run: Callable[[], str] | None = None,
    ) -> tuple[ProviderResponse, bool]:
        kept = self.cache.get(provider.name, image)
        if kept is not None:
            return kept, True
        failed = self._failures.get((provider.name, image))
        if failed is not None and deadline - self._clock() <= failed.holds_within:
            raise failed
        key = (provider.name, image)
        while True:
            with self._lock:
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if leader:
                break
            if not flight.done.wait(max(deadline - self._clock(), 0.0)):
                raise ProviderFailed(
                    provider.name, "no answer within the admission's budget", holds_within=0.0
                )
            if flight.response is not None:
                return flight.response, False
            assert flight.error is not None
            if not self._owners_failure(flight.error, deadline):
                raise flight.error
            # The run ended for a reason of its owner's (its deadline, its namespace's
            # share, its preemption): it says nothing of this caller, whose budget is not
            # spent (rev24h F1). Look again: the answer kept, a newer flight, or a run of
            # this caller's own under its own namespace's share.
            kept = self.cache.get(provider.name, image)
            if kept is not None:
                return kept, True
        try:
            flight.response = self._run(provider, image, deadline, tenant, may_run)
            return flight.response, False
        except ProviderFailed as failure:
            flight.error = failure
            if self._remember and failure.holds_within > 0 and len(self._failures) < 4096:
                self._failures[(provider.name, image)] = failure
            raise
        finally:
            flight.done.set()
            with self._lock:
                self._flights.pop(key, None)

    def _owners_failure(self, failure: ProviderFailed, deadline: float) -> bool:
        """Whether ``failure``, a flight's, belongs to the flight's owner rather than to the
        image: a run with the time this caller has left could end otherwise. A refusal or a
        preemption (``holds_within`` 0) and a plugin that did not answer within a shorter
        budget than this caller's are the owner's; a plugin's answer or error (``inf``), and
        a timeout within this caller's own budget, are shared."""
        left = deadline - self._clock()
        return left >= MIN_RUN_SECONDS and left > failure.holds_within

    def _refusal(self, tenant: str) -> tuple[str, str] | None:
        """Why ``tenant`` may not hold another plugin run now (the lock is held), for a
        namespace that holds one already: the registry client's rule
        (``HttpRegistry._refusal``) over plugin runs."""
        held_here = self._held_by[tenant]
        if held_here >= PLUGINS_PER_TENANT:
            return (
                "namespace",
                f"namespace {tenant or '(none)'} already has {PLUGINS_PER_TENANT} plugin runs "
                "running or waiting (its share, so other namespaces are still checked)",
            )
        if self._held < self._max_running - PLUGINS_RESERVE:
            return None
        active = len(self._held_by) + (0 if tenant in self._held_by else 1)
        if self._held < self._max_running and (held_here + 1) * active <= PLUGINS_RESERVE:
            return None
        return (
            "process",
            f"{self._held} of {self._max_running} plugin runs in this process are held; the "
            f"last {PLUGINS_RESERVE} are shared by the {active} namespaces asking, and this "
            "one holds its part",
        )

    def _first_run(self, tenant: str) -> tuple[str, str] | None:
        """Make room for the first run of ``tenant``, a namespace holding none (the lock is
        held): a free slot, else the newest run of the namespace holding the most, when it
        holds two or more, is stopped and its slot is ``tenant``'s (``preempted``); else
        (every slot held by a different namespace) why not (``process``).

        So a namespace holding no run gets one unless :data:`MAX_RUNNING` other namespaces
        each hold exactly one, and a namespace's only run is never stopped (fair24: one
        tenant's four namespaces of 4 + 2 + 1 + 1 hanging runs held every slot)."""
        if self._held < self._max_running:
            return None
        victims = [t for t, runs in self._runs.items() if len(runs) >= 2]
        if not victims:
            return (
                "process",
                f"all {self._max_running} plugin runs in this process are held, each by a "
                "different namespace (a namespace's only run is never stopped)",
            )
        # the namespace holding the most; of those, the one whose newest run is newest
        most = max(victims, key=lambda t: (len(self._runs[t]), self._runs[t][-1].number))
        count = len(self._runs[most])
        newest = self._runs[most].pop()
        newest.stop.set(
            f"not run: preempted: all {self._max_running} plugin runs in this process were "
            f"held and this run's namespace held the most ({count}), so its newest run was "
            "stopped for a namespace holding none (every namespace keeps at least one run)"
        )
        self._held_by[most] -= 1
        self._held -= 1
        return ("preempted", "")

    @contextlib.contextmanager
    def _share(self, provider: Provider, tenant: str | None) -> Iterator[_Run | None]:
        """Hold one of ``tenant``'s plugin runs for the block, or raise
        :class:`ProviderFailed` at once when its share is in use (``None``: no share).
        The run held can be stopped (:meth:`_first_run`): its ``stop`` says so."""
        if tenant is None:
            yield None
            return
        preempted = False
        try:
            run = _Run(tenant)
        except OSError as error:  # no pipe: no file descriptors left
            raise ProviderFailed(
                provider.name, f"cannot run it ({error.strerror or type(error).__name__})"
            ) from None
        with self._lock:
            if self._held_by[tenant] == 0:
                refusal = self._first_run(tenant)
                if refusal is not None and refusal[0] == "preempted":
                    preempted, refusal = True, None
            else:
                refusal = self._refusal(tenant)
            if refusal is None:
                self._numbered += 1
                run.number = self._numbered
                self._runs.setdefault(tenant, []).append(run)
                self._held += 1
                self._held_by[tenant] += 1
        if refusal is not None:
            run.stop.close()
            if self._on_refused is not None:
                self._on_refused(refusal[0])
            raise ProviderFailed(provider.name, f"not run: {refusal[1]}", holds_within=0.0)
        try:
            if preempted and self._on_refused is not None:
                self._on_refused("preempted")
            yield run
        finally:
            with self._lock:
                runs = self._runs.get(tenant, [])
                if run in runs:  # not stopped for another (that one took its count)
                    runs.remove(run)
                    self._held -= 1
                    self._held_by[tenant] -= 1
                if not runs:
                    self._runs.pop(tenant, None)
                if self._held_by.get(tenant, 0) <= 0:
                    self._held_by.pop(tenant, None)
            run.stop.close()

    def _run(
        self,
        provider: Provider,
        image: str,
        deadline: float,
        tenant: str | None = None,
        may_run: Callable[[], str] | None = None,
    ) -> ProviderResponse:
        if provider.token_attributes is not None:
            raise ProviderFailed(
                provider.name,
                "it asks for the pod's ServiceAccount token (tokenAttributes): "
                "pullguard cannot act as the pod's ServiceAccount",
            )
        kept = self.cache.get(provider.name, image)
        if kept is not None:  # a run that ended between our cache miss and our flight
            return kept
        offered = max(deadline - self._clock(), 0.0)
        if offered < MIN_RUN_SECONDS:
            raise ProviderFailed(
                provider.name, "not run: the review's time budget was spent", holds_within=0.0
            )
        refused = "" if may_run is None or tenant is None else may_run()
        if refused:  # rev24h F3: a made-up namespace holds no run (its followers retry)
            if self._on_refused is not None:
                self._on_refused("unknown-namespace")
            raise ProviderFailed(provider.name, f"not run: {refused}", holds_within=0.0)
        with self._share(provider, tenant) as run:
            return self._run_in_slot(provider, image, deadline, offered, run)

    def _run_in_slot(
        self,
        provider: Provider,
        image: str,
        deadline: float,
        offered: float,
        run: _Run | None = None,
    ) -> ProviderResponse:
        stop = None if run is None else run.stop
        if not self._slots.acquire(timeout=offered):
            raise ProviderFailed(
                provider.name,
                f"not run: {self._max_running} plugins already running in this process",
                holds_within=0.0,
            )
        if deadline - self._clock() < MIN_RUN_SECONDS:
            # a slot came free as the budget ran out (rev24f F2): no process for no time
            self._slots.release()
            raise ProviderFailed(
                provider.name,
                f"not run: {self._max_running} plugins were running in this process until "
                "the review's time budget was spent",
                holds_within=0.0,
            )
        if stop is not None and stop.reason:  # stopped for another before it started
            self._slots.release()
            raise ProviderFailed(provider.name, stop.reason, holds_within=0.0)
        try:
            self.execs += 1
            env = dict(self._environ())
            env.update({e.name: e.value for e in provider.env})
            argv = [str(Path(self._bin_dir) / provider.name), *provider.args]
            try:
                result = run_plugin(
                    argv, env, request_bytes(provider, image), deadline - self._clock(), stop=stop
                )
            except OSError as error:
                raise ProviderFailed(
                    provider.name, f"cannot run it ({error.strerror or type(error).__name__})"
                ) from None
            except ValueError:  # Popen refuses before any process starts; no value quoted
                raise ProviderFailed(
                    provider.name,
                    "cannot start it: an env name holds '=', or an env value or an argument "
                    "holds a NUL byte",
                ) from None
        finally:
            self._slots.release()
        secrets = [e.value for e in provider.env]
        if stop is not None and stop.reason and result.stopped == stop.reason:
            log.info("credential provider %s for %s: %s", provider.name, image, stop.reason)
            raise ProviderFailed(provider.name, stop.reason, holds_within=0.0)
        if result.stopped or result.returncode != 0:
            reason = result.stopped or f"it exited with status {result.returncode}"
            self._log_failure(provider, image, reason, result.stderr, secrets)
            timed_out = result.stopped.startswith(_NO_ANSWER)
            # Another ask's clock starts microseconds apart: what did not answer in 1.0 s
            # will not in 1.0001 s.
            held = offered * 1.05 + 0.05 if timed_out else math.inf
            raise ProviderFailed(provider.name, reason, holds_within=held)
        try:
            response = parse_response(result.stdout, provider)
        except ResponseError as error:
            self._log_failure(provider, image, str(error), result.stderr, secrets)
            raise ProviderFailed(provider.name, str(error)) from None
        if result.stderr:
            log.info(
                "credential provider %s for %s wrote on stderr: %s",
                provider.name,
                image,
                redact(_text(result.stderr), secrets + [c.password for c in response.auth]),
            )
        seconds = response.cache_seconds_with(provider.default_cache_seconds)
        self.cache.put(provider.name, cache_key(response.cache_key_type, image), response, seconds)
        return response

    @staticmethod
    def _log_failure(
        provider: Provider, image: str, reason: str, stderr: bytes, secrets: list[str]
    ) -> None:
        log.warning(
            "credential provider %s for %s failed: %s; stderr: %s",
            provider.name,
            image,
            reason,
            redact(_text(stderr), secrets) or "(empty)",
        )


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class DeadlineProviders:
    """Credential providers for one review or one object: every plugin run ends by
    ``started + budget`` (``time.perf_counter`` seconds), however many images and providers
    the object needs. Admission gives each review one (``registry.timeoutSeconds`` less
    its answer margin), and ``check``, ``diagnose`` and ``audit`` each object."""

    def __init__(
        self,
        providers: NodeCredentialView,
        started: float,
        budget: float,
        tenant: str | None = None,
        may_run: Callable[[], str] | None = None,
    ) -> None:
        self.providers = providers
        self.deadline = started + budget
        self.tenant = tenant
        """The review's namespace, whose share of plugin runs the runs count against
        (``None``: no share)."""
        self._may_run = may_run
        self._refused: str | None = None

    def _may_run_once(self) -> str:
        """``may_run``'s answer, asked once for the review (a cluster read at most)."""
        if self._refused is None:
            self._refused = self._may_run() if self._may_run is not None else ""
        return self._refused

    def provide(
        self,
        image: str,
        timeout: float,
        tenant: str | None = None,
        *,
        may_run: Callable[[], str] | None = None,
    ) -> Sequence[ProviderAnswer]:
        left = max(min(timeout, self.deadline - time.perf_counter()), 0.0)
        if self.tenant is None:
            return self.providers.provide(image, left)
        if self._may_run is None:
            return self.providers.provide(image, left, tenant=self.tenant)
        return self.providers.provide(image, left, tenant=self.tenant, may_run=self._may_run_once)


class LiveProviders:
    """The credential providers the configuration in force names, kept in step with it.

    ``settings()`` gives the registry settings in force (``registry.imageCredentialProvider
    Config`` and ``...BinDir``); :meth:`poll_once` (every ``interval`` seconds in a thread
    once :meth:`start`-ed) reads the document they name. As for pullguard's own
    configuration: a document that is invalid is refused with every problem in the log, and
    the last good one stays in force; unset paths switch the providers off. An unchanged
    document keeps its providers, and their cache. ``allowed_bin_dirs``: the folders it may
    run executables from (``serve``'s ``--credential-provider-bin-dir``, fixed at start: a
    ConfigMap edit never chooses which program runs); ``None``: any (the CLI commands).
    """

    def __init__(
        self,
        settings: Callable[[], tuple[str | None, str | None]],
        *,
        interval: float = 2.0,
        make: Callable[[ProviderConfig, str], CredentialProviders] = CredentialProviders,
        allowed_bin_dirs: Sequence[str] | None = DEFAULT_SERVE_BIN_DIRS,
    ) -> None:
        self._settings = settings
        self._allowed = None if allowed_bin_dirs is None else tuple(allowed_bin_dirs)
        self._interval = interval
        self._make = make
        self._lock = threading.Lock()
        self._current: CredentialProviders | None = None
        self._in_force: tuple[str, str, ProviderConfig] | None = None
        self._wanted: tuple[str | None, str | None] = (None, None)
        self.last_problems: list[str] = []
        self._stop = threading.Event()

    @property
    def current(self) -> CredentialProviders | None:
        """The providers in force (``None``: none configured, or none good yet)."""
        return self._current

    def provide(
        self,
        image: str,
        timeout: float,
        tenant: str | None = None,
        *,
        may_run: Callable[[], str] | None = None,
    ) -> list[ProviderAnswer]:
        """The providers in force's answers for ``image`` (none when none are configured);
        ``tenant`` and ``may_run`` as for :meth:`CredentialProviders.provide`.

        Configured, and no good document read: which registries the nodes log in to is not
        known, so every image gets a failed provider's answer (a refusal is then a warning
        that says why, never a denial the nodes' own credentials might have avoided)."""
        providers = self._current
        if providers is not None:
            return providers.provide(image, timeout, tenant, may_run=may_run)
        path, _ = self._wanted
        if path is None:
            return []
        return [
            ProviderAnswer(
                "(configuration)",
                error=f"the credential provider configuration {path} is not in force "
                "(refused: see pullguard's log)",
            )
        ]

    def not_ready(self) -> list[str]:
        """Nothing: a provider configuration never keeps the process from being ready (a
        held-back readiness stalls a rollout, and blocks every pod behind a fail-closed
        webhook); until a good document is read, :meth:`provide` says it is not in force."""
        return []

    def poll_once(self) -> bool:
        """Read the configured document; returns whether the providers in force changed."""
        path, bin_dir = self._wanted = self._settings()
        if path is None or bin_dir is None:
            with self._lock:
                changed = self._current is not None
                self._current, self._in_force = None, None
            self.last_problems = []
            if changed:
                log.info("credential providers switched off (no imageCredentialProviderConfig)")
            return changed
        try:
            config = read_provider_config(path, bin_dir, self._allowed)
        except ProviderConfigError as error:
            if error.problems != self.last_problems:
                kept = (
                    "the last good one stays in force"
                    if self._current is not None
                    else "no credential provider is used until a valid one is read"
                )
                log.error(
                    "credential provider configuration %s refused (%d problem(s)); %s: %s",
                    path,
                    len(error.problems),
                    kept,
                    "; ".join(error.problems),
                )
            self.last_problems = list(error.problems)
            return False
        self.last_problems = []
        if self._in_force == (path, bin_dir, config):
            return False
        with self._lock:
            self._current = self._make(config, bin_dir)
            self._in_force = (path, bin_dir, config)
        log.info(
            "credential provider configuration %s applied: %s",
            path,
            ", ".join(p.name for p in config.providers),
        )
        return True

    def start(self) -> None:
        """Read now, then every ``interval`` seconds in a daemon thread. Never raises: a
        document that cannot be read is not in force, and the process stays ready."""
        self._poll_logged()
        threading.Thread(target=self._run, name="credential-providers", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._poll_logged()

    def _poll_logged(self) -> None:
        try:
            self.poll_once()
        except Exception as error:  # never let serve or the follower die: the last good one stays
            log.exception("reading the credential provider configuration failed")
            self.last_problems = [f"reading it failed ({type(error).__name__})"]

    def stop(self) -> None:
        self._stop.set()
