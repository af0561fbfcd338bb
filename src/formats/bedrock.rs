//! STUB: Bedrock Converse wire format <-> IR (outbound only). To be replaced.
