"""Real Unix accounts for the tests of who may change things: a control group and a user
outside it, created with groupadd/useradd and removed afterwards."""

from __future__ import annotations

import contextlib
import grp
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Accounts:
    group: str  # the control group (nobody in it)
    gid: int
    user: str  # a system user outside the group



@contextlib.contextmanager
def control_group_and_outsider() -> Iterator[Accounts]:
    """Skips the test without root, useradd or setpriv."""
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("needs root, useradd and setpriv")
    tag = secrets.token_hex(3)
    group, user = f"ctopg{tag}", f"ctopu{tag}"
    subprocess.run(["groupadd", group], check=True)
    try:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", user],
                       check=True)
        try:
            yield Accounts(group, grp.getgrnam(group).gr_gid, user)
        finally:
            subprocess.run(["userdel", user], check=False)
    finally:
        subprocess.run(["groupdel", group], check=False)
