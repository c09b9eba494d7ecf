"""DKIM: key pairs and their selectors, the signer, the pool's operator keys, and the live DNS check of a member's keys."""
