"""WSOL metrics: box extraction, accumulators, PxAP, threshold policies."""
