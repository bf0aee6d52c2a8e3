"""One module per protocol family; each exports async `(spec, attempt) -> ProbeResult` checks."""
