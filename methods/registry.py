"""The registered methods, by name. Plain strings, no imports: configs and ``--help`` check a
method's name without loading torch, and :func:`methods.load_method` imports the one it needs.

Adding a method: its module in ``methods/`` (a :class:`methods.base.Method`) and one line here.
"""

from __future__ import annotations

# name -> "module:class"
METHODS: dict[str, str] = {
    "cyclegan": "methods.cyclegan:CycleGANMethod",
    "gatys": "methods.gatys:GatysMethod",
    "johnson": "methods.johnson:JohnsonMethod",
    "wct": "methods.wct:WCTMethod",
    "adain": "methods.wct:AdaINMethod",
}
