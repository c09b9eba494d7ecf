"""The cooperative's members: the registry of members and domains, API keys, identifiers, labels, suppression
lists, atproto attestation and what a new member must set up."""
