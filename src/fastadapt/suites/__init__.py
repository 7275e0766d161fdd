"""The shipped task suites, one per application; each registers through the ``fastadapt.suites`` entry-point
group like a third-party suite (see :mod:`fastadapt.training` for the protocol):

- ``images``: few-shot image classification (digits, Omniglot);
- ``regression``: regression task families (sinusoid, linear);
- ``recsys``: cold-start recommendation on MovieLens (MeLU protocol);
- ``text``: few-shot intent classification on a frozen sentence encoder (CLINC150, CSV files).
"""

from __future__ import annotations
