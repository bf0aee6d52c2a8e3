"""Owners of a load-balancer table: who else writes it, and how a change survives them.

keepalived and ldirectord rewrite the IPVS table when they reload; HAProxy forgets runtime
weights and drains on reload unless it loads a server-state file. The modules here detect
the owner (`detect`), read its configuration (`keepalived`, `ldirectord`, `haproxy_state`)
and keep an operator's change where the owner itself reads it back after a reload.
"""
