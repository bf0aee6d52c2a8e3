"""A stand-in ipvsadm that replays real captured output (tests/fixtures/ipvs) and logs its
arguments: command construction and error handling without root or the kernel module."""

from __future__ import annotations

import shlex
from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ipvs"


def section(name: str, title: str) -> str:
    for part in (FIXTURES / name).read_text().split("===== "):
        head, _, body = part.partition("\n")
        if head.strip() == title:
            return body
    raise KeyError(title)


RICH = {
    "-Ln --exact": section("ipvsadm_rich.txt", "ipvsadm -Ln"),
    "-Ln --exact --thresholds": section("ipvsadm_rich.txt", "ipvsadm -Ln --thresholds"),
    "-Ln --exact --stats": section("ipvsadm_rich.txt", "ipvsadm -Ln --stats --exact"),
    "-Ln --exact --rate": section("ipvsadm_rich.txt", "ipvsadm -Ln --rate --exact"),
}
TUNNELS = {
    "-Ln --exact": section("tunnel_capture.txt", "ipvsadm -Ln --tun-info --exact"),
    "-Ln --exact --thresholds": "Prot LocalAddress:Port            Uthreshold Lthreshold\n",
    "-Ln --exact --tun-info": section("tunnel_capture.txt", "ipvsadm -Ln --tun-info --exact"),
}


class FakeIpvsadm:
    """Writes a shell script that answers known argument lists and logs every call."""

    def __init__(self, tmp: Path, outputs: dict[str, str], edit: tuple[int, str] = (0, "")):
        self.log = tmp / "calls.log"
        self.path = tmp / "ipvsadm"
        cases = []
        for i, (args, text) in enumerate(outputs.items()):
            (tmp / f"out{i}").write_text(text)
            cases.append(f"  {shlex.quote(args)}) cat {tmp}/out{i} ;;")
        rc, err = edit
        cases.append(f'  "-e "*) printf %s {shlex.quote(err)} >&2; exit {rc} ;;')
        cases.append('  *) echo "unexpected: $*" >&2; exit 99 ;;')
        self.path.write_text(
            '#!/bin/bash\necho "$*" >> '
            + str(self.log)
            + '\ncase "$*" in\n'
            + "\n".join(cases)
            + "\nesac\n"
        )
        self.path.chmod(0o755)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def edits(self) -> list[str]:
        return [c for c in self.calls() if c.startswith("-e ")]
