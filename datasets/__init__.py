"""The bottom layer: recording readers, events, channel picks, causal preprocessing, the epochs cache, splits,
normalisation, synthetic recordings, the Lightning DataModule, and the typed config and atomic-write helpers
every layer uses.

This ``__init__`` imports nothing, so ``import datasets.dsp`` loads only that module. Each module imports its
own dependencies at its top: MNE in the readers (``reading``, ``events``, ``picks``, ``epochs``, ``synthetic``),
torch and Lightning in ``datamodule`` and ``augment``. The pure modules import only numpy, scipy, PyYAML or the
standard library: ``dsp`` (filter design, the streaming preprocessor, normalisation) and ``channel_names``, which
the rig's runtime uses, and ``typed``, ``config``, ``cache``, ``atomic`` and ``splits``.
"""
