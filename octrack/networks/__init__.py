"""The networks, and their one registry.

Each network module says only what is special about its network (networks/base.py lists what it provides):
how its training samples are cut and cached, its model, target and loss, how its output becomes predictions,
and how a model folder of its kind is loaded. The stages read `NETWORKS`; nothing below them does. A new
network is one module and one line here.
"""

from __future__ import annotations

from octrack.networks import detect, divide, link
from octrack.networks.base import Network

NETWORKS: dict[str, Network] = {network.NAME: network for network in (detect, divide, link)}  # type: ignore[misc]
NETWORK_OF_STEP: dict[str, Network] = {network.STEP: network for network in NETWORKS.values()}
