"""ctop's terminal UI (Textual). The only package in ctop that imports Textual."""
