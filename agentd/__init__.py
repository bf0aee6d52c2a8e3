"""agentd: the node agent that streams signed metric reports to the ctop director.

Keep this package light: it must never import Textual or the ctop UI (see bench/agent_cost.py).
"""

__version__ = "0.1.0"
