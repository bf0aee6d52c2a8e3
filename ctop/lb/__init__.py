"""Load-balancer control: one interface (base.py), two real backends (IPVS, HAProxy)."""
