"""Mail leaving the relay: header work before signing, MX resolution, the SMTP client session and its connection
cache, VERP return paths and the retry policy."""
