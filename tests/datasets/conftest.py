"""Small synthetic recordings (real FIF and EDF files), written once per test session."""

import pytest


@pytest.fixture(scope="session")
def synth_fif(tmp_path_factory):
    from datasets.synthetic import write_synthetic

    folder = tmp_path_factory.mktemp("synth_fif")
    return write_synthetic(folder, n_subjects=2, n_sessions=1, n_runs=3, trials_per_class=4, seed=1)


@pytest.fixture(scope="session")
def synth_edf(tmp_path_factory):
    from datasets.synthetic import write_synthetic

    folder = tmp_path_factory.mktemp("synth_edf")
    return write_synthetic(folder, n_subjects=1, n_runs=2, trials_per_class=3, fmt="edf", seed=2)
