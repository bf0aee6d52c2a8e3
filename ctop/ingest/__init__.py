"""The director's side of the wire: verifying what agents send.

- `ctop.ingest.verifier`: `Verifier` (envelope, tag, freshness, order; the deferred path the
  receiver uses) and `Mark` (the replay state the store persists);
- `ctop.ingest.decode`: a signed body -> a checked message (`decode_report`, the fast path);
- `ctop.ingest.beacons`: `BeaconVerifier`, liveness beacons checked with one HMAC.

The format itself is agentd/protocol.py, shared with the agent; nothing here is imported by
agentd.
"""

from ctop.ingest.beacons import BeaconVerifier
from ctop.ingest.decode import decode_report, parse_body
from ctop.ingest.verifier import Mark, Verifier

__all__ = ["BeaconVerifier", "Mark", "Verifier", "decode_report", "parse_body"]
