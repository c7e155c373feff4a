"""Federated on-device CTR training on Flower: devices and energy (``devices``), the uplink
(``channel``, ``mac``), bandwidth allocation (``allocation``), client selection (``selection``),
strategies (``strategies``: FedAvg/BEFL, ``fedmho``), the ClientApp (``client``), the in-process
Flower grid (``grid``) and the run (``run``). See docs/federated.md."""
