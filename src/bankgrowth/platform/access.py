"""Who is calling and what they may touch: roles, permissions, the caller (``Principal``) and the
part of the org tree its data is limited to (``Scope``).

Services take a ``Principal`` (or its ``Scope``) as an argument and enforce the rule themselves, so
the CLI and the API obey the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from bankgrowth.errors import Forbidden


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    ANALYST = "analyst"
    APPROVER = "approver"
    AUDITOR = "auditor"


class Permission(StrEnum):
    READ = "read"  # dashboards, customers (masked), audiences, campaigns, reports
    WRITE = "write"  # create and change audiences, campaigns, rights, budgets
    APPROVE = "approve"  # the checker of maker-checker
    MANAGE = "manage"  # users and channel API keys
    AUDIT = "audit"  # read the audit log
    REVEAL = "reveal"  # see personal data in clear (every reveal is audited)
    CHANNEL = "channel"  # channel endpoints only: granted to channel API keys, never to a role


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset({Permission.READ, Permission.WRITE, Permission.MANAGE, Permission.AUDIT, Permission.REVEAL}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.WRITE}),
    Role.ANALYST: frozenset({Permission.READ}),
    Role.APPROVER: frozenset({Permission.READ, Permission.APPROVE}),
    Role.AUDITOR: frozenset({Permission.READ, Permission.AUDIT, Permission.REVEAL}),
}

ROLE_LABELS: dict[Role, tuple[str, str]] = {
    Role.ADMIN: ("管理员", "Administrator"),
    Role.OPERATOR: ("运营", "Operator"),
    Role.ANALYST: ("分析师", "Analyst"),
    Role.APPROVER: ("审批人", "Approver"),
    Role.AUDITOR: ("审计员", "Auditor"),
}


@dataclass(frozen=True)
class Scope:
    """The subtree of the org tree rooted at ``org_id``. ``org_ids`` is ``None`` at the root (HQ):
    everything is in scope, and no filter is applied."""

    org_id: str
    path: str
    org_ids: frozenset[str] | None

    def allows(self, org_id: str | None) -> bool:
        return self.org_ids is None or (org_id is not None and org_id in self.org_ids)

    @property
    def is_root(self) -> bool:
        return self.org_ids is None

    @property
    def ancestor_ids(self) -> frozenset[str]:
        """The orgs on the path from the root down to this scope's own org (itself included)."""
        return frozenset(p for p in self.path.strip("/").split("/") if p)

    def shares(self, org_id: str | None) -> bool:
        """An object of ``org_id`` is usable here: it is in the subtree, or an ancestor (HQ, the
        branch above) owns it — catalogs flow down the tree, data does not flow up."""
        return self.allows(org_id) or (org_id is not None and org_id in self.ancestor_ids)


@dataclass(frozen=True)
class Principal:
    """The caller of a service: a console user, a channel application, or the system (CLI, jobs)."""

    kind: Literal["user", "channel", "system"]
    name: str
    scope: Scope
    permissions: frozenset[Permission]
    id: int | None = None
    roles: frozenset[Role] = field(default_factory=frozenset)
    source: str = "unknown"
    request_id: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise Forbidden(
                f"{self.actor} lacks the '{permission}' permission",
                f"{self.actor} 没有“{permission}”权限",
                code="permission_denied",
                details={"permission": str(permission)},
            )

    def require_hq(self, permission: Permission, en: str, zh: str) -> None:
        """``permission`` and a scope of the whole bank, for changes that cover every branch;
        ``en``/``zh`` say what may only HQ do ("change the org tree", "修改机构树")."""
        self.require(permission)
        if not self.scope.is_root:
            raise Forbidden(f"only HQ can {en}", f"只有总行可以{zh}", code="hq_only")


def permissions_of(roles: frozenset[Role] | set[Role]) -> frozenset[Permission]:
    out: set[Permission] = set()
    for role in roles:
        out |= ROLE_PERMISSIONS[role]
    return frozenset(out)


SYSTEM_PERMISSIONS = frozenset(p for p in Permission if p is not Permission.CHANNEL)
