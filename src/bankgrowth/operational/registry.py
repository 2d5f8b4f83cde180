"""Every domain's models, imported once so that the metadata is complete (for migrations)."""

from __future__ import annotations

from sqlalchemy import MetaData


def metadata() -> MetaData:
    from bankgrowth.audiences import models as _audiences  # noqa: F401
    from bankgrowth.campaigns import models as _campaigns  # noqa: F401
    from bankgrowth.operational import installation as _installation  # noqa: F401
    from bankgrowth.operational.base import Base
    from bankgrowth.platform import models as _platform  # noqa: F401
    from bankgrowth.rights import models as _rights  # noqa: F401

    return Base.metadata
