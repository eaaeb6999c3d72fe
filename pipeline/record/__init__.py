"""The run record: the typed experiment config and what a finished run's folder holds.

This layer sits below training and export. Training writes run records, export and the comparison read them,
and neither side needs the other: nothing here imports the training loop (Lightning, the task, the trainer).
"""
