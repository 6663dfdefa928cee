"""Layer 7: versioned model artifacts with checksums, release gate, activate and roll back."""
