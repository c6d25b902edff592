"""The verifiable record: the Merkle tree over the audit log, checkpoints, verification, evidence."""
