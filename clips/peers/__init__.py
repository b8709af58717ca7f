"""Peer arms: other methods a study trains and scores next to the curricula (``clips study --peers nnunet``).

One registry, as for the curricula: add a peer with one private module and one entry in PEERS.
"""
from clips.errors import ConfigError
from clips.peers._nnunet import NnUNet
from clips.peers.base import Peer, PeerJob

PEERS: dict[str, type[Peer]] = {p.name: p for p in (NnUNet,)}


def get_peer(name: str) -> type[Peer]:
    if name not in PEERS:
        raise ConfigError(f"unknown peer arm {name!r}; available: {', '.join(PEERS)}")
    return PEERS[name]


__all__ = ["PEERS", "NnUNet", "Peer", "PeerJob", "get_peer"]
