"""Keeps an operator's IPVS change where keepalived or ldirectord read it back on reload.

Before a change of a service that a running keepalived or ldirectord owns, the change is
refused when the owner would undo it and ctop cannot prevent that (no `include` line for
ctop's file in the keepalived real_server block, no `maintenancedir` in ldirectord's config,
a directory ctop may not write); the message names the file and block to change. After it,
keepalived gets its include file and a reload (SIGHUP), ldirectord its maintenance file.
The owner is looked up again before every change (a restarted owner has a new pid).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ctop.lb.actions import Plan
from ctop.lb.owners import keepalived, ldirectord
from ctop.lb.owners.detect import TableOwner, detect
from ctop.lb.owners.haproxy_state import write_atomically

BALANCER = "ipvs"


class IPVSOwners:
    def __init__(self, keepalived_dir: str = keepalived.DEFAULT_DIR,
                 find: Callable[[], list[TableOwner]] = detect) -> None:
        self.keepalived_dir = Path(keepalived_dir)
        self.find = find

    def owner_of(self, service: str) -> TableOwner | None:
        return next((o for o in self.find() if service in o.services), None)

    # -- hooks ------------------------------------------------------------------------------

    def _owner_of_plan(self, plan: Plan) -> TableOwner | None:
        """Who owns the IPVS service a plan changes (None: another balancer, or nobody)."""
        return self.owner_of(plan.service) if plan.balancer == BALANCER else None

    def before_change(self, plan: Plan) -> str:
        owner = self._owner_of_plan(plan)
        if owner is None:
            return ""
        try:
            if owner.kind == "keepalived":
                return self._keepalived_refusal(owner, plan)
            return self._ldirectord_refusal(owner, plan)
        except (OSError, ValueError) as exc:  # its config changed under us, unreadable
            return f"cannot read {owner.kind}'s config {owner.config}: {exc}"

    def after_change(self, plan: Plan) -> str:
        owner = self._owner_of_plan(plan)
        if owner is None:
            return ""
        try:
            if owner.kind == "keepalived":
                return self._keepalived_keep(owner, plan)
            return self._ldirectord_keep(owner, plan)
        except (OSError, ValueError) as exc:
            return (f"; NOT kept for {owner.kind} ({owner.config}), its next reload undoes it: "
                    f"{getattr(exc, 'strerror', None) or exc}")

    # -- keepalived -------------------------------------------------------------------------

    def _keepalived_block(self, owner: TableOwner, plan: Plan
                          ) -> tuple[keepalived.RealServerBlock | None, Path | None]:
        found = keepalived.find(keepalived.parse(owner.config, self.keepalived_dir),
                                plan.service, plan.server)
        if found is None:
            return None, None
        vs, rs = found
        return rs, keepalived.include_path(self.keepalived_dir, vs, rs)

    def _keepalived_refusal(self, owner: TableOwner, plan: Plan) -> str:
        rs, path = self._keepalived_block(owner, plan)
        if rs is None or path is None:
            return (f"keepalived (pid {owner.pid}) owns {plan.service} but {owner.config} has "
                    f"no real_server {plan.server} in it: its next reload would undo this")
        if not keepalived.includes_file(rs, path):
            return (f"keepalived (pid {owner.pid}) owns {plan.service}: its next reload would "
                    f"undo this. Add `include {path}` after `weight` in the real_server "
                    f"{rs.ip} {rs.port} block at {rs.where}, then retry (ctop writes that file "
                    "and reloads keepalived)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return (f"keepalived owns {plan.service} and ctop may not write {path.parent} "
                    f"({exc.strerror or exc}): change the weight in the real_server block at "
                    f"{rs.where} and reload keepalived instead")
        if not os.access(path.parent, os.W_OK):
            return (f"keepalived owns {plan.service} and ctop may not write {path.parent}: "
                    f"change the weight in the real_server block at {rs.where} and reload "
                    "keepalived instead")
        return ""

    def _keepalived_keep(self, owner: TableOwner, plan: Plan) -> str:
        rs, path = self._keepalived_block(owner, plan)
        if rs is None or path is None:
            return ""
        weight = plan.after if plan.after != (rs.weight if rs.weight is not None else 1) else None
        keepalived.write_weight(path, weight)
        keepalived.reload(owner.pid)
        what = f"weight {weight} in {path}" if weight is not None else f"{rs.where}'s own weight"
        return f"; kept for keepalived's reloads ({what}; keepalived reloaded)"

    # -- ldirectord -------------------------------------------------------------------------

    def _ldirectord_refusal(self, owner: TableOwner, plan: Plan) -> str:
        cfg = ldirectord.parse(owner.config)
        path = ldirectord.maintenance_file(cfg, plan.server)
        if plan.after and path is not None and path.exists():
            # Putting it back: remove ctop's file first. Removed after the change, a check of
            # ldirectord's in between still saw it and set weight 0 again (seen in the VM: the
            # restored server was out for 3 s).
            try:
                path.unlink()
            except OSError as exc:
                return f"cannot remove ldirectord's maintenance file {path}: {exc.strerror}"
        if plan.after == 0 and cfg.maintenancedir is None:
            return (f"ldirectord (pid {owner.pid}) owns {plan.service} and {owner.config} has "
                    "no maintenancedir: its next check or reload would put the server back. "
                    "Add `maintenancedir = /var/lib/ldirectord/maintenance` (a directory ctop "
                    "may write) to it and reload ldirectord, then retry")
        return ""

    def _ldirectord_keep(self, owner: TableOwner, plan: Plan) -> str:
        cfg = ldirectord.parse(owner.config)
        path = ldirectord.maintenance_file(cfg, plan.server)
        notes = ""
        if path is not None and plan.after == 0:
            write_atomically(path, "written by ctop: a drain (ctop lb log says who and why)\n")
            notes = f"; kept for ldirectord: {path}"
        elif path is not None:
            path.unlink(missing_ok=True)  # (before the change already: _ldirectord_refusal)
            notes = f"; ldirectord's maintenance file {path} removed"
            held = ldirectord.other_maintenance_files(cfg, plan.server)
            if held:
                notes += (f"; ldirectord still holds it down by {', '.join(map(str, held))} "
                          "(not ctop's: remove it to put the server back)")
        configured = next((v.reals.get(plan.server) for v in cfg.virtuals
                           if v.key == plan.service), None)
        if plan.after and configured is not None and plan.after != configured:
            notes += (f"; ldirectord knows only up and down: its next reload sets weight "
                      f"{configured} from {owner.config} again")
        return notes
