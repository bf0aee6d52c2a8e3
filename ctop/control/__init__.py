"""The local control socket of `ctop serve`: wire (framing), server (the daemon's side),
client (`ctop status`, `ctop lb`, an attached UI)."""
