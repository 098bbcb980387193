"""The demo gallery (``diffusion-canon demo``, ``make demo``): a static index.html + PNGs of what the project does.

- :mod:`.gallery`: :data:`SECTIONS` (the providers, ``"module:function"``), :data:`TRAINING_SECTIONS` (those that
  train in-process, ``make demo-train``) and :func:`run_demo`, the runner.
- :mod:`.section`: :class:`DemoSection`, what a provider returns; :mod:`.page`: the HTML.
- one module per section: :mod:`.glyph_world`, :mod:`.glyph_classifier`, :mod:`.adm`, :mod:`.cascade`,
  :mod:`.unclip`, :mod:`.fine_tuning`. The ADM, cascade and unCLIP modules also load the shipped default of their
  pipeline (``pipelines/<name>``) and hold the measurements the benchmarks share.

Library code never imports this package: the pipelines, models and training core stand without it.
"""

from .gallery import SECTIONS, TRAINING_SECTIONS, run_demo
from .section import DemoSection

__all__ = ["SECTIONS", "TRAINING_SECTIONS", "DemoSection", "run_demo"]
