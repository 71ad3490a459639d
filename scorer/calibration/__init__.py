"""The calibration data set, as the scorer reads it: ``rows`` is the JSONL row format that
``kubeattention calibrate`` (``contention_lab``) writes, ``data`` turns rows into model
input with held-out splits, ``fit`` fits the synthetic contention curves to them and
``noise`` measures the test-retest noise of the runs.
"""
