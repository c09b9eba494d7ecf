"""Mail arriving on the inbound MX: which addresses we handle, what a message is (ARF complaint, DSN, auto-reply,
operator or reply mail), whose mail it is about, bounce reasons, and the reply forwarder."""
