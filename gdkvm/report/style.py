"""One fixed look for every figure gdkvm draws, independent of the user's matplotlibrc and seaborn state.

:func:`figure_style` resets matplotlib's rcParams to its built-in defaults (so a ``matplotlibrc`` or
``MPLSTYLE`` of the user does not leak into the report), applies the seaborn theme :data:`THEME`, and
restores the caller's rcParams on exit. Draw *and save* a figure inside it: some parameters (fonts,
save face colour) are read when the figure is drawn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

#: The seaborn theme of every figure (``seaborn.set_theme`` arguments): a light grid, the colour-blind
#: safe palette for C0..C9, and fixed font sizes.
THEME: dict[str, Any] = {"style": "whitegrid", "context": "notebook", "palette": "colorblind", "font_scale": 0.85,
                         "rc": {"savefig.facecolor": "white", "figure.facecolor": "white", "font.family": "DejaVu Sans"}}


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Within the block, rcParams are matplotlib's defaults plus :data:`THEME`; restored afterwards."""
    import matplotlib as mpl
    import seaborn as sns

    with mpl.rc_context():
        mpl.rcdefaults()  # drop the user's matplotlibrc / style for the duration (backend is kept)
        sns.set_theme(**THEME)
        yield
