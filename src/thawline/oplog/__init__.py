"""The tamper-evident operation log: encoding, hashing, Merkle tree, checkpoints."""
