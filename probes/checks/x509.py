"""Read a certificate's notAfter from DER bytes.

With verification off (self-signed node certs), ssl's getpeercert() returns an empty dict, but the
DER form is always there. This walks just enough ASN.1 to reach Validity; no crypto library needed.
"""

from __future__ import annotations

from datetime import UTC, datetime

_SEQUENCE, _UTCTIME, _GENTIME, _EXPLICIT_0 = 0x30, 0x17, 0x18, 0xA0


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at pos."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(der):
        raise ValueError("truncated DER")
    return tag, pos, end


def _time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii").rstrip("Z")
    if tag == _UTCTIME:
        year = int(text[:2])
        text = str(1900 + year if year >= 50 else 2000 + year) + text[2:]  # RFC 5280 4.1.2.5.1
    elif tag != _GENTIME:
        raise ValueError(f"unexpected time tag {tag:#x}")
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def not_after(der: bytes) -> datetime:
    """Expiry of an X.509 certificate in DER form; ValueError if it is not one."""
    try:
        _tag, cert, _ = _tlv(der, 0)
        tag, pos, _ = _tlv(der, cert)  # TBSCertificate
        if tag != _SEQUENCE:
            raise ValueError("not a certificate")
        tag, _, end = _tlv(der, pos)
        if tag == _EXPLICIT_0:  # optional version
            pos = end
        for _ in range(3):  # serialNumber, signature algorithm, issuer
            _, _, pos = _tlv(der, pos)
        tag, pos, _ = _tlv(der, pos)  # Validity
        if tag != _SEQUENCE:
            raise ValueError("no validity in certificate")
        _, _, pos = _tlv(der, pos)  # notBefore
        tag, start, end = _tlv(der, pos)
        return _time(tag, der[start:end])
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed certificate: {exc}") from None
