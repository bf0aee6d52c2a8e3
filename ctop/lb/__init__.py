"""Load-balancer control: one driver interface (base.Balancer), two real balancers (IPVS,
HAProxy); the director's service (service.py) runs monitoring, automation and actions."""
