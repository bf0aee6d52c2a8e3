"""NATS for ctop: one connection (ctop.nats.link), one `[nats]` config section
(ctop.nats.config), and what is built on them (ctop.nats.pair: pair-consistent LB actions).

nats-py is optional (`pip install 'ctop[nats]'`): nothing here is imported unless `[nats]` is
configured, and ctop without it works exactly as before.
"""
