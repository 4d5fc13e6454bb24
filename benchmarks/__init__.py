"""Benchmarks and the readers of compiled programs they share; run each as a script
(`python benchmarks/train_step.py --help`). The tests import the readers as
`benchmarks.hlo` and `benchmarks.loss_program`."""
