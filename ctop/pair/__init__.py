"""The director pair: keepalived VRRP state, the peer's role, pair alerts (docs/director.md)."""
