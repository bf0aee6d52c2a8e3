"""ctop: the director side of the ctop cluster monitor (engine, load-balancer control, UI)."""

__version__ = "0.1.0"
