"""Named facts that several layers share and the command line needs while it builds its parser (so: no imports).

Shapes and file names live with their owners (:mod:`metallo.layout`), split names in
:data:`metallo.layout.SPLITS`.
"""

#: Default level of the split-conformal prediction intervals (``evaluate.interval``, ``metallo predict
#: --interval``, the pyfunc model's ``interval`` param).
INTERVAL_LEVEL = 0.9
