"""Recording readers, preprocessing spec, epochs cache, synthetic recordings and the Lightning DataModule.

Import-light on purpose: ``datasets.dsp`` and ``datasets.typed`` are used by the rig's runtime, so this
package does not import MNE, torch or Lightning until a heavy name is asked for.
"""
