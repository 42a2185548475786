"""Model adapters: they own preprocessing, (de)quantisation, decoding and labels."""
