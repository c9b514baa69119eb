"""protoseg's fast ProtoDUNE-SP simulation: sources → transport in argon → charge, drift → readout → hits."""
