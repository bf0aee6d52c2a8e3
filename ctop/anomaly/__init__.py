"""Anomaly detection at three levels (docs/director.md, "Anomaly detection"):

- node: a metric far from the node's own baseline for this hour of the week (baseline.py);
- group: a node whose cost per connection is far from its group's median (groups.py);
- escalation: many anomalous nodes in a group, a virtual service short of healthy servers
  (levels.py).

A periodic job (job.py) runs all three off the engine's hot path, reading the hourly rollups
through a read-only connection.
"""
