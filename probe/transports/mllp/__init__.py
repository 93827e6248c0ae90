"""HL7 v2 over MLLP: framing, messages, the source and observer, and the shared listener."""
