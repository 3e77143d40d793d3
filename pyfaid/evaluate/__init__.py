"""Evaluation: the paper's photometric protocol (Tables 1 and 2), the training run's held-out check,
and 3D errors.

``python -m pyfaid.evaluate --checkpoint runs/default --data synthetic --n 200 --out eval/``

Modules: :mod:`~pyfaid.evaluate.protocol` (``evaluate``, ``Method``), :mod:`~pyfaid.evaluate.report`
(``report.md``, ``report.png``), :mod:`~pyfaid.evaluate.synthetic` (``held_out_psnr``, the end of
``python -m pyfaid.train``), :mod:`~pyfaid.evaluate.geometry` (``procrustes_error``),
:mod:`~pyfaid.evaluate.cli`.
"""

from pyfaid.evaluate.cli import main
from pyfaid.evaluate.geometry import MM_PER_UNIT, procrustes_error
from pyfaid.evaluate.protocol import CONDITIONS, OCCLUSION_SEED, Method, evaluate
from pyfaid.evaluate.report import figure, markdown_report
from pyfaid.evaluate.synthetic import held_out_landmarks, held_out_psnr

__all__ = ["evaluate", "Method", "CONDITIONS", "OCCLUSION_SEED", "held_out_psnr", "held_out_landmarks", "procrustes_error", "MM_PER_UNIT",
           "markdown_report", "figure", "main"]
