"""The real Firebase Auth emulator for tests, plus helpers to get real (and deliberately broken) ID tokens.

`auth_emulator()` installs the pinned `firebase-tools` npm package once into `<repo>/.cache/firebase-tools`,
starts `firebase emulators:start --only auth` for the project `demo-comfy-cloud` on free 127.0.0.1 ports and
yields `"127.0.0.1:<port>"` (the value for FIREBASE_AUTH_EMULATOR_HOST). A `demo-` project needs no
credentials and the auth emulator is pure Node.js: no Java, no download at run time, no internet.

The emulator runs in its own process group inside a private temporary directory (its config store, hub
locator file and debug log stay there, so the developer's own Firebase login is never read). It is stopped
with the whole group when the context exits, and it is started under `setpriv --pdeathsig KILL`, so it dies
with the test process even if that is killed outright.

Emulator ID tokens are unsigned (`alg: none`): the emulator and firebase-admin in emulator mode check the
claims but never a signature. The `mint_*` helpers rewrite the claims of a real token.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

FIREBASE_TOOLS_VERSION = "15.34.2"
PROJECT_ID = "demo-comfy-cloud"
API_KEY = "fake-api-key"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Overridable so CI can keep the install in a cached directory of its own.
FIREBASE_TOOLS_DIR = Path(os.environ.get("FIREBASE_TOOLS_DIR", REPO_ROOT / ".cache" / "firebase-tools"))
MIN_NODE_MAJOR = 20

_READY_LINE = "All emulators ready"
_PORT_TAKEN = "port taken"
_WORKDIR_PREFIX = "cc-firebase-auth-"


# ---------------------------------------------------------------------------------------------- install


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the Firebase Auth emulator needs Node.js >= 20 on PATH (`node` not found)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = int(version.lstrip("v").split(".", 1)[0])
    if major < MIN_NODE_MAJOR:
        raise RuntimeError(f"firebase-tools {FIREBASE_TOOLS_VERSION} needs Node.js >= 20, found {version}")
    return node


def _cli_path(prefix: Path) -> Path:
    return prefix / "node_modules" / "firebase-tools" / "lib" / "bin" / "firebase.js"


def ensure_firebase_tools(prefix: Path = FIREBASE_TOOLS_DIR, version: str = FIREBASE_TOOLS_VERSION) -> Path:
    """Install firebase-tools==version under prefix unless it is already there; return its CLI script.

    Idempotent and safe to call from several processes at once (a file lock serialises the install).
    A marker file is written only after npm succeeds, so an interrupted install is redone.
    """
    marker = prefix / f".installed-firebase-tools-{version}"
    cli = _cli_path(prefix)
    if marker.exists() and cli.exists():
        return cli
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("installing firebase-tools needs npm on PATH")
    _node()
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and cli.exists():
            return cli
        for old in prefix.glob(".installed-firebase-tools-*"):
            old.unlink()
        command = [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            "--loglevel=error",
            f"firebase-tools@{version}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if result.returncode != 0 or not cli.exists():
            output = result.stdout[-2000:] + result.stderr[-4000:]
            raise RuntimeError(f"`{' '.join(command)}` failed ({result.returncode}):\n{output}")
        marker.write_text(version + "\n")
    return cli


# ---------------------------------------------------------------------------------------------- run


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _child_env(workdir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Never hand the emulator real credentials or an emulator address from the caller's environment.
        if not k.startswith(("FIREBASE_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_"))
    }
    env.update(
        XDG_CONFIG_HOME=str(workdir / "config"),  # firebase-tools' config store: no login, no usage stats
        TMPDIR=str(workdir),  # the emulator hub writes its locator file to os.tmpdir()
        NO_UPDATE_NOTIFIER="1",
        CI="1",
        FORCE_COLOR="0",
    )
    return env


class EmulatorStartError(RuntimeError):
    pass


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop the emulator's whole process group: SIGTERM (clean shutdown), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # Anything left in the group (there should be nothing) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_ready(proc: subprocess.Popen[bytes], host: str, log: Path, deadline: float) -> None:
    url = f"http://{host}/"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                text = _tail(log)
                raise EmulatorStartError(
                    f"the auth emulator exited with {proc.returncode}"
                    + (" (port taken)" if _PORT_TAKEN in text else "")
                    + f":\n{text}"
                )
            # Our own log line first: a free-port race could put someone else's server on our port.
            if _READY_LINE in _tail(log, 1_000_000):
                try:
                    response = client.get(url)
                    if response.status_code == 200 and response.json().get("authEmulator", {}).get("ready"):
                        return
                except (httpx.HTTPError, ValueError):
                    pass
            time.sleep(0.1)
    raise EmulatorStartError(f"the auth emulator was not ready in time:\n{_tail(log)}")


def _remove_stale_workdirs() -> None:
    """Temporary directories left by test processes that were killed outright."""
    for path in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*"):
        try:
            os.kill(int((path / "owner.pid").read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError):
            pass


@contextlib.contextmanager
def auth_emulator(project_id: str = PROJECT_ID, *, startup_timeout: float = 120.0) -> Iterator[str]:
    """Run the Firebase Auth emulator; yield its "127.0.0.1:<port>". Stops it (whole group) on exit.

    Start it from the main thread: the emulator is tied to the starting thread's life (PR_SET_PDEATHSIG).
    """
    cli = ensure_firebase_tools()
    node = _node()
    setpriv = shutil.which("setpriv")  # util-linux; elsewhere the context exit alone stops the emulator
    _remove_stale_workdirs()
    workdir = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX))
    (workdir / "owner.pid").write_text(str(os.getpid()))
    try:
        for attempt in range(3):
            auth_port, hub_port, logging_port = _free_ports(3)
            config = {
                "emulators": {
                    "auth": {"host": "127.0.0.1", "port": auth_port},
                    "hub": {"host": "127.0.0.1", "port": hub_port},
                    "logging": {"host": "127.0.0.1", "port": logging_port},
                    "ui": {"enabled": False},
                }
            }
            (workdir / "firebase.json").write_text(json.dumps(config))
            log = workdir / f"emulator-{attempt}.log"
            command = [node, str(cli), "emulators:start", "--only", "auth", "--project", project_id]
            if setpriv:
                command = [setpriv, "--pdeathsig", "KILL", "--", *command]
            host = f"127.0.0.1:{auth_port}"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    command,
                    cwd=workdir,
                    env=_child_env(workdir),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                try:
                    _wait_ready(proc, host, log, time.monotonic() + startup_timeout)
                except EmulatorStartError as exc:
                    if _PORT_TAKEN in str(exc) and attempt < 2:
                        continue
                    raise
                yield host
                return
            finally:
                _stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- users


@dataclass(frozen=True)
class EmulatorUser:
    uid: str
    email: str
    password: str
    display_name: str | None
    id_token: str
    refresh_token: str


def _v1(host: str) -> str:
    return f"http://{host}/identitytoolkit.googleapis.com/v1"


async def _post(url: str, body: dict[str, Any], *, admin: bool = False) -> dict[str, Any]:
    headers = {"Authorization": "Bearer owner"} if admin else {}  # "owner" is the emulator's admin token
    params = None if admin else {"key": API_KEY}
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        response = await client.post(url, params=params, json=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"auth emulator {url} -> {response.status_code}: {response.text}")
    return response.json()


async def create_user(
    host: str, email: str | None = None, password: str = "correct-horse-9", display_name: str | None = None
) -> EmulatorUser:
    """Sign up a new email/password user (accounts:signUp) and return it with a fresh, real ID token."""
    email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
    body: dict[str, Any] = {"email": email, "password": password, "returnSecureToken": True}
    if display_name is not None:
        body["displayName"] = display_name
    data = await _post(f"{_v1(host)}/accounts:signUp", body)
    return EmulatorUser(
        uid=data["localId"],
        email=data["email"],
        password=password,
        display_name=data.get("displayName"),
        id_token=data["idToken"],
        refresh_token=data["refreshToken"],
    )


async def sign_in(host: str, email: str, password: str) -> str:
    """A new ID token for an existing user (accounts:signInWithPassword)."""
    body = {"email": email, "password": password, "returnSecureToken": True}
    data = await _post(f"{_v1(host)}/accounts:signInWithPassword", body)
    return data["idToken"]


async def update_user(host: str, uid: str, project_id: str = PROJECT_ID, **fields: Any) -> None:
    """Admin accounts:update, e.g. disableUser=True, validSince="<unix seconds>", email=..."""
    await _post(f"{_v1(host)}/projects/{project_id}/accounts:update", {"localId": uid, **fields}, admin=True)


async def disable_user(host: str, uid: str, project_id: str = PROJECT_ID) -> None:
    await update_user(host, uid, project_id, disableUser=True)


async def revoke_tokens(
    host: str, uid: str, valid_since: int | None = None, project_id: str = PROJECT_ID
) -> None:
    """Revoke every token issued before valid_since (Unix seconds; default: now)."""
    since = int(time.time()) if valid_since is None else valid_since
    await update_user(host, uid, project_id, validSince=str(since))


async def delete_user(host: str, uid: str, project_id: str = PROJECT_ID) -> None:
    await _post(f"{_v1(host)}/projects/{project_id}/accounts:delete", {"localId": uid}, admin=True)


# ---------------------------------------------------------------------------------------------- tokens


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified."""
    return json.loads(_b64decode(token.split(".")[1]))


def rewrite_claims(token: str, **changes: Any) -> str:
    """The same token with some claims changed (None removes one); header and signature segment kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(_b64decode(payload))
    for key, value in changes.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    encoded = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{encoded}.{signature}"


def mint_expired_token(token: str, seconds_ago: int = 600) -> str:
    """A token that expired seconds_ago (issued an hour before that)."""
    exp = int(time.time()) - seconds_ago
    return rewrite_claims(token, exp=exp, iat=exp - 3600, auth_time=exp - 3600)


def mint_wrong_project_token(token: str, project_id: str = "demo-some-other-project") -> str:
    """A token for another Firebase project (audience and issuer both changed)."""
    return rewrite_claims(token, aud=project_id, iss=f"https://securetoken.google.com/{project_id}")


def mint_tampered_token(token: str, email: str = "mallory@example.com") -> str:
    """The same user's token with the email claim swapped (what a forger would change)."""
    return rewrite_claims(token, email=email)
