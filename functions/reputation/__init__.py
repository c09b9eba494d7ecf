"""Standing in the pool: the events the relay emits, the operator's policy file, warm-up tiers and sending limits,
and feedback (bounces and complaints) recorded against a member."""
