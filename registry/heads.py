"""Signing registry heads: the log's checkpoint, the status map's root, and the time.

A head is what every gate and verifier starts from (``permitgate_client._proofs`` verifies it).
``sign_head`` makes one: the C2SP checkpoint of the log at its size with the extension line
``map <serial> <count> <root>``, signed by the registry key, and cosigned at once with the time,
so that a registry imported a moment ago is provably fresh without any service running.
``cosign_head`` is the heartbeat: the same head, a newer time.
"""

from __future__ import annotations

from datetime import datetime

from permitgate_client._proofs import MapHead
from permitgate_client.formats import Checkpoint

from registry.merkle import CompactTree
from registry.signing import Signer
from registry.statusmap import StatusMap
from registry.storage import HeadRow

__all__ = ["cosign_head", "sign_head"]


def sign_head(
    signer: Signer,
    *,
    origin: str,
    tree: CompactTree,
    status_map: StatusMap,
    serial: int,
    now: datetime,
) -> HeadRow:
    """A new head row: the checkpoint over ``tree`` and ``status_map``, signed and cosigned."""
    map_head = MapHead(serial, len(status_map), status_map.root())
    checkpoint = Checkpoint(origin, tree.size, tree.root(), (map_head.line(),))
    row = HeadRow(
        serial=serial,
        size=tree.size,
        root_hash=checkpoint.root_hash,
        map_root=map_head.root,
        note=signer.sign_note(checkpoint.body()),
        tree_state=tree.state,
        signed_at=now,
    )
    cosign_head(signer, row, now)
    return row


def cosign_head(signer: Signer, row: HeadRow, now: datetime) -> None:
    """Replace ``row``'s cosignature with one dated ``now`` (whole seconds, as C2SP has it)."""
    body = row.note[: row.note.index(b"\n\n") + 1]
    timestamp = int(now.timestamp())
    row.cosignature = signer.cosign(body, timestamp)
    row.cosigned_at = datetime.fromtimestamp(timestamp, now.tzinfo)
