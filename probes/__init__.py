"""probes: real protocol checks (http/https, smtp, pop3, imap, ftp, nntp, telnet, ssh, dns, tcp,
command) as a plain async library. No Textual, no ctop imports: agentd and the director share it.

    spec = probes.from_url("smtp://10.0.0.2:25")      # or probes.from_table({...})
    result = await probes.check(spec)                  # ProbeResult(status, latency_ms, detail)
    results = await probes.run_many([spec, ...])
"""

from probes.registry import CHECKS, check, run_many
from probes.result import ProbeResult, Status, worst
from probes.scheduler import ProbeScheduler
from probes.spec import TYPES, ProbeSpec, ProbeSpecError, from_table, from_url, parse

__all__ = [
    "CHECKS",
    "TYPES",
    "ProbeResult",
    "ProbeScheduler",
    "ProbeSpec",
    "ProbeSpecError",
    "Status",
    "check",
    "from_table",
    "from_url",
    "parse",
    "run_many",
    "worst",
]
