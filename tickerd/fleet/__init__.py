"""Several instances as one fleet: membership, rendezvous assignment, make-before-break handover.

Instances started with the same ``[fleet] name`` on one Redis and prefix share the desired set
(each symbol collected by ``fleet.replicas`` of them) with no leader and no consensus of their
own: each keeps a record with an expiry (:mod:`~tickerd.fleet.membership`), every member computes
the same owners from the live records (:mod:`~tickerd.fleet.rendezvous`), and a symbol changes
hands make-before-break (:mod:`~tickerd.fleet.share`).  Writes that never go back in time make
the resulting duplicates harmless.

This package's root imports only what ``tickerd status`` needs to read a fleet (the record and
the rendezvous); the daemon imports the trio side from its modules.
"""

from tickerd.fleet.member import Member, MemberExchange
from tickerd.fleet.rendezvous import eligible, owners, weight
from tickerd.fleet.store import read_members

__all__ = ["Member", "MemberExchange", "eligible", "owners", "read_members", "weight"]
