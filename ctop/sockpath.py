"""Whether a control socket (and the directories above it) can be trusted, on both sides.

Without XDG_RUNTIME_DIR the socket lives under /tmp, where any local user can create
/tmp/ctop-UID first or plant a socket of their own: a client would then show (and a UI act on)
another user's forged cluster. A socket is trusted only if it and every directory above it
belong to root or the caller, and no directory can be written by anyone else (unless sticky,
like /tmp, where others cannot rename or remove what is ours).
"""

from __future__ import annotations

import os
import pwd
import stat


class UntrustedPath(Exception):
    """The socket or a directory above it could have been planted; the message says why."""


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def check_directory(path: str) -> None:
    """Raise UntrustedPath unless `path` and every directory above it is safe to use."""
    me = os.geteuid()
    d = os.path.abspath(path)
    while True:
        st = os.stat(d)
        if st.st_uid not in (0, me):
            raise UntrustedPath(
                f"directory {d} belongs to {_owner(st.st_uid)}, not to root or you: another "
                f"user may have planted it; remove it or set control_socket elsewhere")
        writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable and not st.st_mode & stat.S_ISVTX:
            raise UntrustedPath(
                f"directory {d} can be written by others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): run chmod go-w {d}")
        parent = os.path.dirname(d)
        if parent == d:
            return
        d = parent


def check_socket(path: str) -> None:
    """Raise UntrustedPath unless `path` is a socket of root or the caller in a safe
    directory; FileNotFoundError if there is nothing at `path`."""
    st = os.lstat(path)
    if not stat.S_ISSOCK(st.st_mode):
        raise UntrustedPath(f"{path} is not a socket")
    if st.st_uid not in (0, os.geteuid()):
        raise UntrustedPath(
            f"{path} belongs to {_owner(st.st_uid)}, not to root or you: refusing to talk to "
            f"it (another user may have planted it)")
    check_directory(os.path.dirname(os.path.abspath(path)))


def prepare_directory(path: str, group_id: int | None = None) -> None:
    """The daemon's side: create the socket's directory private (0700, or 0750 for the
    control group) if missing, then refuse one that is not safe (check_directory)."""
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        os.makedirs(d, mode=0o700 if group_id is None else 0o750, exist_ok=True)
        if group_id is not None:
            os.chown(d, -1, group_id)
    check_directory(d)


def remove_stale_socket(path: str) -> None:
    """Remove what a crashed daemon left at `path`, but only if it is a socket: never a file
    that control_socket was set to by mistake."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise UntrustedPath(f"{path} exists and is not a socket: refusing to replace it")
    os.unlink(path)
