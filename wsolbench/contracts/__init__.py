"""The contracts plugins implement: a method (`contracts.method`) and a dataset adapter (`contracts.dataset`)."""
