"""The atproto labeler: its identity and key, signed labels, the label stream and queryLabels.

Label decisions stay where they are made (the `labeler` function, the rules,
the operator); this package turns each change of a public label into a
signed atproto label, in order, so apps and relays can verify it.
"""
